"""Plotly figures of per-image metrics and training curves (pure builders: a table in, a figure out).

    >>> from dashboard import plots
    >>> plots.histogram(views.histogram_counts(scored, "iou_pet"), "iou_pet")
    >>> stats = views.box_stats(scored, "iou_pet")              # breeds sorted by median, worst first
    >>> plots.per_breed(stats, views.box_outliers(scored, "iou_pet", stats), "iou_pet", kind="box")
    >>> plots.scatter(scored, "gt_pet_fraction", "iou_pet")     # points carry image_id in customdata[0]
    >>> plots.training_curves(read_metrics_csv(run_dir), "quick-1")   # loss and validation scores per epoch
    >>> plots.unet(architecture(model, cfg))                  # the U of one model, boxes sized by channels/resolution

Scatter points and box outliers carry the image id as ``customdata[0]`` so a selection (``on_select``) names
images. Histograms and boxes are drawn from the summaries in :mod:`core.views` (a few numbers per bar or box),
and scatters are SVG: a page of five charts of thousands of images stays quick to draw in the browser.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd
import plotly.graph_objects as go

from dashboard import palette

if TYPE_CHECKING:  # core.explain imports torch, which the other figures do not need
    from core.explain import Architecture

HEIGHT = 380
_MARGIN = dict(l=10, r=10, t=40, b=10)
SPECIES_COLOURS = palette.SPECIES_HEX


def histogram(counts: pd.DataFrame, metric: str) -> go.Figure:
    """Overlaid per-species bars from :func:`core.views.histogram_counts` (tens of numbers, not every image)."""
    fig = go.Figure()
    for species, rows in counts.groupby("species", sort=True):
        fig.add_trace(go.Bar(x=(rows["left"] + rows["right"]) / 2, y=rows["count"], width=rows["right"] - rows["left"],
                             name=str(species), marker_color=SPECIES_COLOURS.get(str(species)), opacity=0.75,
                             customdata=rows[["left", "right"]].to_numpy(),
                             hovertemplate="%{customdata[0]:.3f} – %{customdata[1]:.3f}: %{y} images"))
    fig.update_layout(barmode="overlay", height=HEIGHT, margin=_MARGIN, title=f"{metric} per image",
                      xaxis_title=metric, yaxis_title="images", legend_title_text="species", bargap=0)
    return fig


def per_breed(stats: pd.DataFrame, outliers: pd.DataFrame, metric: str, kind: str = "box",
              densities: pd.DataFrame | None = None) -> go.Figure:
    """Breeds in the order of ``stats`` (:func:`core.views.box_stats`, worst median first); ``kind="violin"``
    adds each breed's density outline (``densities`` from :func:`core.views.densities`) around a slim box."""
    title = f"{metric} per breed (sorted by median, worst first)"
    if kind != "violin" or densities is None:
        return _boxes(stats, outliers, metric, title, HEIGHT + 80, tilt=True)
    # A violin from a few dozen density values per breed: one filled outline per species on a numeric axis
    # (categories cannot be offset by a width), with the breeds as tick labels.
    position = {group: i for i, group in enumerate(stats.index)}
    fig = go.Figure()
    for species in sorted(stats["species"].unique()):
        xs: list[float | None] = []
        ys: list[float | None] = []
        for group, rows in densities[densities["group"].isin(stats.index[stats["species"] == species])].groupby(
                "group", sort=False):
            half = 0.45 * rows["density"].to_numpy() / max(rows["density"].max(), 1e-12)
            x0, v = position[group], rows["value"].to_numpy()
            xs += [*(x0 - half), *(x0 + half[::-1]), None]
            ys += [*v, *v[::-1], None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", fill="toself", name=str(species), legendgroup=str(species),
                                 line={"color": SPECIES_COLOURS.get(str(species)), "width": 1}, hoverinfo="skip"))
    _add_boxes(fig, stats, outliers, [position[g] for g in stats.index], width=0.12, legend=False)
    fig.update_layout(height=HEIGHT + 80, margin=_MARGIN, title=title, yaxis_title=metric,
                      xaxis={"tickvals": list(range(len(stats))), "ticktext": list(stats.index), "tickangle": -45,
                             "range": [-0.6, len(stats) - 0.4]})
    return fig


def per_species(stats: pd.DataFrame, outliers: pd.DataFrame, metric: str) -> go.Figure:
    """One box per species from :func:`core.views.box_stats` (``by="species"``), outliers selectable."""
    fig = _boxes(stats, outliers, metric, f"{metric} per species", HEIGHT, tilt=False)
    fig.update_layout(showlegend=False)
    return fig


