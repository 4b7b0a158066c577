"""Cached loaders: the dashboard reads what ``core`` stored, once per change.

Heavy objects (the dataset index, models) live in ``st.cache_resource``; tables and
images in ``st.cache_data``. Keys include a fingerprint so a change on disk is
picked up without a restart.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.config import Settings
from core.dataset import Dataset, open_dataset
from core.errors import PetSegError


def dataset_present(settings: Settings) -> bool:
    return (settings.data / "images").is_dir()


@st.cache_resource(show_spinner="Indexing the dataset…", max_entries=4)
def _open(root: str, workspace: str, stamp: float) -> Dataset:
    return open_dataset(Path(root), Path(workspace))


def _folder_stamp(root: Path) -> float:
    """Newest mtime of the folders whose content the index depends on (adding or removing files touches them)."""
    stamps = [0.0]
    for folder in (root / "images", root / "annotations", root / "annotations" / "trimaps"):
        try:
            stamps.append(folder.stat().st_mtime)
        except OSError:
            pass
    return max(stamps)


def dataset(settings: Settings) -> Dataset | None:
    """The indexed dataset, or None when the folder holds no dataset (the caller says what to do)."""
    if not dataset_present(settings):
        return None
    return _open(str(settings.data), str(settings.workspace), _folder_stamp(settings.data))


def dataset_or_stop(settings: Settings) -> Dataset:
    """For pages that need data: stop with a plain message pointing Home when there is none."""
    try:
        ds = dataset(settings)
    except PetSegError as exc:
        st.error(str(exc))
        st.stop()
    if ds is None:
        st.info(f"No dataset at `{settings.data}`. Open **Home** to download, pick or generate one.")
        st.page_link("app_pages/home.py", label="Go to Home")
        st.stop()
    return ds
