"""The workspace database: ``<workspace>/petseg.sqlite`` in WAL mode, schema versioned by ``PRAGMA user_version``.

    >>> from core.db import connect, transaction
    >>> conn = connect(settings)                 # creates or migrates the file; caller closes it
    >>> with transaction(conn):                  # BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error)
    ...     conn.execute("UPDATE reviews SET note = ? WHERE image_id = ?", ("", "Abyssinian_1"))
    >>> conn.close()

Connections run in autocommit mode; every write goes through :func:`transaction`, which takes the write
lock up front (``BEGIN IMMEDIATE``) so two writers queue on the busy timeout instead of failing half-way.
Commits are fully synchronous: a correction that was reported saved survives a crash or power loss.

Schema changes are appended to ``MIGRATIONS`` (never edit a released entry): entry ``i`` takes the
database from ``user_version == i`` to ``i + 1``, inside one transaction.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import sqlite3
from collections.abc import Iterator

from core.config import Settings
from core.errors import PetSegError

BUSY_TIMEOUT_S = 30.0
MAX_AUTHOR = 100

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the corrections ledger and review tags/notes.
    (
        """
        CREATE TABLE corrections (
            id             INTEGER PRIMARY KEY,
            image_id       TEXT    NOT NULL,
            version        INTEGER NOT NULL CHECK (version >= 1),
            parent_version INTEGER,
            source         TEXT    NOT NULL CHECK (source IN ('gt', 'prediction', 'correction', 'import', 'revert')),
            author         TEXT    NOT NULL,
            note           TEXT    NOT NULL DEFAULT '',
            created_at     TEXT    NOT NULL,
            sha256         TEXT    NOT NULL,
            path           TEXT    NOT NULL,
            height         INTEGER NOT NULL,
            width          INTEGER NOT NULL,
            iou_gt         REAL,
            deleted        INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
            deleted_at     TEXT,
            UNIQUE (image_id, version)
        )
        """,
        "CREATE INDEX corrections_sha256 ON corrections (sha256)",
        """
        CREATE TABLE reviews (
            image_id   TEXT PRIMARY KEY,
            tag        TEXT CHECK (tag IS NULL OR tag IN ('model_error', 'label_error', 'ambiguous', 'fine')),
            note       TEXT NOT NULL DEFAULT '',
            author     TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )
        """,
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)


def connect(settings: Settings) -> sqlite3.Connection:
    """Open (creating and migrating if needed) the workspace database. The caller closes the connection."""
    settings.workspace.mkdir(parents=True, exist_ok=True)
    path = settings.db_path
    try:
        conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise PetSegError(f"cannot open the workspace database {path}: {exc}; check the --workspace folder") from None
    try:
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        _migrate(conn)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise PetSegError(
            f"the workspace database {path} is unreadable ({exc}); move it aside to start a new ledger "
            "(the mask files in masks/ are kept)"
        ) from None
    except BaseException:
        conn.close()
        raise
    return conn


@contextlib.contextmanager
def session(settings: Settings) -> Iterator[sqlite3.Connection]:
    """``connect`` as a context manager that always closes the connection."""
    conn = connect(settings)
    try:
        yield conn
    finally:
        conn.close()


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: ``BEGIN IMMEDIATE``, ``COMMIT`` on success, ``ROLLBACK`` on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _migrate(conn: sqlite3.Connection) -> None:
    if schema_version(conn) == SCHEMA_VERSION:
        return
    with transaction(conn):
        # Re-read under the write lock: another process may have migrated while we waited.
        current = schema_version(conn)
        if current > SCHEMA_VERSION:
            raise PetSegError(
                f"the workspace database has schema version {current}, newer than this PetSeg "
                f"({SCHEMA_VERSION}); update PetSeg or use another --workspace"
            )
        for version in range(current, SCHEMA_VERSION):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")


def clean_author(author: str | None) -> str:
    """The author recorded on a row: free text on one line, default the OS user."""
    if author is None or not str(author).strip():
        try:
            author = getpass.getuser()
        except (OSError, KeyError):
            author = "unknown"
    text = " ".join(str(author).split())
    if len(text) > MAX_AUTHOR:
        raise PetSegError(f"author is longer than {MAX_AUTHOR} characters; use a shorter name")
    return text


def utc_now() -> str:
    """Row timestamps: ISO 8601 in UTC with milliseconds (sorts as text)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
