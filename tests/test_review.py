"""core.review: tags and notes per image, persisted in the store; every test on both engines (``engine``)."""

from __future__ import annotations

import pytest

from core.config import Settings
from core.errors import PetSegError, UnknownImage
from core.review import (
    TAGS,
    ReviewConflict,
    all_reviews,
    get_review,
    review_progress,
    set_note,
    set_tag,
    tag_counts,
)

pytestmark = pytest.mark.usefixtures("engine")


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
    assert list(frame.columns) == ["image_id", "tag", "note", "author", "updated_at", "revision"]
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
    assert frame.empty and list(frame.columns) == ["image_id", "tag", "note", "author", "updated_at", "revision"]
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


def test_a_write_on_top_of_an_older_revision_is_refused_and_overwrites_nothing(settings: Settings, ds):
    first = set_tag(settings, ds, "Abyssinian_1", "label_error", author="Ana", base_revision=0)
    assert first.revision == 1
    with pytest.raises(ReviewConflict, match="created meanwhile|Ana changed it"):
        set_tag(settings, ds, "Abyssinian_1", "fine", author="Ben", base_revision=0)  # Ben saw no review
    noted = set_note(settings, ds, "Abyssinian_1", "left ear", author="Cleo", base_revision=1)
    assert (noted.tag, noted.note, noted.revision) == ("label_error", "left ear", 2)
    with pytest.raises(ReviewConflict, match="Cleo changed it at .* nothing was overwritten"):
        set_note(settings, ds, "Abyssinian_1", "right ear", author="Ben", base_revision=1)
    kept = get_review(settings, "Abyssinian_1")
    assert (kept.tag, kept.note, kept.author, kept.revision) == ("label_error", "left ear", "Cleo", 2)
    # without a base revision (a script) the write lands on top of whatever is there
    assert set_tag(settings, ds, "Abyssinian_1", "fine").revision == 3
    with pytest.raises(PetSegError, match="base revision"):
        set_tag(settings, ds, "Abyssinian_1", "fine", base_revision=-1)


def test_concurrent_review_writes_from_one_revision_let_exactly_one_through(settings: Settings, ds):
    import threading

    set_note(settings, ds, "beagle_1", "start")
    barrier, outcomes = threading.Barrier(6), []

    def write(i: int) -> None:
        barrier.wait()
        try:
            outcomes.append(set_note(settings, ds, "beagle_1", f"writer {i}", base_revision=1).note)
        except ReviewConflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [o for o in outcomes if o != "conflict"]
    assert len(winners) == 1 and outcomes.count("conflict") == 5
    final = get_review(settings, "beagle_1")
    assert final.note == winners[0] and final.revision == 2


def test_text_postgresql_cannot_store_is_refused_on_every_engine(settings: Settings, ds):
    with pytest.raises(PetSegError, match="NUL character"):
        set_note(settings, ds, "Abyssinian_1", "left\x00ear")
    with pytest.raises(PetSegError, match="author contains a NUL"):
        set_tag(settings, ds, "Abyssinian_1", "fine", author="ana\x00")
    assert get_review(settings, "Abyssinian_1") is None
