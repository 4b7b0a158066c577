"""Plotly figures of per-image metrics and training curves (pure builders: a table in, a figure out).

    >>> from dashboard import plots
    >>> plots.histogram(scored, "iou_pet")
    >>> plots.per_breed(scored, "iou_pet", kind="box")          # breeds sorted by median, worst first
    >>> plots.scatter(scored, "gt_pet_fraction", "iou_pet")     # points carry image_id in customdata[0]
    >>> plots.training_curves(read_metrics_csv(run_dir), "quick-1")   # loss and validation scores per epoch
    >>> plots.unet(architecture(model, cfg))                  # the U of one model, boxes sized by channels/resolution

Scatter and box figures carry the image id as ``customdata[0]`` so a selection (``on_select``) names images.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

if TYPE_CHECKING:  # core.explain imports torch, which the other figures do not need
    from core.explain import Architecture

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


def training_curves(metrics: pd.DataFrame, run: str) -> go.Figure:
    """Loss per epoch (left axis) and the validation scores (right axis, 0..1) of one run's metrics.csv."""
    fig = go.Figure()
    for column, name in (("train_loss", "train loss"), ("val_loss", "validation loss")):
        if metrics[column].notna().any():
            fig.add_trace(go.Scatter(x=metrics["epoch"], y=metrics[column], name=name, mode="lines+markers"))
    for column, name, width in (("val_iou_pet", "validation pet IoU", 3), ("val_miou_3class", "validation mIoU", 1),
                                ("val_pixel_accuracy", "validation pixel accuracy", 1)):
        if metrics[column].notna().any():
            fig.add_trace(go.Scatter(x=metrics["epoch"], y=metrics[column], name=name, mode="lines+markers",
                                     yaxis="y2", line={"width": width}))
    fig.update_layout(
        title=f"{run}: per epoch", height=340, margin=_MARGIN,
        xaxis={"title": "epoch", "dtick": 1}, yaxis={"title": "loss"},
        yaxis2={"title": "score", "overlaying": "y", "side": "right", "range": [0, 1]},
        legend={"orientation": "h", "y": -0.25},
    )
    return fig


# --- the U-Net diagram (Model page) ---------------------------------------------------------------------------


def millions(n: int) -> str:
    """A parameter count as people say it: 11.18 M, 590.1 k, 42."""
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


def unet(arch: Architecture) -> go.Figure:
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
    labels = [f"<b>{s.name}</b><br>{s.height}×{s.width} · {s.channels} ch<br>{millions(s.params)} params"
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