def _boxes(stats: pd.DataFrame, outliers: pd.DataFrame, metric: str, title: str, height: int, tilt: bool) -> go.Figure:
    fig = go.Figure()
    _add_boxes(fig, stats, outliers, list(stats.index), width=None, legend=True)
    fig.update_layout(height=height, margin=_MARGIN, title=title, boxmode="overlay", yaxis_title=metric,
                      xaxis={"categoryorder": "array", "categoryarray": list(stats.index),
                             "tickangle": -45 if tilt else None})
    return fig


def _add_boxes(fig: go.Figure, stats: pd.DataFrame, outliers: pd.DataFrame, positions: list, width: float | None,
               legend: bool) -> None:
    """Per species, one box trace from precomputed quartiles and fences plus its outliers as points that carry
    their image id in ``customdata[0]`` (a precomputed box has no points of its own to select)."""
    where = dict(zip(stats.index, positions, strict=True))
    for species in sorted(stats["species"].unique()):
        rows = stats[stats["species"] == species]
        colour = SPECIES_COLOURS.get(str(species))
        fig.add_trace(go.Box(x=[where[g] for g in rows.index], q1=rows["q1"], median=rows["median"], q3=rows["q3"],
                             lowerfence=rows["lowerfence"], upperfence=rows["upperfence"], name=str(species),
                             legendgroup=str(species), showlegend=legend, marker_color=colour, boxpoints=False,
                             width=width))
        out = outliers[outliers["species"] == species]
        group_of = out["group"].to_numpy()
        fig.add_trace(go.Scatter(
            x=[where[g] for g in group_of], y=out["value"], mode="markers", name=str(species),
            legendgroup=str(species), showlegend=False, marker={"color": colour, "size": 5},
            customdata=list(zip(out.index, group_of, strict=True)),
            hovertemplate="%{customdata[0]}<br>%{customdata[1]}: %{y:.3f}<extra></extra>"))


def scatter(table: pd.DataFrame, x: str, y: str) -> go.Figure:
    """One SVG point per row (no WebGL context to create), image id in ``customdata[0]``, breed on hover.

    Pass :func:`core.views.thin` of the table to draw fewer points that look the same; then resolve box and
    lasso selections with :func:`selected_regions` and :func:`core.views.inside` over every image."""
    fig = go.Figure()
    for species, rows in table.groupby("species", sort=True):
        fig.add_trace(go.Scatter(
            x=rows[x], y=rows[y], mode="markers", name=str(species), opacity=0.7,
            marker={"size": 6, "color": SPECIES_COLOURS.get(str(species))},
            customdata=list(zip(rows.index, rows["breed"], strict=True)),
            hovertemplate=f"%{{customdata[0]}} (%{{customdata[1]}})<br>{x} %{{x:.3f}}<br>{y} %{{y:.3f}}"
                          "<extra></extra>"))
    fig.update_layout(height=HEIGHT, margin=_MARGIN, title=f"{y} against {x}", dragmode="lasso", xaxis_title=x,
                      yaxis_title=y, legend_title_text="species")
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


def selected_regions(event: object) -> list[tuple[list[float], list[float]]]:
    """The box and lasso outlines of a ``st.plotly_chart(on_select=...)`` event as polygons (xs, ys) in data
    units; anything that is not a list of finite numbers is dropped."""
    try:
        selection = event["selection"]  # type: ignore[index]
        shapes = [("box", s) for s in selection.get("box") or []] + [("lasso", s) for s in selection.get("lasso") or []]
    except (KeyError, TypeError, AttributeError):
        return []
    polygons = []
    for kind, shape in shapes:
        try:
            xs, ys = [float(v) for v in shape["x"]], [float(v) for v in shape["y"]]
        except (KeyError, TypeError, ValueError):
            continue
        if not all(math.isfinite(v) for v in xs + ys):
            continue
        if kind == "box" and len(xs) == 2 and len(ys) == 2:
            xs, ys = [xs[0], xs[1], xs[1], xs[0]], [ys[0], ys[0], ys[1], ys[1]]
        if len(xs) >= 3 and len(xs) == len(ys):
            polygons.append((xs, ys))
    return polygons


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
        # Whole epochs, at most ~12 labels however long the run; scores on round ticks of their own axis.
        xaxis={"title": "epoch", "tickformat": "d", **({"dtick": 1} if len(metrics) <= 12 else {"nticks": 12})},
        yaxis={"title": "loss"},
        yaxis2={"title": "score", "overlaying": "y", "side": "right", "range": [0, 1], "tickmode": "linear",
                "tick0": 0, "dtick": 0.2, "tickformat": ".1f", "showgrid": False},
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
