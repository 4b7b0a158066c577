"""Short leases on images: who is editing what right now, so that two annotators do not work on one image.

    >>> from core import leases
    >>> leases.claim(settings, "Abyssinian_1", "ana@example.org")      # Ana opens it in Annotate
    Lease(image_id='Abyssinian_1', holder='ana@example.org', seconds_left=120.0)
    >>> leases.claim(settings, "Abyssinian_1", "ben@example.org").holder   # Ben sees who has it
    'ana@example.org'
    >>> leases.renew(settings, "Abyssinian_1", "ana@example.org")       # True while Ana edits
    >>> leases.release(settings, "Abyssinian_1", "ana@example.org")     # on save, or when she moves on
    >>> leases.holders(settings)                                          # {image_id: Lease} of live leases

A lease lasts :data:`LEASE_SECONDS` unless renewed; nobody has to clean up after a closed browser. Expiry is
compared in the database against the database's own clock (:class:`core.store.db_seconds`), so several app
servers agree whatever their clocks say. Each operation is one statement: :func:`claim` is an upsert that takes
the row only when it is free, expired or already the claimer's, so of two claimers at once exactly one wins on
both engines (PostgreSQL re-checks the condition on the locked row; SQLite serialises writers).

A lease is advice, not a lock: saving never asks for one. The optimistic version check of
:mod:`core.corrections` stays the final guard when two people save the same image anyway.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from core import store
from core.config import Settings
from core.errors import PetSegError
from core.store.schema import leases

LEASE_SECONDS = 120.0
MAX_SECONDS = 3600.0


@dataclass(frozen=True)
class Lease:
    image_id: str
    holder: str
    seconds_left: float


def claim(settings: Settings, image_id: str, holder: str, seconds: float = LEASE_SECONDS) -> Lease:
    """Take (or renew) the lease on ``image_id`` for ``holder``; returns the live lease, whoever holds it.

    The caller won when ``result.holder == holder``.
    """
    holder, seconds = _holder(holder), _seconds(seconds)
    now = store.db_seconds()
    insert = (postgresql.insert if _dialect(settings) == "postgresql" else sqlite.insert)(leases)
    statement = insert.values(image_id=image_id, holder=holder, expires_at=now + seconds)
    statement = statement.on_conflict_do_update(
        index_elements=[leases.c.image_id],
        set_={"holder": statement.excluded.holder, "expires_at": statement.excluded.expires_at},
        where=sa.or_(leases.c.holder == statement.excluded.holder, leases.c.expires_at <= now),
    ).returning(leases.c.holder, (leases.c.expires_at - now).label("left"))
    with store.writing(settings) as conn:
        won = conn.execute(statement).first()
        if won is not None:
            return Lease(image_id, str(won.holder), float(won.left))
        held = conn.execute(sa.select(leases.c.holder, (leases.c.expires_at - now).label("left"))
                            .where(leases.c.image_id == image_id)).first()
    if held is None:  # released between the two statements: report it free rather than guess
        return Lease(image_id, "", 0.0)
    return Lease(image_id, str(held.holder), float(held.left))


def renew(settings: Settings, image_id: str, holder: str, seconds: float = LEASE_SECONDS) -> bool:
    """Extend ``holder``'s lease; False when it is no longer theirs (it lapsed and someone else took it)."""
    holder, seconds = _holder(holder), _seconds(seconds)
    with store.writing(settings) as conn:
        result = conn.execute(leases.update().where(leases.c.image_id == image_id, leases.c.holder == holder)
                              .values(expires_at=store.db_seconds() + seconds))
    return result.rowcount == 1


def release(settings: Settings, image_id: str, holder: str) -> bool:
    """Give the lease back (after a save, or on moving to another image); False when ``holder`` did not hold it."""
    holder = _holder(holder)
    with store.writing(settings) as conn:
        result = conn.execute(leases.delete().where(leases.c.image_id == image_id, leases.c.holder == holder))
    return result.rowcount == 1


def holders(settings: Settings, image_ids: Iterable[str] | None = None) -> dict[str, Lease]:
    """``{image_id: Lease}`` of every live (unexpired) lease, or of those among ``image_ids``."""
    if not store.exists(settings):
        return {}
    now = store.db_seconds()
    query = sa.select(leases.c.image_id, leases.c.holder, (leases.c.expires_at - now).label("left")).where(
        leases.c.expires_at > now)
    wanted = None if image_ids is None else set(image_ids)
    with store.reading(settings) as conn:
        found = conn.execute(query).all()
    return {str(r.image_id): Lease(str(r.image_id), str(r.holder), float(r.left)) for r in found
            if wanted is None or r.image_id in wanted}


def held_by_others(settings: Settings, holder: str) -> dict[str, str]:
    """``{image_id: holder}`` of live leases held by anyone but ``holder`` (what Next skips)."""
    holder = _holder(holder)
    return {image_id: lease.holder for image_id, lease in holders(settings).items() if lease.holder != holder}


def _holder(holder: str) -> str:
    holder = store.clean_author(holder)
    if not holder:
        raise PetSegError("a lease needs a holder (the signed-in user)")
    return holder


def _seconds(seconds: float) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds <= MAX_SECONDS:
        raise PetSegError(f"a lease lasts between 0 and {MAX_SECONDS:.0f} seconds, got {seconds!r}")
    return float(seconds)


def _dialect(settings: Settings) -> str:
    return store.engine(settings).dialect.name
