"""Runs: before/after between two runs on a split both evaluated (`/runs?a=before&b=after&split=test`)."""

from pathlib import Path

import pandas as pd
import streamlit as st

from core import views
from core.config import Settings
from core.runs import METRICS_FILE, eval_dir, list_runs, load_eval, read_config
from dashboard import jobs_view, loaders, run_import, runs_compare, sidebar, state
from dashboard.markdown import escape

TOP = 10

current = state.settings()
st.title("Runs")
st.caption("Compare two runs image by image on a split both evaluated: B against A, so positive deltas mean B "
           "is better (e.g. A trained on the official trimaps, B retrained with your corrections).")
run_import.import_form(current)

runs = {r.name: r for r in list_runs(current) if r.evaluated_splits}
names = list(runs)
if len(names) < 2:
    st.info("Comparing needs two runs evaluated on the same split; this workspace has "
            f"{len(names)}. Train and evaluate runs on the Train page.")
    st.page_link("app_pages/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()


def pick(label: str, options: list[str], key: str, param: str, default: str) -> str:
    """A selectbox that follows the URL (shareable) and writes the user's choice back to it."""
    state.select_from_url(key, param, options, default, what=f"run {param.upper()}" if param in "ab" else param)
    labels = {name: sidebar.run_label(runs[name]) for name in options if name in runs}
    return st.selectbox(label, options, key=key, on_change=state.write_url, args=(key, param),
                        format_func=lambda name: labels.get(name, name))


@st.cache_data(max_entries=16, show_spinner=False)
def eval_table(data_root: str, workspace: str, run: str, split: str, stamp: float) -> pd.DataFrame | None:
    return load_eval(Settings(data=Path(data_root), workspace=Path(workspace)), run, split)


def table_of(run: str, split: str) -> pd.DataFrame | None:
    path = eval_dir(current, run, split) / METRICS_FILE
    stamp = path.stat().st_mtime if path.exists() else 0.0
    return eval_table(str(current.data), str(current.workspace), run, split, stamp)


col_a, col_b, col_split, col_metric = st.columns(4)
with col_a:
    run_a = pick("Run A (before)", names, state.RUNS_A, "a", names[1])
with col_b:
    run_b = pick("Run B (after)", names, state.RUNS_B, "b", names[0])
if run_a == run_b:
    st.info("Pick two different runs.")
    st.stop()
splits = views.common_splits(runs[run_a].evaluated_splits, runs[run_b].evaluated_splits)
if not splits:
    st.info(f"{escape(run_a, code=True)} and {escape(run_b, code=True)} have no evaluated split in common; "
            "evaluate both on the same split.")
    for run in (run_a, run_b):
        if "test" not in runs[run].evaluated_splits:
            jobs_view.evaluate_button(current, run, "test", key=f"runs_evaluate_{run}")
    st.stop()
with col_split:
    split = pick("Split", splits, state.RUNS_SPLIT, "split", splits[0])
with col_metric:
    metric = st.selectbox("Metric", views.COMPARABLE_METRICS, key=state.RUNS_METRIC)

configs = views.compare_configs(read_config(runs[run_a].path), read_config(runs[run_b].path))
others = views.other_differences(configs)
if others:
    st.warning(f"These runs differ in more than the corrections ({escape(', '.join(others))}): B − A below "
               "mixes all of it, so it is not the effect of the corrections alone.")
with st.expander("The two runs' settings side by side", expanded=bool(others)):
    shown = configs.assign(same=configs["same"].map({True: "", False: "differs"})).set_index("setting")
    st.table(shown.rename(columns={"A": f"A · {run_a}", "B": f"B · {run_b}", "same": ""}))

corrected_ids, _ = loaders.status(current)
comparison = views.compare(table_of(run_a, split), table_of(run_b, split), run_a, run_b, split, metric, corrected_ids)
joined = comparison.joined
# iou_pet is stored against the official trimaps too; the other metrics only against the ground truth in use.
AGAINST = "against the official trimaps" if metric == "iou_pet" else "against the ground truth in use (corrections)"
if joined.empty:
    st.info(f"No image of {split} was scored with ground truth by both runs.")
    st.stop()


def section(rows: pd.DataFrame, what: str, key: str) -> None:
    """Headline, scatter, histogram and the biggest changes of ``rows``."""
    h = views.headline(rows)
    cols = st.columns(4)
    cols[0].metric(f"A · {escape(run_a)}", f"{h.mean_a:.4f}", help=f"mean per-image {metric} over {h.images} {what}")
    cols[1].metric(f"B · {escape(run_b)}", f"{h.mean_b:.4f}", help=f"mean per-image {metric} over {h.images} {what}")
    cols[2].metric("B − A", f"{h.delta:+.4f}", delta=f"{h.delta:+.4f}")
    cols[3].metric("Improved / worsened", f"{h.improved} / {h.worsened}", help=f"{h.unchanged} unchanged")
    st.caption(f"Mean per-image {metric} over the {h.images} {what} scored by both runs on {split}, {escape(AGAINST)}.")
    left, right = st.columns(2)
    left.plotly_chart(runs_compare.scatter_figure(rows, run_a, run_b, metric), width="stretch", key=f"{key}_scatter")
    right.plotly_chart(runs_compare.delta_histogram(rows, run_a, run_b, metric), width="stretch", key=f"{key}_hist")
    improved, worsened = views.top_changes(rows, TOP)
    links = {
        "open A": st.column_config.LinkColumn("open A", display_text="compare ↗", help=f"this image under {run_a}"),
        "open B": st.column_config.LinkColumn("open B", display_text="compare ↗", help=f"this image under {run_b}"),
    }
    left, right = st.columns(2)
    for column, title, frame in ((left, "Most improved", improved), (right, "Most worsened", worsened)):
        with column:
            st.markdown(f"**{title}**")
            if frame.empty:
                st.caption("None.")
            else:
                st.dataframe(runs_compare.with_links(frame, run_a, run_b), hide_index=True, width="stretch",
                             column_config=links, key=f"{key}_{title}")


section(joined, "images", "all")
mismatched = comparison.mismatched
if mismatched:
    st.caption(f"{mismatched} image(s) were scored against different ground-truth versions by the two runs "
               "(a correction landed between the evaluations).")

st.divider()
corrected = comparison.corrected_rows
st.subheader(f"Corrected images ({len(corrected)})")
if corrected.empty:
    st.caption(f"None of the images scored on {split} has a correction yet (corrections are made on Annotate).")
else:
    if split in ("test", "all"):
        st.caption("Corrections of **test** images are evaluation-only: training never uses test images, so "
                   "correcting one changes no model. The numbers below compare A and B on these images "
                   f"{escape(AGAINST)}.")
    section(corrected, "corrected images", "corrected")
    if metric == "iou_pet":
        h = comparison.corrected_in_use
        if h.images:
            st.caption(f"Against your corrections instead of the official trimaps, on the same {h.images} "
                       f"image(s): A {h.mean_a:.4f}, B {h.mean_b:.4f}, B − A {h.delta:+.4f}.")
