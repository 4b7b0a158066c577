"""Roles and the review workflow in the app (AppTest): pages refuse on the server side, the Review corrections queue
accepts and rejects, the Admin page manages users and the workflow, History shows the review of every version."""

from __future__ import annotations

import numpy as np
import pytest
from _tiny_dataset import ellipse_pet

from core import corrections, ledger, store, users
from core.config import Settings
from core.dataset import open_dataset
from core.masks import binary_to_trimap
from dashboard import state
from tests.conftest import PROJECT_ROOT, open_app, plain, ui_calls
from tests.test_signin_gate import AUTH

IMAGE = "Abyssinian_1"
ADMIN, REVIEWER, ANNOTATOR = "lead@example.org", "rita@example.org", "ana@example.org"


def _user(email: str) -> dict:
    return {"is_logged_in": True, "email": email, "email_verified": True}


def _app(monkeypatch, sample_root, workspace, page: str, *, email: str | None = None, **query: str):
    at = open_app(monkeypatch, sample_root, workspace, run=False)
    if email is not None:
        at.secrets["auth"] = AUTH
        at.user = _user(email)
    at.run()
    for key, value in query.items():
        at.query_params[key] = value
    return at.switch_page(f"app_pages/{page}.py").run()


def _errors(at) -> list[str]:
    return [plain(e.value) for e in at.error]


def _mask(ds, shift: int = 2) -> np.ndarray:
    height, width = int(ds.table.loc[IMAGE, "height"]), int(ds.table.loc[IMAGE, "width"])
    return binary_to_trimap(ellipse_pet((height, width), shift=shift), half_width=1)


@pytest.fixture
def team(sample_root, workspace) -> Settings:
    """The real sample with an admin, a reviewer and an annotator (the OS user, who runs AppTest, is the annotator
    where a test opens the app without sign-in)."""
    settings = Settings.resolve(data=sample_root, workspace=workspace)
    users.add_user(settings, None, ADMIN, "admin")
    users.add_user(settings, ADMIN, REVIEWER, "reviewer")
    users.add_user(settings, ADMIN, ANNOTATOR, "annotator")
    users.add_user(settings, ADMIN, store.clean_author(None), "annotator")
    return settings


def test_without_users_the_local_user_is_admin_and_opens_admin_and_review(monkeypatch, sample_root, workspace):
    for page in ("admin", "review_corrections"):
        at = _app(monkeypatch, sample_root, workspace, page)
        assert not at.exception and not at.error
    assert "Review is off" in " ".join(i.value for i in at.info)


@pytest.mark.parametrize("page, message", [("admin", "to manage users and roles you must be an admin"),
                                           ("review_corrections", "to accept corrections you must be a reviewer")])
def test_an_annotator_opening_a_page_above_their_role_gets_the_refusal_only(monkeypatch, sample_root, workspace,
                                                                           team, page, message):
    from streamlit.testing.v1 import AppTest

    with pytest.raises(ValueError, match="Could not find a navigation page"):  # not in their navigation
        _app(monkeypatch, sample_root, workspace, page)
    # And the page itself refuses, should it be reached some other way (the frame is bypassed here).
    at = AppTest.from_file(str(PROJECT_ROOT / "app_pages" / f"{page}.py"), default_timeout=60).run()
    assert not at.exception
    assert len(at.error) == 1 and message in _errors(at)[0]
    assert not [b for b in at.button if b.key in ("admin_add", "review_accept")]


def test_an_annotator_clicking_export_or_train_is_refused_on_the_server(monkeypatch, sample_root, workspace, team):
    at = _app(monkeypatch, sample_root, workspace, "export")
    at.button(key="export_run").click().run()
    assert not at.exception
    assert any("is an annotator; to export masks you must be an admin" in e for e in _errors(at))
    assert not team.exports_dir.exists() or not list(team.exports_dir.glob("*.zip"))

    at = _app(monkeypatch, sample_root, workspace, "train")
    at.button(key="train_start").click().run()
    assert not at.exception
    assert any("to train a model you must be an admin" in e for e in _errors(at))
    assert not (workspace / "jobs").exists() or not list((workspace / "jobs").iterdir())


