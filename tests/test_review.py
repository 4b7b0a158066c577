"""core.review: tags and notes per image, persisted in the workspace database."""

from __future__ import annotations

import pytest

from core.config import Settings
from core.errors import PetSegError, UnknownImage
from core.review import TAGS, all_reviews, get_review, review_progress, set_note, set_tag, tag_counts


def test_tag_and_note_are_kept_separately_with_author_and_time(settings: Settings, ds):
    assert get_review(settings, "Abyssinian_1") is None
    tagged = set_tag(settings, ds, "Abyssinian_1", "label_error", author="Ana")
    assert (tagged.tag, tagged.note, tagged.author, tagged.reviewed) == ("label_error", "", "Ana", True)
    noted = set_note(settings, ds, "Abyssinian_1", "  left ear marked as background ", author="Ben")
    assert (noted.tag, noted.note, noted.author) == ("label_error", "left ear marked as background", "Ben")
    assert noted.updated_at >= tagged.updated_at
    cleared = set_tag(settings, ds, "Abyssinian_1", None)
    assert cleared.tag is None and cleared.note == "left ear marked as background" and not cleared.reviewed
    note_only = set_note(settings, ds, "beagle_1", "blurry")
    assert note_only.tag is None and note_only.author  # the OS user by default


def test_reviews_survive_a_new_connection_and_feed_progress(settings: Settings, ds):
    set_tag(settings, ds, "Abyssinian_1", "model_error")
    set_tag(settings, ds, "beagle_1", "fine")
    set_tag(settings, ds, "beagle_1", "ambiguous")  # re-tagging replaces
    set_note(settings, ds, "Bengal_1", "note without a tag")
    reopened = Settings.resolve(data=settings.data, workspace=settings.workspace)  # as after a restart
    frame = all_reviews(reopened)
    assert list(frame.columns) == ["image_id", "tag", "note", "author", "updated_at"]
    assert frame.loc["beagle_1", "tag"] == "ambiguous" and len(frame) == 3
    assert list(frame.index) == list(frame["image_id"]) == ["Abyssinian_1", "Bengal_1", "beagle_1"]
    assert review_progress(reopened, ds.ids()) == (2, 5)
    assert review_progress(reopened, ds.ids("test")) == (1, 2)
    assert review_progress(reopened) == (2, 2)
    counts = tag_counts(reopened)
    assert counts == {"model_error": 1, "label_error": 0, "ambiguous": 1, "fine": 0}
    assert set(counts) == set(TAGS)
    joined = ds.table.join(frame[["tag"]], how="left")
    assert joined["tag"].notna().sum() == 2


def test_empty_workspace_has_an_empty_review_table(settings: Settings):
    frame = all_reviews(settings)
    assert frame.empty and list(frame.columns) == ["image_id", "tag", "note", "author", "updated_at"]
    assert review_progress(settings, ["Abyssinian_1"]) == (0, 1)


@pytest.mark.parametrize("image_id", ["../../etc/passwd", "<script>alert(1)</script>", "x" * 10_000, "Sphynx_1"])
def test_hostile_ids_are_refused(settings: Settings, ds, image_id: str):
    with pytest.raises(UnknownImage):
        set_tag(settings, ds, image_id, "fine")
    with pytest.raises(UnknownImage):
        set_note(settings, ds, image_id, "x")
    assert all_reviews(settings).empty


def test_unknown_tags_and_oversized_notes_are_refused(settings: Settings, ds):
    with pytest.raises(PetSegError, match="not one of model_error, label_error, ambiguous, fine"):
        set_tag(settings, ds, "Abyssinian_1", "meh")
    with pytest.raises(PetSegError, match="note is longer"):
        set_note(settings, ds, "Abyssinian_1", "x" * 10_000)
    with pytest.raises(PetSegError, match="author is longer"):
        set_tag(settings, ds, "Abyssinian_1", "fine", author="y" * 1000)
    assert all_reviews(settings).empty
