"""The paged thumbnail grid: tiles with the image, its id (a link into Compare) and a metric badge.

    >>> from dashboard.gallery import PAGE_SIZE, tiles, build_thumbnails
    >>> build_thumbnails(settings, ds, ids, kind="gt", view=view, pred_folder=folder)   # -> {id: jpeg bytes}
    >>> tiles(settings, ds, view.loc[ids], metric="iou_pet", kind="none", pred_folder=None)

Missing thumbnails of a page are built on a few threads (PIL and OpenCV release the GIL while decoding);
after drawing a page the next one is prepared in the background, so "next page" is a read from disk.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import streamlit as st

from core.config import Settings
from core.dataset import Dataset
from core.views import tag_label
from dashboard import images
from dashboard.markdown import escape

PAGE_SIZE = 48
COLUMNS = 6
_WORKERS = 4
_PREFETCH = ThreadPoolExecutor(max_workers=1, thread_name_prefix="thumb-prefetch")
LOWER_IS_BETTER = {"uncertain_fraction"}


def _version(view: pd.DataFrame, image_id: str) -> int | None:
    if "correction_version" not in view or image_id not in view.index:
        return None
    value = view.at[image_id, "correction_version"]
    return None if pd.isna(value) else int(value)


def build_thumbnails(
    settings: Settings, ds: Dataset, ids: list[str], kind: str, view: pd.DataFrame, pred_folder: Path | None
) -> dict[str, bytes]:
    """``{id: JPEG bytes}`` for ``ids`` (cached on disk; the missing ones built in parallel)."""

    def one(image_id: str) -> bytes:
        return images.thumbnail(settings, ds, image_id, kind, gt_version=_version(view, image_id),
                                pred_folder=pred_folder)

    if len(ids) <= 1:
        return {i: one(i) for i in ids}
    with ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="thumbs") as pool:
        return dict(zip(ids, pool.map(one, ids), strict=True))


def prefetch(settings: Settings, ds: Dataset, ids: list[str], kind: str, view: pd.DataFrame,
             pred_folder: Path | None) -> None:
    """Build these thumbnails in the background (for the page the user will most likely open next)."""
    if ids:
        _PREFETCH.submit(build_thumbnails, settings, ds, ids, kind, view, pred_folder)


def badge(row: pd.Series, metric: str) -> str:
    """Markdown line under a tile: the metric coloured by quality, correction and review status."""
    value = row.get(metric)
    parts = []
    if value is None or pd.isna(value):
        parts.append(f":gray[{escape(metric)} n/a]")
    else:
        good = 1.0 - float(value) if metric in LOWER_IS_BETTER else float(value)
        colour = "red" if good < 0.5 else "orange" if good < 0.8 else "green"
        parts.append(f":{colour}-background[{escape(metric)} {float(value):.2f}]")
    if bool(row.get("corrected", False)):
        parts.append(f":blue[corrected v{int(row['correction_version'])}]")
    tag = row.get("tag")
    if isinstance(tag, str):
        parts.append(f":violet[{escape(tag_label(tag))}]")
    if str(row.get("problem") or ""):
        parts.append(":red[problem]")
    return " · ".join(parts)


def tiles(settings: Settings, ds: Dataset, rows: pd.DataFrame, metric: str, kind: str, pred_folder: Path | None,
          columns: int = COLUMNS) -> None:
    """Draw ``rows`` (a page of the view table) as a grid of tiles linking to Compare."""
    thumbs = build_thumbnails(settings, ds, list(rows.index), kind, rows, pred_folder)
    for start in range(0, len(rows), columns):
        cols = st.columns(columns)
        for col, (image_id, row) in zip(cols, rows.iloc[start:start + columns].iterrows(), strict=False):
            with col:
                st.image(thumbs[image_id], width="stretch")
                st.page_link("app_pages/compare.py", label=escape(image_id), query_params={"image": image_id})
                st.caption(badge(row, metric))


def page_count(total: int, page_size: int = PAGE_SIZE) -> int:
    return max(1, math.ceil(total / page_size))
