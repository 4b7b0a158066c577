"""Annotate, History and Export pages in AppTest, on the generated `trained_copy` workspace.

AppTest cannot draw on the editor's canvas, so tests hand the page the event the browser would send (the
mask run-length coded) through ``st.session_state[state.ANNOTATE_EVENT]``, where the component's callback puts it.
"""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core import corrections, groundtruth, ledger, store
from core.dataset import load_trimap, open_dataset
from core.errors import PetSegError
from core.metrics import image_metrics
from core.runs import eval_dir, load_eval, read_prediction
from dashboard import state
from dashboard.editor import parse_event, rle_decode, rle_encode
from tests.conftest import open_app, plain

HOSTILE = ["../../etc/passwd", "x" * 5000, "<script>alert(1)</script>", "Abyssinian_1/../../x"]


@pytest.fixture
def app(trained_copy, monkeypatch):
    return open_app(monkeypatch, trained_copy.data, trained_copy.workspace)


@pytest.fixture
def ds(trained_copy):
    return open_dataset(trained_copy.settings.data, trained_copy.settings.workspace)


def _test_image(trained_copy) -> str:
    """An image of the test split that has a trimap (so it has a prediction and an evaluation row)."""
    table = load_eval(trained_copy.settings, trained_copy.run, "test")
    return sorted(table.index[table["has_gt"]])[0]


def _open(at: AppTest, page: str, image_id: str | None = None, run: str | None = "tiny") -> AppTest:
    at.switch_page(page)
    # The sidebar's run and split, chosen before the first run as a user would in the sidebar.
    at.session_state[state.RUN] = run
    at.session_state[state.SPLIT] = "test"
    if image_id is not None:
        at.query_params["image"] = image_id
    at.run()
    assert not at.exception, at.exception[0].value
    return at


def _event(at: AppTest, action: str, mask: np.ndarray | None = None, strokes: np.ndarray | None = None) -> AppTest:
    session = at.session_state[state.ANNOTATE_SESSION]
    payload = {"action": action, "image": session.image_id, "revision": session.revision}
    if mask is not None:
        payload.update(shape=list(mask.shape), mask=rle_encode(mask),
                       strokes=rle_encode(strokes if strokes is not None else np.zeros(mask.shape, np.uint8)))
    at.session_state[state.ANNOTATE_EVENT] = payload
    at.run()
    assert not at.exception, at.exception[0].value
    return at


def _painted(mask: np.ndarray) -> np.ndarray:
    """The mask with a pet square painted in the top-left corner (what one brush stroke does)."""
    out = mask.copy()
    out[2:12, 2:12] = 1
    return out


def test_rle_round_trip_and_refusals():
    rng = np.random.default_rng(0)
    mask = rng.integers(1, 4, size=(37, 53), dtype=np.uint8)
    assert np.array_equal(rle_decode(rle_encode(mask), mask.shape, frozenset({1, 2, 3})), mask)
    runs = rle_encode(mask)
    with pytest.raises(PetSegError, match="wrong size"):
        rle_decode(runs[:-2], mask.shape, frozenset({1, 2, 3}))
    with pytest.raises(PetSegError, match="outside"):
        rle_decode([7, mask.size], mask.shape, frozenset({1, 2, 3}))
    with pytest.raises(PetSegError, match="malformed"):
        rle_decode("1,2", mask.shape, frozenset({1, 2, 3}))
    assert parse_event({"action": "save", "image": "other"}, "mine", mask.shape) is None
    with pytest.raises(PetSegError, match="unknown request"):
        parse_event({"action": "rm -rf", "image": "mine"}, "mine", mask.shape)


@pytest.mark.parametrize("counts", [["9223372036854775807", "9223372036854775807"], [2**70, 0]])
def test_a_hostile_save_shows_a_message_and_saves_nothing(app, trained_copy, counts):
    image_id = _test_image(trained_copy)
    _open(app, "app_pages/annotate.py", image_id)
    session = app.session_state[state.ANNOTATE_SESSION]
    height, width = session.shape
    # Two int64-maximum runs plus the rest sum to the image size once wrapped at 2**64 (the server-killing save).
    rest = height * width + 2 if isinstance(counts[0], str) else height * width
    runs = [1, counts[0], 1, counts[1], 2, rest]
    app.session_state[state.ANNOTATE_EVENT] = {"action": "save", "image": image_id, "shape": [height, width],
                                               "mask": runs}
    app.run()
    assert not app.exception, app.exception[0].value
    assert any("the editor sent a" in e.value for e in app.error), [e.value for e in app.error]
    assert ledger.latest(trained_copy.settings, image_id) is None


