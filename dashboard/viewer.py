"""One image in detail (Compare and Review): overlay controls, the pictures, its metrics and the review box.

    >>> from dashboard import viewer
    >>> image_id = state.url_image(ds)        # None + a plain message if unknown
    >>> options = viewer.controls()
    >>> viewer.pictures(settings, ds, image_id, run, split, options)
    >>> viewer.metrics(view.loc[image_id], split)
    >>> viewer.review_box(settings, ds, image_id)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from core.config import Settings
from core.dataset import Dataset, load_image
from core.errors import PetSegError
from core.masks import PET
from core.quality import OUT_OF_FOLD, PROBS_FILE, explain
from core.review import MAX_NOTE, TAG_LABELS, TAGS, get_review, set_note, set_tag
from core.runs import PRED_DIR, read_prediction
from core.views import EMPTY_PREDICTION
from dashboard import auth, images, loaders, palette, sidebar, state
from dashboard.markdown import escape

LAYERS = {"gt": "ground truth", "pred": "prediction", "errors": "error map", "suspect": "suspect pixels"}
SUSPECT_COLOUR = {1: (255, 0, 255)}  # magenta: labelled one way, predicted the other by the out-of-fold model
MODES = ("overlay", "side by side")
ZOOMS = (1.0, 1.5, 2.0, 3.0, 4.0)
METRIC_LABELS = {
    "iou_pet": "IoU pet", "iou_pet_border_as_pet": "IoU (border = pet)", "miou_3class": "mIoU 3-class",
    "pixel_accuracy": "pixel accuracy", "dice_pet": "Dice pet", "mean_confidence": "mean confidence",
    "uncertain_fraction": "uncertain pixels", "gt_pet_fraction": "GT pet fraction",
    "pred_pet_fraction": "predicted pet fraction", "tension": "label-error tension",
    "label_quality": "label quality",
}


@dataclass(frozen=True)
class ViewOptions:
    layers: tuple[str, ...]
    mode: str
    opacity: float
    zoom: float
    centre: tuple[float, float]
    width: int


def controls() -> ViewOptions:
    st.session_state.setdefault(state.VIEW_LAYERS, ["gt", "pred", "errors"])
    st.session_state.setdefault(state.VIEW_MODE, MODES[1])
    st.session_state.setdefault(state.VIEW_OPACITY, 0.5)
    st.session_state.setdefault(state.VIEW_ZOOM, 1.0)
    st.session_state.setdefault(state.VIEW_WIDTH, 300)
    row = st.columns([3, 1.3, 1.2, 1, 1.2, 0.8, 0.8])
    layers = row[0].pills("Show", list(LAYERS), selection_mode="multi", key=state.VIEW_LAYERS, format_func=LAYERS.get)
    mode = row[1].radio("Layout", MODES, key=state.VIEW_MODE, horizontal=True)
    opacity = row[2].slider("Opacity", 0.0, 1.0, step=0.05, key=state.VIEW_OPACITY)
    zoom = row[3].select_slider("Zoom", ZOOMS, key=state.VIEW_ZOOM, format_func=lambda z: f"{z:g}x")
    width = row[4].slider("Width (px)", 200, 1200, step=20, key=state.VIEW_WIDTH)
    centre = (50, 50)
    if zoom > 1.0:
        st.session_state.setdefault(state.VIEW_PAN_X, 50)
        st.session_state.setdefault(state.VIEW_PAN_Y, 50)
        centre = (row[5].slider("Pan x %", 0, 100, key=state.VIEW_PAN_X),
                  row[6].slider("Pan y %", 0, 100, key=state.VIEW_PAN_Y))
    return ViewOptions(tuple(layers or ()), mode, float(opacity), float(zoom),
                       (centre[0] / 100, centre[1] / 100), int(width))


@st.cache_data(show_spinner=False, max_entries=24)
def _arrays(data: str, workspace: str, db: str, _ds: Dataset, image_id: str, pred_folder: str | None, stamp: tuple
            ) -> tuple[np.ndarray, np.ndarray | None, int | None, np.ndarray | None, str | None]:
    from core import groundtruth
    settings = Settings(Path(data), Path(workspace), db=db)
    image = load_image(_ds, image_id)
    problem = None
    try:
        gt, version = groundtruth.current(settings, _ds, image_id)
    except PetSegError as exc:
        gt, version, problem = None, None, str(exc)
    pred = read_prediction(Path(pred_folder), image_id) if pred_folder else None
    if pred is not None and pred.shape != image.shape[:2]:
        pred, problem = None, f"the stored prediction of {image_id} has another size than the image: evaluate again"
    return image, gt, version, pred, problem


def load(settings: Settings, ds: Dataset, image_id: str, run: str | None, split: str):
    """``(image, ground truth or None, its correction version, prediction or None, problem message or None)``."""
    folder = sidebar.evaluation_folder(settings, run, split)
    stamp = (images.file_key(ds.image_path(image_id)), images.file_key(ds.trimap_path(image_id)),
             loaders.db_stamp(settings), images.file_key(folder / PRED_DIR / f"{image_id}.png") if folder else "")
    return _arrays(str(settings.data), str(settings.workspace), settings.db_url, ds, image_id,
                   str(folder) if folder else None, stamp)


@st.cache_data(show_spinner=False, max_entries=24)
def _suspect(pred_folder: str, image_id: str, _gt: np.ndarray, stamp: tuple) -> np.ndarray | None:
    from core.quality import ProbabilityStore, suspect_map

    store = ProbabilityStore.open(Path(pred_folder))
    probabilities = store.probabilities(image_id) if store is not None else None
    return None if probabilities is None else suspect_map(probabilities, _gt)


def suspect_pixels(settings: Settings, image_id: str, gt: np.ndarray | None, version: int | None, run: str | None,
                   split: str) -> np.ndarray | None:
    """(H, W) bool: pixels whose label the stored out-of-fold probabilities contradict; None without them."""
    folder = sidebar.evaluation_folder(settings, run, split)
    if gt is None or folder is None:
        return None
    return _suspect(str(folder), image_id, gt, (images.file_key(folder / PROBS_FILE), version, gt.shape))


def suspicion_sentence(row: pd.Series | None) -> str:
    """Why this image is suspected, in one sentence (core.quality.explain); "" without a label quality."""
    return "" if row is None else explain(row)


def quality_caption(view: pd.DataFrame, column: str) -> str:
    """What the "suspected label errors" order ranks by in this table, and how much to trust it."""
    if column != "label_quality":
        return ("No label quality in this evaluation (evaluated before it existed): ranked by tension = mean "
                "confidence × (1 − uncertain fraction) × (1 − IoU pet). Evaluate again, or better, run "
                "cross-validation on the Train page.")
    sources = set(view.get("label_quality_source", pd.Series(dtype=str)).dropna()) - {""}
    if sources == {OUT_OF_FOLD}:
        return ("Lowest label quality first: how much a model that never saw the mask believes it (out-of-fold "
                "self-confidence, softmin-pooled, border band left out).")
    return ("Lowest label quality first, in-sample: the model was trained on these very masks and has partly "
            "learnt their mistakes. Run cross-validation on the Train page for an out-of-fold score.")


def pictures(settings: Settings, ds: Dataset, image_id: str, run: str | None, split: str, options: ViewOptions
             ) -> None:
    try:
        image, gt, version, pred, problem = load(settings, ds, image_id, run, split)
    except PetSegError as exc:
        st.error(escape(exc, 1000))
        return
    if problem:
        st.warning(escape(problem, 1000))
    missing = []
    if gt is None and ("gt" in options.layers or "errors" in options.layers):
        missing.append("ground truth (no usable trimap)")
    if pred is None and ("pred" in options.layers or "errors" in options.layers):
        missing.append(f"prediction (not evaluated on {split})" if run else "prediction (no run yet)")
    layers = {}
    if "gt" in options.layers and gt is not None:
        layers["gt"] = images.overlay(image, gt, options.opacity)
    if "pred" in options.layers and pred is not None:
        layers["pred"] = images.overlay(image, pred, options.opacity, images.PRED_COLOURS)
    if "errors" in options.layers and gt is not None and pred is not None:
        layers["errors"] = images.error_overlay(image, pred, gt, max(options.opacity, 0.3))
    suspect = suspect_pixels(settings, image_id, gt, version, run, split) if "suspect" in options.layers else None
    if "suspect" in options.layers and suspect is None:
        missing.append("suspect pixels (need out-of-fold probabilities: run cross-validation and pick its run)")
    if suspect is not None:
        layers["suspect"] = images.blend(image, suspect.astype(np.uint8), SUSPECT_COLOUR, max(options.opacity, 0.5))
    if missing:
        st.caption("Not available: " + "; ".join(missing))
    gt_caption = f"ground truth: correction v{version}" if version is not None else "ground truth: official trimap"
    empty = "" if pred is None else _empty_prediction(pred)
    captions = {"gt": gt_caption, "pred": f"prediction ({run}){empty}", "errors": "errors: red false pet, blue "
                "missed pet, grey border",
                "suspect": "suspect pixels: magenta, label contradicted by the out-of-fold model"}
    st.html(palette.legend_html(prediction="gt" in layers and "pred" in layers and options.mode == "overlay",
                                errors="errors" in layers))

    def show(picture: np.ndarray, caption: str, column=st, width: int | str = options.width) -> None:
        shown = images.crop(picture, options.zoom, options.centre)
        column.image(images.png_bytes(shown), caption=caption, width=width)

    if options.mode == "overlay":
        merged = image
        if "pred" in layers:
            merged = images.overlay(merged, pred, options.opacity, images.PRED_COLOURS)
        if "gt" in layers:  # on a prediction, the ground truth is its outline: the class colours are the same
            merged = (images.outline(merged, gt) if "pred" in layers
                      else images.overlay(merged, gt, options.opacity, images.GT_COLOURS))
        if "errors" in layers:
            merged = images.error_overlay(merged, pred, gt, max(options.opacity, 0.3))
        if "suspect" in layers:
            merged = images.blend(merged, suspect.astype(np.uint8), SUSPECT_COLOUR, max(options.opacity, 0.5))
        names = {"gt": "ground truth (outline)" if "pred" in layers else "ground truth", "pred": "prediction",
                 "errors": "errors", "suspect": "suspect pixels"}
        show(merged, " + ".join(names[n] for n in layers) + ("" if "pred" not in layers else empty) or "photo")
        return
    panels = [("photo", image), *((captions[n], layers[n]) for n in ("gt", "pred", "errors", "suspect") if n in layers)]
    # Side by side, the width slider sets each panel's width; panels wrap onto new rows when they do not fit.
    per_row = max(1, min(len(panels), 1200 // max(options.width, 1)))
    for start in range(0, len(panels), per_row):
        cols = st.columns(per_row)
        for col, (caption, picture) in zip(cols, panels[start:start + per_row], strict=False):
            show(picture, caption, col, "stretch")


def _empty_prediction(pred: np.ndarray) -> str:
    """A caption suffix when the model found (almost) no pet: an empty overlay otherwise looks like a bug."""
    fraction = float((pred == PET).mean()) if pred.size else 0.0
    if fraction == 0.0:
        return " — no pet predicted"
    if fraction < EMPTY_PREDICTION:
        return f" — almost no pet predicted ({fraction:.2%} of the pixels)"
    return ""


def _fmt(value: object) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{float(value):.3f}"


def metrics(row: pd.Series | None, split: str) -> None:
    """The stored per-image metrics and where its ground truth comes from."""
    if row is None or not bool(row.get("evaluated", False)):
        st.info(f"This image has no row in the `{split}` evaluation: pick its split in the sidebar or evaluate it.")
        return
    names = ["iou_pet", "iou_pet_border_as_pet", "miou_3class", "pixel_accuracy", "dice_pet", "mean_confidence",
             "uncertain_fraction", "gt_pet_fraction", "pred_pet_fraction", "tension", "label_quality"]
    cols = st.columns(5)
    for i, name in enumerate(names):
        cols[i % 5].metric(METRIC_LABELS[name], _fmt(row.get(name)))
    correction, scored = row.get("correction_version"), row.get("scored_gt_version")
    if pd.isna(correction):
        st.caption("Ground truth: the official trimap (no correction). The scores above are against it.")
        return
    scored_as = "the official trimap" if pd.isna(scored) else f"correction v{int(scored)}"
    if not pd.isna(scored) and int(scored) == int(correction):
        st.caption(f"Ground truth: **corrected** (v{int(correction)}); the scores above are against it. "
                   f"Against the official trimap: IoU pet {_fmt(row.get('iou_pet_official'))}.")
    else:
        # Saving a correction rescores every evaluation at once, so this is a table from before the save.
        st.caption(f"Ground truth: **corrected** (v{int(correction)}). The stored scores above are against "
                   f"{scored_as}: evaluate again to score against v{int(correction)}.")


@st.fragment
def review_box(settings: Settings, ds: Dataset, image_id: str, on_tag: Callable[[], None] | None = None) -> None:
    """Tag buttons and a note, written to the workspace database at once.

    Without ``on_tag`` a tag reruns only this box; with it, ``on_tag()`` runs and then the whole page reruns.
    """
    review = get_review(settings, image_id)
    current = review.tag if review else None
    # The revision the reader saw when clicking (the last render) and the one the note text came from: a write
    # on top of another revision is refused by the store instead of silently replacing someone else's.
    seen_key, note_rev_key = f"{state.REVIEW_TAG_PREFIX}seen:{image_id}", f"{state.REVIEW_NOTE_PREFIX}rev:{image_id}"
    revision = review.revision if review else 0
    seen = st.session_state.get(seen_key, revision)
    st.session_state[seen_key] = revision
    st.caption(f"Review: **{escape(TAG_LABELS.get(current, 'not reviewed yet'))}**"
               + (f" · by {escape(review.author)} at {escape(review.updated_at)}" if review else ""))
    cols = st.columns(len(TAGS) + 1)
    clicked: str | None | bool = False
    for col, tag in zip(cols, TAGS, strict=False):
        if col.button(TAG_LABELS[tag], key=f"{state.REVIEW_TAG_PREFIX}{tag}", width="stretch",
                      type="primary" if tag == current else "secondary"):
            clicked = tag
    if cols[-1].button("clear tag", key=f"{state.REVIEW_TAG_PREFIX}clear", disabled=current is None, width="stretch"):
        clicked = None
    note_key = f"{state.REVIEW_NOTE_PREFIX}{image_id}"
    st.session_state.setdefault(note_key, review.note if review else "")
    st.session_state.setdefault(note_rev_key, revision)
    stored_note = review.note if review else ""
    # The note is stored when the text area commits (leaving it, a tag click, Ctrl+Enter), not only by its
    # button: a note typed before clicking a tag or Next is never lost.
    st.text_area("Note", key=note_key, max_chars=MAX_NOTE, height=80,
                 placeholder="what is wrong (e.g. left ear marked as background)")
    text = st.session_state.get(note_key, "")
    changed = isinstance(text, str) and text.strip() != stored_note
    if st.button("Save note", key=f"{state.REVIEW_NOTE_PREFIX}save") or changed:
        if changed:
            try:
                saved = set_note(settings, ds, image_id, text, author=auth.current_user(),
                                 base_revision=st.session_state[note_rev_key])
            except PetSegError as exc:
                st.error(escape(exc, 1000))
            else:
                if seen == revision:  # our own write: a tag clicked with it lands on top of it
                    seen = saved.revision
                st.session_state[note_rev_key] = st.session_state[seen_key] = saved.revision
                st.toast("Note saved")
    if clicked is not False:
        try:
            saved = set_tag(settings, ds, image_id, clicked, author=auth.current_user(), base_revision=seen)
            st.session_state[seen_key] = saved.revision
            if st.session_state[note_rev_key] == seen:
                st.session_state[note_rev_key] = saved.revision  # the note text is still the stored one
        except PetSegError as exc:
            st.error(escape(exc, 1000))
            return
        if on_tag is None:
            try:
                st.rerun(scope="fragment")
            except StreamlitAPIException:  # the click came with a full rerun (e.g. another widget changed too)
                st.rerun()
        on_tag()
        st.rerun()
