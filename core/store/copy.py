"""Copy a whole store into another (a workspace's SQLite ledger into a team's PostgreSQL): ``python -m core db copy``.

    >>> from core.store.copy import copy_store
    >>> report = copy_store(workspace, "sqlite:///ws/petseg.sqlite", "postgresql://petseg@db:5432/petseg")
    >>> print(report.text())       # counts and SHA-256 digests of both sides; PetSegError if they differ

Idempotent and resumable: rows are keyed by content (a mask by its SHA-256, a correction by image and version,
a review and an assignment by image, an audit row by all of its columns but its number) and copied in batches of
one transaction each, so a run that was interrupted, or a second run, copies only what is missing, plus what changed
on a version since (deleted, accepted or rejected). Users with their roles, the store settings (the review
workflow) and assignments are copied whole, the source winning. A destination that holds another correction under
the same image and version is refused (two ledgers cannot be merged silently). At the end both sides are read again
and compared: row counts, and a SHA-256 over every correction row, every review, user, setting and assignment, and
every mask's bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from core import store
from core.config import Settings
from core.errors import PetSegError
from core.masks import sha256_hex
from core.store.schema import assignments, audit, corrections, masks, reviews, store_settings, users

BATCH = 200

_LEDGER = [c for c in corrections.c if c.name != "id"]  # ids are each database's own numbering
_REVIEW = list(reviews.c)
# What may change on a version after it is saved: its deletion and its review.
_MUTABLE = ("deleted", "deleted_at", "state", "reviewer", "reviewed_at", "reason")
_SMALL = (users, store_settings, assignments)  # copied whole, keyed by their primary key; the source wins


@dataclass(frozen=True)
class Digest:
    corrections: int
    reviews: int
    masks: int
    sha256: str  # over every correction row, review row and mask (in key order)


@dataclass(frozen=True)
class CopyReport:
    source: str
    target: str
    copied: dict[str, int]  # rows written this run, per table
    digest: Digest  # equal on both sides, or copy_store raised

    def text(self) -> str:
        d = self.digest
        copied = ", ".join(f"{n} {table}" for table, n in self.copied.items())
        return (f"copied {copied} from {self.source} to {self.target}\n"
                f"verified: {d.corrections} corrections, {d.reviews} reviews, {d.masks} masks on both sides, "
                f"content sha256 {d.sha256}")


def copy_store(workspace: Path, source: str, target: str) -> CopyReport:
    """Copy every mask, correction and review of ``source`` into ``target`` (see the module docstring)."""
    src = Settings(data=Path("."), workspace=Path(workspace), db=source)
    dst = Settings(data=Path("."), workspace=Path(workspace), db=target)
    if store.parse_url(source) == store.parse_url(target):
        raise PetSegError("--from and --to are the same database; name another target")
    copied = {"masks": _copy_masks(src, dst), "corrections": _copy_corrections(src, dst),
              "reviews": _copy_reviews(src, dst), "audit rows": _copy_audit(src, dst),
              **{table.name: _copy_small(src, dst, table) for table in _SMALL}}
    before, after = digest(src), digest(dst)
    if before != after:
        raise PetSegError(f"the copy does not match its source (source {before}, target {after}): the target held "
                          "other data already; copy into an empty database")
    return CopyReport(store.shown(source), store.shown(target), copied, after)


def digest(settings: Settings) -> Digest:
    """Counts and one SHA-256 over the content of a store (what :func:`copy_store` compares)."""
    total = hashlib.sha256()
    with store.reading(settings) as conn:
        rows = conn.execute(sa.select(*_LEDGER).order_by(corrections.c.image_id, corrections.c.version)).all()
        for row in rows:
            total.update(repr(_canonical(row)).encode())
        review_rows = conn.execute(sa.select(*_REVIEW).order_by(reviews.c.image_id)).all()
        for row in review_rows:
            total.update(repr(_canonical(row)).encode())
        for table in _SMALL:
            for row in conn.execute(sa.select(table).order_by(*table.primary_key)):
                total.update(repr(_canonical(row)).encode())
        count = 0
        for sha, png in conn.execute(sa.select(masks.c.sha256, masks.c.png).order_by(masks.c.sha256)):
            if sha256_hex(bytes(png)) != sha:
                raise PetSegError(f"mask {sha} in {store.shown(settings.db_url)} is damaged (sha256 mismatch)")
            total.update(sha.encode())
            count += 1
    return Digest(len(rows), len(review_rows), count, total.hexdigest())


def _canonical(row: sa.Row) -> tuple:
    return tuple(float(v) if isinstance(v, float) else v for v in row)


def _copy_masks(src: Settings, dst: Settings) -> int:
    with store.reading(src) as conn:
        wanted = [sha for (sha,) in conn.execute(sa.select(masks.c.sha256).order_by(masks.c.sha256))]
    with store.reading(dst) as conn:
        have = {sha for (sha,) in conn.execute(sa.select(masks.c.sha256))}
    missing = [sha for sha in wanted if sha not in have]
    for start in range(0, len(missing), BATCH):
        batch = missing[start:start + BATCH]
        with store.reading(src) as conn:
            rows = conn.execute(sa.select(masks).where(masks.c.sha256.in_(batch))).all()
        with store.writing(dst) as conn:
            for sha, png, created_at in rows:
                if sha256_hex(bytes(png)) != sha:
                    raise PetSegError(f"mask {sha} in the source is damaged (sha256 mismatch); nothing of it copied")
                store.insert_ignore(conn, masks, {"sha256": sha, "png": bytes(png), "created_at": created_at})
    return len(missing)


def _copy_corrections(src: Settings, dst: Settings) -> int:
    key = (corrections.c.image_id, corrections.c.version)
    with store.reading(src) as conn:
        rows = conn.execute(sa.select(*_LEDGER).order_by(*key)).all()
    with store.reading(dst) as conn:
        have = {(r.image_id, r.version): r for r in conn.execute(sa.select(*_LEDGER))}
    todo, changed = [], 0
    for row in rows:
        there = have.get((row.image_id, row.version))
        if there is None:
            todo.append(row._asdict())
        elif (there.sha256, there.created_at, there.author) != (row.sha256, row.created_at, row.author):
            raise PetSegError(f"the target already has another v{row.version} of {row.image_id} "
                              f"(saved by {there.author} at {there.created_at}); copy into an empty database")
        elif any(getattr(there, name) != getattr(row, name) for name in _MUTABLE):
            with store.writing(dst) as conn:  # deleted or reviewed in the source since the last copy
                conn.execute(corrections.update().where(corrections.c.image_id == row.image_id,
                                                        corrections.c.version == row.version)
                             .values(**{name: getattr(row, name) for name in _MUTABLE}))
            changed += 1
    for start in range(0, len(todo), BATCH):
        with store.writing(dst) as conn:
            conn.execute(corrections.insert(), todo[start:start + BATCH])
    return len(todo) + changed


def _copy_reviews(src: Settings, dst: Settings) -> int:
    with store.reading(src) as conn:
        rows = conn.execute(sa.select(*_REVIEW).order_by(reviews.c.image_id)).all()
    with store.reading(dst) as conn:
        have = {r.image_id: r for r in conn.execute(sa.select(*_REVIEW))}
    todo = [r._asdict() for r in rows if r.image_id not in have]
    newer = [r._asdict() for r in rows if r.image_id in have and tuple(have[r.image_id]) != tuple(r)
             and r.updated_at >= have[r.image_id].updated_at]
    for start in range(0, len(todo), BATCH):
        with store.writing(dst) as conn:
            conn.execute(reviews.insert(), todo[start:start + BATCH])
    for values in newer:
        with store.writing(dst) as conn:
            conn.execute(reviews.update().where(reviews.c.image_id == values["image_id"]).values(**values))
    return len(todo) + len(newer)


def _copy_small(src: Settings, dst: Settings, table: sa.Table) -> int:
    with store.reading(src) as conn:
        rows = [r._asdict() for r in conn.execute(sa.select(table))]
    with store.reading(dst) as conn:
        have = {tuple(r[c.name] for c in table.primary_key): r for r in
                (r._asdict() for r in conn.execute(sa.select(table)))}
    keys = [c.name for c in table.primary_key]
    todo = [r for r in rows if have.get(tuple(r[k] for k in keys)) != r]
    with store.writing(dst) as conn:
        for values in todo:
            store.insert_ignore(conn, table, values, overwrite=tuple(k for k in values if k not in keys))
    return len(todo)


_AUDIT = [c for c in audit.c if c.name != "id"]


def _copy_audit(src: Settings, dst: Settings) -> int:
    """The trail in its order (the target numbers the rows anew); rows the target has already are skipped."""
    with store.reading(src) as conn:
        rows = [tuple(r) for r in conn.execute(sa.select(*_AUDIT).order_by(audit.c.id))]
    with store.reading(dst) as conn:
        have = {tuple(r) for r in conn.execute(sa.select(*_AUDIT))}
    todo = [dict(zip([c.name for c in _AUDIT], row, strict=True)) for row in rows if row not in have]
    for start in range(0, len(todo), BATCH):
        with store.writing(dst) as conn:
            conn.execute(audit.insert(), todo[start:start + BATCH])
    return len(todo)
