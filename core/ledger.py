"""The corrections ledger: versioned rows and their mask PNGs, both in the store (SQLite or PostgreSQL).

    >>> from core import ledger
    >>> [(c.version, c.source, c.author) for c in ledger.history(settings, "Abyssinian_1")]
    [(1, 'gt', 'ana'), (2, 'revert', 'ben')]
    >>> mask = ledger.load_mask(settings, ledger.latest(settings, "Abyssinian_1"))   # verified against its sha256
    >>> ledger.latest_versions(settings)                                              # {image_id: version}, one query

This module stores and reads; it never decides what a mask means. The public operations that change
corrections (save, revert, delete, import — each rescoring the stored evaluations) are :mod:`core.corrections`;
"the mask an image has now" is :mod:`core.groundtruth`.

Storage. Each version is a row of ``corrections``; its PNG is a row of ``masks`` named by the SHA-256 of its bytes
(identical masks share one row). A save inserts both in one transaction, so a crash or a lost connection at any
moment leaves the old state or the new one, on every engine and for every app server alike.

Concurrency is optimistic and enforced by the database: a write names the version it started from
(``base_version``; ``None`` = no correction yet) and inserts the next number under ``UNIQUE (image_id, version)``.
If the latest non-deleted version is another one, or another writer took the number first, nothing is written and
:class:`ConflictError` says which version landed meanwhile. Versions are never reused; deleting is soft.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.engine import Connection

from core import audit, store
from core.config import Settings
from core.errors import ImageUnreadable, PetSegError
from core.masks import decode_label_png, encode_png, sha256_hex
from core.store.schema import SOURCES, STATES, corrections, masks

ANY = object()  # base_version of a write that lands on top of whatever is latest (a revert)
_RETRIES = 5  # a write on top of ANY retries when a concurrent writer took its version number
_MAX_IN = 20_000  # above this many ids, read every row and filter here (bound-parameter limits of the engines)

_COLUMNS = [c for c in corrections.c if c.name != "id"]
_ACTION = {"revert": "revert", "import": "import"}  # audit action of a new version by its source; else "save"


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
    """One ledger row; ``sha256`` names its mask PNG, ``iou_gt`` is against the official trimap."""

    image_id: str
    version: int
    parent_version: int | None
    source: str
    author: str
    note: str
    created_at: str
    sha256: str
    height: int
    width: int
    iou_gt: float | None
    deleted: bool
    state: str = "accepted"  # submitted | accepted | rejected (core.corrections: the review workflow)
    reviewer: str | None = None  # who accepted or rejected it; None while submitted, or accepted with review off
    reviewed_at: str | None = None
    reason: str = ""  # why it was rejected (or a reviewer's remark on accepting)
    # Stored evaluation rows the operation that returned this row rescored (core.corrections); not a column.
    rescored: int = field(default=0, compare=False)

    @classmethod
    def from_row(cls, row: sa.Row) -> Correction:
        m = row._mapping
        return cls(
            image_id=str(m["image_id"]),
            version=int(m["version"]),
            parent_version=None if m["parent_version"] is None else int(m["parent_version"]),
            source=str(m["source"]),
            author=str(m["author"]),
            note=str(m["note"]),
            created_at=str(m["created_at"]),
            sha256=str(m["sha256"]),
            height=int(m["height"]),
            width=int(m["width"]),
            iou_gt=None if m["iou_gt"] is None else float(m["iou_gt"]),
            deleted=bool(m["deleted"]),
            state=str(m["state"]),
            reviewer=None if m["reviewer"] is None else str(m["reviewer"]),
            reviewed_at=None if m["reviewed_at"] is None else str(m["reviewed_at"]),
            reason=str(m["reason"]),
        )


@dataclass(frozen=True)
class StoreCheck:
    """Result of :func:`check_store`: counts plus the offending rows."""

    rows: int
    missing: list[str]  # "image_id vN" rows whose mask is not in the store
    corrupt: list[str]  # "image_id vN" rows whose mask bytes do not match their sha256
    orphans: list[str]  # sha256 of masks no row references (harmless: a deleted row's history may come back)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.corrupt


# --- reading ---------------------------------------------------------------------------------------------


def history(settings: Settings, image_id: str, include_deleted: bool = False) -> list[Correction]:
    """All versions of an image, oldest first (soft-deleted ones only if ``include_deleted``)."""
    query = sa.select(*_COLUMNS).where(corrections.c.image_id == image_id).order_by(corrections.c.version)
    if not include_deleted:
        query = query.where(corrections.c.deleted == 0)
    with store.reading(settings) as conn:
        return [Correction.from_row(row) for row in conn.execute(query)]


def latest(settings: Settings, image_id: str) -> Correction | None:
    """The latest non-deleted version of an image, or ``None`` when it has no correction."""
    with store.reading(settings) as conn:
        return _latest(conn, image_id)


def get_version(settings: Settings, image_id: str, version: int) -> Correction:
    """One version (deleted or not); ``PetSegError`` if the image has no such version."""
    with store.reading(settings) as conn:
        return _version(conn, image_id, version)


def latest_versions(settings: Settings) -> dict[str, int]:
    """``{image_id: latest non-deleted version}`` for every corrected image (one query, for tables)."""
    query = (sa.select(corrections.c.image_id, sa.func.max(corrections.c.version))
             .where(corrections.c.deleted == 0).group_by(corrections.c.image_id))
    with store.reading(settings) as conn:
        return {str(image_id): int(version) for image_id, version in conn.execute(query)}


def latest_table(settings: Settings) -> pd.DataFrame:
    """The latest non-deleted version of every corrected image, index ``image_id`` (one query, for tables).

    Columns: image_id, version, parent_version, source, author, note, created_at, sha256, height, width, iou_gt,
    versions (how many non-deleted versions the image has).
    """
    newest = _newest(with_count=True)
    query = (sa.select(*_PUBLIC, newest.c.versions)
             .join(newest, sa.and_(corrections.c.image_id == newest.c.image_id,
                                   corrections.c.version == newest.c.version))
             .order_by(corrections.c.image_id))
    with store.reading(settings) as conn:
        rows = conn.execute(query).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=[c.name for c in _PUBLIC] + ["versions"])
    return frame.set_index("image_id", drop=False)


def latest_rows(settings: Settings, image_ids: Iterable[str] | None = None, *,
                states: Iterable[str] = STATES) -> dict[str, Correction]:
    """The latest non-deleted row in one of ``states`` of each corrected image (of ``image_ids``, or all): one
    connection, one query."""
    return {image_id: row for image_id, (row, _png)
            in _latest_query(settings, image_ids, with_png=False, states=states).items()}


def latest_with_masks(settings: Settings, image_ids: Iterable[str] | None = None, *,
                      states: Iterable[str] = STATES) -> dict[str, tuple[Correction, bytes]]:
    """Like :func:`latest_rows` plus each row's mask PNG bytes, in the same single query (bulk readers)."""
    return _latest_query(settings, image_ids, with_png=True, states=states)


