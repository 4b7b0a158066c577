"""Shared fixtures. Data is generated per test or read from the real 20-image sample."""

from __future__ import annotations

import ast
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
APP = str(PROJECT_ROOT / "streamlit_app.py")  # AppTest resolves relative paths against the caller
SAMPLE_ROOT = Path(os.environ.get("PETSEG_SAMPLE", PROJECT_ROOT.parent / "shared" / "data" / "oxford-pet-sample"))


@pytest.fixture(scope="session")
def sample_root() -> Path:
    """The 20 real Oxford-IIIT Pet images (read-only: copy before modifying)."""
    if not (SAMPLE_ROOT / "images").is_dir():
        pytest.fail(f"the real sample is missing at {SAMPLE_ROOT}; set PETSEG_SAMPLE")
    return SAMPLE_ROOT


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "workspace"
    ws.mkdir()
    return ws


@pytest.fixture
def settings(tmp_path: Path, workspace: Path):
    """A tiny generated dataset (tests/_tiny_dataset.py) and an empty workspace; modules may define their own."""
    from core.config import Settings
    from tests._tiny_dataset import make_tiny_dataset

    return Settings.resolve(data=make_tiny_dataset(tmp_path / "data"), workspace=workspace)


@pytest.fixture
def ds(settings):
    """The dataset of ``settings``, indexed."""
    from core.dataset import open_dataset

    return open_dataset(settings.data, settings.workspace)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read the developer's own dataset or workspace through the environment."""
    monkeypatch.delenv("PETSEG_DATA", raising=False)
    monkeypatch.delenv("PETSEG_HOME", raising=False)
    monkeypatch.delenv("PETSEG_DB", raising=False)
    monkeypatch.delenv("PETSEG_ADMIN", raising=False)


# --- the store on both engines ---------------------------------------------------------------------------------

PG_TEMPLATE = "petseg_template"


@pytest.fixture(scope="session")
def postgres():
    """The session's PostgreSQL cluster with a migrated template database, or a skip saying why there is none."""
    from benchmarks.pg_cluster import PostgresCluster, postgres_bin

    bindir = postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): the PostgreSQL half of the "
                    "store tests is skipped; `make test` installs it when run as root")
    from core import store
    from core.config import Settings

    cluster = PostgresCluster(bindir, fsync=False)
    try:
        cluster.admin(f"CREATE DATABASE {PG_TEMPLATE}")
        store.engine(Settings(Path("."), Path("."), db=cluster.url(PG_TEMPLATE)))  # migrates it
        store.dispose_all()  # CREATE DATABASE ... TEMPLATE needs the template without connections
        yield cluster
    finally:
        cluster.remove()


def new_pg_database(cluster) -> str:
    """A fresh, migrated database (a copy of the template: milliseconds, not an initdb); its URL."""
    import uuid

    name = f"petseg_test_{uuid.uuid4().hex[:16]}"
    cluster.admin(f"CREATE DATABASE {name} TEMPLATE {PG_TEMPLATE}")
    return cluster.url(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request, monkeypatch: pytest.MonkeyPatch) -> str:
    """Runs a test once per store engine: SQLite in the workspace (the default) and a fresh PostgreSQL database
    (through ``PETSEG_DB``, as a team would configure it). Returns the engine name."""
    from core import store

    if request.param == "postgresql":
        monkeypatch.setenv("PETSEG_DB", new_pg_database(request.getfixturevalue("postgres")))
    yield request.param
    store.dispose_all()


