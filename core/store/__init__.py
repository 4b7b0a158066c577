"""The store: one SQLAlchemy engine per process and database URL, for SQLite (the default) and PostgreSQL.

    >>> from core import store
    >>> with store.reading(settings) as conn:                    # one pooled connection, one transaction
    ...     conn.execute(sa.select(schema.corrections.c.image_id)).all()
    >>> with store.writing(settings) as conn:                    # SQLite: BEGIN IMMEDIATE; both: commit or roll back
    ...     conn.execute(sa.update(schema.reviews).values(note="").where(schema.reviews.c.image_id == "x"))

The URL comes from :attr:`core.config.Settings.db` (``--db`` > ``$PETSEG_DB`` > ``sqlite:///<workspace>/petseg.sqlite``).
Both engines run the same statements (SQLAlchemy Core, :mod:`core.store.schema`); the few places where the dialects
differ live in this module (:func:`insert_ignore`, connection set-up). The schema is upgraded by the Alembic
revisions in ``core/store/migrations`` the first time a process opens a database (:func:`core.store.migrate`),
under a lock so that two processes starting together do not both upgrade.

Failures: a database that cannot be reached (PostgreSQL down or restarting, a SQLite file locked for longer than
the busy timeout) raises :class:`StoreUnavailable` ("database unreachable: ..."), which the CLI prints with exit
code 2 and the dashboard shows in one sentence. Nothing is half-written: every write is one transaction.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import FunctionElement

from core.config import Settings
from core.errors import PetSegError

BUSY_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 5
MAX_AUTHOR = 100

_engines: dict[tuple[int, str], Engine] = {}
_engines_lock = threading.Lock()


class StoreUnavailable(PetSegError):
    """The database cannot be reached right now; retrying later may succeed."""


def exists(settings: Settings) -> bool:
    """Whether the store has been created: for SQLite the file exists; a PostgreSQL URL always counts as created.

    Read-only callers ask this first so that looking at an empty workspace does not create a database file.
    """
    url = parse_url(settings.db_url)
    return url.get_backend_name() != "sqlite" or Path(url.database or "").is_file()


def parse_url(text: str) -> URL:
    """A database URL PetSeg accepts (``sqlite:///file`` or ``postgresql://user@host:port/db``), with the driver set."""
    try:
        url = make_url(text)
    except exc.ArgumentError:
        raise PetSegError(f"database URL {text[:80]!r} is not a URL; use sqlite:///path/to/file.sqlite or "
                          "postgresql://user@host:port/dbname") from None
    backend = url.get_backend_name()
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            raise PetSegError("a SQLite database URL needs a file: sqlite:///path/to/petseg.sqlite")
        return url.set(drivername="sqlite+pysqlite")
    if backend == "postgresql":
        return url.set(drivername="postgresql+psycopg")
    raise PetSegError(f"database {backend!r} is not supported; use sqlite:///... or postgresql://...")


def shown(url: str | URL) -> str:
    """A URL for messages: the password masked."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
        return parsed.set(drivername=parsed.get_backend_name()).render_as_string(hide_password=True)
    except exc.ArgumentError:
        return "(invalid URL)"


def engine(settings: Settings) -> Engine:
    """The process's engine (and pool) for ``settings.db_url``, created and migrated on first use."""
    url = parse_url(settings.db_url)
    key = (os.getpid(), url.render_as_string(hide_password=False))
    with _engines_lock:
        found = _engines.get(key)
        if found is not None:
            return found
        created = _create_engine(url)
        try:
            with _guard(url):
                from core.store.migrate import upgrade

                upgrade(created, workspace=settings.workspace)
        except BaseException:
            created.dispose()
            raise
        _engines[key] = created
        return created


def dispose_all() -> None:
    """Close every pooled connection of this process (tests, and before dropping a database)."""
    with _engines_lock:
        for key, found in list(_engines.items()):
            if key[0] == os.getpid():
                found.dispose()
            del _engines[key]


@contextlib.contextmanager
def reading(settings: Settings) -> Iterator[Connection]:
    """One pooled connection inside one read transaction (a consistent view of the store)."""
    eng = engine(settings)
    with _guard(eng.url), eng.connect() as conn, conn.begin():
        yield conn


@contextlib.contextmanager
def writing(settings: Settings) -> Iterator[Connection]:
    """One write transaction: committed when the block ends, rolled back on any error.

    SQLite takes the write lock up front (``BEGIN IMMEDIATE``) so two writers queue on the busy timeout instead
    of failing half-way; PostgreSQL runs READ COMMITTED and relies on the unique constraints of the schema.
    """
    eng = engine(settings)
    with _guard(eng.url), eng.connect() as conn:
        conn = conn.execution_options(petseg_write=True)
        with conn.begin():
            yield conn


def insert_ignore(conn: Connection, table: sa.Table, values: dict, *, overwrite: tuple[str, ...] = ()) -> None:
    """``INSERT`` that, when the primary key exists already, does nothing or overwrites the ``overwrite`` columns
    (content-addressed rows: rewriting the same bytes repairs a damaged copy)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(table).values(**values)
    if overwrite:
        keys = [c.name for c in table.primary_key]
        statement = statement.on_conflict_do_update(index_elements=keys,
                                                    set_={name: statement.excluded[name] for name in overwrite})
    else:
        statement = statement.on_conflict_do_nothing()
    conn.execute(statement)


def clean_author(author: str | None) -> str:
    """The author recorded on a row: free text on one line, default the OS user."""
    if author is None or not str(author).strip():
        try:
            author = getpass.getuser()
        except (OSError, KeyError):
            author = "unknown"
    return clean_text(" ".join(str(author).split()), "author", MAX_AUTHOR)


def clean_text(text: str | None, what: str, limit: int) -> str:
    """Free text for a row, stripped; refused when longer than ``limit`` or holding a NUL character (PostgreSQL
    cannot store one, and SQLite must not keep what PostgreSQL refuses: the engines would drift)."""
    text = (text or "").strip()
    if len(text) > limit:
        raise PetSegError(f"{what} is longer than {limit} characters; shorten it")
    if "\x00" in text:
        raise PetSegError(f"{what} contains a NUL character; remove it")
    return text


def utc_now() -> str:
    """Row timestamps: ISO 8601 in UTC with milliseconds (sorts as text)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


class db_seconds(FunctionElement):  # noqa: N801 (reads as a SQL function)
    """The database server's clock as seconds since 1970 (float), evaluated by the database at each statement.

    Leases compare against it so that several app servers (with their own clocks) agree on what has expired.
    """

    type = sa.Float()
    inherit_cache = True


class db_utc_text(FunctionElement):  # noqa: N801
    """The database server's clock as ISO 8601 UTC text with milliseconds, the format of :func:`utc_now`."""

    type = sa.Text()
    inherit_cache = True


@compiles(db_seconds, "sqlite")
def _sqlite_seconds(_element, _compiler, **_kw) -> str:
    return "((julianday('now') - 2440587.5) * 86400.0)"


@compiles(db_seconds, "postgresql")
def _pg_seconds(_element, _compiler, **_kw) -> str:
    # clock_timestamp(), not now(): now() is frozen at the start of the transaction.
    return "CAST(EXTRACT(EPOCH FROM clock_timestamp()) AS DOUBLE PRECISION)"


@compiles(db_utc_text, "sqlite")
def _sqlite_utc_text(_element, _compiler, **_kw) -> str:
    return "strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now')"


@compiles(db_utc_text, "postgresql")
def _pg_utc_text(_element, _compiler, **_kw) -> str:
    return "to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"+00:00\"')"


# --- internals -------------------------------------------------------------------------------------------


def _create_engine(url: URL) -> Engine:
    if url.get_backend_name() == "sqlite":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        created = sa.create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False})

        @event.listens_for(created, "connect")
        def _sqlite_setup(dbapi_conn, _record) -> None:
            # The driver's own transaction handling would defer BEGIN; take it over (SQLAlchemy's documented
            # recipe) so that a write transaction is BEGIN IMMEDIATE.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = FULL")  # a save reported as done survives a power loss
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.close()

        @event.listens_for(created, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("petseg_write") else "BEGIN")

        return created
    # pool_pre_ping: after a server restart the pool hands out a fresh connection instead of a dead one.
    return sa.create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10, pool_timeout=30,
                            connect_args={"connect_timeout": CONNECT_TIMEOUT_S})


@contextlib.contextmanager
def _guard(url: URL) -> Iterator[None]:
    """Turn driver errors a user can act on into ``PetSegError``s; integrity errors pass through to the caller."""
    try:
        yield
    except exc.IntegrityError:
        raise
    except (exc.OperationalError, exc.InterfaceError) as err:
        reason = " ".join(str(err.orig or err).split())[:300]
        if url.get_backend_name() == "sqlite" and "not a database" in reason:
            raise _unreadable(url, reason) from None
        raise StoreUnavailable(f"database unreachable: {shown(url)}: {reason}; check that it is running and "
                               "try again") from None
    except exc.DatabaseError as err:
        if url.get_backend_name() == "sqlite":
            raise _unreadable(url, " ".join(str(err.orig or err).split())[:300]) from None
        raise


def _unreadable(url: URL, reason: str) -> PetSegError:
    return PetSegError(f"the workspace database {url.database} is unreadable ({reason}); move it aside to start "
                       "a new ledger")