def submitted(settings: Settings) -> list[Correction]:
    """Every non-deleted version waiting for review, oldest first (the review queue)."""
    query = (sa.select(*_COLUMNS).where(corrections.c.state == "submitted", corrections.c.deleted == 0)
             .order_by(corrections.c.created_at, corrections.c.id))
    with store.reading(settings) as conn:
        return [Correction.from_row(row) for row in conn.execute(query)]


def load_mask(settings: Settings, correction: Correction) -> np.ndarray:
    """The mask of one version, verified against its sha256; ``ImageUnreadable`` if it is gone or damaged."""
    with store.reading(settings) as conn:
        data = conn.execute(sa.select(masks.c.png).where(masks.c.sha256 == correction.sha256)).scalar()
    return decode_mask(correction, data)


def decode_mask(correction: Correction, data: bytes | None) -> np.ndarray:
    """The stored PNG ``data`` of ``correction`` as a trimap, checked against the row's sha256 and size."""
    label = f"{correction.image_id} v{correction.version}"
    if data is None:
        raise ImageUnreadable(f"the mask of {label} is missing from the store; revert to another version")
    data = bytes(data)
    if sha256_hex(data) != correction.sha256:
        raise ImageUnreadable(f"the mask of {label} is damaged (sha256 mismatch); revert to another version")
    return decode_label_png(data, what=f"the mask of {label}", expected_size=(correction.height, correction.width))


