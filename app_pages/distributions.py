"""Distributions: per-image metric histograms, per breed and species, scatters; selected points open Compare."""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core import views
from dashboard import filters, gallery, loaders, plots, sidebar, state
from dashboard.markdown import escape

current = state.settings()
ds = loaders.dataset_or_stop(current)
run, split, metric = sidebar.selected_run(), sidebar.selected_split(), sidebar.selected_metric()

st.title("Distributions")
view = loaders.view(current, ds, run, split)
scored = view[view["evaluated"] & pd.to_numeric(view.get(metric), errors="coerce").notna()] \
    if metric in view else view.iloc[0:0]
if not len(scored):
    st.info("No evaluated images to plot yet. Train a run and evaluate it (see **Overview**).")
    st.page_link("app_pages/overview.py", label="Go to Overview", icon=":material/dashboard:")
    st.stop()
st.caption(f"{len(scored):,} images of the `{split}` evaluation of run {escape(run, code=True)} · metric `{metric}` "
           "(change it in the sidebar). Select points (click, box or lasso) to list those images.")


SCATTER_AGAINST = ("gt_pet_fraction", "mean_confidence")


# A resource, not data: unpickling five figures on every rerun would cost half of building them, and
# st.plotly_chart only reads them.
@st.cache_resource(max_entries=8, show_spinner=False)
def figures(_scored: pd.DataFrame, stamp: tuple, metric: str, kind: str) -> dict[str, go.Figure]:
    """The page's figures, built once per dataset, evaluation table, database state, metric and breed plot kind.

    Histogram and boxes come from bins and quartiles (core.views), so the browser draws tens of numbers per
    trace instead of every image; only the scatters (thinned) and the box outliers carry points per image.
    """
    breeds = views.box_stats(_scored, metric, by="breed")
    species = views.box_stats(_scored, metric, by="species")
    built = {
        "hist": plots.histogram(views.histogram_counts(_scored, metric), metric),
        "species": plots.per_species(species, views.box_outliers(_scored, metric, species, by="species"), metric),
        "breed": plots.per_breed(breeds, views.box_outliers(_scored, metric, breeds, by="breed"), metric, kind,
                                 views.densities(_scored, metric, by="breed") if kind == "violin" else None),
    }
    for x in SCATTER_AGAINST:
        if x != metric and x in _scored:
            built[f"scatter_{x}"] = plots.scatter(views.thin(_scored, x, metric), x, metric)
    return built


kind = st.session_state.get(state.DIST_PLOT) or "box"
stamp = (ds.fingerprint, str(current.workspace), run, split, loaders.eval_stamp(current, run, split),
         loaders.db_stamp(current))
figs = figures(scored, stamp, metric, kind)
selected: list[str] = []
left, right = st.columns(2)
left.plotly_chart(figs["hist"], width="stretch", key="dist_hist")
with right:
    event = st.plotly_chart(figs["species"], width="stretch", key="dist_species",
                            on_select="rerun", selection_mode=("points", "box", "lasso"))
    selected += plots.selected_ids(event)

st.segmented_control("Per breed", ["box", "violin"], key=state.DIST_PLOT, default="box")
event = st.plotly_chart(figs["breed"], width="stretch", key="dist_breed",
                        on_select="rerun", selection_mode=("points", "box", "lasso"))
selected += plots.selected_ids(event)

# One scatter at a time: each is thousands of SVG points, the slowest thing on the page to draw.
against = [x for x in SCATTER_AGAINST if f"scatter_{x}" in figs]
if against:
    if st.session_state.get(state.DIST_SCATTER) not in against:  # e.g. it became the metric
        st.session_state.pop(state.DIST_SCATTER, None)
    x = st.segmented_control(f"Scatter of {metric} against", against, key=state.DIST_SCATTER,
                             default=against[0]) or against[0]
    event = st.plotly_chart(figs[f"scatter_{x}"], width="stretch", key=f"dist_scatter_{x}",
                            on_select="rerun", selection_mode=("points", "box", "lasso"))
    # Points that share a marker's spot are drawn once; a box or lasso still takes every image inside it.
    selected += plots.selected_ids(event) + views.inside(scored, x, metric, plots.selected_regions(event))

selected = [i for i in dict.fromkeys(selected) if i in scored.index]
if selected:
    st.subheader(f"Selected: {len(selected)} image{'s' if len(selected) != 1 else ''}")
    if st.button(f"Open these {len(selected)} as a queue in Browse", key="dist_open_selection", type="primary",
                 help="page through them, tag them in bulk, export the list, or walk them in Compare and Annotate"):
        filters.select(views.worst_first(scored.loc[selected], metric).index.tolist())
        st.switch_page("app_pages/browse.py")
    shown = views.worst_first(scored.loc[selected], metric).head(gallery.PAGE_SIZE)
    if len(selected) > len(shown):
        st.caption(f"The {len(shown)} lowest by {metric} are shown; open the selection in Browse to page through "
                   "all of them.")
    gallery.tiles(current, ds, shown, metric, "none", sidebar.evaluation_folder(current, run, split), key="dist_grid")

st.subheader("Per breed")
summary = views.breed_summary(scored, metric)
summary["open"] = "/compare?image=" + summary["worst_image"]
st.dataframe(
    summary, hide_index=True, width="stretch",
    column_config={
        "mean": st.column_config.NumberColumn(format="%.3f"),
        "median": st.column_config.NumberColumn(format="%.3f"),
        "p10": st.column_config.NumberColumn("10th pct", format="%.3f"),
        "worst": st.column_config.NumberColumn(format="%.3f"),
        "worst_image": st.column_config.TextColumn("worst image"),
        "open": st.column_config.LinkColumn("compare", display_text="open worst"),
    },
)
