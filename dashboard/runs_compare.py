"""Drawing a run-vs-run comparison: Compare links per image, the A/B scatter and the delta histogram.

    >>> from core.views import compare_runs
    >>> c = compare_runs(settings, "before", "after", "test")
    >>> scatter_figure(c.joined, "before", "after", "iou_pet")      # plotly, A on x, B on y, with the diagonal
    >>> with_links(c.joined.head(10), "before", "after")             # display table with "open A/B" links

The comparison itself (join, headline, top changes, corrected images) is :mod:`core.views`.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pandas as pd
import plotly.graph_objects as go

from dashboard.palette import SPECIES_HEX


def compare_url(image_id: str, run: str) -> str:
    """Link to the Compare page for one image under one run (query values URL-encoded)."""
    return "/compare?" + urlencode({"image": image_id, "run": run})


def with_links(rows: pd.DataFrame, run_a: str, run_b: str) -> pd.DataFrame:
    """A display table: id, breed, A, B, delta, and a Compare link per run."""
    table = pd.DataFrame(
        {
            "image": rows.index,
            "breed": rows["breed"] if "breed" in rows.columns else "",
            "A": rows["a"].round(4),
            "B": rows["b"].round(4),
            "delta": rows["delta"].round(4),
            "open A": [compare_url(i, run_a) for i in rows.index],
            "open B": [compare_url(i, run_b) for i in rows.index],
        }
    )
    return table.reset_index(drop=True)


def scatter_figure(joined: pd.DataFrame, name_a: str, name_b: str, metric: str) -> go.Figure:
    """Per-image metric of A (x) against B (y), coloured by species; points above the diagonal improved."""
    fig = go.Figure()
    groups = joined.groupby("species") if "species" in joined.columns else [("images", joined)]
    for species, part in groups:
        fig.add_trace(
            go.Scattergl(
                x=part["a"], y=part["b"], mode="markers", name=str(species), text=list(part.index),
                customdata=part["delta"],
                hovertemplate="%{text}<br>A %{x:.3f}<br>B %{y:.3f}<br>delta %{customdata:+.3f}<extra></extra>",
                marker={"size": 7, "opacity": 0.75, "color": SPECIES_HEX.get(str(species), "#777777")},
            )
        )
    low, high = _range(joined)
    fig.add_trace(go.Scatter(x=[low, high], y=[low, high], mode="lines", name="no change",
                             line={"color": "grey", "dash": "dash"}, hoverinfo="skip"))
    fig.update_layout(
        title=f"{metric} per image: {name_b} (B) against {name_a} (A)",
        xaxis={"title": f"A: {name_a}", "range": [low, high]},
        yaxis={"title": f"B: {name_b}", "range": [low, high], "scaleanchor": "x"},
        height=480, margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend={"orientation": "h", "y": -0.22},
    )
    return fig


def delta_histogram(joined: pd.DataFrame, name_a: str, name_b: str, metric: str) -> go.Figure:
    """Histogram of per-image deltas (B - A) with a line at zero."""
    fig = go.Figure(go.Histogram(x=joined["delta"], nbinsx=40, marker={"color": "#4c78a8"}, name="images"))
    fig.add_vline(x=0, line_dash="dash", line_color="grey")
    fig.update_layout(
        title=f"{metric} change per image (B − A)",
        xaxis={"title": "delta (B − A): right of 0 improved"}, yaxis={"title": "images"},
        height=460, margin={"l": 10, "r": 10, "t": 40, "b": 10}, bargap=0.05,
    )
    return fig


def _range(joined: pd.DataFrame) -> tuple[float, float]:
    """Axis range covering the data and at least [0, 1], the range of every comparable metric."""
    if joined.empty:
        return 0.0, 1.0
    low = min(0.0, float(joined[["a", "b"]].min().min()))
    high = max(1.0, float(joined[["a", "b"]].max().max()))
    return low, high
