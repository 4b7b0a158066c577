"""The corrections ledger: versioned rows in the workspace database plus content-addressed mask PNGs.

    >>> from core import ledger
    >>> [(c.version, c.source, c.author) for c in ledger.history(settings, "Abyssinian_1")]
    [(1, 'gt', 'ana'), (2, 'revert', 'ben')]
    >>> mask = ledger.load_mask(settings, ledger.latest(settings, "Abyssinian_1"))   # verified against its sha256
    >>> ledger.latest_versions(settings)                                              # {image_id: version}, one query

This module stores and reads; it never decides what a mask means. The public operations that change
corrections (save, revert, delete, import — each rescoring the stored evaluations) are :mod:`core.corrections`;
"the mask an image has now" is :mod:`core.groundtruth`.

Storage. Each version is a row of ``corrections`` in ``<workspace>/petseg.sqlite`` and a PNG at
``masks/<sha[:2]>/<sha>.png`` named by the sha256 of its bytes (identical masks share one file). A write
puts the PNG in ``masks/.incoming/``, fsyncs it, renames it into place and fsyncs the folder, and only then
inserts the row in one ``BEGIN IMMEDIATE`` transaction. So a crash at any moment leaves the old state or the
new one: at worst an unreferenced PNG (harmless; :func:`collect_garbage` removes it) or a temporary in
``masks/.incoming/`` (removed by the next open of the store), never a row without its file.
``masks/.lock`` (flock) keeps the clean-ups away from writes in flight: writes hold it shared, clean-ups
exclusively, and the kernel drops it when a process dies.

Concurrency is optimistic: a write names the version it started from (``base_version``; ``None`` = no
correction yet). If the latest non-deleted version is another one, nothing is written and
:class:`ConflictError` says which version landed meanwhile. Versions are numbered 1, 2, 3... per image and
never reused; deleting is soft.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core import db, locks
from core.atomic import fsync_dir
from core.config import Settings
from core.errors import ImageUnreadable, PetSegError
from core.masks import decode_label_png, encode_png, sha256_hex

SOURCES = ("gt", "prediction", "correction", "import", "revert")
INCOMING = ".incoming"
LOCK_NAME = ".lock"

_MASK_PATH = re.compile(r"masks/([0-9a-f]{2})/([0-9a-f]{64})\.png")
ANY = object()  # base_version of a write that lands on top of whatever is latest (a revert)


class ConflictError(PetSegError):
    """Another version of the image was saved after the one this edit started from."""

    def __init__(self, image_id: str, base_version: int | None, current: Correction | None) -> None:
        self.image_id = image_id
        self.base_version = base_version
        self.current_version = current.version if current else None
        started = f"v{base_version}" if base_version is not None else "the official trimap (no correction)"
        if current is None:
            now = "its corrections were deleted meanwhile (it shows the official trimap again)"
            choice = "save again with no base version"
        else:
            now = f"v{current.version} was saved meanwhile by {current.author} at {current.created_at}"
            choice = f"save again on top of v{current.version}"
        super().__init__(
            f"{image_id} changed while you edited: you started from {started} but {now}; "
            f"nothing was overwritten: reload the latest, or {choice} to keep your mask as a new version"
        )


@dataclass(frozen=True)
class Correction:
    """One ledger row. ``path`` is relative to the workspace; ``iou_gt`` is against the official trimap."""

    image_id: str
    version: int
    parent_version: int | None
    source: str
    author: str
    note: str
    created_at: str
    sha256: str
    path: str
    height: int
    width: int
    iou_gt: float | None
    deleted: bool
    # Stored evaluation rows the operation that returned this row rescored (core.corrections); not a column.
    rescored: int = field(default=0, compare=False)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Correction:
        return cls(
            image_id=row["image_id"],
            version=int(row["version"]),
            parent_version=row["parent_version"],
            source=row["source"],
            author=row["author"],
            note=row["note"],
            created_at=row["created_at"],
            sha256=row["sha256"],
            path=row["path"],
            height=int(row["height"]),
            width=int(row["width"]),
            iou_gt=row["iou_gt"],
            deleted=bool(row["deleted"]),
        )


@dataclass(frozen=True)
class StoreCheck:
    """Result of :func:`check_store`: counts plus the offending rows/files."""

    rows: int
    missing: list[str]  # "image_id vN" rows whose file is gone
    corrupt: list[str]  # "image_id vN" rows whose file does not match its sha256
    orphans: list[str]  # mask files no row references (harmless)
    temporaries: list[str]  # leftovers of interrupted writes in masks/.incoming

    @property
    def ok(self) -> bool:
        return not self.missing and not self.corrupt


# --- reading ---------------------------------------------------------------------------------------------


def history(settings: Settings, image_id: str, include_deleted: bool = False) -> list[Correction]:
    """All versions of an image, oldest first (soft-deleted ones only if ``include_deleted``)."""
    query = "SELECT * FROM corrections WHERE image_id = ?" + ("" if include_deleted else " AND deleted = 0")
    with _open(settings) as conn:
        rows = conn.execute(query + " ORDER BY version", (image_id,)).fetchall()
    return [Correction.from_row(row) for row in rows]


def latest(settings: Settings, image_id: str) -> Correction | None:
    """The latest non-deleted version of an image, or ``None`` when it has no correction."""
    with _open(settings) as conn:
        return _latest(conn, image_id)


def get_version(settings: Settings, image_id: str, version: int) -> Correction:
    """One version (deleted or not); ``PetSegError`` if the image has no such version."""
    with _open(settings) as conn:
        return _version(conn, image_id, version)


def latest_versions(settings: Settings) -> dict[str, int]:
    """``{image_id: latest non-deleted version}`` for every corrected image (one query, for tables)."""
    with _open(settings) as conn:
        rows = conn.execute(
            "SELECT image_id, MAX(version) FROM corrections WHERE deleted = 0 GROUP BY image_id"
        ).fetchall()
    return {row[0]: int(row[1]) for row in rows}


def latest_table(settings: Settings) -> pd.DataFrame:
    """The latest non-deleted version of every corrected image, index ``image_id`` (one query, for tables).

    Columns: image_id, version, parent_version, source, author, note, created_at, sha256, path, height,
    width, iou_gt, versions (how many non-deleted versions the image has).
    """
    with _open(settings) as conn:
        frame = pd.read_sql_query(
            """
            SELECT c.image_id, c.version, c.parent_version, c.source, c.author, c.note, c.created_at, c.sha256,
                   c.path, c.height, c.width, c.iou_gt, m.versions
            FROM corrections c
            JOIN (SELECT image_id, MAX(version) AS version, COUNT(*) AS versions
                  FROM corrections WHERE deleted = 0 GROUP BY image_id) m
              ON c.image_id = m.image_id AND c.version = m.version
            ORDER BY c.image_id
            """,
            conn,
        )
    return frame.set_index("image_id", drop=False)


def latest_rows(settings: Settings, image_ids: Iterable[str] | None = None) -> dict[str, Correction]:
    """The latest non-deleted row of each corrected image (of ``image_ids``, or all): one connection, one query."""
    wanted = None if image_ids is None else set(image_ids)
    if wanted is not None and not wanted:
        return {}
    with _open(settings) as conn:
        rows = conn.execute(
            """
            SELECT c.* FROM corrections c
            JOIN (SELECT image_id, MAX(version) AS version FROM corrections WHERE deleted = 0 GROUP BY image_id) m
              ON c.image_id = m.image_id AND c.version = m.version
            """
        ).fetchall()
    found = (Correction.from_row(row) for row in rows)
    return {c.image_id: c for c in found if wanted is None or c.image_id in wanted}


def load_mask(settings: Settings, correction: Correction) -> np.ndarray:
    """The mask of one version, verified against its sha256; ``ImageUnreadable`` if the file is gone or damaged."""
    label = f"{correction.image_id} v{correction.version}"
    path = _mask_file(settings, correction.path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ImageUnreadable(
            f"the mask file of {label} is missing from {settings.masks_dir}; revert to another version"
        ) from None
    if sha256_hex(data) != correction.sha256:
        raise ImageUnreadable(f"the mask file of {label} is damaged (sha256 mismatch); revert to another version")
    return decode_label_png(data, what=f"the mask file of {label}", expected_size=(correction.height, correction.width))


# --- writing ---------------------------------------------------------------------------------------------


def collect_garbage(settings: Settings) -> int:
    """Delete mask files no ledger row references (deleted rows keep theirs) and stale temporaries; how many."""
    return len(garbage(settings, remove=True))


def garbage(settings: Settings, *, remove: bool = False) -> list[str]:
    """Workspace-relative paths of the mask files no ledger row references and of the temporaries in
    ``masks/.incoming``, deleted when ``remove`` (under the store's exclusive lock: saves in flight finish first)."""
    with _store_lock(settings, exclusive=True):
        found = _sweep_incoming(settings, remove=remove)
        with db.session(settings) as conn:
            referenced = {row[0] for row in conn.execute("SELECT DISTINCT path FROM corrections")}
        for path in _mask_files(settings):
            rel = path.relative_to(settings.workspace).as_posix()
            if rel not in referenced:
                if remove:
                    path.unlink(missing_ok=True)
                found.append(rel)
    return found


def cleanup_temporaries(settings: Settings) -> int:
    """Remove leftovers of interrupted writes from ``masks/.incoming`` unless a save is in flight right now.

    Runs on every open of the store; returns how many files were removed.
    """
    if not (settings.masks_dir / INCOMING).is_dir():
        return 0
    lock = locks.acquire(settings.masks_dir / LOCK_NAME, wait=False)
    if lock is None:
        return 0  # a save is in flight
    with lock:
        return len(_sweep_incoming(settings, remove=True))


def check_store(settings: Settings) -> StoreCheck:
    """Verify every row's file against its sha256 and list orphans and temporaries (read-only)."""
    with db.session(settings) as conn:
        rows = [Correction.from_row(r) for r in conn.execute("SELECT * FROM corrections ORDER BY image_id, version")]
    missing, corrupt = [], []
    for row in rows:
        try:
            data = _mask_file(settings, row.path).read_bytes()
        except (FileNotFoundError, PetSegError):
            missing.append(f"{row.image_id} v{row.version}")
            continue
        if sha256_hex(data) != row.sha256:
            corrupt.append(f"{row.image_id} v{row.version}")
    referenced = {row.path for row in rows}
    orphans = [p.relative_to(settings.workspace).as_posix() for p in _mask_files(settings)]
    orphans = [p for p in orphans if p not in referenced]
    incoming = settings.masks_dir / INCOMING
    temporaries = sorted(p.name for p in incoming.iterdir()) if incoming.is_dir() else []
    return StoreCheck(len(rows), missing, corrupt, orphans, temporaries)


# --- internals -------------------------------------------------------------------------------------------


def add_version(
    settings: Settings,
    image_id: str,
    mask: np.ndarray,
    *,
    base_version: int | None | object,
    parent: int | None,
    source: str,
    author: str,
    note: str,
    iou_gt: float | None,
) -> Correction:
    """Store ``mask`` (a validated trimap) as the next version of ``image_id`` and return its row.

    ``base_version`` is the version the edit started from (``ANY``: on top of whatever is latest);
    :class:`ConflictError` when the latest is another one, before anything is written.
    """
    if source not in SOURCES:
        raise PetSegError(f"source {source!r} is not one of {', '.join(SOURCES)}")
    data = encode_png(mask)
    digest = sha256_hex(data)
    height, width = mask.shape

    with _open(settings) as conn:
        if base_version is not ANY:
            _check_base(conn, image_id, base_version)  # fail fast, before any file is written
    rel_path = f"masks/{digest[:2]}/{digest}.png"
    with _store_lock(settings, exclusive=False):
        _write_mask_file(settings, rel_path, digest, data)
        with db.session(settings) as conn, db.transaction(conn):
            if base_version is not ANY:
                _check_base(conn, image_id, base_version)
            version = conn.execute(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM corrections WHERE image_id = ?", (image_id,)
            ).fetchone()[0]
            conn.execute(
                """
                INSERT INTO corrections (image_id, version, parent_version, source, author, note, created_at,
                                         sha256, path, height, width, iou_gt)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                (image_id, version, parent, source, author, note, db.utc_now(), digest, rel_path, height, width,
                 iou_gt),
            )
            return _version(conn, image_id, version)


def mark_deleted(settings: Settings, image_id: str, version: int) -> Correction:
    """Hide one version from history and from the ground truth; its row and file stay."""
    with _open(settings) as conn, db.transaction(conn):
        # "AND deleted = 0" keeps the first deletion time; deleting twice is not an error.
        conn.execute(
            "UPDATE corrections SET deleted = 1, deleted_at = ? WHERE image_id = ? AND version = ? AND deleted = 0",
            (db.utc_now(), image_id, int(version)),
        )
        return _version(conn, image_id, version)


def _version(conn: sqlite3.Connection, image_id: str, version: int) -> Correction:
    row = conn.execute(
        "SELECT * FROM corrections WHERE image_id = ? AND version = ?", (image_id, int(version))
    ).fetchone()
    if row is None:
        raise PetSegError(f"{image_id} has no version {version}; see its history for the versions that exist")
    return Correction.from_row(row)


def _check_base(conn: sqlite3.Connection, image_id: str, base_version: int | None) -> None:
    current = _latest(conn, image_id)
    if (current.version if current else None) != base_version:
        raise ConflictError(image_id, base_version, current)


def _latest(conn: sqlite3.Connection, image_id: str) -> Correction | None:
    row = conn.execute(
        "SELECT * FROM corrections WHERE image_id = ? AND deleted = 0 ORDER BY version DESC LIMIT 1", (image_id,)
    ).fetchone()
    return Correction.from_row(row) if row else None


def _write_mask_file(settings: Settings, rel_path: str, digest: str, data: bytes) -> None:
    """Put ``data`` at ``rel_path`` durably (caller holds the shared store lock)."""
    final = settings.workspace / rel_path
    if final.is_file():
        with contextlib.suppress(OSError):
            if sha256_hex(final.read_bytes()) == digest:
                return  # same content already stored
    incoming = settings.masks_dir / INCOMING
    incoming.mkdir(parents=True, exist_ok=True)
    # Temporaries live in one folder (not beside their target) so the clean-up after a crash is one listing.
    fd, tmp_name = tempfile.mkstemp(dir=incoming, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        shard_is_new = not final.parent.is_dir()
        final.parent.mkdir(parents=True, exist_ok=True)
        if shard_is_new:
            fsync_dir(final.parent.parent)
        os.replace(tmp_name, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    fsync_dir(final.parent)


def _sweep_incoming(settings: Settings, *, remove: bool) -> list[str]:
    """Workspace-relative paths of the temporaries in ``masks/.incoming`` (deleted when ``remove``)."""
    found = []
    incoming = settings.masks_dir / INCOMING
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(incoming):
            with contextlib.suppress(FileNotFoundError, PermissionError, IsADirectoryError):
                if remove:
                    os.unlink(entry.path)
                found.append(f"masks/{INCOMING}/{entry.name}")
    return found


def _mask_files(settings: Settings) -> Iterator[Path]:
    if not settings.masks_dir.is_dir():
        return
    for shard in sorted(settings.masks_dir.iterdir()):
        if shard.is_dir() and re.fullmatch(r"[0-9a-f]{2}", shard.name):
            yield from sorted(p for p in shard.iterdir() if p.is_file())


def _store_lock(settings: Settings, *, exclusive: bool) -> locks.Lock:
    """``masks/.lock``: saves hold it shared, clean-ups exclusively (waiting for each other)."""
    lock = locks.acquire(settings.masks_dir / LOCK_NAME, shared=not exclusive)
    assert lock is not None  # a waiting acquire always returns a lock
    return lock


@contextlib.contextmanager
def _open(settings: Settings) -> Iterator[sqlite3.Connection]:
    """Open the store: clear leftovers of interrupted writes, then connect."""
    cleanup_temporaries(settings)
    with db.session(settings) as conn:
        yield conn


def _mask_file(settings: Settings, rel_path: str) -> Path:
    # Paths come from the database; accept only the shape the store writes, so a tampered row reads nothing else.
    if not isinstance(rel_path, str) or not _MASK_PATH.fullmatch(rel_path):
        raise PetSegError(f"ledger path {rel_path!r} is not a store path; the database was edited by hand")
    return settings.workspace / rel_path