def test_annotate_opens_url_image_on_the_gt_trimap(app, trained_copy, ds):
    image_id = _test_image(trained_copy)
    _open(app, "app_pages/annotate.py", image_id)
    session = app.session_state[state.ANNOTATE_SESSION]
    assert session.image_id == image_id and session.start == "gt" and session.base_version is None
    assert np.array_equal(session.work, load_trimap(ds, image_id))
    assert image_id in plain(app.caption[0].value)
    assert app.radio(key=state.ANNOTATE_START).options == ["original GT trimap", "prediction of the selected run",
                                                          "empty (all background)"]


def test_start_from_prediction_loads_the_runs_mask(app, trained_copy, ds):
    image_id = _test_image(trained_copy)
    _open(app, "app_pages/annotate.py", image_id)
    app.radio(key=state.ANNOTATE_START).set_value("prediction").run()
    session = app.session_state[state.ANNOTATE_SESSION]
    expected = read_prediction(eval_dir(trained_copy.settings, trained_copy.run, "test"), image_id)
    assert session.start == "prediction" and session.source == "prediction"
    assert np.array_equal(session.work, expected)


def test_save_makes_a_version_rescores_and_shows_in_history(app, trained_copy, ds):
    settings = trained_copy.settings
    image_id = _test_image(trained_copy)
    before = load_eval(settings, trained_copy.run, "test").loc[image_id]
    _open(app, "app_pages/annotate.py", image_id)
    app.text_input(key=state.ANNOTATE_NOTE).set_value("ear was background").run()
    mask = _painted(app.session_state[state.ANNOTATE_SESSION].work)
    _event(app, "save", mask)

    # The save itself rescored the stored evaluation of the image (its test split row).
    assert [m.value for m in app.success] == [f"Saved v1 of {image_id} · IoU vs original GT "
                                              f"{ledger.latest(settings, image_id).iou_gt:.3f} · "
                                              "1 stored evaluation row rescored"]
    saved = ledger.history(settings, image_id)
    # Without sign-in configured the author is the OS user, as the Annotate page says; nobody types it.
    author = store.clean_author(None)
    assert any(f"Saving as **{author}**" in plain(c.value) for c in app.caption)
    assert [(c.version, c.source, c.author, c.note) for c in saved] == [(1, "gt", author, "ear was background")]
    assert np.array_equal(groundtruth.current(settings, ds, image_id)[0], mask)
    assert app.text_input(key=state.ANNOTATE_NOTE).value == ""  # a note belongs to one save
    # The stored score now follows the correction, and the official-trimap score is kept beside it.
    row = load_eval(settings, trained_copy.run, "test").loc[image_id]
    prediction = read_prediction(eval_dir(settings, trained_copy.run, "test"), image_id)
    assert row["gt_version"] == 1
    assert row["iou_pet"] == pytest.approx(image_metrics(prediction, mask)["iou_pet"])
    assert row["iou_pet"] != pytest.approx(before["iou_pet"])
    assert row["iou_pet_official"] == pytest.approx(before["iou_pet"])
    _open(app, "app_pages/compare.py", image_id)
    assert any("Against the official trimap: IoU pet" in c.value for c in app.caption)
    _open(app, "app_pages/annotate.py", image_id)

    # A second stroke and save lands on top of v1.
    _event(app, "save", np.where(mask == 2, 2, 3).astype(np.uint8))
    assert [c.version for c in ledger.history(settings, image_id)] == [1, 2]
    assert ledger.history(settings, image_id)[1].parent_version == 1

    _open(app, "app_pages/history.py", image_id)
    text = " ".join(m.value for m in app.markdown)
    assert "v2" in text and "v1" in text and "latest" in text
    assert any("ear was background" in t.value for t in app.text)
    assert len(app.image) == 3  # v2, v1 and the original GT


