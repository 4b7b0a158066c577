"""The audit trail: every action recorded append-only with who, when (the database's clock) and what.

    >>> from core import audit, store
    >>> with store.writing(settings) as conn:              # inside the transaction of the action it describes
    ...     audit.record(conn, "ana@example.org", "save", "Abyssinian_1", version=3, source="gt")
    >>> audit.record_now(settings, "ana@example.org", "train", run="r1")   # actions that are not a store write
    >>> audit.trail(settings, "Abyssinian_1")[["at", "actor", "action"]]    # per image, oldest first
    >>> audit.daily(settings)            # per person and day: submitted / accepted / rejected, acceptance rate

Store writes (corrections save/revert/import/delete, tags, notes, accept/reject, role changes, assignments) call
:func:`record` with their own connection, so the row commits or rolls back with the action: a failed save leaves
no audit row, and a save is never missing from the trail. Jobs and exports, which are not store writes, call
:func:`record_now` when they start. Rows are only ever inserted; ``detail`` is a JSON object of plain values.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from core import store
from core.config import Settings
from core.errors import PetSegError
from core.store.schema import audit

# The actions PetSeg records; "submit" actions are the ones that create a correction version for review.
ACTIONS = ("save", "revert", "import", "delete", "accept", "reject", "tag", "note", "export", "train", "evaluate",
           "crossval", "role", "assign", "workflow")
SUBMITTED = ("save", "revert", "import")
MAX_ACTION = 40
MAX_DETAIL = 4000
COLUMNS = ["id", "at", "actor", "action", "image_id", "detail"]
MAX_ROWS = 10_000  # readers return at most this many rows (newest kept): a page never loads an unbounded table


def record(conn: Connection, actor: str | None, action: str, image_id: str | None = None, **detail: Any) -> None:
    """Append one row in ``conn``'s transaction (``actor`` None: the OS user, as for every other author)."""
    if action not in ACTIONS:
        raise PetSegError(f"audit action {str(action)[:MAX_ACTION]!r} is not one of {', '.join(ACTIONS)}")
    text = json.dumps(detail, sort_keys=True, default=str, ensure_ascii=False)
    if len(text) > MAX_DETAIL:
        raise PetSegError(f"audit detail of {action} is longer than {MAX_DETAIL} characters")
    conn.execute(audit.insert().values(
        at=store.db_utc_text(), actor=store.clean_author(actor), action=action,
        image_id=None if image_id is None else store.clean_text(image_id, "image id", 200),
        detail=store.clean_text(text, "audit detail", MAX_DETAIL)))


def record_now(settings: Settings, actor: str | None, action: str, image_id: str | None = None,
               **detail: Any) -> None:
    """:func:`record` in a transaction of its own (jobs, exports: actions that do not write the store)."""
    with store.writing(settings) as conn:
        record(conn, actor, action, image_id, **detail)


def rows(settings: Settings, *, person: str | None = None, image_id: str | None = None,
         actions: tuple[str, ...] | None = None, limit: int = MAX_ROWS) -> pd.DataFrame:
    """Audit rows, oldest first (the newest ``limit`` of them), optionally of one person, image or set of actions.

    Columns: id, at, actor, action, image_id, detail (a dict).
    """
    if not store.exists(settings):
        return _frame([])
    query = sa.select(*(audit.c[name] for name in COLUMNS)).order_by(audit.c.id.desc()).limit(int(limit))
    if person is not None:
        query = query.where(audit.c.actor == store.clean_author(person))
    if image_id is not None:
        query = query.where(audit.c.image_id == image_id)
    if actions is not None:
        query = query.where(audit.c.action.in_(list(actions)))
    with store.reading(settings) as conn:
        found = [tuple(r) for r in conn.execute(query)]
    return _frame(found[::-1])


def trail(settings: Settings, image_id: str) -> pd.DataFrame:
    """Everything done to one image, oldest first (see :func:`rows`)."""
    return rows(settings, image_id=image_id)


def daily(settings: Settings, person: str | None = None) -> pd.DataFrame:
    """Per person and UTC day: corrections ``submitted`` (saves, reverts, imports), ``accepted``, ``rejected``.

    ``accepted``/``rejected`` count the review decisions made on that person's corrections (the author named in
    the accept/reject row's detail, else the image's latest submitter before it); ``acceptance_rate`` is
    accepted / (accepted + rejected), NaN before any decision. Columns: person, day, submitted, accepted,
    rejected, acceptance_rate; newest day first.
    """
    found = rows(settings, actions=(*SUBMITTED, "accept", "reject"), limit=10 * MAX_ROWS)
    counts: dict[tuple[str, str], dict[str, int]] = {}
    submitter: dict[str, str] = {}  # image -> who submitted its latest version (for decisions without an author)
    for row in found.itertuples(index=False):
        day = str(row.at)[:10]
        if row.action in SUBMITTED:
            who, kind = row.actor, "submitted"
            if row.image_id:
                submitter[row.image_id] = row.actor
        else:
            who = row.detail.get("author") or submitter.get(row.image_id or "")
            kind = "accepted" if row.action == "accept" else "rejected"
            if not who:
                continue
        cell = counts.setdefault((str(who), day), {"submitted": 0, "accepted": 0, "rejected": 0})
        cell[kind] += 1
    frame = pd.DataFrame([{"person": who, "day": day, **cell} for (who, day), cell in counts.items()],
                         columns=["person", "day", "submitted", "accepted", "rejected"])
    if person is not None:
        frame = frame[frame["person"] == store.clean_author(person)]
    decided = frame["accepted"] + frame["rejected"]
    frame["acceptance_rate"] = (frame["accepted"] / decided.where(decided > 0)).astype("float64")
    return frame.sort_values(["day", "person"], ascending=[False, True]).reset_index(drop=True)


def people(settings: Settings) -> pd.DataFrame:
    """Per person over all time: submitted, accepted, rejected, acceptance_rate, last active day."""
    per_day = daily(settings)
    if per_day.empty:
        return pd.DataFrame(columns=["person", "submitted", "accepted", "rejected", "acceptance_rate", "last_day"])
    total = per_day.groupby("person", as_index=False).agg(
        submitted=("submitted", "sum"), accepted=("accepted", "sum"), rejected=("rejected", "sum"),
        last_day=("day", "max"))
    decided = total["accepted"] + total["rejected"]
    total["acceptance_rate"] = (total["accepted"] / decided.where(decided > 0)).astype("float64")
    return total[["person", "submitted", "accepted", "rejected", "acceptance_rate", "last_day"]]


def _frame(found: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(found, columns=COLUMNS)
    frame["detail"] = [_detail(text) for text in frame["detail"]]
    return frame


def _detail(text: object) -> dict:
    try:
        value = json.loads(str(text))
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
