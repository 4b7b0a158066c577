"""The shared Browse filter in the session: read it, walk it, edit it with widgets.

    >>> from dashboard.filters import current_filters, current_order, panel
    >>> ids = current_order(settings, ds)            # ids in the current Browse filter + sort (session state)
    >>> chosen = panel(view, "iou_pet")              # the filter widgets; returns the core.views.Filters chosen

The filter itself, its sorts and everything computed from it are pure pandas in :mod:`core.views`; this module
only keeps it in ``st.session_state[state.BROWSE_FILTERS]`` and draws its widgets.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.config import Settings
from core.dataset import Dataset
from core.views import (
    CORRECTED_CHOICES,
    EVALUATED,
    MAX_SEARCH,
    SORTS,
    SPLIT_CHOICES,
    TAG_CHOICES,
    Filters,
    order,
    tag_label,
)
from dashboard import loaders, sidebar, state


def current_filters() -> Filters:
    return Filters.from_dict(st.session_state.get(state.BROWSE_FILTERS))


def set_filters(filters: Filters) -> None:
    st.session_state[state.BROWSE_FILTERS] = filters.to_dict()


def current_order(
    settings: Settings, ds: Dataset, run: str | None = None, split: str | None = None, metric: str | None = None
) -> list[str]:
    """Ids in the current Browse filter + sort for the sidebar's run, split and metric (or the ones given).

    Without a run or evaluation, the dataset's images in the same filter (metric filters and sorts then see
    no values and keep the id order).
    """
    run = run if run is not None else sidebar.selected_run()
    split = split or sidebar.selected_split()
    metric = metric or sidebar.selected_metric()
    view = loaders.view(settings, ds, run, split)
    return order(view, current_filters(), metric)


def panel(view: pd.DataFrame, metric: str, *, show_sort: bool = True) -> Filters:
    """The filter widgets (seeded from the shared filter), stored back as the shared filter; returns it."""
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
