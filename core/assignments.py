"""Work assignment: a lead hands a filtered, ordered set of images to an annotator; their Next walks it first.

    >>> from core import assignments, views
    >>> view = views.load_view(settings, "r1", "test")
    >>> worst_dogs = views.order(view, views.Filters(species=("dog",)), "iou_pet")[:200]   # worst first
    >>> assignments.assign(settings, ds, "ana@example.org", worst_dogs, actor="lead@example.org")
    200
    >>> assignments.open_items(settings, "ana@example.org")[:2]      # unfinished, in the order assigned
    ['beagle_12', 'pug_3']
    >>> assignments.walk(open_items, usual_order)                      # what Annotate's Next goes through

One assignee per image (assigning it again moves it). An item is finished once its image has a correction
version saved, or a review tag set, after it was assigned; finished items stay in :func:`table` for the lead.
Assigning needs the ``assign`` permission (:func:`core.users.require`) and is recorded in the audit trail in the
same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd
import sqlalchemy as sa

from core import audit, store, users
from core.config import Settings
from core.dataset import Dataset
from core.errors import PetSegError
from core.store.schema import assignments, corrections, reviews

MAX_BATCH = 20_000
TABLE_COLUMNS = ["image_id", "assignee", "assigned_by", "assigned_at", "position", "done"]


def assign(settings: Settings, ds: Dataset, assignee: str, image_ids: Sequence[str], *, actor: str | None) -> int:
    """Assign ``image_ids`` (in this order) to ``assignee``; returns how many. Refused without ``assign`` rights."""
    actor = store.clean_author(actor)  # None: the OS user, as on the CLI
    users.require(settings, actor, "assign")  # PermissionDenied when the actor's role may not assign
    assignee = store.clean_author(assignee)
    ids = list(dict.fromkeys(ds.require(i) for i in image_ids))
    if not ids:
        raise PetSegError("nothing to assign: the filter matched no images")
    if len(ids) > MAX_BATCH:
        raise PetSegError(f"{len(ids)} images is more than one assignment takes ({MAX_BATCH}); use --limit")
    with store.writing(settings) as conn:
        for position, image_id in enumerate(ids):
            store.insert_ignore(conn, assignments, {
                "image_id": image_id, "assignee": assignee, "assigned_by": actor,
                "assigned_at": store.db_utc_text(), "position": position,
            }, overwrite=("assignee", "assigned_by", "assigned_at", "position"))
            audit.record(conn, actor, "assign", image_id, assignee=assignee, position=position)
    return len(ids)


def open_items(settings: Settings, assignee: str) -> list[str]:
    """The images assigned to ``assignee`` and not finished yet, oldest batch first, in each batch's order."""
    if not store.exists(settings):
        return []
    query = (sa.select(assignments.c.image_id).where(assignments.c.assignee == store.clean_author(assignee),
                                                     ~_done())
             .order_by(assignments.c.assigned_at, assignments.c.position))
    with store.reading(settings) as conn:
        return [str(image_id) for image_id in conn.execute(query).scalars()]


def walk(assigned: Sequence[str], usual: Iterable[str]) -> list[str]:
    """The order Next goes through: the open assigned items first, then the usual order without them."""
    first = list(dict.fromkeys(assigned))
    seen = set(first)
    return first + [image_id for image_id in usual if image_id not in seen]


def table(settings: Settings, assignee: str | None = None) -> pd.DataFrame:
    """Every assignment (of ``assignee``) with a ``done`` flag; columns :data:`TABLE_COLUMNS`."""
    if not store.exists(settings):
        return pd.DataFrame(columns=TABLE_COLUMNS)
    query = sa.select(assignments.c.image_id, assignments.c.assignee, assignments.c.assigned_by,
                      assignments.c.assigned_at, assignments.c.position, _done().label("done")).order_by(
        assignments.c.assignee, assignments.c.assigned_at, assignments.c.position)
    if assignee is not None:
        query = query.where(assignments.c.assignee == store.clean_author(assignee))
    with store.reading(settings) as conn:
        found = [tuple(r) for r in conn.execute(query)]
    frame = pd.DataFrame(found, columns=TABLE_COLUMNS)
    frame["done"] = frame["done"].astype(bool)
    return frame


def _done() -> sa.ColumnElement:
    """Finished: a correction saved, or a tag set, on the image after it was assigned."""
    corrected = sa.exists().where(corrections.c.image_id == assignments.c.image_id, corrections.c.deleted == 0,
                                  corrections.c.created_at >= assignments.c.assigned_at)
    tagged = sa.exists().where(reviews.c.image_id == assignments.c.image_id, reviews.c.tag.is_not(None),
                               reviews.c.updated_at >= assignments.c.assigned_at)
    return sa.or_(corrected, tagged)