def check_store(settings: Settings) -> StoreCheck:
    """Verify every row's mask against its sha256 and list unreferenced masks (read-only)."""
    with store.reading(settings) as conn:
        rows = [Correction.from_row(r) for r in conn.execute(
            sa.select(*_COLUMNS).order_by(corrections.c.image_id, corrections.c.version))]
        stored = {str(sha): bytes(png) for sha, png in conn.execute(sa.select(masks.c.sha256, masks.c.png))}
    missing = [f"{r.image_id} v{r.version}" for r in rows if r.sha256 not in stored]
    corrupt = [f"{r.image_id} v{r.version}" for r in rows
               if r.sha256 in stored and sha256_hex(stored[r.sha256]) != r.sha256]
    referenced = {r.sha256 for r in rows}
    return StoreCheck(len(rows), missing, corrupt, sorted(set(stored) - referenced))


def stamp(settings: Settings) -> tuple:
    """A cheap value that changes whenever a correction or review is written (the dashboard's cache key)."""
    if not store.exists(settings):
        return ()
    from core.store.schema import reviews

    with store.reading(settings) as conn:
        # A review changes a state, not the count: the weighted sum moves with every accept or reject.
        reviewed = sa.case((corrections.c.state == "accepted", 1), (corrections.c.state == "rejected", 2), else_=0)
        ledger_part = conn.execute(sa.select(sa.func.count(), sa.func.max(corrections.c.id),
                                             sa.func.sum(corrections.c.deleted), sa.func.sum(reviewed))).one()
        review_part = conn.execute(sa.select(sa.func.count(), sa.func.sum(reviews.c.revision))).one()
    return (settings.db_url, *ledger_part, *review_part)


# --- writing ---------------------------------------------------------------------------------------------


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
    state: str = "accepted",
) -> Correction:
    """Store ``mask`` (a validated trimap) as the next version of ``image_id`` and return its row.

    ``base_version`` is the version the edit started from (``ANY``: on top of whatever is latest);
    :class:`ConflictError` when the latest is another one. The row and its PNG commit in one transaction.
    """
    if source not in SOURCES:
        raise PetSegError(f"source {source!r} is not one of {', '.join(SOURCES)}")
    if state not in ("submitted", "accepted"):
        raise PetSegError(f"a new version is submitted or accepted, not {state!r}")
    data = encode_png(mask)
    digest = sha256_hex(data)
    height, width = mask.shape
    for _attempt in range(_RETRIES):
        try:
            with store.writing(settings) as conn:
                # One statement, so one snapshot (PostgreSQL's READ COMMITTED takes a new one per statement):
                # the latest visible version and the highest number ever used.
                newest, highest = conn.execute(
                    sa.select(sa.func.max(sa.case((corrections.c.deleted == 0, corrections.c.version))),
                              sa.func.coalesce(sa.func.max(corrections.c.version), 0))
                    .where(corrections.c.image_id == image_id)).one()
                if base_version is not ANY and newest != base_version:
                    raise ConflictError(image_id, base_version, _latest(conn, image_id))
                version = int(highest) + 1
                now = store.utc_now()
                store.insert_ignore(conn, masks, {"sha256": digest, "png": data, "created_at": now},
                                    overwrite=("png",))
                # UNIQUE (image_id, version): of two writers that read the same latest, one insert fails here.
                row = Correction(image_id=image_id, version=version, parent_version=parent, source=source,
                                 author=author, note=note, created_at=now, sha256=digest, height=int(height),
                                 width=int(width), iou_gt=None if iou_gt is None else float(iou_gt), deleted=False,
                                 state=state)
                values = {k: v for k, v in vars(row).items() if k not in ("rescored", "deleted")}
                conn.execute(corrections.insert().values(**values, deleted=0))
                # In the same transaction: the trail has the version exactly when the ledger has it.
                audit.record(conn, author, _ACTION.get(source, "save"), image_id, version=version, source=source,
                             parent=parent, note=note)
            return row
        except exc.IntegrityError:
            if base_version is not ANY:
                raise ConflictError(image_id, base_version, latest(settings, image_id)) from None
    raise PetSegError(f"{image_id} is being saved by others right now; try again")


def mark_deleted(settings: Settings, image_id: str, version: int, author: str | None = None) -> Correction:
    """Hide one version from history and from the ground truth; its row and mask stay."""
    with store.writing(settings) as conn:
        # "deleted = 0" keeps the first deletion time; deleting twice is not an error.
        changed = conn.execute(corrections.update()
                               .where(corrections.c.image_id == image_id, corrections.c.version == int(version),
                                      corrections.c.deleted == 0)
                               .values(deleted=1, deleted_at=store.utc_now())).rowcount
        row = _version(conn, image_id, version)
        if changed:
            audit.record(conn, author, "delete", image_id, version=int(version))
        return row


