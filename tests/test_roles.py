"""core.users and the review workflow of core.corrections: roles checked where each action runs, the first admin,
submitted -> accepted | rejected, and the ground-truth policy. Every test runs on both engines (``engine``)."""

from __future__ import annotations

import getpass

import numpy as np
import pytest
from _tiny_dataset import ellipse_pet

from core import cli, corrections, groundtruth, ledger, review, users
from core.config import Settings
from core.errors import PetSegError
from core.masks import binary_to_trimap
from core.users import ACTIONS, PermissionDenied

ID = "Abyssinian_1"
ADMIN, REVIEWER, REVIEWER2, ANNOTATOR = "lead@example.org", "rita@example.org", "rob@example.org", "ana@example.org"

pytestmark = pytest.mark.usefixtures("engine")


def _mask(ds, image_id: str = ID, shift: int = 2) -> np.ndarray:
    height, width = int(ds.table.loc[image_id, "height"]), int(ds.table.loc[image_id, "width"])
    return binary_to_trimap(ellipse_pet((height, width), shift=shift), half_width=1)


@pytest.fixture
def team(settings: Settings) -> Settings:
    """A store with an admin, two reviewers and an annotator (the OS user has no role in it)."""
    users.add_user(settings, None, ADMIN, "admin")  # the OS user is admin of the single-user store until then
    users.add_user(settings, ADMIN, REVIEWER, "reviewer")
    users.add_user(settings, ADMIN, REVIEWER2, "reviewer")
    users.add_user(settings, ADMIN, ANNOTATOR, "annotator")
    return settings


@pytest.fixture
def reviewed(team: Settings) -> Settings:
    corrections.set_review_mode(team, "required", actor=ADMIN)
    return team


# --- roles ------------------------------------------------------------------------------------------------------


def test_a_store_without_users_is_single_user_and_whoever_runs_it_is_admin(settings: Settings, ds):
    assert users.role_of(settings, None) == "admin"
    for action in ACTIONS:
        assert users.require(settings, None, action) == "admin"
    saved = corrections.save(settings, ds, ID, _mask(ds), base_version=None, source="gt")
    assert (saved.author, saved.state) == (getpass.getuser(), "accepted")  # today's behaviour: accepted at once
    assert users.list_users(settings) == []


def test_the_first_user_must_be_an_admin_and_then_unknown_people_may_do_nothing(settings: Settings, ds):
    with pytest.raises(PetSegError, match="first user of a store must be an admin"):
        users.add_user(settings, None, ANNOTATOR, "annotator")
    users.add_user(settings, None, "Lead@Example.org ", "admin")  # emails are case-insensitive
    assert users.role_of(settings, "lead@example.org") == "admin"
    assert users.role_of(settings, None) is None  # the OS user is not listed: no longer implicitly admin
    with pytest.raises(PermissionDenied, match=f"{getpass.getuser()} has no role in this store.*users add"):
        corrections.save(settings, ds, ID, _mask(ds), base_version=None, source="gt")
    assert ledger.history(settings, ID) == []


def test_configured_admin_is_admin_whatever_the_table_says(settings: Settings, monkeypatch):
    monkeypatch.setenv(users.ADMIN_ENV, f"{ADMIN}, boss@example.org")
    assert users.role_of(settings, None) is None  # a configured admin makes it a team store
    assert users.role_of(settings, "BOSS@example.org") == "admin"
    users.add_user(settings, ADMIN, ANNOTATOR, "annotator")  # no admin row needed: the first admin is configured
    with pytest.raises(PetSegError, match="admin by configuration"):
        users.set_role(settings, ADMIN, "boss@example.org", "annotator")
    listed = {u.email: (u.role, u.configured) for u in users.list_users(settings)}
    assert listed == {ADMIN: ("admin", True), "boss@example.org": ("admin", True), ANNOTATOR: ("annotator", False)}


@pytest.mark.parametrize("role", ["annotator", "reviewer", "admin"])
def test_every_action_needs_its_minimum_role(team: Settings, role: str):
    who = {"annotator": ANNOTATOR, "reviewer": REVIEWER, "admin": ADMIN}[role]
    for action, (needed, _what) in ACTIONS.items():
        if users.rank(role) >= users.rank(needed):
            assert users.require(team, who, action) == role
        else:
            with pytest.raises(PermissionDenied, match=f"{who} is an? {role}; to .* must be an? {needed}"):
                users.require(team, who, action)


