"""Plotly figures of per-image metrics and training curves (pure builders: a table in, a figure out).

    >>> from dashboard import plots
    >>> plots.histogram(scored, "iou_pet")
    >>> plots.per_breed(scored, "iou_pet", kind="box")          # breeds sorted by median, worst first
    >>> plots.scatter(scored, "gt_pet_fraction", "iou_pet")     # points carry image_id in customdata[0]
    >>> plots.training_curves(read_metrics_csv(run_dir))

Scatter and box figures carry the image id as ``customdata[0]`` so a selection (``on_select``) names images.
"""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

HEIGHT = 380
_MARGIN = dict(l=10, r=10, t=40, b=10)
SPECIES_COLOURS = {"cat": "#f28e2b", "dog": "#4e79a7"}


def _frame(table: pd.DataFrame) -> pd.DataFrame:
    frame = table.copy()
    frame["image_id"] = frame.index
    return frame


def histogram(table: pd.DataFrame, metric: str, bins: int = 40) -> go.Figure:
    fig = px.histogram(_frame(table), x=metric, color="species", nbins=bins, barmode="overlay", opacity=0.75,
                       color_discrete_map=SPECIES_COLOURS, height=HEIGHT, title=f"{metric} per image")
    fig.update_layout(margin=_MARGIN, yaxis_title="images")
    return fig


def breed_order(table: pd.DataFrame, metric: str) -> list[str]:
    """Breeds by median of ``metric``, lowest first (ties by name)."""
    medians = table.groupby("breed")[metric].median().reset_index()
    return list(medians.sort_values([metric, "breed"], kind="stable")["breed"])


def per_breed(table: pd.DataFrame, metric: str, kind: str = "box") -> go.Figure:
    order = breed_order(table, metric)
    build = px.violin if kind == "violin" else px.box
    extra = {"points": "all"} if kind == "violin" else {"points": "outliers"}
    fig = build(_frame(table), x="breed", y=metric, color="species", custom_data=["image_id"],
                category_orders={"breed": order}, color_discrete_map=SPECIES_COLOURS,
                height=HEIGHT + 80, title=f"{metric} per breed (sorted by median, worst first)", **extra)
    fig.update_layout(margin=_MARGIN, xaxis_tickangle=-45, boxmode="overlay" if kind == "box" else None)
    return fig


def per_species(table: pd.DataFrame, metric: str) -> go.Figure:
    fig = px.box(_frame(table), x="species", y=metric, color="species", custom_data=["image_id"], points="outliers",
                 color_discrete_map=SPECIES_COLOURS, height=HEIGHT, title=f"{metric} per species")
    fig.update_layout(margin=_MARGIN, showlegend=False)
    return fig


def scatter(table: pd.DataFrame, x: str, y: str) -> go.Figure:
    fig = px.scatter(_frame(table), x=x, y=y, color="species", custom_data=["image_id"], hover_name="image_id",
                     hover_data={"breed": True, "species": False}, color_discrete_map=SPECIES_COLOURS,
                     opacity=0.7, height=HEIGHT, title=f"{y} against {x}")
    fig.update_traces(marker={"size": 6})
    fig.update_layout(margin=_MARGIN, dragmode="lasso")
    return fig


def selected_ids(event: object) -> list[str]:
    """Image ids of the points in a ``st.plotly_chart(on_select=...)`` event (first customdata value)."""
    try:
        points = event["selection"]["points"]  # type: ignore[index]
    except (KeyError, TypeError):
        return []
    ids: list[str] = []
    for point in points:
        data = point.get("customdata") if isinstance(point, dict) else None
        if isinstance(data, list | tuple) and data and isinstance(data[0], str) and data[0] not in ids:
            ids.append(data[0])
    return ids


def training_curves(metrics: pd.DataFrame) -> tuple[go.Figure, go.Figure]:
    """(loss per epoch, validation scores per epoch) as line charts."""
    loss = metrics.melt(id_vars="epoch", value_vars=["train_loss", "val_loss"], var_name="series", value_name="loss")
    fig_loss = px.line(loss.dropna(), x="epoch", y="loss", color="series", markers=True, height=300,
                       title="Loss")
    scores = metrics.melt(id_vars="epoch", value_vars=["val_iou_pet", "val_miou_3class", "val_pixel_accuracy"],
                          var_name="series", value_name="score")
    fig_scores = px.line(scores.dropna(), x="epoch", y="score", color="series", markers=True, height=300,
                         title="Validation")
    for fig in (fig_loss, fig_scores):
        fig.update_layout(margin=_MARGIN, legend_title_text="")
    return fig_loss, fig_scores
