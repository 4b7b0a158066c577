"""Cached loaders: the dashboard reads what ``core`` stored, once per change.

    >>> from dashboard import loaders
    >>> ds = loaders.dataset_or_stop(settings)        # the indexed dataset, or a message pointing Home and st.stop()
    >>> model = loaders.model(settings, "quick-1")      # the run's best checkpoint, loaded once per file content
    >>> view = loaders.view(settings, ds, "quick-1", "test")      # core.views.view_table, cached
    >>> loaders.eval_table(settings, "quick-1", "test")           # metrics.parquet, or None before evaluation

Heavy objects (the dataset index, models) live in ``st.cache_resource``; tables and
images in ``st.cache_data``. Keys include a fingerprint so a change on disk is
picked up without a restart: the tables' keys hold the modification stamps of the files read
(``metrics.parquet``, the SQLite database and its WAL), so an evaluation, a correction or a review tag written by
anyone shows up on the next rerun.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import streamlit as st

from core import ledger
from core.config import Settings
from core.dataset import Dataset, load_image, open_dataset
from core.errors import PetSegError
from core.runs import METRICS_FILE, eval_dir, read_eval_table
from core.views import view_table, workspace_status
from dashboard.markdown import escape

if TYPE_CHECKING:  # torch is imported by the pages that load a model, not by every page
    from core.evaluate import Predictor
    from core.explain import Architecture, Explanation


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
        st.error(escape(exc, 1000))
        st.stop()
    if ds is None:
        st.info(f"No dataset at {escape(settings.data, 400, code=True)}. Open **Home** to download, pick or "
                "generate one.")
        st.page_link("app_pages/home.py", label="Go to Home")
        st.stop()
    return ds


# --- a run's model (the Model page) ---------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    """A run's checkpoint, loaded once per file content, with the architecture read from it."""

    run: str
    checkpoint: str  # best | last
    sha: str
    predictor: Predictor
    architecture: Architecture
    lock: threading.Lock  # explain hooks live on the shared model: one forward pass at a time across sessions


@st.cache_data(show_spinner=False, max_entries=16)
def _sha(path: str, mtime_ns: int, size: int) -> str:
    from core.model import file_sha256

    return file_sha256(Path(path))


@st.cache_resource(show_spinner="Loading the model…", max_entries=2)
def _model(data: str, workspace: str, run: str, checkpoint: str, sha: str) -> tuple:
    from core.evaluate import load_predictor
    from core.explain import architecture

    # fp32: the skip ablation compares two outputs, autocast noise would show up as changed pixels.
    predictor = load_predictor(Settings(Path(data), Path(workspace)), run, checkpoint, precision="fp32")
    return predictor, architecture(predictor.model, predictor.cfg), threading.Lock()


def model(settings: Settings, run: str) -> LoadedModel:
    """The run's best checkpoint (else last); ``PetSegError`` when it has none yet."""
    from core.evaluate import checkpoint_path

    for name in ("best", "last"):
        path = checkpoint_path(settings, run, name)
        if path.is_file():
            break
    else:
        raise PetSegError(f"run {run} has no checkpoint yet: wait for its first epoch or train it on the Train page")
    info = os.stat(path)
    sha = _sha(str(path), info.st_mtime_ns, info.st_size)
    predictor, arch, lock = _model(str(settings.data), str(settings.workspace), run, name, sha)
    return LoadedModel(run, name, sha, predictor, arch, lock)


@st.cache_data(show_spinner="Running the image through the network…", max_entries=16)
def _explanations(sha: str, fingerprint: str, image_id: str, zero_skips: tuple[int, ...], _loaded: LoadedModel,
                  _ds: Dataset) -> tuple[Explanation, Explanation]:
    from core.explain import explain_with_ablation

    image = load_image(_ds, image_id)
    with _loaded.lock:
        return explain_with_ablation(_loaded.predictor.model, _loaded.predictor.cfg, image, zero_skips)


def explanations(loaded: LoadedModel, ds: Dataset, image_id: str, zero_skips: tuple[int, ...]
                 ) -> tuple[Explanation, Explanation]:
    """``(normal, ablated)`` for one image, computed once per (checkpoint sha256, dataset, image, skips zeroed)."""
    return _explanations(loaded.sha, ds.fingerprint, image_id, tuple(sorted(zero_skips)), loaded, ds)


# --- the tables of the views ---------------------------------------------------------------------------------


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
    """Changes with every correction or review write, from any process or app server sharing the store."""
    return ledger.stamp(settings)


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
def _status(workspace: str, data: str, db: str, stamp: tuple) -> tuple[dict[str, int], pd.DataFrame]:
    return workspace_status(Settings(Path(data), Path(workspace), db=db))


def status(settings: Settings) -> tuple[dict[str, int], pd.DataFrame]:
    """:func:`core.views.workspace_status`, cached until the database changes."""
    return _status(str(settings.workspace), str(settings.data), settings.db_url, db_stamp(settings))


@st.cache_data(show_spinner=False, max_entries=8)
def _view(_ds: Dataset, fingerprint: str, workspace: str, data: str, db: str, run: str | None, split: str,
          eval_key: tuple, db_key: tuple) -> pd.DataFrame:
    settings = Settings(Path(data), Path(workspace), db=db)
    corrections, reviews = status(settings)
    return view_table(_ds.table, eval_table(settings, run, split), corrections, reviews)


def view(settings: Settings, ds: Dataset, run: str | None, split: str) -> pd.DataFrame:
    """:func:`core.views.view_table` of the dataset and the selected evaluation, cached."""
    return _view(ds, ds.fingerprint, str(settings.workspace), str(settings.data), settings.db_url, run, split,
                 eval_stamp(settings, run, split), db_stamp(settings))


def clear() -> None:
    """Forget every cached table (after an evaluation finished in another process)."""
    _eval_table.clear()
    _status.clear()
    _view.clear()
