"""The current Browse filter and sort, shared by Browse, Compare (previous/next), Review and Annotate.

    >>> from dashboard.filters import Filters, apply_filters, current_order, neighbours, sort_table, view_table
    >>> ids = current_order(settings, ds)                 # ids in the current Browse filter + sort (session state)
    >>> previous_id, next_id = neighbours(ids, "Abyssinian_1")
    >>> view = view_table(ds.table, eval_table, {"Abyssinian_1": 2}, reviews)   # pure pandas, one row per image
    >>> sort_table(apply_filters(view, Filters(species=("cat",)), "iou_pet"), "metric_asc", "iou_pet").index[:10]

The top half is pure pandas (unit-tested without Streamlit); :func:`current_filters`, :func:`current_order` and
:func:`panel` read and write the filter kept in ``st.session_state[state.BROWSE_FILTERS]``.

Suspected label errors. ``tension = mean_confidence * (1 - uncertain_fraction) * (1 - iou_pet)``, in [0, 1]:
high only when the model is confident on average, has few uncertain pixels *and* disagrees with the ground
truth. A confident disagreement is more often a wrong trimap than a wrong model, so this ordering puts the
trimaps worth checking first. Images without ground truth or prediction have no tension (NaN, sorted last).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np
import pandas as pd

from core.config import Settings
from core.dataset import Dataset
from core.review import TAG_LABELS, TAGS

EVALUATED = "evaluated"  # split filter value: the images of the selected evaluation table
SPLIT_CHOICES = (EVALUATED, "all", "trainval", "test", "unlisted")
CORRECTED_CHOICES = ("any", "corrected", "not corrected")
UNTAGGED = "untagged"
TAG_CHOICES = (*TAGS, UNTAGGED)
AGREEMENT = "iou_pet"  # the disagreement half of the tension score
SORTS = {
    "metric_asc": "metric, worst first",
    "metric_desc": "metric, best first",
    "tension": "suspected label errors first",
    "id": "image id",
    "gt_pet_asc": "GT pet fraction, smallest first",
    "gt_pet_desc": "GT pet fraction, largest first",
    "confidence_desc": "confidence, highest first",
    "confidence_asc": "confidence, lowest first",
}
_SORT_COLUMN = {
    "gt_pet_asc": ("gt_pet_fraction", True),
    "gt_pet_desc": ("gt_pet_fraction", False),
    "confidence_desc": ("mean_confidence", False),
    "confidence_asc": ("mean_confidence", True),
    "tension": ("tension", False),
}
MAX_SEARCH = 100


@dataclass(frozen=True)
class Filters:
    split: str = EVALUATED
    species: tuple[str, ...] = ()
    breeds: tuple[str, ...] = ()
    metric_min: float = 0.0
    metric_max: float = 1.0
    corrected: str = "any"
    tags: tuple[str, ...] = ()
    problems_only: bool = False
    search: str = ""
    sort: str = "metric_asc"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Filters:
        """Tolerant of junk (old session state, hand-edited values): anything invalid falls back to the default."""
        base = cls()
        if not isinstance(data, Mapping):
            return base
        known = {f.name for f in fields(cls)}
        clean: dict[str, Any] = {}
        for name, value in data.items():
            if name in known:
                default = getattr(base, name)
                if isinstance(default, tuple) and isinstance(value, list | tuple):
                    clean[name] = tuple(str(v) for v in value)
                elif isinstance(default, bool):
                    clean[name] = bool(value)
                elif isinstance(default, float) and isinstance(value, int | float) and not math.isnan(value):
                    clean[name] = float(min(max(value, 0.0), 1.0))
                elif isinstance(default, str) and isinstance(value, str):
                    clean[name] = value[:MAX_SEARCH]
        filters = replace(base, **clean)
        if filters.split not in SPLIT_CHOICES:
            filters = replace(filters, split=base.split)
        if filters.corrected not in CORRECTED_CHOICES:
            filters = replace(filters, corrected=base.corrected)
        if filters.sort not in SORTS:
            filters = replace(filters, sort=base.sort)
        if filters.metric_min > filters.metric_max:
            filters = replace(filters, metric_min=base.metric_min, metric_max=base.metric_max)
        return replace(filters, tags=tuple(t for t in filters.tags if t in TAG_CHOICES))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- pure table logic --------------------------------------------------------------------------------------


def tension_score(table: pd.DataFrame, agreement: str = AGREEMENT) -> pd.Series:
    """Confident disagreement per image (see the module docstring); NaN where an input is missing."""
    needed = ("mean_confidence", "uncertain_fraction", agreement)
    if any(name not in table.columns for name in needed):
        return pd.Series(np.nan, index=table.index, dtype="float64")
    confidence = pd.to_numeric(table["mean_confidence"], errors="coerce")
    certain = 1.0 - pd.to_numeric(table["uncertain_fraction"], errors="coerce")
    disagreement = 1.0 - pd.to_numeric(table[agreement], errors="coerce")
    return (confidence * certain * disagreement).clip(0.0, 1.0).astype("float64")


def view_table(
    dataset_table: pd.DataFrame,
    eval_table: pd.DataFrame | None,
    corrections: Mapping[str, int],
    reviews: pd.DataFrame | None,
) -> pd.DataFrame:
    """One row per dataset image: identity columns, the evaluation's metrics, correction and review status.

    Added columns: ``evaluated`` (row in the evaluation table), ``correction_version`` (Int64, NA = official
    trimap), ``corrected``, ``scored_gt_version`` (the GT version the stored metrics were computed against, NA =
    official trimap), ``tag`` (review tag or None), ``tension``.
    """
    view = dataset_table.copy()
    view["evaluated"] = False
    if eval_table is not None and len(eval_table):
        evaluated = eval_table.drop(
            columns=[c for c in ("image_id", "split", "breed", "species", "width", "height") if c in eval_table],
        )
        evaluated = evaluated.rename(columns={"gt_version": "scored_gt_version"})
        # The evaluation's GT pet fraction is the one its metrics used; the index's stays where it has none.
        view = view.drop(columns=[c for c in evaluated.columns if c in view.columns and c != "gt_pet_fraction"])
        view = view.join(evaluated.add_prefix("_ev_"), how="left")
        for column in evaluated.columns:
            source = view.pop(f"_ev_{column}")
            if column == "gt_pet_fraction" and "gt_pet_fraction" in view:
                view[column] = source.where(source.notna(), view[column])
            else:
                view[column] = source
        view["evaluated"] = view.index.isin(eval_table.index)
    if "scored_gt_version" not in view:
        view["scored_gt_version"] = pd.NA
    view["scored_gt_version"] = view["scored_gt_version"].astype("Int64")
    versions = pd.Series({k: int(v) for k, v in corrections.items()}, dtype="Int64")
    view["correction_version"] = versions.reindex(view.index).astype("Int64")
    view["corrected"] = view["correction_version"].notna()
    tags = pd.Series(dtype="object")
    if reviews is not None and len(reviews) and "tag" in reviews:
        tags = reviews["tag"]
    view["tag"] = tags.reindex(view.index).astype("object")
    view["tag"] = view["tag"].where(view["tag"].notna(), None)
    view["tension"] = tension_score(view)
    return view


def apply_filters(view: pd.DataFrame, filters: Filters, metric: str) -> pd.DataFrame:
    """The rows of ``view`` (from :func:`view_table`) that pass ``filters``; ``metric`` is the ranged column."""
    keep = pd.Series(True, index=view.index)
    if filters.split == EVALUATED:
        if "evaluated" in view and view["evaluated"].any():
            keep &= view["evaluated"].astype(bool)
    elif filters.split != "all":
        keep &= view["split"] == filters.split
    if filters.species:
        keep &= view["species"].isin(filters.species)
    if filters.breeds:
        keep &= view["breed"].isin(filters.breeds)
    if (filters.metric_min > 0.0 or filters.metric_max < 1.0) and metric in view:
        values = pd.to_numeric(view[metric], errors="coerce")
        # A narrowed range means "images scored in this range": unscored images drop out.
        keep &= values.between(filters.metric_min, filters.metric_max) & values.notna()
    if filters.corrected == "corrected":
        keep &= view["corrected"].astype(bool)
    elif filters.corrected == "not corrected":
        keep &= ~view["corrected"].astype(bool)
    if filters.tags:
        wanted = [t for t in filters.tags if t != UNTAGGED]
        tag_ok = view["tag"].isin(wanted)
        if UNTAGGED in filters.tags:
            tag_ok |= view["tag"].isna()
        keep &= tag_ok
    if filters.problems_only:
        keep &= view["problem"].fillna("").astype(str) != ""
    text = filters.search.strip().lower()[:MAX_SEARCH]
    if text:
        keep &= view.index.to_series().str.lower().str.contains(text, regex=False)
    return view[keep.to_numpy()]


def sort_table(view: pd.DataFrame, sort: str, metric: str) -> pd.DataFrame:
    """Stable sort with missing values last and the image id as tie-break, so the order is reproducible."""
    if sort == "id" or sort not in SORTS:
        return view.sort_index(kind="stable")
    if sort in ("metric_asc", "metric_desc"):
        column, ascending = metric, sort == "metric_asc"
    else:
        column, ascending = _SORT_COLUMN[sort]
    if column not in view:
        return view.sort_index(kind="stable")
    keys = pd.DataFrame({"value": pd.to_numeric(view[column], errors="coerce"), "id": view.index}, index=view.index)
    keys = keys.sort_values(["value", "id"], ascending=[ascending, True], na_position="last", kind="stable")
    return view.loc[keys.index]


def order(view: pd.DataFrame, filters: Filters, metric: str) -> list[str]:
    """Ids in ``filters``' filter and sort."""
    return list(sort_table(apply_filters(view, filters, metric), filters.sort, metric).index)