def test_a_reviewer_accepts_and_rejects_from_the_queue_oldest_first(monkeypatch, sample_root, workspace, team):
    ds = open_dataset(sample_root, workspace)
    corrections.set_review_mode(team, "required", actor=ADMIN)
    other = [i for i in ds.ids() if i != IMAGE][0]
    corrections.save(team, ds, IMAGE, _mask(ds), base_version=None, source="gt", author=ANNOTATOR)
    height, width = int(ds.table.loc[other, "height"]), int(ds.table.loc[other, "width"])
    corrections.save(team, ds, other, binary_to_trimap(ellipse_pet((height, width), shift=1), half_width=1),
                     base_version=None, source="gt", author=ANNOTATOR)
    corrections.save(team, ds, IMAGE, _mask(ds, shift=6), base_version=1, source="correction", author=REVIEWER)

    at = _app(monkeypatch, sample_root, workspace, "review_corrections", email=REVIEWER)
    assert not at.exception
    assert [s.value for s in at.subheader] == [f"{IMAGE} v1"]  # the oldest; their own v2 is not offered
    assert "1 of your own wait for another reviewer" in " ".join(plain(c.value) for c in at.caption)
    assert any("IoU between before and after: " in plain(m.value) for m in at.markdown)
    assert len(at.get("image")) == 3  # before, after, difference

    at.button(key="review_reject").click().run()  # no reason typed
    assert any("say why" in e for e in _errors(at))
    assert ledger.get_version(team, IMAGE, 1).state == "submitted"
    at.text_input(key=state.REVIEW_QUEUE_REASON).input("the ear is missing").run()
    at.button(key="review_reject").click().run()
    assert not at.exception
    row = ledger.get_version(team, IMAGE, 1)
    assert (row.state, row.reviewer, row.reason) == ("rejected", REVIEWER, "the ear is missing")
    assert [s.value for s in at.subheader] == [f"{other} v1"]
    assert at.text_input(key=state.REVIEW_QUEUE_REASON).value == ""

    at.button(key="review_accept").click().run()
    assert ledger.get_version(team, other, 1).state == "accepted"
    assert "Nothing waits for your review." in " ".join(i.value for i in at.info)

    at = _app(monkeypatch, sample_root, workspace, "history", email=REVIEWER, image=IMAGE)
    lines = " ".join(plain(m.value) for m in at.markdown)
    assert f"rejected**] · by {REVIEWER}" in lines and "reason: the ear is missing" in lines
    assert "submitted**] · waiting for a reviewer" in lines


def test_the_admin_page_adds_users_changes_roles_and_switches_review(monkeypatch, sample_root, workspace, team):
    at = _app(monkeypatch, sample_root, workspace, "admin", email=ADMIN)
    assert not at.exception and not at.error
    at.text_input(key="admin_add_email").input("New@Example.org").run()
    at.selectbox(key="admin_add_role").select("reviewer").run()
    at.button(key="admin_add").click().run()
    assert users.role_of(team, "new@example.org") == "reviewer"
    at.selectbox(key="admin_role_user").select(ANNOTATOR).run()
    at.selectbox(key="admin_role_role").select("reviewer").run()
    at.button(key="admin_role_set").click().run()
    assert users.role_of(team, ANNOTATOR) == "reviewer"
    at.radio(key="admin_review_mode").set_value("required").run()
    at.button(key="admin_review_apply").click().run()
    assert not at.exception
    assert corrections.review_mode(team) == "required"
    # A failed change is said in one line and changes nothing.
    at.text_input(key="admin_add_email").input("two words").run()
    at.button(key="admin_add").click().run()
    assert any("is not an email address" in e for e in _errors(at))


# Core actions whose actor defaults to the OS user: the UI must always name who acts.
ACTED = {"soft_delete", "accept", "reject", "set_review_mode", "export_archive", "add_user", "set_role", "start",
         "restart", "import_predictions", "import_checkpoint"}


def test_every_role_checked_action_in_the_ui_passes_the_actor():
    calls = []
    for file, _line, name, node in ui_calls(ACTED, ("corrections", "users", "jobs")):
        positional_actor = name in ("add_user", "set_role") and len(node.args) >= 2
        calls.append((file, name, positional_actor or any(k.arg == "actor" for k in node.keywords)))
    assert {(p, n) for p, n, _ in calls} >= {("history.py", "soft_delete"), ("export.py", "export_archive"),
                                             ("jobs_view.py", "start"), ("review_corrections.py", "accept"),
                                             ("admin.py", "add_user")}
    assert [c for c in calls if not c[2]] == []