def test_save_conflict_offers_save_on_top(app, trained_copy, ds):
    settings = trained_copy.settings
    image_id = _test_image(trained_copy)
    _open(app, "app_pages/annotate.py", image_id)
    theirs = np.full(ds.table.loc[image_id, ["height", "width"]].astype(int).tolist(), 2, np.uint8)
    corrections.save(settings, ds, image_id, theirs, base_version=None, source="gt", author="bo")  # another user

    mine = _painted(app.session_state[state.ANNOTATE_SESSION].work)
    _event(app, "save", mine)
    assert [c.version for c in ledger.history(settings, image_id)] == [1]  # nothing overwritten
    assert any("changed while you edited" in w.value for w in app.warning)
    app.button(key="annotate_on_top").click().run()
    assert not app.exception
    assert [(c.version, c.parent_version) for c in ledger.history(settings, image_id)] == [(1, None), (2, 1)]
    assert np.array_equal(groundtruth.current(settings, ds, image_id)[0], mine)
    assert app.session_state[state.ANNOTATE_SESSION].conflict is None


def test_save_conflict_reload_theirs_discards_mine(app, trained_copy, ds):
    settings = trained_copy.settings
    image_id = _test_image(trained_copy)
    _open(app, "app_pages/annotate.py", image_id)
    theirs = _painted(app.session_state[state.ANNOTATE_SESSION].work)
    theirs[-5:, -5:] = 3
    corrections.save(settings, ds, image_id, theirs, base_version=None, source="gt", author="bo")
    _event(app, "save", np.full(theirs.shape, 2, np.uint8))
    revision = app.session_state[state.ANNOTATE_SESSION].revision
    app.button(key="annotate_reload").click().run()
    session = app.session_state[state.ANNOTATE_SESSION]
    assert session.start == "correction" and session.base_version == 1 and session.revision > revision
    assert np.array_equal(session.work, theirs)
    assert [c.version for c in ledger.history(settings, image_id)] == [1]


def test_assisted_tools_and_grabcut_preview(app, trained_copy, ds):
    image_id = _test_image(trained_copy)
    _open(app, "app_pages/annotate.py", image_id)
    session = app.session_state[state.ANNOTATE_SESSION]
    holed = session.work.copy()
    ys, xs = np.nonzero(holed == 1)
    cy, cx = int(np.median(ys)), int(np.median(xs))
    holed[cy - 1:cy + 2, cx - 1:cx + 2] = 2  # a hole inside the pet
    _event(app, "fill_holes", holed)
    session = app.session_state[state.ANNOTATE_SESSION]
    assert session.work[cy, cx] == 1 and session.revision == 1  # a new revision: the browser takes the result
    assert "Fill holes: 9 px changed" in session.status

    strokes = np.zeros(session.work.shape, np.uint8)
    strokes[cy, cx] = 1
    strokes[0, 0] = 2
    _event(app, "grabcut", session.work, strokes)
    session = app.session_state[state.ANNOTATE_SESSION]
    assert session.preview is not None and session.preview_tool == "grabcut"
    # Accept and Reject come before the editor on the page: below a tall canvas they were out of sight.
    order = [getattr(e, "key", None) or getattr(getattr(e, "proto", None), "component_name", "") for e in
             _walk(app.main)]
    accept_at = order.index("annotate_accept")
    assert accept_at < order.index(state.ANNOTATE_EDITOR)
    preview = session.preview.copy()
    app.button(key="annotate_accept").click().run()
    session = app.session_state[state.ANNOTATE_SESSION]
    assert session.preview is None and np.array_equal(session.work, preview) and session.revision == 2

    _event(app, "grabcut", session.work, strokes)
    app.button(key="annotate_reject").click().run()
    session = app.session_state[state.ANNOTATE_SESSION]
    assert session.preview is None and np.array_equal(session.work, preview)


def test_next_and_prev_follow_the_browse_queue(app, trained_copy, ds):
    from core.views import Filters, natural_key

    ids = sorted(ds.ids("test"), key=natural_key)  # the "id" sort is natural order (issue 18 item 4)
    app.session_state[state.BROWSE_FILTERS] = Filters(split="test", sort="id").to_dict()
    _open(app, "app_pages/annotate.py", ids[0])
    _event(app, "next")
    assert app.session_state[state.ANNOTATE_SESSION].image_id == ids[1]
    assert app.query_params["image"] in (ids[1], [ids[1]])
    _event(app, "prev")
    assert app.session_state[state.ANNOTATE_SESSION].image_id == ids[0]
    _event(app, "prev")  # the queue's first image has no previous one: it stays
    assert app.session_state[state.ANNOTATE_SESSION].image_id == ids[0]


