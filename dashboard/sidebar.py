"""The sidebar shared by every page (dataset in use; run, split and metric selectors) and the selection it holds.

    >>> from dashboard import sidebar, state
    >>> sidebar.sidebar(state.settings())        # streamlit_app.py draws it once per run, before the page
    >>> run, split, metric = sidebar.selected_run(), sidebar.selected_split(), sidebar.selected_metric()
"""

from __future__ import annotations

import time
from pathlib import Path

import streamlit as st

from core.config import Settings
from core.errors import PetSegError
from core.runs import RunInfo, eval_dir, evaluated_splits, list_runs
from dashboard import loaders, state
from dashboard.markdown import escape

METRICS = (
    "iou_pet", "iou_pet_border_as_pet", "miou_3class", "pixel_accuracy", "dice_pet", "mean_confidence",
    "uncertain_fraction",
)


def sidebar(settings: Settings) -> None:
    with st.sidebar:
        _dataset_box(settings)
        _run_box(settings)


def _dataset_box(settings: Settings) -> None:
    st.caption("Dataset")
    try:
        ds = loaders.dataset(settings)
    except PetSegError as exc:
        st.error(escape(exc, 1000))
        return
    if ds is None:
        st.warning("No dataset yet: see Home.")
        st.caption(escape(settings.data, 400, code=True))
        return
    kind = "synthetic (generated)" if ds.synthetic else "Oxford-IIIT Pet"
    st.markdown(f"**{len(ds):,} images** · {kind}")
    problems = len(ds.problems)
    st.caption(f"{escape(settings.data, 400, code=True)}  \n{problems} problem{'s' if problems != 1 else ''} found")


def _run_box(settings: Settings) -> None:
    runs = list_runs(settings)
    if not runs:
        return
    st.caption("Model")
    names = [r.name for r in runs]
    labels = {r.name: run_label(r) for r in runs}
    state.select_from_url(state.RUN, "run", names, complain=False)
    st.selectbox("Run", names, key=state.RUN, format_func=labels.get)
    splits = evaluated_splits(settings, st.session_state[state.RUN]) or ["test"]
    state.select_from_url(state.SPLIT, "split", splits, complain=False)
    st.selectbox("Evaluated split", splits, key=state.SPLIT,
                 help="the evaluation table the views show (evaluate other splits from Overview)")
    if st.session_state.get(state.METRIC) not in METRICS:
        st.session_state[state.METRIC] = "iou_pet"
    st.selectbox("Metric", METRICS, key=state.METRIC, help="the per-image score the views sort and colour by")


def run_label(run: RunInfo) -> str:
    """A run as pickers show it: name, encoder and size, pretrained or random init, creation day."""
    when = time.strftime("%Y-%m-%d", time.localtime(run.created)) if run.created else "?"
    if run.source == "imported predictions":  # no model behind it: say so where the architecture would be
        return f"{run.name} · imported predictions · {when}"
    start = "" if run.pretrained is None else ("pretrained" if run.pretrained else "random init")
    return " · ".join(p for p in (run.name, f"{run.encoder or '?'} {run.image_size or '?'}px", start, when) if p)


def selected_run() -> str | None:
    """The sidebar's run (or, where the sidebar did not run, the one it would pick); None without runs."""
    names = [r.name for r in list_runs(state.settings())]
    if st.session_state.get(state.RUN) in names:
        return st.session_state[state.RUN]
    return state.select_from_url(state.RUN, "run", names, complain=False)


def selected_split() -> str:
    run = selected_run()
    splits = (evaluated_splits(state.settings(), run) if run else []) or ["test"]
    if st.session_state.get(state.SPLIT) in splits:
        return st.session_state[state.SPLIT]
    return state.select_from_url(state.SPLIT, "split", splits, complain=False)


def evaluation_folder(settings: Settings, run: str | None, split: str) -> Path | None:
    """``<run>/eval/<split>/`` of the selected run, where its prediction PNGs are; None without a usable run."""
    if not run:
        return None
    try:
        return eval_dir(settings, run, split)
    except PetSegError:
        return None


def selected_metric() -> str:
    metric = st.session_state.get(state.METRIC)
    return metric if metric in METRICS else "iou_pet"