def test_an_annotator_is_refused_train_evaluate_export_and_review_in_core(team: Settings, ds):
    from core.evaluate import evaluate
    from core.export import export_archive
    from core.train import TrainConfig, train

    with pytest.raises(PermissionDenied, match="to train a model you must be an admin"):
        train(team, TrainConfig(run="nope", preset="quick", epochs=1), actor=ANNOTATOR)
    assert not team.run_dir("nope").exists()  # refused before anything was made
    with pytest.raises(PermissionDenied, match="to evaluate a model you must be an admin"):
        evaluate(team, run="nope", actor=ANNOTATOR)
    with pytest.raises(PermissionDenied, match="to export masks you must be an admin"):
        export_archive(team, actor=ANNOTATOR)
    from core.interop.runs import import_checkpoint, import_predictions

    with pytest.raises(PermissionDenied, match="to evaluate a model you must be an admin"):
        import_predictions(team, "outside", team.workspace, actor=ANNOTATOR)
    with pytest.raises(PermissionDenied, match="to train a model you must be an admin"):
        import_checkpoint(team, "outside", team.workspace / "x.pt", actor=ANNOTATOR)
    assert not team.run_dir("outside").exists()
    assert not team.exports_dir.exists()
    saved = corrections.save(team, ds, ID, _mask(ds), base_version=None, source="gt", author=ANNOTATOR)
    with pytest.raises(PermissionDenied, match="to delete correction versions you must be a reviewer"):
        corrections.soft_delete(team, ds, ID, saved.version, actor=ANNOTATOR)
    with pytest.raises(PermissionDenied, match="to change the review workflow you must be an admin"):
        corrections.set_review_mode(team, "required", actor=REVIEWER)
    with pytest.raises(PermissionDenied, match="to manage users and roles you must be an admin"):
        users.add_user(team, REVIEWER, "new@example.org", "admin")
    with pytest.raises(PermissionDenied, match="no role in this store, so may not tag images"):
        review.set_tag(team, ds, ID, "fine", author="stranger@example.org")
    with pytest.raises(PermissionDenied, match="no role in this store, so may not tag images"):
        review.set_tags(team, ds, [ID], "fine", author="stranger@example.org")  # a bulk tag is checked the same
    assert review.set_tag(team, ds, ID, "fine", author=ANNOTATOR).tag == "fine"


def test_the_last_admin_cannot_step_down_and_bad_input_is_refused(team: Settings):
    with pytest.raises(PetSegError, match="only admin"):
        users.set_role(team, ADMIN, ADMIN, "reviewer")
    users.set_role(team, ADMIN, REVIEWER, "admin")
    users.set_role(team, REVIEWER, ADMIN, "reviewer")  # two admins: one may step down
    assert users.role_of(team, ADMIN) == "reviewer"
    with pytest.raises(PetSegError, match="not a user of this store"):
        users.set_role(team, REVIEWER, "nobody@example.org", "annotator")
    with pytest.raises(PetSegError, match="has a role already"):
        users.add_user(team, REVIEWER, ANNOTATOR, "reviewer")
    for bad in ("two words@x.org", "a@b@c", "", "x" * 200, "nul\x00@x.org"):
        with pytest.raises(PetSegError):
            users.add_user(team, REVIEWER, bad, "annotator")
    with pytest.raises(PetSegError, match="role 'boss' is not one of"):
        users.add_user(team, REVIEWER, "new@example.org", "boss")


# --- the review workflow -----------------------------------------------------------------------------------------


def test_review_is_off_by_default_and_a_setting_of_the_store(team: Settings, ds):
    assert corrections.review_mode(team) == "off"
    first = corrections.save(team, ds, ID, _mask(ds), base_version=None, source="gt", author=ANNOTATOR)
    assert (first.state, first.reviewer) == ("accepted", None)
    corrections.set_review_mode(team, "required", actor=ADMIN)
    assert corrections.review_mode(team) == "required"
    second = corrections.save(team, ds, ID, _mask(ds, shift=4), base_version=1, source="correction",
                              author=ANNOTATOR)
    assert second.state == "submitted"
    with pytest.raises(PetSegError, match="review mode 'maybe'"):
        corrections.set_review_mode(team, "maybe", actor=ADMIN)


