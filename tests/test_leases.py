"""core.leases and core.assignments on both engines: claim races, expiry on the database clock, assignment order."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import sqlalchemy as sa

from core import assignments, audit, corrections, groundtruth, leases, review, store
from core.errors import PetSegError
from core.store.schema import leases as leases_table

pytestmark = pytest.mark.usefixtures("engine")
ID = "Abyssinian_1"


def test_claim_renew_release_and_what_others_see(settings):
    mine = leases.claim(settings, ID, "ana@example.org")
    assert (mine.holder, 0 < mine.seconds_left <= leases.LEASE_SECONDS) == ("ana@example.org", True)
    theirs = leases.claim(settings, ID, "ben@example.org")
    assert theirs.holder == "ana@example.org"  # Ben learns who has it and does not take it
    assert leases.held_by_others(settings, "ben@example.org") == {ID: "ana@example.org"}
    assert leases.held_by_others(settings, "ana@example.org") == {}
    assert leases.renew(settings, ID, "ana@example.org") and not leases.renew(settings, ID, "ben@example.org")
    assert not leases.release(settings, ID, "ben@example.org")  # only the holder gives it back
    assert leases.release(settings, ID, "ana@example.org")
    assert leases.holders(settings) == {}
    assert leases.claim(settings, ID, "ben@example.org").holder == "ben@example.org"


def test_a_lease_expires_by_the_database_clock_and_can_then_be_taken(settings):
    leases.claim(settings, ID, "ana@example.org", seconds=0.3)
    assert set(leases.holders(settings)) == {ID}
    time.sleep(0.5)
    assert leases.holders(settings) == {}  # nobody released it: it lapsed
    assert leases.claim(settings, ID, "ben@example.org").holder == "ben@example.org"
    assert not leases.renew(settings, ID, "ana@example.org")  # Ana's old lease is gone for good


def test_expiry_is_stored_on_the_database_clock_not_the_app_servers(settings):
    leases.claim(settings, ID, "ana@example.org", seconds=60)
    with store.reading(settings) as conn:
        expires, now = conn.execute(sa.select(leases_table.c.expires_at, store.db_seconds())).one()
    assert 59 < expires - now <= 60


def test_bad_lease_input_is_refused_before_sql(settings):
    for seconds in (0, -1, leases.MAX_SECONDS + 1, float("nan"), True, "60"):
        with pytest.raises(PetSegError, match="seconds"):
            leases.claim(settings, ID, "ana", seconds=seconds)
    with pytest.raises(PetSegError, match="NUL"):
        leases.claim(settings, ID, "ana\x00")


def test_of_many_claimers_at_once_exactly_one_wins(settings):
    store.engine(settings)  # migrate before the race, not during it
    claimers = [f"annotator{i}@example.org" for i in range(8)]
    barrier = threading.Barrier(len(claimers))
    results: dict[str, str] = {}
    errors: list[BaseException] = []

    def race(who: str) -> None:
        try:
            barrier.wait()
            results[who] = leases.claim(settings, ID, who).holder
        except BaseException as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    for _round in range(5):
        leases.holders(settings)
        with store.writing(settings) as conn:
            conn.execute(leases_table.delete())
        threads = [threading.Thread(target=race, args=(who,)) for who in claimers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        winners = {who for who, holder in results.items() if holder == who}
        assert len(winners) == 1 and set(results.values()) == winners  # everyone agrees on the one winner
        assert {lease.holder for lease in leases.holders(settings).values()} == winners
        barrier.reset()


def test_assignment_is_walked_first_and_finished_items_drop_out(settings, ds):
    usual = ds.ids()
    picked = [usual[3], usual[0], usual[2]]
    assert assignments.assign(settings, ds, "ana@example.org", picked, actor="lead@example.org") == 3
    assert assignments.open_items(settings, "ana@example.org") == picked
    assert assignments.open_items(settings, "ben@example.org") == []
    assert assignments.walk(picked, usual) == picked + [i for i in usual if i not in picked]
    mask, version = groundtruth.current(settings, ds, picked[0])
    corrections.save(settings, ds, picked[0], np.array(mask), base_version=version, source="gt",
                     author="ana@example.org")
    review.set_tag(settings, ds, picked[2], "fine", author="ana@example.org")
    assert assignments.open_items(settings, "ana@example.org") == [picked[1]]
    table = assignments.table(settings, "ana@example.org")
    assert list(table["image_id"]) == picked and list(table["done"]) == [True, False, True]
    assigned = audit.rows(settings, actions=("assign",))
    assert list(assigned["image_id"]) == picked and set(assigned["actor"]) == {"lead@example.org"}
    assert [d["assignee"] for d in assigned["detail"]] == ["ana@example.org"] * 3


def test_assigning_again_moves_an_image_to_the_new_assignee(settings, ds):
    ids = ds.ids()[:2]
    assignments.assign(settings, ds, "ana@example.org", ids, actor="lead")
    assignments.assign(settings, ds, "ben@example.org", ids[1:], actor="lead")
    assert assignments.open_items(settings, "ana@example.org") == ids[:1]
    assert assignments.open_items(settings, "ben@example.org") == ids[1:]


def test_assignment_refuses_unknown_images_and_empty_sets(settings, ds):
    with pytest.raises(PetSegError):
        assignments.assign(settings, ds, "ana", ["no_such_image_1"], actor="lead")
    with pytest.raises(PetSegError, match="nothing to assign"):
        assignments.assign(settings, ds, "ana", [], actor="lead")
    assert assignments.table(settings).empty and audit.rows(settings).empty


# --- Annotate: leases and assignment in the page (AppTest; the app's user is the OS user, no sign-in) ----------


@pytest.fixture
def team(trained_copy, engine, monkeypatch):
    """The trained workspace on this test's engine, the Annotate app on it, the app's user and the test ids."""
    from core.config import Settings
    from core.dataset import open_dataset
    from core.views import Filters
    from dashboard import state
    from tests.conftest import open_app

    settings = Settings.resolve(data=trained_copy.data, workspace=trained_copy.workspace)  # PETSEG_DB of engine
    ds = open_dataset(settings.data, settings.workspace)
    app = open_app(monkeypatch, trained_copy.data, trained_copy.workspace)
    app.session_state[state.BROWSE_FILTERS] = Filters(split="test", sort="id").to_dict()
    from core.views import load_view, order

    walked = order(load_view(settings, trained_copy.run, "test"), Filters(split="test", sort="id"), "iou_pet")
    return settings, ds, app, store.clean_author(None), walked  # the order Annotate walks without assignments


def test_next_passes_over_an_image_someone_else_is_editing(team):
    from dashboard import state
    from tests.conftest import plain
    from tests.test_pages_annotate import _event, _open

    settings, _ds, app, me, ids = team
    leases.claim(settings, ids[1], "ben@example.org")
    _open(app, "app_pages/annotate.py", ids[0])
    assert leases.holders(settings)[ids[0]].holder == me  # opening it claimed it
    _event(app, "next")
    assert app.session_state[state.ANNOTATE_SESSION].image_id == ids[2]  # ids[1] is Ben's
    assert set(leases.holders(settings)) == {ids[1], ids[2]}  # moving on released ids[0]
    assert leases.holders(settings)[ids[2]].holder == me
    _event(app, "prev")
    assert app.session_state[state.ANNOTATE_SESSION].image_id == ids[0]
    assert not any("Being edited" in w.value for w in app.warning)

    _open(app, "app_pages/annotate.py", ids[1])  # opened anyway (a link): warned, still editable, not taken
    assert any("Being edited by" in w.value and "ben@example.org" in plain(w.value) for w in app.warning)
    assert leases.holders(settings)[ids[1]].holder == "ben@example.org"
    leases.release(settings, ids[1], "ben@example.org")
    _event(app, "apply", app.session_state[state.ANNOTATE_SESSION].work)  # the next event takes it
    assert leases.holders(settings)[ids[1]].holder == me and not any("Being edited" in w.value for w in app.warning)


def test_a_save_releases_the_lease_and_the_next_event_takes_it_again(team):
    from dashboard import state
    from tests.test_pages_annotate import _event, _open, _painted

    settings, _ds, app, me, ids = team
    _open(app, "app_pages/annotate.py", ids[0])
    _event(app, "save", _painted(app.session_state[state.ANNOTATE_SESSION].work))
    assert "Saved v1" in app.session_state[state.ANNOTATE_SESSION].status
    assert leases.holders(settings) == {}
    assert audit.trail(settings, ids[0])["actor"].tolist() == [me]
    _event(app, "apply", app.session_state[state.ANNOTATE_SESSION].work)
    assert leases.holders(settings)[ids[0]].holder == me


def test_annotate_walks_the_users_assignment_first(team):
    from dashboard import state
    from tests.test_pages_annotate import _event, _open

    settings, ds, app, me, ids = team
    assignments.assign(settings, ds, me, [ids[3], ids[1]], actor="lead@example.org")
    _open(app, "app_pages/annotate.py")  # no image in the URL: the first open assigned item
    assert app.session_state[state.ANNOTATE_SESSION].image_id == ids[3]
    _event(app, "next")
    assert app.session_state[state.ANNOTATE_SESSION].image_id == ids[1]
    from core.views import Filters, load_view, order

    usual = [i for i in order(load_view(settings, "tiny", "test"), Filters(split="test", sort="id"), "iou_pet")
             if i not in (ids[3], ids[1])]
    _event(app, "next")  # the assignment done, the usual order follows (without the assigned ones)
    assert app.session_state[state.ANNOTATE_SESSION].image_id == usual[0]
    _event(app, "next")
    assert app.session_state[state.ANNOTATE_SESSION].image_id == usual[1]


def test_cli_assigns_the_worst_images_of_a_species_and_records_it(trained_copy, engine, capsys):
    from core import cli
    from core.config import Settings
    from core.dataset import open_dataset
    from core.views import Filters, load_view, review_queue

    settings = Settings.resolve(data=trained_copy.data, workspace=trained_copy.workspace)
    ds = open_dataset(settings.data, settings.workspace)
    species = ds.table.loc[ds.ids("test"), "species"].mode()[0]
    worst = list(review_queue(load_view(settings, trained_copy.run, "test"), Filters(species=(species,)),
                              "iou_pet").index[:3])
    args = ["--data", str(trained_copy.data), "--workspace", str(trained_copy.workspace)]
    assert cli.main(["assign", "dana@example.org", *args, "--run", trained_copy.run, "--species", species,
                     "--limit", "3"]) == 0
    assert "assigned 3 images" in capsys.readouterr().out
    assert assignments.open_items(settings, "dana@example.org") == worst
    assert audit.rows(settings, actions=("assign",))["image_id"].tolist() == worst
    assert cli.main(["assign", "dana@example.org", *args, "--run", trained_copy.run, "--breed", "no such"]) == 2
    assert "nothing to assign" in capsys.readouterr().err
    assert cli.main(["export", *args, "--out", str(trained_copy.workspace / "x.zip")]) == 0
    exported = audit.rows(settings, actions=("export",))
    assert len(exported) == 1 and exported["detail"][0]["format"] == "trimap"
