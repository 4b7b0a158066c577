"""Scores of predictions against the ground truth, and keeping the stored scores current when it changes.

    >>> from core import groundtruth, scoring
    >>> truth = groundtruth.snapshot(settings, ds, ["Abyssinian_1"])
    >>> scoring.score(truth, "Abyssinian_1", pred)["iou_pet"]        # pred: (H, W) trimap-coded
    0.91
    >>> scoring.rescore_everywhere(settings, ds, ["Abyssinian_1"])   # after its ground truth changed
    2

Every operation that changes a correction (:mod:`core.corrections`) calls :func:`rescore_everywhere` itself,
so a stored ``metrics.parquet`` always scores against the mask the image has now. Rescoring reads the stored
prediction PNG, never the model. A score against a correction keeps the score against the official trimap
beside it (``iou_pet_official``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import groundtruth
from core.config import RUN_NAME, Settings
from core.dataset import Dataset, load_trimap
from core.errors import ImageUnreadable
from core.groundtruth import GroundTruth
from core.metrics import BORDER_METRICS, empty_gt_metrics, image_metrics
from core.quality import Probabilities, ProbabilityStore, label_quality
from core.runs import (
    EVAL_COLUMNS,
    EVAL_SPLITS,
    METRICS_FILE,
    eval_dir,
    predicts_border,
    read_eval_table,
    read_prediction,
    table_lock,
    write_eval_table,
)


def score(truth: GroundTruth, image_id: str, pred: np.ndarray, probabilities: Probabilities | None = None, *,
          border: bool = True) -> dict[str, Any]:
    """The ground-truth columns of one prediction: metrics (NaN without a usable ground truth), the official
    trimap's ``iou_pet_official`` and pet counts (``pet_*_official``), the ``gt_version`` scored against and
    ``scored_at``; with the prediction's class probabilities, the label quality of the mask (:mod:`core.quality`;
    empty without them).

    ``border=False`` for a model that cannot predict the border class (a binary pet-vs-background model): the
    metrics that count border as a class of its own (:data:`core.metrics.BORDER_METRICS`) are not applicable, NaN.
    """
    version = truth.versions[image_id]
    gt = _usable(lambda: truth.mask(image_id), pred)
    if gt is None and version is not None:
        version = None  # the correction's file is unreadable: a later run retries it
    metrics = {**image_metrics(pred, gt), "has_gt": True} if gt is not None else {**empty_gt_metrics(), "has_gt": False}
    if not border:
        metrics.update(dict.fromkeys(BORDER_METRICS, math.nan))
    official = metrics
    if version is not None:
        official_gt = _usable(lambda: load_trimap(truth.ds, image_id), pred)
        official = empty_gt_metrics() if official_gt is None else image_metrics(pred, official_gt)
    return {**metrics, **{f"{name}_official": official[name] for name in _OFFICIAL},
            "gt_version": version, "scored_at": time.time(), **label_quality(probabilities, gt)}


_OFFICIAL = ("iou_pet", "pet_tp", "pet_fp", "pet_fn", "pet_tn")  # core.runs.OFFICIAL_COLUMNS without the suffix


def _usable(load: Callable[[], np.ndarray | None], pred: np.ndarray) -> np.ndarray | None:
    try:
        gt = load()
    except ImageUnreadable:
        return None
    return gt if gt is not None and gt.shape == pred.shape else None


def rescore(settings: Settings, ds: Dataset, run: str, split: str, image_ids: Iterable[str]) -> pd.DataFrame:
    """Recompute the ground-truth columns of some images of one evaluated split from their stored predictions.

    Keeps the prediction-only columns and rewrites the table; returns the updated rows (ids not in the table
    are ignored).
    """
    folder = eval_dir(settings, run, split)
    if not (folder / METRICS_FILE).is_file():
        return pd.DataFrame(columns=list(EVAL_COLUMNS))
    # Under the table lock: an evaluation running on this split writes its rows under it too, and rescores
    # them against the ground truth of that moment (core.evaluate), so neither side's update is lost.
    with table_lock(folder):
        table = read_eval_table(folder)
        wanted = [i for i in dict.fromkeys(image_ids) if table is not None and i in table.index]
        if not wanted:
            return pd.DataFrame(columns=list(EVAL_COLUMNS))
        truth = groundtruth.snapshot(settings, ds, [i for i in wanted if i in ds.table.index])
        # Only the rescored rows go through Python dicts: converting a 7,390-row table costs more than the rest.
        rows = {i: table.loc[i].to_dict() for i in wanted}
        changed = rescore_rows(folder, truth, rows, wanted, ds.fingerprint)
        if not changed:
            return table.iloc[0:0]
        updated = pd.DataFrame.from_records([rows[i] for i in changed], columns=list(EVAL_COLUMNS))
        merged = pd.concat([table.drop(index=changed), updated], ignore_index=True)
        return write_eval_table(folder, merged).loc[changed]


def rescore_rows(folder: Path, truth: GroundTruth, rows: dict[str, dict[str, Any]], image_ids: Iterable[str],
                 fingerprint: str) -> list[str]:
    """Rescore ``rows`` (of ``eval/<split>/`` in ``folder``) of these ids in place from their stored predictions;
    returns the ids rescored (those with a prediction and a place in the snapshot).

    The label quality follows the new mask where the folder stores the probabilities (a cross-validation's);
    elsewhere it is left empty, since the old score judged a mask the image no longer has.
    """
    changed = []
    border = predicts_border(Path(folder).parent.parent)
    store = ProbabilityStore.open(folder)
    for image_id in image_ids:
        pred = read_prediction(folder, image_id)
        if pred is None or image_id not in truth.versions:
            continue
        probabilities = store.probabilities(image_id) if store is not None else None
        rows[image_id].update(score(truth, image_id, pred, probabilities, border=border))
        rows[image_id]["dataset_fingerprint"] = fingerprint
        changed.append(image_id)
    return changed


def rescore_everywhere(settings: Settings, ds: Dataset, image_ids: Iterable[str]) -> int:
    """Rescore these images in every evaluated split of every run; returns how many stored rows changed."""
    ids = list(image_ids)
    if not ids or not settings.runs_dir.is_dir():
        return 0
    count = 0
    for run_dir in sorted(p for p in settings.runs_dir.iterdir() if p.is_dir()):
        if not RUN_NAME.fullmatch(run_dir.name):
            continue  # not a run folder PetSeg made
        for split in EVAL_SPLITS:
            if (run_dir / "eval" / split / METRICS_FILE).is_file():
                count += len(rescore(settings, ds, run_dir.name, split, ids))
    return count
