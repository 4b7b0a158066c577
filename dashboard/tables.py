"""Cached loaders for the views: evaluation table, correction and review status, the joined per-image view.

    >>> from dashboard import tables
    >>> view = tables.view(settings, ds, "quick-1", "test")      # dataset rows + metrics + corrected + tag
    >>> tables.eval_table(settings, "quick-1", "test")           # metrics.parquet, or None before evaluation
    >>> tables.breed_summary(view[view["evaluated"]], "iou_pet") # n, mean, median, p10, worst image per breed

Every cache key holds the modification stamps of the files read (``metrics.parquet``, the SQLite database and
its WAL), so an evaluation, a correction or a review tag written by anyone shows up on the next rerun.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd
import streamlit as st

from core.config import Settings
from core.dataset import Dataset
from core.errors import PetSegError
from core.runs import METRICS_FILE, eval_dir, read_eval_table
from dashboard.filters import view_table


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
    from core.ledger import latest_versions
    from core.review import all_reviews

    settings = Settings(Path(data), Path(workspace))
    return latest_versions(settings), all_reviews(settings)


def status(settings: Settings) -> tuple[dict[str, int], pd.DataFrame]:
    """``(latest correction version per corrected image, review table)`` from the workspace database."""
    if not settings.db_path.exists():  # nothing corrected or reviewed yet: do not create the database to say so
        return {}, pd.DataFrame(columns=["image_id", "tag", "note", "author", "updated_at"])
    return _status(str(settings.workspace), str(settings.data), db_stamp(settings))


@st.cache_data(show_spinner=False, max_entries=8)
def _view(_ds: Dataset, fingerprint: str, workspace: str, data: str, run: str | None, split: str,
          eval_key: tuple, db_key: tuple) -> pd.DataFrame:
    settings = Settings(Path(data), Path(workspace))
    corrections, reviews = status(settings)
    return view_table(_ds.table, eval_table(settings, run, split), corrections, reviews)


def view(settings: Settings, ds: Dataset, run: str | None, split: str) -> pd.DataFrame:
    """:func:`dashboard.filters.view_table` of the dataset and the selected evaluation, cached."""
    return _view(ds, ds.fingerprint, str(settings.workspace), str(settings.data), run, split,
                 eval_stamp(settings, run, split), db_stamp(settings))


def clear() -> None:
    """Forget every cached table (after an evaluation finished in another process)."""
    _eval_table.clear()
    _status.clear()
    _view.clear()


def breed_summary(view: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per breed: n, mean, median, 10th percentile and worst image of ``metric``; worst breed (by mean) first."""
    scored = view[pd.to_numeric(view[metric], errors="coerce").notna()] if metric in view else view.iloc[0:0]
    rows = []
    for breed, group in scored.groupby("breed", sort=True):
        values = pd.to_numeric(group[metric], errors="coerce")
        worst = values.sort_values(kind="stable").index[0]
        rows.append({
            "breed": breed,
            "species": group["species"].iloc[0],
            "n": int(len(values)),
            "mean": float(values.mean()),
            "median": float(values.median()),
            "p10": float(values.quantile(0.10)),
            "worst_image": worst,
            "worst": float(values.loc[worst]),
        })
    columns = ["breed", "species", "n", "mean", "median", "p10", "worst_image", "worst"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values(["mean", "breed"], kind="stable").reset_index(drop=True)


def headline(table: pd.DataFrame) -> dict[str, float]:
    """Headline numbers of an evaluation table: mean per-image IoU, dataset IoU, all-pixel accuracy."""
    scored = table[table["has_gt"].astype(bool)] if "has_gt" in table else table
    if not len(scored):
        return {"per_image_iou": math.nan, "dataset_iou": math.nan, "pixel_accuracy": math.nan, "images": 0}
    from core.metrics import dataset_iou  # imports torch: only the Overview page pays for it

    pixels = (scored["width"] * scored["height"]).astype("float64")
    return {
        "per_image_iou": float(scored["iou_pet"].mean()),
        "per_image_iou_border_as_pet": float(scored["iou_pet_border_as_pet"].mean()),
        "dataset_iou": float(dataset_iou(scored)),
        # Over all pixels of the split, as the original seed notebook reported it (not a mean of per-image values).
        "pixel_accuracy": float((scored["pixel_accuracy"] * pixels).sum() / pixels.sum()),
        "images": int(len(scored)),
    }