def test_submitted_versions_count_only_under_latest_until_a_reviewer_accepts(reviewed: Settings, ds):
    mask = _mask(ds)
    saved = corrections.save(reviewed, ds, ID, mask, base_version=None, source="gt", author=ANNOTATOR)
    assert saved.state == "submitted"
    official, version = groundtruth.current(reviewed, ds, ID)  # default policy: accepted
    assert version is None and not np.array_equal(official, mask)
    assert groundtruth.current(reviewed, ds, ID, policy="latest")[1] == 1
    assert [r.version for r in ledger.submitted(reviewed)] == [1]

    accepted = corrections.accept(reviewed, ds, ID, actor=REVIEWER, reason="looks right")
    assert (accepted.state, accepted.reviewer, accepted.reason) == ("accepted", REVIEWER, "looks right")
    assert accepted.reviewed_at is not None
    truth = groundtruth.snapshot(reviewed, ds, [ID])
    assert truth.versions[ID] == 1 and np.array_equal(truth.mask(ID), mask)
    assert ledger.submitted(reviewed) == []
    with pytest.raises(ledger.ReviewConflict, match=f"{ID} v1 is not waiting for review: it was accepted by "
                                                    f"{REVIEWER}"):
        corrections.reject(reviewed, ds, ID, 1, actor=REVIEWER2, reason="too late")


def test_a_reviewer_cannot_accept_their_own_correction(reviewed: Settings, ds):
    corrections.save(reviewed, ds, ID, _mask(ds), base_version=None, source="gt", author=REVIEWER)
    with pytest.raises(PermissionDenied, match="your own correction"):
        corrections.accept(reviewed, ds, ID, 1, actor=REVIEWER.upper())
    assert ledger.latest(reviewed, ID).state == "submitted"
    with pytest.raises(PermissionDenied, match="to accept corrections you must be a reviewer"):
        corrections.accept(reviewed, ds, ID, 1, actor=ANNOTATOR)
    assert corrections.accept(reviewed, ds, ID, 1, actor=REVIEWER2).state == "accepted"


def test_rejected_versions_are_never_ground_truth_and_saving_on_top_submits_again(reviewed: Settings, ds):
    corrections.save(reviewed, ds, ID, _mask(ds), base_version=None, source="gt", author=ANNOTATOR)
    corrections.accept(reviewed, ds, ID, 1, actor=REVIEWER)
    corrections.save(reviewed, ds, ID, _mask(ds, shift=5), base_version=1, source="correction", author=ANNOTATOR)
    with pytest.raises(PetSegError, match="say why"):
        corrections.reject(reviewed, ds, ID, 2, actor=REVIEWER, reason="  ")
    rejected = corrections.reject(reviewed, ds, ID, 2, actor=REVIEWER, reason="the tail is cut off")
    assert (rejected.state, rejected.reason) == ("rejected", "the tail is cut off")
    for policy in groundtruth.POLICIES:
        assert groundtruth.current(reviewed, ds, ID, policy=policy)[1] == 1
    # The editor starts from the newest version whatever its state; a save on top is a new submission.
    assert ledger.latest(reviewed, ID).version == 2
    third = corrections.save(reviewed, ds, ID, _mask(ds, shift=3), base_version=2, source="correction",
                             author=ANNOTATOR)
    reverted = corrections.revert(reviewed, ds, ID, 1, author=ANNOTATOR)
    assert (third.state, reverted.state) == ("submitted", "submitted")
    assert groundtruth.current(reviewed, ds, ID)[1] == 1
    assert groundtruth.current(reviewed, ds, ID, policy="latest")[1] == reverted.version
    with pytest.raises(PetSegError, match="corrections policy 'newest'"):
        groundtruth.snapshot(reviewed, ds, [ID], policy="newest")


def test_accepting_changes_the_cache_stamp(reviewed: Settings, ds):
    corrections.save(reviewed, ds, ID, _mask(ds), base_version=None, source="gt", author=ANNOTATOR)
    before = ledger.stamp(reviewed)
    corrections.accept(reviewed, ds, ID, actor=REVIEWER)
    assert ledger.stamp(reviewed) != before


def test_imports_are_submitted_under_review(reviewed: Settings, ds, tmp_path):
    import cv2

    folder = tmp_path / "fixed"
    folder.mkdir()
    cv2.imwrite(str(folder / f"{ID}.png"), _mask(ds))
    report = corrections.import_folder(reviewed, folder, author=ANNOTATOR, ds=ds)
    assert report.imported == [ID] and ledger.latest(reviewed, ID).state == "submitted"
    with pytest.raises(PermissionDenied):
        corrections.import_folder(reviewed, folder, author="stranger@example.org", ds=ds)