def neighbours(ids: Sequence[str], image_id: str) -> tuple[str | None, str | None]:
    """``(previous, next)`` of ``image_id`` in ``ids``; an image outside the list has the first one as next."""
    try:
        at = list(ids).index(image_id)
    except ValueError:
        return None, (ids[0] if len(ids) else None)
    return (ids[at - 1] if at > 0 else None), (ids[at + 1] if at + 1 < len(ids) else None)


def tag_label(tag: object) -> str:
    return TAG_LABELS.get(tag, "untagged") if isinstance(tag, str) else "untagged"


# --- session state and widgets ---------------------------------------------------------------------------------


def current_filters() -> Filters:
    import streamlit as st

    from dashboard import state

    return Filters.from_dict(st.session_state.get(state.BROWSE_FILTERS))


def set_filters(filters: Filters) -> None:
    import streamlit as st

    from dashboard import state

    st.session_state[state.BROWSE_FILTERS] = filters.to_dict()


def current_order(
    settings: Settings, ds: Dataset, run: str | None = None, split: str | None = None, metric: str | None = None
) -> list[str]:
    """Ids in the current Browse filter + sort for the sidebar's run, split and metric (or the ones given).

    Without a run or evaluation, the dataset's images in the same filter (metric filters and sorts then see
    no values and keep the id order).
    """
    from dashboard import frame, tables

    run = run if run is not None else frame.selected_run()
    split = split or frame.selected_split()
    metric = metric or frame.selected_metric()
    view = tables.view(settings, ds, run, split)
    return order(view, current_filters(), metric)