TRAINED_RUN = "tiny"


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A generated dataset with a tiny trained run evaluated on both splits, built once per test session.

    Returns a Settings-like namespace: ``.settings`` (data + workspace), ``.run`` (run name). Tests that
    change the workspace must copy it first (see ``trained_copy``).
    """
    from types import SimpleNamespace

    from core.config import Settings
    from core.evaluate import evaluate
    from core.synth import generate
    from core.train import TrainConfig, train

    root = tmp_path_factory.mktemp("trained")
    data = generate(root / "data", count=60, seed=3, progress=False)
    settings = Settings.resolve(data=data, workspace=root / "workspace")
    train(settings, TrainConfig(run=TRAINED_RUN, preset="quick", epochs=2, image_size=64, encoder_weights=None,
                                progress=False))
    for split in ("test", "trainval"):
        evaluate(settings, run=TRAINED_RUN, split=split, progress=False)
    return SimpleNamespace(settings=settings, run=TRAINED_RUN, data=Path(data), workspace=root / "workspace")


@pytest.fixture
def trained_copy(trained, tmp_path):
    """A private copy of the trained workspace (same dataset) that a test may modify."""
    import shutil
    from types import SimpleNamespace

    from core.config import Settings

    workspace = tmp_path / "workspace-copy"
    shutil.copytree(trained.workspace, workspace)
    settings = Settings.resolve(data=trained.data, workspace=workspace)
    return SimpleNamespace(settings=settings, run=trained.run, data=trained.data, workspace=workspace)


@pytest.fixture(scope="session")
def trained_scored(trained):
    """The trained run's test evaluation as the Distributions page plots it: evaluated rows with an iou_pet."""
    from core.views import load_view

    view = load_view(trained.settings, trained.run, "test")
    return view[view["evaluated"] & view["iou_pet"].notna()]


SECOND_RUN = "second"


@pytest.fixture(scope="session")
def two_runs(trained, tmp_path_factory):
    """The session's trained workspace plus a second tiny run (other seed, one epoch) evaluated on test.

    ``.first`` is the trained run (test and trainval evaluated), ``SECOND_RUN`` the new one (test only).
    Read-only: tests that change the workspace copy it first.
    """
    import shutil
    from types import SimpleNamespace

    from core.config import Settings
    from core.evaluate import evaluate
    from core.train import TrainConfig, train

    workspace = tmp_path_factory.mktemp("two-runs") / "workspace"
    shutil.copytree(trained.workspace, workspace)
    settings = Settings.resolve(data=trained.data, workspace=workspace)
    train(settings, TrainConfig(run=SECOND_RUN, preset="quick", epochs=1, image_size=64, encoder_weights=None,
                                seed=7, progress=False))
    evaluate(settings, run=SECOND_RUN, split="test", progress=False)
    return SimpleNamespace(settings=settings, data=trained.data, workspace=workspace, first=trained.run)


def wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy (returned), or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"{what} not reached in {timeout} s")


def open_app(monkeypatch: pytest.MonkeyPatch, data: Path, workspace: Path, page: str | None = None, *,
             run: bool = True, **query: str):
    """The whole app in AppTest on ``data`` and ``workspace``, configured through the environment as ``make run``
    is. With ``run``: run once (Home), put ``query`` in the URL, then open ``app_pages/<page>.py``.
    """
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("PETSEG_DATA", str(data))
    monkeypatch.setenv("PETSEG_HOME", str(workspace))
    at = AppTest.from_file(APP, default_timeout=60)
    if not run:
        return at
    at.run()
    for key, value in query.items():
        at.query_params[key] = value
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
    return at


def plain(markdown: str) -> str:
    """Markdown source as the reader sees the text: backslash escapes (from dashboard.markdown.escape) removed."""
    import re

    return re.sub(r"\\(.)", r"\1", markdown)


@pytest.fixture(autouse=True, scope="session")
def _no_developer_secrets(tmp_path_factory) -> None:
    """A developer's own .streamlit/secrets.toml (README: signing in) would put every page behind sign-in; tests
    that want sign-in give their own [auth] (AppTest ``at.secrets``, or ``--secrets.files`` for a real server)."""
    from streamlit import config

    config.set_option("secrets.files", [str(tmp_path_factory.mktemp("secrets") / "none.toml")])


def ui_calls(names: set[str], modules: tuple[str, ...]) -> Iterator[tuple[str, int, str, ast.Call]]:
    """Every call in dashboard/ and app_pages/ to one of ``names``, made by bare name (imported from core) or as
    ``<module>.<name>`` for a module in ``modules``: ``(file name, line, name, call node)``. The static guards that
    every UI write names who acts walk the code with this."""
    for folder in ("dashboard", "app_pages"):
        for path in sorted((PROJECT_ROOT / folder).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                if isinstance(func, ast.Name):
                    name = func.id
                elif isinstance(func, ast.Attribute) and getattr(func.value, "id", None) in modules:
                    name = func.attr
                else:
                    continue
                if name in names:
                    yield path.name, node.lineno, name, node
