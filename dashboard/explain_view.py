"""The Model page's pieces: the U diagram of a run, the feature maps of one image, its output and the skip ablation.

    >>> from dashboard import explain_view
    >>> loaded = explain_view.load(settings, "quick-1")          # cached model + architecture (PetSegError if none)
    >>> explain_view.architecture_section(loaded)
    >>> image_id = explain_view.choose_image(settings, ds, "quick-1", "test")
    >>> explain_view.image_sections(settings, ds, loaded, image_id)

The numbers come from :mod:`core.explain` (hooks on the loaded model); this module caches them once per
(checkpoint sha256, image, skips zeroed) and draws them. Feature maps are shown at their true resolution:
small maps are enlarged with nearest-neighbour pixels so one square is one position of the map.
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core import groundtruth
from core.config import Settings
from core.dataset import Dataset, load_image
from core.device import select_runtime
from core.errors import PetSegError
from core.evaluate import checkpoint_path
from core.explain import (
    Architecture,
    Explanation,
    StageInfo,
    StageMaps,
    compare_ablation,
    explain_with_ablation,
)
from core.explain import architecture as read_architecture
from core.metrics import pet_iou
from core.model import ModelConfig, file_sha256, load_checkpoint
from dashboard import state, tables
from dashboard.images import GT_COLOURS, PRED_COLOURS, blend, colour_mask, error_overlay
from dashboard.markdown import escape

TILE = 144  # display side of a feature-map tile (maps larger than this are shown at their own size)
GAP = 6
CLASS_LABELS = ("pet", "background", "border")


@dataclass
class Loaded:
    run: str
    checkpoint: str  # best | last
    path: Path
    sha: str
    model: object
    cfg: ModelConfig
    meta: dict
    architecture: Architecture
    lock: threading.Lock  # hooks live on the shared model: one forward pass at a time across sessions


# --- cached model and activations ---------------------------------------------------------------------------------


@st.cache_data(show_spinner=False, max_entries=16)
def _sha(path: str, mtime_ns: int, size: int) -> str:
    return file_sha256(Path(path))


@st.cache_resource(show_spinner="Loading the model…", max_entries=2)
def _model(path: str, sha: str) -> tuple:
    runtime = select_runtime("auto", "fp32")  # fp32: the ablation compares outputs, no autocast noise
    model, cfg, meta = load_checkpoint(Path(path), device=runtime.device)
    return model, cfg, meta, read_architecture(model, cfg), threading.Lock()


def load(settings: Settings, run: str) -> Loaded:
    """The run's best checkpoint (else last), loaded once per file content."""
    for name in ("best", "last"):
        path = checkpoint_path(settings, run, name)
        if path.is_file():
            break
    else:
        raise PetSegError(f"run {run} has no checkpoint yet: wait for its first epoch or train it on the Train page")
    info = os.stat(path)
    sha = _sha(str(path), info.st_mtime_ns, info.st_size)
    model, cfg, meta, arch, lock = _model(str(path), sha)
    return Loaded(run, name, path, sha, model, cfg, meta, arch, lock)


@st.cache_data(show_spinner="Running the image through the network…", max_entries=16)
def _explanations(path: str, sha: str, fingerprint: str, image_id: str, zero_skips: tuple[int, ...],
                  _ds: Dataset) -> tuple[Explanation, Explanation]:
    model, cfg, _, _, lock = _model(path, sha)
    image = load_image(_ds, image_id)
    with lock:
        return explain_with_ablation(model, cfg, image, zero_skips)


def explanations(loaded: Loaded, ds: Dataset, image_id: str, zero_skips: tuple[int, ...]
                 ) -> tuple[Explanation, Explanation]:
    """``(normal, ablated)`` for one image, computed once per (checkpoint sha256, dataset, image, skips zeroed)."""
    return _explanations(str(loaded.path), loaded.sha, ds.fingerprint, image_id, tuple(sorted(zero_skips)), ds)


