"""Cached loaders for the views: evaluation table, correction and review status, the joined per-image view.

    >>> from dashboard import tables
    >>> view = tables.view(settings, ds, "quick-1", "test")      # core.views.view_table, cached
    >>> tables.eval_table(settings, "quick-1", "test")           # metrics.parquet, or None before evaluation

Every cache key holds the modification stamps of the files read (``metrics.parquet``, the SQLite database and
its WAL), so an evaluation, a correction or a review tag written by anyone shows up on the next rerun.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import streamlit as st

from core.config import Settings
from core.dataset import Dataset
from core.errors import PetSegError
from core.runs import METRICS_FILE, eval_dir, read_eval_table
from core.views import view_table, workspace_status


def _stamp(*paths: Path) -> tuple[tuple[int, int], ...]:
    stamps = []
    for path in paths:
        try:
            info = os.stat(path)
            stamps.append((info.st_mtime_ns, info.st_size))
        except OSError:
            stamps.append((0, 0))
    return tuple(stamps)


def eval_stamp(settings: Settings, run: str | None, split: str) -> tuple:
    if not run:
        return ()
    try:
        return _stamp(eval_dir(settings, run, split) / METRICS_FILE)
    except PetSegError:
        return ()


def db_stamp(settings: Settings) -> tuple:
    db = settings.db_path
    return _stamp(db, db.with_name(db.name + "-wal"))


@st.cache_data(show_spinner=False, max_entries=8)
def _eval_table(workspace: str, data: str, run: str, split: str, stamp: tuple) -> pd.DataFrame | None:
    return read_eval_table(eval_dir(Settings(Path(data), Path(workspace)), run, split))


def eval_table(settings: Settings, run: str | None, split: str) -> pd.DataFrame | None:
    """The per-image metrics of ``run`` on ``split``; None before evaluation (or for an unknown run/split)."""
    if not run:
        return None
    try:
        return _eval_table(str(settings.workspace), str(settings.data), run, split, eval_stamp(settings, run, split))
    except PetSegError:
        return None


@st.cache_data(show_spinner=False, max_entries=4)
def _status(workspace: str, data: str, stamp: tuple) -> tuple[dict[str, int], pd.DataFrame]:
    return workspace_status(Settings(Path(data), Path(workspace)))


def status(settings: Settings) -> tuple[dict[str, int], pd.DataFrame]:
    """:func:`core.views.workspace_status`, cached until the database changes."""
    return _status(str(settings.workspace), str(settings.data), db_stamp(settings))


@st.cache_data(show_spinner=False, max_entries=8)
def _view(_ds: Dataset, fingerprint: str, workspace: str, data: str, run: str | None, split: str,
          eval_key: tuple, db_key: tuple) -> pd.DataFrame:
    settings = Settings(Path(data), Path(workspace))
    corrections, reviews = status(settings)
    return view_table(_ds.table, eval_table(settings, run, split), corrections, reviews)


def view(settings: Settings, ds: Dataset, run: str | None, split: str) -> pd.DataFrame:
    """:func:`core.views.view_table` of the dataset and the selected evaluation, cached."""
    return _view(ds, ds.fingerprint, str(settings.workspace), str(settings.data), run, split,
                 eval_stamp(settings, run, split), db_stamp(settings))


def clear() -> None:
    """Forget every cached table (after an evaluation finished in another process)."""
    _eval_table.clear()
    _status.clear()
    _view.clear()
