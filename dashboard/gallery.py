"""The paged thumbnail grid: one element of tiles, each a link into Compare with the image's metric badges.

    >>> from dashboard.gallery import PAGE_SIZE, tiles, build_thumbnails
    >>> build_thumbnails(settings, ds, ids, kind="gt", view=view, pred_folder=folder)   # -> {id: jpeg bytes}
    >>> tiles(settings, ds, view.loc[ids], metric="iou_pet", kind="none", pred_folder=None, key="browse_grid")

The grid is a components-v2 module (``gallery.js`` + ``gallery.css`` next to this file): the thumbnails travel as
data URLs inside the one element, so a page of 48 is one message and one layout instead of ~200 elements and 48
image requests. A click on a tile comes back as a trigger and switches to Compare inside the session (so the
Browse filter and sort go along); the tile is also a plain link, so "open in new tab" works.

Missing thumbnails of a page are built on a few threads (PIL and OpenCV release the GIL while decoding);
after drawing a page the next one is prepared in the background, so "next page" is a read from disk.
"""

from __future__ import annotations

import base64
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from core.config import Settings
from core.dataset import Dataset
from core.views import tag_label
from dashboard import images, state

PAGE_SIZE = 48
COLUMNS = 6
_WORKERS = 4
_PREFETCH = ThreadPoolExecutor(max_workers=1, thread_name_prefix="thumb-prefetch")
LOWER_IS_BETTER = {"uncertain_fraction"}
_HERE = Path(__file__).parent
_GRID = st.components.v2.component(
    "petseg_gallery",
    js=(_HERE / "gallery.js").read_text(encoding="utf-8"),
    css=(_HERE / "gallery.css").read_text(encoding="utf-8"),
    isolate_styles=False,  # light DOM: the tiles are found and read like the rest of the page
)


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


def badges(row: pd.Series, metric: str) -> list[tuple[str, str]]:
    """``(text, tone)`` pairs under a tile: the metric coloured by quality, correction and review status."""
    value = row.get(metric)
    parts = []
    if value is None or pd.isna(value):
        parts.append((f"{metric} n/a", "none"))
    else:
        good = 1.0 - float(value) if metric in LOWER_IS_BETTER else float(value)
        tone = "bad" if good < 0.5 else "fair" if good < 0.8 else "good"
        parts.append((f"{metric} {float(value):.2f}", tone))
    if bool(row.get("corrected", False)):
        parts.append((f"corrected v{int(row['correction_version'])}", "corrected"))
    tag = row.get("tag")
    if isinstance(tag, str):
        parts.append((tag_label(tag), "tag"))
    if str(row.get("problem") or ""):
        parts.append(("problem", "problem"))
    return parts


def compare_href(image_id: str) -> str:
    return "/compare?" + urlencode({"image": image_id})


def tiles(settings: Settings, ds: Dataset, rows: pd.DataFrame, metric: str, kind: str, pred_folder: Path | None,
          *, key: str, columns: int = COLUMNS) -> None:
    """Draw ``rows`` (a page of the view table) as one grid of tiles; a clicked tile opens in Compare."""
    opened = st.session_state.pop(state.GALLERY_OPENED, None)
    if isinstance(opened, str) and opened in rows.index:  # from the browser: only an id of this page is followed
        st.switch_page("app_pages/compare.py", query_params={"image": opened})
    thumbs = build_thumbnails(settings, ds, list(rows.index), kind, rows, pred_folder)
    data = {
        "columns": columns,
        "tiles": [
            {"id": image_id, "href": compare_href(image_id), "badges": badges(row, metric),
             "src": "data:image/jpeg;base64," + base64.b64encode(thumbs[image_id]).decode("ascii")}
            for image_id, row in rows.iterrows()
        ],
    }

    def stash() -> None:
        value = st.session_state.get(key)
        st.session_state[state.GALLERY_OPENED] = value.get("open") if isinstance(value, dict) else None

    _GRID(key=key, data=data, on_open_change=stash)


def page_count(total: int, page_size: int = PAGE_SIZE) -> int:
    return max(1, math.ceil(total / page_size))
