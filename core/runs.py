"""What is in ``<workspace>/runs``: the runs, their per-epoch metrics and their evaluation tables.

    >>> from core.runs import list_runs, load_eval, read_metrics_csv
    >>> [(r.name, r.encoder, r.image_size, r.epochs_done, r.status) for r in list_runs(settings)]
    [('quick-1', 'resnet18', 128, 10, 'done')]
    >>> read_metrics_csv(settings.run_dir("quick-1"))[["epoch", "val_iou_pet"]].tail(1)
    >>> load_eval(settings, "quick-1", "test")            # the per-image table, or None before evaluation
    >>> read_prediction(eval_dir(settings, "quick-1", "test"), "Abyssinian_1")   # (H, W) trimap-coded, or None

This module is also the one place that names the files of a run folder; it imports neither torch nor the
model, so listing runs stays fast. Everything here only reads what :mod:`core.run_folder`, :mod:`core.train`
(checkpoints) and :mod:`core.evaluate` wrote.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core import locks
from core.atomic import atomic_open
from core.config import Settings
from core.errors import ImageUnreadable, PetSegError
from core.masks import decode_label_png
from core.metrics import GT_METRICS, PREDICTION_METRICS
from core.process import is_process
from core.quality import PROBS_FILE, PROBS_INDEX, QUALITY_COLUMNS

# --- the layout of a run folder -------------------------------------------------

CONFIG_FILE = "config.json"
METRICS_CSV = "metrics.csv"
PROGRESS_FILE = "progress.json"
LOG_FILE = "train.log"
TABLE_LOCK_FILE = ".table.lock"  # in eval/<split>/: held while metrics.parquet is rewritten
LOCK_FILE = ".lock"  # held by the process training the run (and in eval/<split>/, by the one evaluating it)
METRICS_COLUMNS = (
    "epoch",
    "train_loss",
    "val_loss",
    "val_iou_pet",
    "val_miou_3class",
    "val_pixel_accuracy",
    "seconds",
    "lr",
    "images_per_second",
)
EVAL_SPLITS = ("test", "trainval", "all")
METRICS_FILE = "metrics.parquet"  # in eval/<split>/
PRED_DIR = "pred"  # in eval/<split>/: <image_id>.png, trimap-coded
# The columns of metrics.parquet (metric definitions in core.metrics).
ID_COLUMNS = ("image_id", "split", "breed", "species", "width", "height", "has_gt")
PROVENANCE_COLUMNS = ("gt_version", "checkpoint", "checkpoint_sha", "dataset_fingerprint", "image_stat",
                      "evaluated_at", "scored_at")
# iou_pet and the pet counts against the official trimap: equal to iou_pet and pet_* unless a correction is the
# ground truth (gt_version set), so a view can show both scores of a corrected image and the headline numbers stay
# the benchmark's (core.views.evaluation_headline).
OFFICIAL_COLUMNS = ("iou_pet_official", "pet_tp_official", "pet_fp_official", "pet_fn_official", "pet_tn_official")
# Label quality against the ground truth (core.quality); tables written before these columns read them as empty.
EVAL_COLUMNS = ID_COLUMNS + GT_METRICS + OFFICIAL_COLUMNS + PREDICTION_METRICS + QUALITY_COLUMNS + PROVENANCE_COLUMNS
PROBABILITY_FILES = (PROBS_FILE, PROBS_INDEX)  # in eval/<split>/ of a cross-validation: see core.quality
# progress.json older than this while "training" means the trainer died without saying so.
STALE_AFTER_S = 120.0


@dataclass(frozen=True)
class RunInfo:
    name: str
    path: Path
    encoder: str | None
    image_size: int | None
    epochs_done: int
    epochs_planned: int | None
    best_val_iou_pet: float | None
    created: float | None  # unix time
    modified: float | None  # unix time of the newest of metrics.csv / last.pt / progress.json
    status: str  # training | done | interrupted | failed | empty
    preset: str | None = None
    precision: str | None = None
    encoder_weights: str | None = None
    has_best: bool = False
    evaluated_splits: tuple[str, ...] = ()
    source: str = "trained"  # or "external checkpoint" / "imported predictions" (see run_source)
    requested_weights: str | None = None  # the encoder weights asked for (config.json train.encoder_weights)
    pretrained: bool | None = None  # whether they were loaded (train.pretrained); None before the model was built

    @property
    def weights(self) -> str:
        """What the encoder started from, in words: says so when requested weights could not be loaded."""
        if self.pretrained is None:
            return "weights not known yet"
        if self.pretrained:
            return f"{self.encoder_weights or self.requested_weights} weights"
        if self.requested_weights:
            return f"random init ({self.requested_weights} weights could not be loaded)"
        return "random init"


def eval_dir(settings: Settings, run: str, split: str) -> Path:
    if split not in EVAL_SPLITS:
        raise PetSegError(f"unknown split {split!r}: use one of {', '.join(EVAL_SPLITS)}")
    return settings.run_dir(run) / "eval" / split


def read_eval_table(folder: Path) -> pd.DataFrame | None:
    """``eval/<split>/metrics.parquet`` indexed by image_id, None when it does not exist."""
    path = Path(folder) / METRICS_FILE
    if not path.is_file():
        return None
    try:
        table = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise PetSegError(f"{path} cannot be read ({exc}): delete it and evaluate again") from exc
    _fill_quality(table)
    return table.set_index("image_id", drop=False).rename_axis(None)


def table_lock(folder: Path) -> locks.Lock:
    """Hold ``eval/<split>/metrics.parquet`` for one read-modify-write (a rescore, or an evaluation's write).

    Held for milliseconds, so writers wait for it; the evaluation's own ``.lock`` (held for its whole run) only
    keeps a second evaluation of the split away.
    """
    lock = locks.acquire(Path(folder) / TABLE_LOCK_FILE)
    assert lock is not None  # a waiting acquire always returns a lock
    return lock


def write_eval_table(folder: Path, rows: dict[str, dict[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """Write ``eval/<split>/metrics.parquet`` atomically from ``{image_id: row}`` (or a table with the columns);
    returns it as read back.

    The caller holds :func:`table_lock` when it rewrites rows it read from the table.
    """
    if isinstance(rows, pd.DataFrame):
        table = rows.reindex(columns=list(EVAL_COLUMNS))
    else:
        table = pd.DataFrame.from_records(list(rows.values()), columns=list(EVAL_COLUMNS))
    table = table.sort_values("image_id").reset_index(drop=True)
    table["gt_version"] = table["gt_version"].astype("Int64")
    for name in ("pet_tp", "pet_fp", "pet_fn", "pet_tn", *OFFICIAL_COLUMNS[1:]):
        table[name] = table[name].astype("Int64")
    table["has_gt"] = table["has_gt"].astype(bool)
    _fill_quality(table)
    with atomic_open(Path(folder) / METRICS_FILE) as handle:
        table.to_parquet(handle, index=False)
    return table.set_index("image_id", drop=False).rename_axis(None)


def _fill_quality(table: pd.DataFrame) -> None:
    """The label-quality columns in their types, empty where a row (or an older table) has none."""
    for name in QUALITY_COLUMNS:
        if name == "label_quality_source":
            values = table[name] if name in table else pd.Series("", index=table.index)
            table[name] = values.where(values.notna(), "").astype(str)
        else:
            table[name] = pd.to_numeric(table[name], errors="coerce") if name in table else np.nan


def read_prediction(folder: Path, image_id: str) -> np.ndarray | None:
    """A stored prediction of ``eval/<split>/`` (trimap-coded, original size), None when missing or unreadable."""
    try:
        data = (Path(folder) / PRED_DIR / f"{image_id}.png").read_bytes()
        return decode_label_png(data, what=f"the prediction of {image_id}")
    except (OSError, ImageUnreadable):
        return None


def read_progress(run_dir: Path) -> dict[str, Any] | None:
    """The run's progress.json (see core.run_folder), None when absent or unreadable."""
    try:
        data = json.loads((Path(run_dir) / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_metrics_csv(run_dir: Path) -> pd.DataFrame:
    """metrics.csv as a DataFrame (one row per finished epoch; empty with the columns when there is none)."""
    path = Path(run_dir) / METRICS_CSV
    try:
        frame = pd.read_csv(path)
    except (OSError, pd.errors.EmptyDataError, ValueError):
        return pd.DataFrame({name: pd.Series(dtype="float64") for name in METRICS_COLUMNS})
    for name in METRICS_COLUMNS:
        if name not in frame.columns:
            frame[name] = math.nan
    return frame


def read_config(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((Path(run_dir) / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def run_source(run_dir: Path) -> str:
    """What a run holds: ``trained`` (by PetSeg), ``external checkpoint`` or ``imported predictions``
    (:mod:`core.interop.runs`); views show it where a checkpoint would be."""
    return str(read_config(run_dir).get("source") or "trained")


def predicts_border(run_dir: Path) -> bool:
    """False for a run whose predictions are binary (pet vs background): its border metrics are not applicable."""
    model = read_config(run_dir).get("model") or {}
    return not (isinstance(model, dict) and model.get("binary"))


def evaluated_splits(settings: Settings, run: str) -> list[str]:
    """The splits of ``run`` that have a metrics table, in EVAL_SPLITS order."""
    return [s for s in EVAL_SPLITS if (eval_dir(settings, run, s) / METRICS_FILE).is_file()]


def load_eval(settings: Settings, run: str, split: str) -> pd.DataFrame | None:
    """The per-image metrics table of an evaluated split (index = image_id), None before evaluation."""
    return read_eval_table(eval_dir(settings, run, split))


def run_status(run_dir: Path, epochs_done: int, epochs_planned: int | None) -> str:
    progress = read_progress(run_dir) or {}
    state = progress.get("status")
    if state in ("starting", "caching", "training", "validating"):
        fresh = time.time() - float(progress.get("updated_at") or 0) < STALE_AFTER_S
        # The pid alone could be anyone's by now (the trainer died, the pid was reused): only the same process,
        # pid and start time, counts. Without a recorded identity only the timestamp can tell.
        pid, token = progress.get("pid"), progress.get("pid_start")
        alive = is_process(pid, token) if token is not None else True
        return "training" if fresh and alive else "interrupted"
    if state in ("failed", "interrupted"):
        return state
    if state == "done" and progress.get("folds"):
        return "done"  # a cross-validation (core.crossval): its epochs are its fold runs
    if epochs_planned and epochs_done >= epochs_planned:
        return "done"
    return "interrupted" if epochs_done else "empty"


def run_info(settings: Settings, run_dir: Path) -> RunInfo:
    config = read_config(run_dir)
    train_cfg = config.get("train") or {}
    model_cfg = config.get("model") or {}
    metrics = read_metrics_csv(run_dir)
    epochs_done = int(metrics["epoch"].max()) if len(metrics) else 0
    planned = train_cfg.get("epochs")
    best = metrics["val_iou_pet"].max() if len(metrics) else math.nan
    times = [p.stat().st_mtime for p in (run_dir / n for n in (METRICS_CSV, "last.pt", PROGRESS_FILE)) if p.exists()]
    return RunInfo(
        name=run_dir.name,
        path=run_dir,
        encoder=model_cfg.get("encoder") or train_cfg.get("encoder"),
        image_size=model_cfg.get("image_size") or train_cfg.get("image_size"),
        epochs_done=epochs_done,
        epochs_planned=planned,
        best_val_iou_pet=None if pd.isna(best) else float(best),
        created=config.get("created_at") or (run_dir.stat().st_ctime if run_dir.exists() else None),
        modified=max(times) if times else None,
        status=run_status(run_dir, epochs_done, planned),
        preset=train_cfg.get("preset"),
        precision=(config.get("runtime") or {}).get("precision"),
        encoder_weights=model_cfg.get("encoder_weights"),
        has_best=(run_dir / "best.pt").is_file(),
        evaluated_splits=tuple(evaluated_splits(settings, run_dir.name)),
        source=str(config.get("source") or "trained"),
        requested_weights=train_cfg.get("encoder_weights"),
        pretrained=_pretrained(train_cfg, model_cfg),
    )


def _pretrained(train_cfg: dict[str, Any], model_cfg: dict[str, Any]) -> bool | None:
    """config.json's ``train.pretrained``; for a run written before it, whether the model records loaded weights."""
    if isinstance(train_cfg.get("pretrained"), bool):
        return train_cfg["pretrained"]
    return bool(model_cfg.get("encoder_weights")) if model_cfg else None


def list_runs(settings: Settings) -> list[RunInfo]:
    """Every run folder under ``<workspace>/runs``, newest first."""
    if not settings.runs_dir.is_dir():
        return []
    infos = []
    for path in settings.runs_dir.iterdir():
        if path.is_dir() and not path.name.startswith("."):
            try:
                infos.append(run_info(settings, path))
            except PetSegError:  # a folder whose name is not a valid run name
                continue
    return sorted(infos, key=lambda r: r.modified or r.created or 0.0, reverse=True)