def panel(view: pd.DataFrame, metric: str, *, show_sort: bool = True) -> Filters:
    """The filter widgets (seeded from the shared filter), stored back as the shared filter; returns it."""
    import streamlit as st

    from dashboard import state

    saved = current_filters()
    ranged = ("metric_min", "metric_max")
    keys = {name: f"{state.FILTER_WIDGET_PREFIX}{name}" for name in saved.to_dict() if name not in ranged}
    range_key = f"{state.FILTER_WIDGET_PREFIX}range"
    # Widget values vanish when another page runs; seeding them from the saved filter keeps it across pages.
    for name, key in keys.items():
        if key not in st.session_state:
            value = getattr(saved, name)
            st.session_state[key] = list(value) if isinstance(value, tuple) else value
    if range_key not in st.session_state:
        st.session_state[range_key] = (saved.metric_min, saved.metric_max)
    breeds = sorted(view["breed"].dropna().unique()) if "breed" in view else []
    st.session_state[keys["breeds"]] = [b for b in st.session_state[keys["breeds"]] if b in breeds]

    row = st.columns([1.2, 1, 2.4, 1.6, 1.4])
    row[0].selectbox("Split", SPLIT_CHOICES, key=keys["split"],
                     format_func=lambda s: "evaluated images" if s == EVALUATED else s)
    row[1].multiselect("Species", ["cat", "dog"], key=keys["species"], placeholder="all")
    row[2].multiselect("Breeds", breeds, key=keys["breeds"], placeholder="all breeds")
    row[3].slider(f"{metric} range", 0.0, 1.0, step=0.01, key=range_key)
    if show_sort:
        row[4].selectbox("Sort", list(SORTS), key=keys["sort"], format_func=lambda s: SORTS[s])
    row = st.columns([1.2, 2.4, 1, 2.8])
    row[0].selectbox("Corrections", CORRECTED_CHOICES, key=keys["corrected"])
    row[1].multiselect("Review tags", TAG_CHOICES, key=keys["tags"], format_func=tag_label, placeholder="any")
    row[2].checkbox("Problem files", key=keys["problems_only"], help="only images with a problem in the index")
    row[3].text_input("Id contains", key=keys["search"], max_chars=MAX_SEARCH, placeholder="e.g. Abyssinian")

    low, high = st.session_state[range_key]
    values = {name: st.session_state[key] for name, key in keys.items()}
    values.update(metric_min=low, metric_max=high)
    if not show_sort:
        values["sort"] = saved.sort
    filters = Filters.from_dict(values)
    set_filters(filters)
    return filters
