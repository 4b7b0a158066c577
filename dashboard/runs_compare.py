"""Before/after between two runs: join their per-image evaluation tables, summarise the deltas, draw them.

    >>> from core.runs import load_eval
    >>> joined = join_runs(load_eval(s, "before", "test"), load_eval(s, "after", "test"), "iou_pet")
    >>> h = headline(joined)
    >>> h.mean_a, h.mean_b, h.delta, h.improved, h.worsened
    (0.71, 0.78, 0.07, 80, 30)
    >>> improved, worsened = top_changes(joined, n=10)
    >>> scatter_figure(joined, "before", "after", "iou_pet")      # plotly, A on x, B on y, with the diagonal

Pure functions over DataFrames (no Streamlit, no file access): the Runs page wires them to the workspace.
Only images that both runs scored against a ground truth take part; ``delta`` is B minus A.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlencode

import pandas as pd
import plotly.graph_objects as go

# Per-image metrics where higher is better (the deltas of the others would read upside down).
COMPARABLE_METRICS = ("iou_pet", "iou_pet_border_as_pet", "miou_3class", "pixel_accuracy", "dice_pet")
# Metrics are float32 in the table: smaller differences are rounding, not a change.
TIE = 1e-6
_KEEP = ("image_id", "breed", "species", "split")


@dataclass(frozen=True)
class Headline:
    images: int
    mean_a: float | None
    mean_b: float | None
    delta: float | None  # mean_b - mean_a
    improved: int
    worsened: int
    unchanged: int


def common_splits(splits_a: Iterable[str], splits_b: Iterable[str]) -> list[str]:
    """Splits evaluated by both runs, in the order of ``splits_a``."""
    other = set(splits_b)
    return [s for s in splits_a if s in other]


def join_runs(a: pd.DataFrame, b: pd.DataFrame, metric: str = "iou_pet") -> pd.DataFrame:
    """One row per image scored by both runs: identity columns, ``a``, ``b``, ``delta`` (b - a), and the
    ground-truth version each run was scored against (``gt_version_a``/``gt_version_b``, NaN = official trimap).
    """
    if metric not in COMPARABLE_METRICS:
        raise ValueError(f"metric {metric!r} cannot be compared; use one of {', '.join(COMPARABLE_METRICS)}")
    left, right = _scored(a, metric), _scored(b, metric)
    keep = [c for c in _KEEP if c in left.columns]
    joined = left[keep].join(
        pd.DataFrame({"a": left[metric], "gt_version_a": _versions(left)}), how="inner"
    ).join(pd.DataFrame({"b": right[metric], "gt_version_b": _versions(right)}), how="inner")
    joined["a"] = joined["a"].astype("float64")
    joined["b"] = joined["b"].astype("float64")
    joined["delta"] = joined["b"] - joined["a"]
    joined.index.name = None
    return joined.sort_index()


def _scored(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    table = table if "image_id" not in table.columns else table.set_index("image_id", drop=False)
    if "has_gt" in table.columns:
        table = table[table["has_gt"].astype(bool)]
    return table[table[metric].notna()]


def _versions(table: pd.DataFrame) -> pd.Series:
    if "gt_version" in table.columns:
        return pd.to_numeric(table["gt_version"], errors="coerce")
    return pd.Series(math.nan, index=table.index)


def headline(joined: pd.DataFrame) -> Headline:
    """Mean per-image metric of each run over the shared images, the difference, and how many moved."""
    if joined.empty:
        return Headline(0, None, None, None, 0, 0, 0)
    mean_a, mean_b = float(joined["a"].mean()), float(joined["b"].mean())
    improved = int((joined["delta"] > TIE).sum())
    worsened = int((joined["delta"] < -TIE).sum())
    return Headline(len(joined), mean_a, mean_b, mean_b - mean_a, improved, worsened,
                    len(joined) - improved - worsened)


def mismatched_ground_truth(joined: pd.DataFrame) -> int:
    """Images the two runs were scored against different ground truths for (a correction landed in between)."""
    a, b = joined["gt_version_a"], joined["gt_version_b"]
    return int(((a != b) & ~(a.isna() & b.isna())).sum())


def top_changes(joined: pd.DataFrame, n: int = 10) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``n`` most improved (largest positive delta) and ``n`` most worsened images, ties by id."""
    ordered = joined.assign(_id=joined.index).sort_values(["delta", "_id"], ascending=[False, True])
    improved = ordered[ordered["delta"] > TIE].head(n)
    worsened = ordered[ordered["delta"] < -TIE].sort_values(["delta", "_id"]).head(n)
    return improved.drop(columns="_id"), worsened.drop(columns="_id")


def restrict(joined: pd.DataFrame, image_ids: Iterable[str]) -> pd.DataFrame:
    """The rows of ``image_ids`` (e.g. the corrected images), in the joined order."""
    wanted = set(image_ids)
    return joined[joined.index.isin(wanted)]


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
                marker={"size": 7, "opacity": 0.75},
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
