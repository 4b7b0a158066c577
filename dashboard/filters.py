"""The shared Browse filter in the session: read it, walk it, edit it with widgets.

    >>> from dashboard.filters import current_filters, current_order, panel
    >>> ids = current_order(settings, ds)            # ids in the current Browse filter + sort (session state)
    >>> chosen = panel(view, "iou_pet", url=True)    # the filter widgets, kept in the address bar (Browse)
    >>> select(["Abyssinian_1", "beagle_3"])         # a selection becomes the shared queue (Compare/Annotate walk it)

The filter itself, its sorts and everything computed from it are pure pandas in :mod:`core.views`; this module
only keeps it in ``st.session_state[state.BROWSE_FILTERS]``, mirrors it in the URL and draws its widgets. A
selection is a filter too (``Filters.ids``): Browse pages it, tags it in bulk and opens it in Compare or Annotate,
whose Next walks it.
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import streamlit as st

from core.config import Settings
from core.dataset import Dataset
from core.views import (
    CORRECTED_CHOICES,
    EVALUATED,
    MAX_SEARCH,
    QUERY_PARAMS,
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


def select(image_ids: list[str]) -> None:
    """Make ``image_ids`` the shared queue: exactly these images (other filters reset, the sort kept)."""
    set_filters(Filters.from_dict({"ids": list(image_ids), "sort": current_filters().sort}))
    _forget_widgets()


def clear_selection() -> None:
    set_filters(Filters.from_dict({**current_filters().to_dict(), "ids": []}))


def _forget_widgets() -> None:
    """Drop the panel's widget values so that they are seeded again from the shared filter."""
    for key in [k for k in st.session_state if str(k).startswith(state.FILTER_WIDGET_PREFIX)]:
        del st.session_state[key]


def _url_query() -> dict[str, str | None]:
    return {param: st.query_params.get(param) for param in QUERY_PARAMS}


def _take_url() -> None:
    """A filter named in the address bar (a shared or bookmarked link) becomes the shared filter, once per link."""
    query = _url_query()
    if query == st.session_state.get(state.FILTERS_URL):
        return
    named = Filters.from_query({k: v for k, v in query.items() if v is not None})
    if named is not None:
        set_filters(named)
        _forget_widgets()
    st.session_state[state.FILTERS_URL] = query


def _write_url(filters: Filters) -> None:
    wanted = filters.to_query()
    for param in QUERY_PARAMS:
        if param in wanted:
            if st.query_params.get(param) != wanted[param]:
                st.query_params[param] = wanted[param]
        elif param in st.query_params:
            del st.query_params[param]
    st.session_state[state.FILTERS_URL] = {param: wanted.get(param) for param in QUERY_PARAMS}


def sort_suspects_first() -> None:
    """Make the shared filter's sort "suspected label errors first" (Annotate starts its queue from it)."""
    set_filters(replace(current_filters(), sort="tension"))
    st.session_state[f"{state.FILTER_WIDGET_PREFIX}sort"] = "tension"  # Browse's widget would restore the old one


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


def panel(view: pd.DataFrame, metric: str, *, show_sort: bool = True, url: bool = False) -> Filters:
    """The filter widgets (seeded from the shared filter), stored back as the shared filter; returns it.

    ``url``: the filter is read from the address bar when a link names one, and written back to it, so the queue
    can be bookmarked and shared.
    """
    if url:
        _take_url()
    saved = current_filters()
    ranged = ("metric_min", "metric_max")
    keys = {name: f"{state.FILTER_WIDGET_PREFIX}{name}" for name in saved.to_dict()
            if name not in ranged and name != "ids"}
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
    row = st.columns([1.2, 2.4, 1, 1.6, 2.8])
    row[0].selectbox("Corrections", CORRECTED_CHOICES, key=keys["corrected"])
    row[1].multiselect("Review tags", TAG_CHOICES, key=keys["tags"], format_func=tag_label, placeholder="any")
    row[2].checkbox("Problem files", key=keys["problems_only"], help="only images with a problem in the index")
    row[3].slider("Label quality at most", 0.0, 1.0, step=0.01, key=keys["quality_max"],
                  help="below 1: only images with a label quality this low or lower (suspected label errors)")
    row[4].text_input("Id contains", key=keys["search"], max_chars=MAX_SEARCH, placeholder="e.g. Abyssinian")

    if saved.ids:
        note, clear = st.columns([5, 1])
        note.caption(f"**Selection of {len(saved.ids):,} image(s)** (e.g. points picked on Distributions): only "
                     "these are in the queue, within the filters above.")
        clear.button("Clear selection", key=f"{state.FILTER_WIDGET_PREFIX}clear_ids", on_click=clear_selection)
    low, high = st.session_state[range_key]
    values = {name: st.session_state[key] for name, key in keys.items() if name != "ids"}
    values.update(metric_min=low, metric_max=high, ids=list(current_filters().ids))
    if not show_sort:
        values["sort"] = saved.sort
    filters = Filters.from_dict(values)
    set_filters(filters)
    if url:
        _write_url(filters)
    return filters
