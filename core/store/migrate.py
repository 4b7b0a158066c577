"""Schema upgrades: the Alembic revisions in ``core/store/migrations``, applied in place by one function.

    >>> from core.store.migrate import upgrade, current_revision
    >>> upgrade(engine, workspace=settings.workspace)    # what the first open of a database does; idempotent
    >>> current_revision(engine)
    '0002'

A SQLite workspace from before Alembic (``PRAGMA user_version`` 1, no ``alembic_version`` table) is stamped as
revision ``0001`` (the schema it has) and then upgraded like any other. The whole upgrade is one transaction
taken under a lock (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: an advisory lock), so processes that start together
upgrade once and a failed upgrade leaves the previous schema.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.engine import Connection, Engine

from core.errors import PetSegError

MIGRATIONS = Path(__file__).parent / "migrations"
LEGACY_REVISION = "0001"  # the schema PRAGMA user_version 1 describes
_LOCK_KEY = 0x5E7_5E6  # pg_advisory_xact_lock key of schema upgrades


def config(workspace: Path | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["workspace"] = workspace
    return cfg


def head() -> str:
    return ScriptDirectory.from_config(config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, *, workspace: Path | None = None) -> str:
    """Bring the database to the newest revision (nothing to do when it is there); returns the revision."""
    target = head()
    with engine.connect() as conn:
        if MigrationContext.configure(conn).get_current_revision() == target:
            return target
    cfg = config(workspace)
    with engine.connect() as conn:
        conn = conn.execution_options(petseg_write=True)
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
            current = MigrationContext.configure(conn).get_current_revision()  # again, under the lock
            if current == target:
                return target
            cfg.attributes["connection"] = conn
            if current is None and _is_legacy(conn):
                command.stamp(cfg, LEGACY_REVISION)
            try:
                command.upgrade(cfg, "head")
            except CommandError as exc:
                raise PetSegError(
                    f"the database has schema revision {current}, which this PetSeg does not know (newer?): "
                    f"update PetSeg or use another database ({exc})"
                ) from None
    return target


def _is_legacy(conn: Connection) -> bool:
    """A pre-Alembic SQLite ledger (``PRAGMA user_version`` 1); a newer unknown one is refused."""
    if conn.dialect.name != "sqlite" or not sa.inspect(conn).has_table("corrections"):
        return False
    version = conn.exec_driver_sql("PRAGMA user_version").scalar()
    if version != 1:
        raise PetSegError(f"the workspace database has schema version {version}, which this PetSeg does not know; "
                          "update PetSeg or use another --workspace")
    return True
