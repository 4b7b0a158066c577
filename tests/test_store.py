"""The store as a team uses it: settings, the `db` commands, copying a workspace into PostgreSQL, the database
going away under the CLI and the Annotate page, and two app servers sharing one PostgreSQL."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

from benchmarks.pg_cluster import free_port
from core import audit, cli, corrections, groundtruth, ledger, review, store
from core.config import Settings
from core.dataset import load_trimap, open_dataset
from core.store import migrate
from core.store.copy import copy_store, digest
from core.store.schema import corrections as corrections_table
from dashboard import annotate_session, state
from tests.conftest import new_pg_database, open_app
from tests.test_corrections import _legacy_workspace, _mask

ID = "Abyssinian_1"


def _dead_url() -> str:
    return f"postgresql://petseg@127.0.0.1:{free_port()}/petseg"  # nothing listens there


# --- settings ----------------------------------------------------------------------------------------------


def test_db_is_resolved_flag_then_environment_then_the_workspace_file(tmp_path, monkeypatch):
    assert Settings.resolve(workspace=tmp_path / "ws").db == f"sqlite:///{tmp_path / 'ws' / 'petseg.sqlite'}"
    monkeypatch.setenv("PETSEG_DB", "postgresql://team@db:5432/petseg")
    assert Settings.resolve(workspace=tmp_path / "ws").db == "postgresql://team@db:5432/petseg"
    assert Settings.resolve(db="sqlite:///other.sqlite").db == "sqlite:///other.sqlite"
    assert Settings(tmp_path, tmp_path / "ws").db_url == f"sqlite:///{tmp_path / 'ws' / 'petseg.sqlite'}"


@pytest.mark.parametrize("url", ["mysql://x@h/db", "not a url", "sqlite://", "sqlite:///:memory:"])
def test_unsupported_database_urls_are_refused_with_what_to_use(tmp_path, url):
    with pytest.raises(store.PetSegError, match="sqlite:///"):
        store.engine(Settings.resolve(workspace=tmp_path, db=url))


def test_passwords_never_appear_in_messages():
    assert "s3cret" not in store.shown("postgresql://ana:s3cret@db:5432/petseg")


# --- the database going away ---------------------------------------------------------------------------------


def test_cli_exits_2_with_one_line_when_the_database_is_unreachable(tmp_path, capsys):
    assert cli.main(["db", "check", "--workspace", str(tmp_path), "--db", _dead_url()]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: database unreachable: postgresql://petseg@127.0.0.1:")
    # the global flag before the command works the same
    assert cli.main(["--db", _dead_url(), "db", "migrate", "--workspace", str(tmp_path)]) == 2
    assert "database unreachable" in capsys.readouterr().err


@pytest.mark.usefixtures("engine")
def test_annotate_says_so_in_one_sentence_and_keeps_the_edit_until_the_database_is_back(
        trained_copy, monkeypatch):
    from core.runs import load_eval
    from tests.test_pages_annotate import _event, _open, _painted

    settings = Settings.resolve(data=trained_copy.data, workspace=trained_copy.workspace)
    table = load_eval(settings, trained_copy.run, "test")
    image_id = sorted(table.index[table["has_gt"]])[0]
    app = open_app(monkeypatch, trained_copy.data, trained_copy.workspace)
    _open(app, "app_pages/annotate.py", image_id)
    mine = _painted(app.session_state[state.ANNOTATE_SESSION].work)

    working = settings.db_url
    monkeypatch.setenv("PETSEG_DB", _dead_url())  # the page resolves its settings on every run
    _event(app, "save", mine)
    assert [e.value for e in app.error] == [annotate_session.UNREACHABLE]
    session = app.session_state[state.ANNOTATE_SESSION]
    assert np.array_equal(session.work, mine) and session.dirty  # the edit is still there
    assert ledger.history(settings, image_id) == []

    monkeypatch.setenv("PETSEG_DB", working)  # the database is back: the same save goes through
    _event(app, "save", app.session_state[state.ANNOTATE_SESSION].work)
    assert [c.version for c in ledger.history(settings, image_id)] == [1]
    assert np.array_equal(groundtruth.current(settings, open_dataset(settings.data, settings.workspace),
                                              image_id)[0], mine)


# --- db migrate / db copy -------------------------------------------------------------------------------------


def test_db_migrate_upgrades_an_old_workspace_in_place(settings, ds, capsys):
    _legacy_workspace(settings, [(ID, 1, _mask(ds))])
    assert cli.main(["db", "migrate", "--workspace", str(settings.workspace)]) == 0
    assert migrate.head() >= "0004"
    assert f"is at schema revision {migrate.head()}" in capsys.readouterr().out
    # A version from before review existed was the ground truth: it is accepted, with nobody named as reviewer.
    assert [(c.version, c.state, c.reviewer) for c in ledger.history(settings, ID)] == [(1, "accepted", None)]


def test_db_copy_moves_a_workspace_into_postgresql_verified_idempotent_and_resumable(settings, ds, postgres,
                                                                                       capsys, monkeypatch):
    _legacy_workspace(settings, [(ID, 1, _mask(ds, shift=1))])  # an old workspace, masks still in files
    corrections.save(settings, ds, ID, _mask(ds, shift=2), base_version=1, source="correction", author="ana")
    corrections.save(settings, ds, "beagle_1", _mask(ds, "beagle_1"), base_version=None, source="gt")
    corrections.soft_delete(settings, ds, "beagle_1", 1)
    review.set_note(settings, ds, ID, "ear", author="ana")
    target = new_pg_database(postgres)

    # interrupted after the masks: the next run copies the rest
    from core.store import copy as copy_module

    def cut(*_args):
        raise store.StoreUnavailable("database unreachable: (simulated)")

    with monkeypatch.context() as patched, pytest.raises(store.StoreUnavailable):
        patched.setattr(copy_module, "_copy_corrections", cut)
        copy_store(settings.workspace, settings.db_url, target)
    assert cli.main(["db", "copy", "--workspace", str(settings.workspace), "--to", target]) == 0
    out = capsys.readouterr().out
    assert "copied 0 masks, 3 corrections, 2 reviews" in out and "verified: 3 corrections, 2 reviews, 3 masks" in out
    again = copy_store(settings.workspace, settings.db_url, target)  # idempotent
    assert again.copied == {"masks": 0, "corrections": 0, "reviews": 0, "audit rows": 0, "users": 0,
                            "store_settings": 0, "assignments": 0}

    team = Settings.resolve(data=settings.data, workspace=settings.workspace, db=target)
    assert digest(team) == digest(settings)
    assert [(c.version, c.author, c.deleted) for c in ledger.history(team, ID, include_deleted=True)] == \
        [(1, "ana", False), (2, "ana", False)]
    assert np.array_equal(groundtruth.current(team, ds, ID)[0], _mask(ds, shift=2))
    assert groundtruth.current(team, ds, "beagle_1")[1] is None  # deleted stays deleted
    assert review.get_review(team, ID).note == "ear"
    trail = audit.rows(team).drop(columns="id")  # the trail travels, in its order
    assert trail.to_dict("records") == audit.rows(settings).drop(columns="id").to_dict("records")
    assert list(trail["action"]) == ["save", "save", "delete", "note"]

    # a later delete in the source travels on the next copy; another ledger in the target is refused
    corrections.soft_delete(settings, ds, ID, 2)
    assert copy_store(settings.workspace, settings.db_url, target).copied["corrections"] == 1
    with store.writing(team) as conn:
        conn.execute(corrections_table.update().where(corrections_table.c.version == 1)
                     .values(author="someone else"))
    with pytest.raises(store.PetSegError, match="already has another v1"):
        copy_store(settings.workspace, settings.db_url, target)


# --- two app servers, one PostgreSQL --------------------------------------------------------------------------


@pytest.mark.browser
def test_two_app_servers_on_one_postgresql_see_each_others_saves(sample_root, tmp_path, postgres, monkeypatch):
    from tests.browser import assert_no_exception, chromium_page, draw_stroke, streamlit_server, wait_for_app

    monkeypatch.setenv("PETSEG_DB", new_pg_database(postgres))
    settings = Settings.resolve(data=sample_root, workspace=tmp_path / "ws-a")
    ds = open_dataset(sample_root, settings.workspace)
    editor = ".petseg-editor"
    # separate workspaces: what the servers share is the database alone
    with streamlit_server(sample_root, tmp_path / "ws-a", tmp_path / "a.log") as url_a, \
            streamlit_server(sample_root, tmp_path / "ws-b", tmp_path / "b.log") as url_b, \
            chromium_page() as page:
        page.goto(f"{url_b}/annotate?image={ID}")
        page.wait_for_selector(f'{editor}[data-ready^="{ID}@"]', timeout=30_000)
        wait_for_app(page)
        assert "no correction yet" in page.locator('[data-testid="stMain"]').inner_text()

        page.goto(f"{url_a}/annotate?image={ID}")
        page.wait_for_selector(f'{editor}[data-ready^="{ID}@"]', timeout=30_000)
        wait_for_app(page)
        draw_stroke(page, editor)
        page.locator(f"{editor} button[data-action=save]").click()
        page.wait_for_selector(f'{editor}[data-saved-version="1"]', timeout=20_000)
        assert_no_exception(page)

        page.goto(f"{url_b}/annotate?image={ID}")  # the other server, its next run
        page.wait_for_selector(f'{editor}[data-ready^="{ID}@"]', timeout=30_000)
        wait_for_app(page)
        assert "latest correction v1" in page.locator('[data-testid="stMain"]').inner_text()
        assert_no_exception(page)
    latest = ledger.latest(settings, ID)
    assert latest.version == 1 and not np.array_equal(ledger.load_mask(settings, latest), load_trimap(ds, ID))
    assert not (tmp_path / "ws-a" / "petseg.sqlite").exists() and not (tmp_path / "ws-b" / "petseg.sqlite").exists()
    with store.reading(settings) as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(corrections_table)).scalar() == 1
