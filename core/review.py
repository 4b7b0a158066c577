"""Review tags and notes per image, kept in the workspace database so they survive restarts.

    >>> from core.review import all_reviews, get_review, review_progress, set_note, set_tag
    >>> set_tag(settings, ds, "Abyssinian_1", "label_error")
    >>> set_tags(settings, ds, ["beagle_3", "beagle_4"], "fine")   # a selection at once
    >>> set_note(settings, ds, "Abyssinian_1", "left ear marked as background")
    >>> get_review(settings, "Abyssinian_1").tag
    'label_error'
    >>> review_progress(settings, ds.ids("test"))          # (tagged, total) for a queue
    (1, 5)

An image counts as reviewed once it has a tag; a note alone does not. ``set_tag(..., None)`` clears the
tag and keeps the note. Each write records its author (default: the OS user) and time.

Two people reviewing the same image: each write may name the ``revision`` of the review it started from
(``base_revision``; 0 = no review yet). The database applies the write only if the review is still at that
revision, else :class:`ReviewConflict` says who changed it, and nothing is overwritten. The dashboard always
passes it; a script that leaves it out writes on top of whatever is there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa
from sqlalchemy import exc

from core import audit, store, users
from core.config import Settings
from core.dataset import Dataset
from core.errors import PetSegError
from core.store.schema import TAGS, reviews

TAG_LABELS = {"model_error": "model error", "label_error": "label error", "ambiguous": "ambiguous", "fine": "fine"}
MAX_NOTE = 2000
COLUMNS = ["image_id", "tag", "note", "author", "updated_at", "revision"]


@dataclass(frozen=True)
class Review:
    image_id: str
    tag: str | None
    note: str
    author: str
    updated_at: str
    revision: int = 1  # writes so far; a write on top of an older revision is refused

    @property
    def reviewed(self) -> bool:
        return self.tag is not None


class ReviewConflict(PetSegError):
    """The review changed after the revision the write started from."""

    def __init__(self, image_id: str, current: Review | None) -> None:
        self.image_id = image_id
        self.current = current
        now = (f"{current.author} changed it at {current.updated_at}" if current
               else "it was created meanwhile")
        super().__init__(f"the review of {image_id} changed while you edited: {now}; nothing was overwritten: "
                         "reload it and apply your change again")


def set_tag(settings: Settings, ds: Dataset, image_id: str, tag: str | None, *, author: str | None = None,
            base_revision: int | None = None) -> Review:
    """Tag an image (one of ``TAGS``), or clear its tag with ``None`` (``base_revision``: see the module docstring)."""
    image_id = ds.require(image_id)
    if tag is not None and tag not in TAGS:
        raise PetSegError(f"review tag {tag!r} is not one of {', '.join(TAGS)}")
    users.require(settings, author, "tag")
    return _write(settings, image_id, {"tag": tag}, author, base_revision)


def set_tags(settings: Settings, ds: Dataset, image_ids: Iterable[str], tag: str | None, *,
             author: str | None = None) -> int:
    """Tag (or with ``None`` untag) many images, e.g. a selection; returns how many. Every id is checked first."""
    ids = [ds.require(i) for i in dict.fromkeys(image_ids)]
    if tag is not None and tag not in TAGS:
        raise PetSegError(f"review tag {tag!r} is not one of {', '.join(TAGS)}")
    users.require(settings, author, "tag")
    for image_id in ids:
        _write(settings, image_id, {"tag": tag}, author, None)
    return len(ids)


def set_note(settings: Settings, ds: Dataset, image_id: str, note: str, *, author: str | None = None,
             base_revision: int | None = None) -> Review:
    """Replace an image's review note (an empty string clears it)."""
    image_id = ds.require(image_id)
    text = store.clean_text(note, "review note", MAX_NOTE)
    users.require(settings, author, "note")
    return _write(settings, image_id, {"note": text}, author, base_revision)


def get_review(settings: Settings, image_id: str) -> Review | None:
    """The review of one image, or ``None`` if it was never tagged or noted."""
    if not store.exists(settings):
        return None
    with store.reading(settings) as conn:
        return _get(conn, image_id)


def all_reviews(settings: Settings) -> pd.DataFrame:
    """Every review: columns image_id, tag, note, author, updated_at, revision; index image_id (joins ``ds.table``)."""
    rows = []
    if store.exists(settings):
        with store.reading(settings) as conn:
            rows = [tuple(r) for r in conn.execute(sa.select(*_COLUMNS).order_by(reviews.c.image_id))]
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.set_index("image_id", drop=False)


def review_progress(settings: Settings, image_ids: Iterable[str] | None = None) -> tuple[int, int]:
    """``(reviewed, total)``: tagged images among ``image_ids`` (``None``: all reviews, total = reviewed rows)."""
    tagged = all_reviews(settings)
    tagged = set(tagged.index[tagged["tag"].notna()])
    if image_ids is None:
        return len(tagged), len(tagged)
    ids = set(image_ids)
    return len(ids & tagged), len(ids)


def tag_counts(settings: Settings, image_ids: Iterable[str] | None = None) -> dict[str, int]:
    """``{tag: count}`` for every tag in ``TAGS`` (restricted to ``image_ids`` if given)."""
    frame = all_reviews(settings)
    if image_ids is not None:
        frame = frame[frame.index.isin(list(image_ids))]
    counts = frame["tag"].value_counts()
    return {tag: int(counts.get(tag, 0)) for tag in TAGS}


_COLUMNS = [reviews.c[name] for name in COLUMNS]


def _get(conn, image_id: str) -> Review | None:
    row = conn.execute(sa.select(*_COLUMNS).where(reviews.c.image_id == image_id)).first()
    return Review(**row._asdict()) if row else None


def _write(settings: Settings, image_id: str, values: dict, author: str | None, base_revision: int | None) -> Review:
    if base_revision is not None and (not isinstance(base_revision, int) or isinstance(base_revision, bool)
                                      or base_revision < 0):
        raise PetSegError(f"base revision must be a number >= 0 or None, got {base_revision!r}")
    action = "tag" if "tag" in values else "note"
    values = {**values, "author": store.clean_author(author), "updated_at": store.utc_now()}
    for _attempt in range(3):
        try:
            with store.writing(settings) as conn:
                # Recorded first, in the same transaction: a refused or failed write rolls its row back too.
                audit.record(conn, values["author"], action, image_id, **{action: values[action]})
                if base_revision != 0:
                    update = reviews.update().where(reviews.c.image_id == image_id)
                    if base_revision is not None:
                        update = update.where(reviews.c.revision == base_revision)
                    if conn.execute(update.values(**values, revision=reviews.c.revision + 1)).rowcount == 1:
                        return _get(conn, image_id)
                    if base_revision is not None:
                        raise ReviewConflict(image_id, _get(conn, image_id))
                # No row yet: the primary key lets only one of two concurrent first writes in.
                conn.execute(reviews.insert().values(image_id=image_id, revision=1, **values))
                return _get(conn, image_id)
        except exc.IntegrityError:
            if base_revision is not None:
                raise ReviewConflict(image_id, get_review(settings, image_id)) from None
    raise PetSegError(f"the review of {image_id} is being changed by others right now; try again")