def set_state(settings: Settings, image_id: str, version: int, state: str, *, reviewer: str, reason: str
              ) -> Correction:
    """Accept or reject one submitted version; :class:`ReviewConflict` when it is no longer submitted (another
    reviewer was first, or it was deleted). The check and the update are one statement."""
    if state not in ("accepted", "rejected"):
        raise PetSegError(f"a review accepts or rejects, not {state!r}")
    with store.writing(settings) as conn:
        done = conn.execute(corrections.update()
                            .where(corrections.c.image_id == image_id, corrections.c.version == int(version),
                                   corrections.c.state == "submitted", corrections.c.deleted == 0)
                            .values(state=state, reviewer=reviewer, reviewed_at=store.utc_now(), reason=reason))
        row = _version(conn, image_id, version)
        if done.rowcount == 1:
            audit.record(conn, reviewer, "accept" if state == "accepted" else "reject", image_id,
                         version=int(version), author=row.author, reason=reason)
    if done.rowcount != 1:
        raise ReviewConflict(row)
    return row


class ReviewConflict(PetSegError):
    """The version is not waiting for review (any more)."""

    def __init__(self, row: Correction) -> None:
        self.row = row
        label = f"{row.image_id} v{row.version}"
        if row.deleted:
            now = "it was deleted"
        elif row.state == "submitted":
            now = "it changed meanwhile"
        else:
            by = f" by {row.reviewer}" if row.reviewer else " (saved while review was off)"
            now = f"it was {row.state}{by}" + (f" at {row.reviewed_at}" if row.reviewed_at else "")
        super().__init__(f"{label} is not waiting for review: {now}; nothing was changed")


# --- internals -------------------------------------------------------------------------------------------

_PUBLIC = [c for c in _COLUMNS if c.name not in ("deleted", "deleted_at")]


def _newest(*, with_count: bool = False, states: Iterable[str] = STATES) -> sa.Subquery:
    """Per image: its latest non-deleted version in ``states`` (and how many non-deleted versions it has)."""
    columns = [corrections.c.image_id, sa.func.max(corrections.c.version).label("version")]
    if with_count:
        columns.append(sa.func.count().label("versions"))
    query = sa.select(*columns).where(corrections.c.deleted == 0)
    states = tuple(states)
    if set(states) != set(STATES):
        query = query.where(corrections.c.state.in_(states))
    return query.group_by(corrections.c.image_id).subquery()


def _latest_query(settings: Settings, image_ids: Iterable[str] | None, *, with_png: bool,
                  states: Iterable[str] = STATES) -> dict[str, tuple[Correction, bytes | None]]:
    wanted = None if image_ids is None else set(image_ids)
    if wanted is not None and not wanted:
        return {}
    newest = _newest(states=states)
    query = sa.select(*_COLUMNS, *([masks.c.png] if with_png else [])).join(
        newest, sa.and_(corrections.c.image_id == newest.c.image_id, corrections.c.version == newest.c.version))
    if with_png:
        query = query.outerjoin(masks, masks.c.sha256 == corrections.c.sha256)
    if wanted is not None and len(wanted) <= _MAX_IN:
        query = query.where(corrections.c.image_id.in_(sorted(wanted)))
    with store.reading(settings) as conn:
        rows = conn.execute(query).all()
    found = {}
    for row in rows:
        correction = Correction.from_row(row)
        if wanted is None or correction.image_id in wanted:
            found[correction.image_id] = (correction, row._mapping["png"] if with_png else None)
    return found


def _version(conn: Connection, image_id: str, version: int) -> Correction:
    row = conn.execute(sa.select(*_COLUMNS).where(corrections.c.image_id == image_id,
                                                  corrections.c.version == int(version))).first()
    if row is None:
        raise PetSegError(f"{image_id} has no version {version}; see its history for the versions that exist")
    return Correction.from_row(row)


def _latest(conn: Connection, image_id: str) -> Correction | None:
    row = conn.execute(sa.select(*_COLUMNS).where(corrections.c.image_id == image_id, corrections.c.deleted == 0)
                       .order_by(corrections.c.version.desc()).limit(1)).first()
    return Correction.from_row(row) if row else None
