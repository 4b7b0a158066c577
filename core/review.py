"""Review tags and notes per image, kept in the workspace database so they survive restarts.

    >>> from core.review import all_reviews, get_review, review_progress, set_note, set_tag
    >>> set_tag(settings, ds, "Abyssinian_1", "label_error")
    >>> set_note(settings, ds, "Abyssinian_1", "left ear marked as background")
    >>> get_review(settings, "Abyssinian_1").tag
    'label_error'
    >>> review_progress(settings, ds.ids("test"))          # (tagged, total) for a queue
    (1, 5)

An image counts as reviewed once it has a tag; a note alone does not. ``set_tag(..., None)`` clears the
tag and keeps the note. Each write records its author (default: the OS user) and time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from core import db
from core.config import Settings
from core.dataset import Dataset
from core.errors import PetSegError

TAGS = ("model_error", "label_error", "ambiguous", "fine")
TAG_LABELS = {"model_error": "model error", "label_error": "label error", "ambiguous": "ambiguous", "fine": "fine"}
MAX_NOTE = 2000
COLUMNS = ["image_id", "tag", "note", "author", "updated_at"]


@dataclass(frozen=True)
class Review:
    image_id: str
    tag: str | None
    note: str
    author: str
    updated_at: str

    @property
    def reviewed(self) -> bool:
        return self.tag is not None


def set_tag(settings: Settings, ds: Dataset, image_id: str, tag: str | None, *, author: str | None = None) -> Review:
    """Tag an image (one of ``TAGS``), or clear its tag with ``None``."""
    image_id = ds.require(image_id)
    if tag is not None and tag not in TAGS:
        raise PetSegError(f"review tag {tag!r} is not one of {', '.join(TAGS)}")
    return _upsert(settings, image_id, "tag", tag, author)


def set_note(settings: Settings, ds: Dataset, image_id: str, note: str, *, author: str | None = None) -> Review:
    """Replace an image's review note (an empty string clears it)."""
    image_id = ds.require(image_id)
    text = (note or "").strip()
    if len(text) > MAX_NOTE:
        raise PetSegError(f"review note is longer than {MAX_NOTE} characters; shorten it")
    return _upsert(settings, image_id, "note", text, author)


def get_review(settings: Settings, image_id: str) -> Review | None:
    """The review of one image, or ``None`` if it was never tagged or noted."""
    with db.session(settings) as conn:
        row = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM reviews WHERE image_id = ?", (image_id,)).fetchone()
    return Review(**dict(row)) if row else None


def all_reviews(settings: Settings) -> pd.DataFrame:
    """Every review: columns image_id, tag, note, author, updated_at; index image_id (joins onto ``ds.table``)."""
    with db.session(settings) as conn:
        frame = pd.read_sql_query(f"SELECT {', '.join(COLUMNS)} FROM reviews ORDER BY image_id", conn)
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


def _upsert(settings: Settings, image_id: str, column: str, value: str | None, author: str | None) -> Review:
    author = db.clean_author(author)
    now = db.utc_now()
    with db.session(settings) as conn, db.transaction(conn):
        # column is one of two literals chosen above, never user input.
        conn.execute(
            f"""
            INSERT INTO reviews (image_id, {column}, author, updated_at) VALUES (?, ?, ?, ?)
            ON CONFLICT (image_id) DO UPDATE SET {column} = excluded.{column}, author = excluded.author,
                                                 updated_at = excluded.updated_at
            """,
            (image_id, value, author, now),
        )
        row = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM reviews WHERE image_id = ?", (image_id,)).fetchone()
    return Review(**dict(row))