def test_malformed_event_saves_nothing(app, trained_copy, ds):
    image_id = _test_image(trained_copy)
    _open(app, "app_pages/annotate.py", image_id)
    app.session_state[state.ANNOTATE_EVENT] = {"action": "save", "image": image_id, "shape": [3, 3],
                                               "mask": [1, 9]}
    app.run()
    assert not app.exception
    assert any("size" in e.value for e in app.error)
    assert ledger.history(trained_copy.settings, image_id) == []


@pytest.mark.parametrize("page", ["app_pages/annotate.py", "app_pages/history.py"])
def test_hostile_ids_get_a_plain_message(app, page):
    for raw in HOSTILE:
        _open(app, page, raw)
        assert app.error, raw
        assert all(len(e.value) < 400 for e in app.error)
        assert "<script>" not in " ".join(m.value for m in app.markdown)


def test_history_revert_and_soft_delete(app, trained_copy, ds):
    settings = trained_copy.settings
    image_id = _test_image(trained_copy)
    gt = load_trimap(ds, image_id)
    first = corrections.save(settings, ds, image_id, _painted(gt), base_version=None, source="gt", note="one")
    corrections.save(settings, ds, image_id, np.full(gt.shape, 2, np.uint8), base_version=1, source="correction")
    _open(app, "app_pages/history.py", image_id)
    app.button(key="history_revert_1").click().run()
    assert not app.exception
    versions = ledger.history(settings, image_id)
    assert [(c.version, c.source) for c in versions][-1] == (3, "revert")
    assert np.array_equal(groundtruth.current(settings, ds, image_id)[0], _painted(gt))
    assert any("v3 has the content of v1" in s.value for s in app.success)

    app.button(key="history_delete_3").click().run()
    assert ledger.latest(settings, image_id).version == 2
    assert [c.version for c in ledger.history(settings, image_id)] == [1, 2]
    app.toggle(key=state.HISTORY_SHOW_DELETED).set_value(True).run()
    assert "deleted" in " ".join(m.value for m in app.markdown)
    assert first.sha256 == ledger.get_version(settings, image_id, 3).sha256


def test_history_without_corrections_points_to_annotate(app):
    _open(app, "app_pages/history.py")
    assert any("No image has a correction yet" in i.value for i in app.info)


def test_export_writes_inside_the_workspace_and_lists_it(app, trained_copy, ds):
    settings = trained_copy.settings
    image_id = _test_image(trained_copy)
    corrections.save(settings, ds, image_id, _painted(load_trimap(ds, image_id)), base_version=None, source="gt")
    _open(app, "app_pages/export.py")
    app.radio(key="export_format").set_value("coco").run()
    app.toggle(key="export_only_corrected").set_value(True).run()
    app.button(key="export_run").click().run()
    assert not app.exception
    assert any("1 mask (1 corrected)" in plain(s.value) for s in app.success)
    zips = list(settings.exports_dir.glob("coco-*.zip"))
    assert len(zips) == 1
    with zipfile.ZipFile(zips[0]) as archive:
        assert sorted(archive.namelist()) == ["annotations.json", "manifest.csv"]
    assert any(t.value == zips[0].name for t in app.text)  # listed under previous exports


def test_history_names_what_a_version_was_saved_over_and_reverts_to_the_official_trimap(app, trained_copy, ds):
    settings = trained_copy.settings
    image_id = _test_image(trained_copy)
    gt = load_trimap(ds, image_id)
    corrections.save(settings, ds, image_id, _painted(gt), base_version=None, source="gt")
    # Drawn from an empty mask over v1: not "from v1".
    corrections.save(settings, ds, image_id, np.full(gt.shape, 2, np.uint8), base_version=1, source="correction")
    _open(app, "app_pages/history.py", image_id)
    text = " ".join(m.value for m in app.markdown)
    assert "(saved over v1)" in text and "from v1" not in text
    app.button(key="history_revert_official").click().run()
    assert not app.exception
    latest = ledger.latest(settings, image_id)
    assert (latest.version, latest.source, latest.note) == (3, "revert", "revert to the official trimap")
    assert np.array_equal(groundtruth.current(settings, ds, image_id)[0], gt)
    assert any("v3 has the content of the official trimap" in s.value for s in app.success)


def _walk(node):
    """Every element under ``node`` in page order (AppTest's tree, depth first)."""
    children = getattr(node, "children", None)
    if not children:
        yield node
        return
    for child in children.values():
        yield from _walk(child)