# --- pictures -------------------------------------------------------------------------------------------------------


def heat(values: np.ndarray, lo: float | None = None, hi: float | None = None, side: int = TILE,
         exact: bool = False) -> np.ndarray:
    """A (h, w) map as viridis RGB, enlarged by a whole factor (nearest) so each map position stays a square;
    ``exact``: resized to exactly ``side`` px (for rows of maps of different resolutions compared side by side).
    """
    lo = float(values.min()) if lo is None else lo
    hi = float(values.max()) if hi is None else hi
    scaled = np.zeros(values.shape, np.uint8) if hi <= lo else np.clip((values - lo) / (hi - lo) * 255, 0, 255)
    rgb = cv2.cvtColor(cv2.applyColorMap(scaled.astype(np.uint8), cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB)
    if exact:
        shrink = max(values.shape) > side
        return cv2.resize(rgb, (side, side), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_NEAREST)
    factor = max(1, side // max(values.shape))
    return cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST) if factor > 1 else rgb


def montage(tiles: list[np.ndarray]) -> np.ndarray:
    height = max(t.shape[0] for t in tiles)
    parts = []
    for tile in tiles:
        pad = np.full((height, tile.shape[1] + GAP, 3), 255, np.uint8)
        pad[: tile.shape[0], : tile.shape[1]] = tile
        parts.append(pad)
    return np.concatenate(parts, axis=1)[:, :-GAP]


# --- the architecture diagram ---------------------------------------------------------------------------------------


def _millions(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k" if n >= 1e3 else str(n)


def _place(arch: Architecture) -> dict[str, tuple[float, float]]:
    """(x, y) of each stage: down the left side by resolution, up the right side, the bottleneck at the bottom."""
    down = [s for s in arch.stages if s.part in ("input", "encoder", "bottleneck")]
    where = {s.key: (float(x), -math.log2(s.stride)) for x, s in enumerate(down)}
    x_of_level = {-math.log2(s.stride): float(x) for x, s in enumerate(down)}  # the last stage at each level
    bottom = where["bottleneck"][0]
    for s in arch.part("decoder"):
        level = -math.log2(s.stride)
        where[s.key] = (2 * bottom - x_of_level.get(level, bottom), level)
    last = where[arch.part("decoder")[-1].key] if arch.part("decoder") else (bottom, 0.0)
    where["output"] = (last[0] + 1.2, last[1])
    return where


def figure(arch: Architecture) -> go.Figure:
    """The U of this model: one box per stage (size from channels and resolution), arrows, dashed skips."""
    where = _place(arch)
    max_c = max(s.channels for s in arch.stages)
    colours = {"input": "#9e9e9e", "encoder": "#1f77b4", "bottleneck": "#d62728", "decoder": "#2ca02c",
               "output": "#9467bd"}
    fig = go.Figure()
    for s in arch.stages:
        x, y = where[s.key]
        half_w = 0.12 + 0.3 * math.log2(max(s.channels, 2)) / math.log2(max(max_c, 2))
        half_h = 0.1 + 0.25 * (s.height / arch.image_size) ** 0.5
        fig.add_shape(type="rect", x0=x - half_w, x1=x + half_w, y0=y - half_h, y1=y + half_h,
                      fillcolor=colours[s.part], opacity=0.85, line={"width": 0})
    chain = list(arch.stages)
    for a, b in zip(chain, chain[1:], strict=False):
        fig.add_annotation(x=where[b.key][0], y=where[b.key][1], ax=where[a.key][0], ay=where[a.key][1],
                           xref="x", yref="y", axref="x", ayref="y", showarrow=True, arrowhead=2,
                           arrowcolor="#555", standoff=18, startstandoff=18, text="")
    for s in arch.part("decoder"):
        if s.skip_from:
            (x0, y0), (x1, y1) = where[s.skip_from], where[s.key]
            fig.add_trace(go.Scatter(x=[x0 + 0.45, x1 - 0.45], y=[y0, y1], mode="lines+text", hoverinfo="skip",
                                     line={"dash": "dash", "color": "#ff7f0e", "width": 2},
                                     text=["", f"skip: {s.skip_channels} ch"], textposition="top left",
                                     showlegend=False))
    labels = [f"<b>{s.name}</b><br>{s.height}×{s.width} · {s.channels} ch<br>{_millions(s.params)} params"
              for s in arch.stages]
    hover = [f"{s.name}: 1/{s.stride} of the input, {s.height}×{s.width}, {s.channels} channels, "
             f"{s.params:,} parameters" for s in arch.stages]
    fig.add_trace(go.Scatter(
        x=[where[s.key][0] for s in arch.stages], y=[where[s.key][1] - 0.55 for s in arch.stages],
        mode="text", text=labels, hovertext=hover, hoverinfo="text", textfont={"size": 11}, showlegend=False))
    xs, ys = [p[0] for p in where.values()], [p[1] for p in where.values()]
    fig.update_layout(height=470, margin={"l": 10, "r": 10, "t": 10, "b": 10}, plot_bgcolor="white",
                      xaxis={"visible": False, "range": [min(xs) - 0.8, max(xs) + 0.8]},
                      yaxis={"visible": False, "range": [min(ys) - 1.1, max(ys) + 0.6]})
    return fig


def architecture_section(loaded: Loaded) -> None:
    arch = loaded.architecture
    p = arch.params
    bottom = arch.stage("bottleneck")
    skips = [s for s in arch.part("decoder") if s.skip_from]
    st.subheader("The architecture of this run")
    st.caption(f"{loaded.cfg.describe()} · checkpoint {loaded.checkpoint}.pt · sha256 {loaded.sha[:12]}")
    st.plotly_chart(figure(arch), width="stretch", config={"displayModeBar": False})
    cols = st.columns(4)
    cols[0].metric("Parameters", _millions(p["total"]))
    cols[1].metric("Encoder (contracting path)", _millions(p["encoder"]), f"{p['encoder'] / p['total']:.0%}",
                   delta_color="off")
    cols[2].metric("Decoder (expansive path)", _millions(p["decoder"] + p["bottleneck_block"]),
                   f"{(p['decoder'] + p['bottleneck_block']) / p['total']:.0%}", delta_color="off")
    cols[3].metric("Segmentation head", _millions(p["head"]))
    st.markdown(
        f"The input is {arch.image_size}×{arch.image_size}. The encoder halves the resolution "
        f"{len(arch.part('encoder')) + 1} times down to the **bottleneck, {bottom.height}×{bottom.width} with "
        f"{bottom.channels} channels, 1/{bottom.stride} of the input**; the decoder doubles it back in "
        f"{len(arch.part('decoder'))} stages. {len(skips)} skip connections (dashed) copy the encoder's feature "
        "maps across the U to the decoder stage of the same resolution, where they are concatenated to the "
        "upsampled features. Most parameters sit deep in the encoder, where there are many channels."
    )


# --- choosing an image --------------------------------------------------------------------------------------------


def choose_image(settings: Settings, ds: Dataset, run: str, split: str) -> str | None:
    """Selectbox + ``?image=``: the evaluated images worst-first when there is an evaluation, else every image."""
    table = tables.eval_table(settings, run, split)
    labels: dict[str, str] = {}
    if table is not None and len(table):
        ordered = table.sort_values("iou_pet", na_position="last")
        labels = {i: f"{i} · IoU {v:.2f}" if v == v else f"{i} · no ground truth"
                  for i, v in zip(ordered["image_id"], ordered["iou_pet"], strict=True) if i in ds}
    if not labels:
        labels = {i: i for i in ds.table.index[ds.table["readable"]]}
    wanted = st.query_params.get("image")
    if wanted is not None and wanted != st.session_state.get(state.MODEL_IMAGE):
        if isinstance(wanted, str) and wanted in ds:
            labels.setdefault(wanted, wanted)
            st.session_state[state.MODEL_IMAGE] = wanted
        else:
            st.error(f"There is no image called {escape(wanted, 60)} in this dataset: pick one from the list below.")
    if not labels:
        st.info("This dataset has no readable image to explain.")
        return None
    if st.session_state.get(state.MODEL_IMAGE) not in labels:
        st.session_state[state.MODEL_IMAGE] = next(iter(labels))
    note = f" of {split}, worst IoU first" if table is not None and len(table) else ""
    image_id = st.selectbox(f"Image{note}", list(labels), format_func=labels.get, key=state.MODEL_IMAGE,
                            on_change=_sync_query)
    return image_id


def _sync_query() -> None:
    st.query_params["image"] = st.session_state[state.MODEL_IMAGE]


# --- the panels for one image ---------------------------------------------------------------------------------------


def _stage_text(s: StageMaps, info: StageInfo, arch: Architecture, prev: StageInfo | None) -> str:
    share = f"{s.active_fraction:.0%} of its values are above zero"
    strongest = ", ".join(f"#{c}" for c in s.top_channels)
    if info.part == "encoder":
        if prev is None or prev.part == "input":
            change = f" The input's 3 colour channels have become {s.channels} feature channels."
        else:
            change = (f" Compared with the {prev.name}: {prev.height * prev.width // (s.height * s.width)}× fewer "
                      f"positions, {s.channels / max(prev.channels, 1):.3g}× the channels.")
        return (f"**{info.name.capitalize()}** is {s.height}×{s.width} with {s.channels} channels, 1/{s.stride} of "
                f"the input: each position stands for a {s.stride}×{s.stride}-pixel patch of the "
                f"{arch.image_size}×{arch.image_size} input.{change} {share}; strongest channels {strongest}.")
    if info.part == "bottleneck":
        return (f"**The bottleneck is {s.height}×{s.width} with {s.channels} channels, 1/{s.stride} of the input**: "
                f"the whole image as {s.height * s.width} positions of {s.channels} numbers. It holds *what* is where "
                f"roughly, but one position covers {s.stride}×{s.stride} pixels, so it cannot say where the outline "
                f"runs to the pixel. {share}.")
    if info.skip_from:
        source = arch.stage(info.skip_from)
        return (f"**{info.name.capitalize()}** upsamples to {s.height}×{s.width} (1/{s.stride}) and concatenates "
                f"the {info.skip_channels} channels of the {source.name} (the same {s.height}×{s.width} grid) before "
                f"two convolutions: {s.channels} channels out. The skip brings back the detail the encoder had at "
                f"this resolution. {share}.")
    return (f"**{info.name.capitalize()}** upsamples to the full {s.height}×{s.width} with no skip (smp's U-Net has "
            f"none at full resolution): {s.channels} channels, which the head turns into class scores. {share}.")


def _stage_row(s: StageMaps, arch: Architecture, prev: StageInfo | None) -> None:
    info = arch.stage(s.key)
    tiles = [heat(s.mean)] + [heat(m) for m in s.top_maps]
    left, right = st.columns([2, 5])
    left.markdown(_stage_text(s, info, arch, prev))
    right.image(montage(tiles), caption=f"{s.height}×{s.width}: channel mean, then channels "
                f"{', '.join(f'#{c}' for c in s.top_channels)} (each scaled to its own range)")


def image_sections(settings: Settings, ds: Dataset, loaded: Loaded, image_id: str) -> None:
    arch = loaded.architecture
    options = skip_options(arch)
    # The ablation's widget sits at the bottom of the page; its value from the last rerun decides this pass.
    chosen = [i for i in st.session_state.get(state.MODEL_SKIPS, options) if i in options]
    try:
        normal, ablated = explanations(loaded, ds, image_id, tuple(chosen))
        photo = load_image(ds, image_id)
        gt, version = groundtruth.current(settings, ds, image_id)
    except PetSegError as exc:
        st.error(str(exc))
        return
    height, width = normal.original_size
    st.subheader("Input")
    left, right = st.columns([2, 5])
    left.markdown(f"The photo is {width}×{height}. It is squashed to {arch.image_size}×{arch.image_size} (aspect "
                  "ratio not kept) and normalised with the encoder's mean and standard deviation: this square is "
                  "all the network sees.")
    right.image(normal.input_image, caption=f"{arch.image_size}×{arch.image_size} network input")

    st.subheader("Contracting path (encoder)")
    prev = arch.stage("input")
    for s in normal.stages:
        if s.part == "encoder":
            _stage_row(s, arch, prev)
            prev = arch.stage(s.key)
    st.subheader("Bottleneck")
    _stage_row(normal.stage("bottleneck"), arch, prev)
    st.subheader("Expansive path (decoder)")
    for s in normal.stages:
        if s.part == "decoder":
            _stage_row(s, arch, None)
    _output(normal, photo, gt, version, image_id)
    _ablation(arch, options, normal, ablated, photo, gt)


def _output(normal: Explanation, photo: np.ndarray, gt: np.ndarray | None, version: int | None, image_id: str
            ) -> None:
    probs = normal.probabilities
    st.subheader("Output")
    pet_share = float((probs[0] > 0.5).mean())
    unsure = float((probs.max(axis=0) < 0.6).mean())
    st.markdown(f"The head turns the last decoder stage into 3 scores per pixel; softmax makes them probabilities "
                f"that sum to 1. On this image pet is above 0.5 on **{pet_share:.0%}** of the "
                f"{probs.shape[1]}×{probs.shape[2]} pixels, and **{unsure:.0%}** have no class above 0.6.")
    cols = st.columns(3)
    for col, name, plane in zip(cols, CLASS_LABELS, probs, strict=True):
        col.image(heat(plane, 0.0, 1.0, side=0), caption=f"P({name}), 0 dark to 1 yellow", width="stretch")
    source = "the official trimap" if version is None else f"correction v{version}"
    if gt is None:
        st.info(f"{escape(image_id)} has no ground truth: the prediction is shown without IoU.")
    else:
        iou = pet_iou(normal.mask, gt)
        st.markdown(f"The argmax, resized to the photo's {normal.original_size[1]}×{normal.original_size[0]}, "
                    f"against the ground truth ({source}): pet IoU **{iou:.3f}**. On the error map :red[red] is "
                    "pet predicted on background, :blue[blue] is pet predicted as background, :gray[grey] is the "
                    "ground truth's border band, which the IoU leaves out.")
    cols = st.columns(3)
    cols[0].image(colour_mask(normal.mask, PRED_COLOURS), caption="prediction (argmax): magenta pet, orange border",
                  width="stretch")
    if gt is not None and gt.shape == normal.mask.shape:
        cols[1].image(colour_mask(gt, GT_COLOURS), caption=f"ground truth ({source}): green pet, yellow border",
                      width="stretch")
        cols[2].image(error_overlay(photo, normal.mask, gt, 0.7), caption="errors on the photo", width="stretch")


def skip_options(arch: Architecture) -> dict[int, str]:
    """Decoder block index -> "encoder stage 2 → decoder stage 3 (64×64)" for every block that has a skip."""
    decoder = arch.part("decoder")
    return {i: f"{arch.stage(s.skip_from).name} → decoder stage {i + 1} ({s.height}×{s.width})"
            for i, s in enumerate(decoder) if s.skip_from}


def _ablation(arch: Architecture, options: dict[int, str], normal: Explanation, ablated: Explanation,
              photo: np.ndarray, gt: np.ndarray | None) -> None:
    st.subheader("What the skip connections do")
    st.warning("**Ablation at inference, not a retrained model.** The same trained weights run again with the "
               "chosen skip tensors replaced by zeros in this forward pass only. A U-Net trained without skips "
               "would adapt and do better than this; the point is what *these* weights get from the skips.")
    current = st.session_state.get(state.MODEL_SKIPS)
    st.session_state[state.MODEL_SKIPS] = list(options) if current is None else [i for i in current if i in options]
    chosen = st.multiselect("Skips to zero", list(options), format_func=options.get, key=state.MODEL_SKIPS)
    if not chosen:
        st.info("Pick at least one skip connection to zero.")
        return
    summary = compare_ablation(normal, ablated, gt)
    cols = st.columns(3)
    cols[0].image(colour_mask(normal.mask, PRED_COLOURS), caption="normal output", width="stretch")
    cols[1].image(colour_mask(ablated.mask, PRED_COLOURS), caption=f"{len(chosen)} skip(s) zeroed",
                  width="stretch")
    changed = (normal.mask != ablated.mask).astype(np.uint8)
    cols[2].image(blend(photo, changed, {1: (230, 40, 40)}, 0.75),
                  caption="pixels whose class changed (red)", width="stretch")
    metric_cols = st.columns(3)
    iou_n, iou_a = summary["iou_normal"], summary["iou_ablated"]
    metric_cols[0].metric("Pet IoU, normal", "–" if iou_n is None else f"{iou_n:.3f}")
    metric_cols[1].metric("Pet IoU, skips zeroed", "–" if iou_a is None else f"{iou_a:.3f}",
                          None if iou_a is None or iou_n is None else f"{iou_a - iou_n:+.3f}")
    metric_cols[2].metric("Pixels that changed class", f"{summary['changed_fraction']:.1%}")
    normal_row = [heat(m.mean, side=128, exact=True) for m in normal.stages if m.part == "decoder"]
    ablated_row = [heat(m.mean, side=128, exact=True) for m in ablated.stages if m.part == "decoder"]
    st.image(montage(normal_row), caption="decoder stages 1 → last, channel mean: normal")
    st.image(montage(ablated_row), caption="the same stages with the chosen skips zeroed")
    st.markdown(_ablation_text(arch, summary, len(chosen), len(options)))


def _ablation_text(arch: Architecture, summary: dict, chosen: int, available: int) -> str:
    bottom = arch.stage("bottleneck")
    source = "alone" if chosen == available else "and the skips left on"
    text = (f"With {chosen} of {available} skips zeroed the decoder rebuilds the mask from the "
            f"{bottom.height}×{bottom.width} bottleneck {source}. {summary['changed_fraction']:.1%} of the pixels "
            f"change class; {summary['changed_near_outline_fraction']:.0%} of those lie near the normal output's "
            "pet outline. ")
    iou_n, iou_a = summary["iou_normal"], summary["iou_ablated"]
    if iou_n is None or iou_a is None:
        return text + "Without ground truth there is no IoU to compare."
    delta = iou_a - iou_n
    if delta < -0.02:
        return text + (f"Pet IoU drops by {-delta:.3f}: the detail the decoder needed came through the skips. "
                       "Compare the decoder rows above to see at which resolution it goes missing.")
    if delta > 0.02:
        return text + (f"Pet IoU rises by {delta:.3f}: on this image the skips hurt, which happens with weak or "
                       "barely trained models whose decoder has not learned to use them yet.")
    return text + "Pet IoU barely moves: on this image the bottleneck carries most of what this model uses."


def no_run() -> None:
    st.info("No trained run yet: the Model page explains a trained U-Net. Train one on the Train page or with "
            "`python -m core train --run quick-1 --preset quick`, then come back.")
    st.page_link("app_pages/train.py", label="Go to Train", icon="🏋️")