def test_db_copy_carries_users_the_workflow_and_review_states_and_later_reviews(settings: Settings, ds, engine,
                                                                              postgres, team):
    from core.store.copy import copy_store, digest
    from tests.conftest import new_pg_database

    if engine == "postgresql":
        pytest.skip("copies the SQLite store into PostgreSQL: once is enough")
    corrections.set_review_mode(team, "required", actor=ADMIN)
    corrections.save(team, ds, ID, _mask(ds), base_version=None, source="gt", author=ANNOTATOR)
    target = new_pg_database(postgres)
    copy_store(team.workspace, team.db_url, target)
    there = Settings(team.data, team.workspace, db=target)
    assert users.role_of(there, REVIEWER) == "reviewer" and corrections.review_mode(there) == "required"
    assert ledger.latest(there, ID).state == "submitted"
    corrections.accept(team, ds, ID, actor=REVIEWER)  # reviewed in the source after the first copy
    users.set_role(team, ADMIN, ANNOTATOR, "reviewer")
    report = copy_store(team.workspace, team.db_url, target)
    assert report.copied["corrections"] == 1 and report.copied["users"] == 1
    assert (ledger.latest(there, ID).state, ledger.latest(there, ID).reviewer) == ("accepted", REVIEWER)
    assert users.role_of(there, ANNOTATOR) == "reviewer"
    assert digest(team) == digest(there)


# --- the CLI ---------------------------------------------------------------------------------------------------


def _cli(settings: Settings, *argv: str, actor: str | None = None) -> int:
    prefix = ["--as", actor] if actor else []
    return cli.main([*prefix, *argv[:2], "--data", str(settings.data), "--workspace", str(settings.workspace),
                     *argv[2:]] if argv[0] == "corrections" else
                    [*prefix, argv[0], "--data", str(settings.data), "--workspace", str(settings.workspace),
                     *argv[1:]] if argv[0] in ("export", "evaluate", "train") else
                    [*prefix, *argv, "--workspace", str(settings.workspace)])


def test_cli_users_and_workflow_commands(settings: Settings, capsys):
    assert _cli(settings, "users", "list") == 0
    assert "no users: this store is single-user" in capsys.readouterr().out
    assert _cli(settings, "users", "add", ADMIN, "--role", "admin") == 0
    assert _cli(settings, "users", "add", ANNOTATOR, "--role", "annotator", actor=ADMIN) == 0
    assert _cli(settings, "users", "set-role", ANNOTATOR, "reviewer", actor=ADMIN) == 0
    assert f"{ANNOTATOR} is now reviewer" in capsys.readouterr().out
    assert _cli(settings, "users", "list") == 0
    out = capsys.readouterr().out
    assert ADMIN in out and f"{ANNOTATOR}" in out and "reviewer" in out
    # Without --as the OS user acts, who has no role any more.
    assert _cli(settings, "workflow", "--review", "required") == 2
    assert "has no role in this store" in capsys.readouterr().err
    assert _cli(settings, "workflow", "--review", "required", actor=ADMIN) == 0
    assert "review required" in capsys.readouterr().out
    assert corrections.review_mode(settings) == "required"


@pytest.mark.parametrize("command", [["export"], ["evaluate", "--run", "nope"],
                                     ["train", "--run", "nope", "--preset", "quick", "--epochs", "1"]])
def test_cli_refuses_an_annotator_train_evaluate_and_export(team: Settings, capsys, command: list[str]):
    assert _cli(team, *command, actor=ANNOTATOR) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {ANNOTATOR} is an annotator; to ") and "must be an admin" in err


def test_cli_accept_and_reject(reviewed: Settings, ds, capsys):
    corrections.save(reviewed, ds, ID, _mask(ds), base_version=None, source="gt", author=ANNOTATOR)
    assert _cli(reviewed, "corrections", "accept", ID, actor=ANNOTATOR) == 2
    assert "to accept corrections you must be a reviewer" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --reason is required
        _cli(reviewed, "corrections", "reject", ID, "--version", "1", actor=REVIEWER)
    capsys.readouterr()
    assert _cli(reviewed, "corrections", "reject", ID, "--version", "1", "--reason", "ear missing",
                actor=REVIEWER) == 0
    assert f"{ID} v1 rejected by {REVIEWER}: ear missing" in capsys.readouterr().out
    corrections.save(reviewed, ds, ID, _mask(ds, shift=4), base_version=1, source="correction", author=ANNOTATOR)
    assert _cli(reviewed, "corrections", "accept", ID, actor=REVIEWER) == 0
    assert f"{ID} v2 accepted by {REVIEWER}" in capsys.readouterr().out
    assert groundtruth.current(reviewed, ds, ID)[1] == 2
