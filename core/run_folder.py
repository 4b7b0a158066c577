"""Writing a run folder while it trains: the run's lock, progress.json, metrics.csv, train.log, config.json.

    >>> from core import run_folder
    >>> with run_folder.claim(run_dir, "quick-1", resume=False) as saved:   # refused if another process trains it
    ...     handlers = run_folder.attach_logs(run_dir)                       # train.log + warnings on stderr
    ...     progress = run_folder.Progress(run_dir, "quick-1", epochs=10)
    ...     progress.update(force=True, status="training", epoch=1)
    ...     run_folder.write_metrics_csv(run_dir, history)
    ...     run_folder.detach_logs(handlers)

File names come from :mod:`core.runs` (which reads what this module writes); like it, this module imports
neither torch nor the model at import time. ``progress.json`` is rewritten atomically about once a second::

    {"run": "quick-1", "status": "training", "epoch": 3, "epochs": 10, "step": 40, "steps_per_epoch": 112,
     "loss": 0.41, "images_per_second": 46.1, "elapsed_s": 95.2, "updated_at": 1764100000.0, "pid": 4242}

``status`` is one of ``starting``, ``caching`` (building the array cache), ``training``, ``validating``,
``done``, ``failed`` (with ``error``) or ``interrupted``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from core import locks
from core.atomic import atomic_write_text
from core.dataset import Dataset
from core.errors import PetSegError
from core.process import process_token
from core.runs import CONFIG_FILE, LOCK_FILE, LOG_FILE, METRICS_COLUMNS, METRICS_CSV, PROGRESS_FILE

log = logging.getLogger("petseg")

PROGRESS_EVERY_S = 1.0


# --- one process per run ------------------------------------------------------------


@contextlib.contextmanager
def claim(run_dir: Path, run: str, resume: bool) -> Iterator[dict[str, Any] | None]:
    """Hold the run for this process while the block runs; yields the saved config of a run being resumed.

    Refuses (``PetSegError``) a run another process is training, a new run over an existing one, and a
    resume of a run that has nothing to resume. A folder left holding nothing but the lock is removed.
    """
    lock = _hold(run_dir, f"run {run} is being trained", "wait for it to finish or choose another --run")
    try:
        yield _check(run_dir, run, resume)
    finally:
        if {p.name for p in run_dir.iterdir()} == {LOCK_FILE}:  # refused or failed before writing anything
            lock.delete()
            with contextlib.suppress(OSError):
                run_dir.rmdir()
        lock.release()


def lock_evaluation(folder: Path, run: str, split: str) -> locks.Lock:
    """Hold ``eval/<split>/`` of a run for this process's evaluation, or refuse with who holds it."""
    return _hold(folder, f"run {run} is being evaluated on {split}", "wait for it to finish")


def _hold(folder: Path, busy: str, advice: str) -> locks.Lock:
    """The exclusive lock of ``folder`` (its holder's pid recorded), or a ``PetSegError`` naming the holder."""
    lock = locks.acquire(folder / LOCK_FILE, wait=False, record_pid=True)
    if lock is None:
        pid = locks.holder(folder / LOCK_FILE)
        raise PetSegError(f"{busy} by another process (pid {pid or 'unknown'}): {advice}")
    return lock


def _check(run_dir: Path, run: str, resume: bool) -> dict[str, Any] | None:
    last = run_dir / "last.pt"
    if resume:
        if not last.is_file():
            raise PetSegError(f"nothing to resume: run {run} has no last.pt yet; start it without --resume")
        try:
            saved = json.loads((run_dir / CONFIG_FILE).read_text())
        except (OSError, ValueError):
            return None  # the model config in last.pt is still authoritative
        return saved if isinstance(saved, dict) and isinstance(saved.get("train"), dict) else None
    if last.is_file() or (run_dir / METRICS_CSV).is_file():
        raise PetSegError(
            f"run {run} already exists in {run_dir.parent}: add --resume to continue it or choose another --run"
        )
    return None


# --- progress, metrics, logs, config ----------------------------------------------


class Progress:
    """``progress.json`` for pollers (the dashboard), rewritten atomically at most once a second."""

    def __init__(self, run_dir: Path, run: str, epochs: int):
        self.path = run_dir / PROGRESS_FILE
        self.state: dict[str, Any] = {"run": run, "status": "starting", "epoch": 0, "epochs": epochs, "step": 0,
                                      "steps_per_epoch": 0, "loss": None, "pid": os.getpid(),
                                      "pid_start": process_token(os.getpid())}
        self.started = time.time()
        self.last_write = 0.0

    def update(self, force: bool = False, **values: Any) -> None:
        self.state.update(values)
        now = time.time()
        if force or now - self.last_write >= PROGRESS_EVERY_S:
            self.state["elapsed_s"] = round(now - self.started, 1)
            self.state["updated_at"] = now
            atomic_write_text(self.path, json.dumps(self.state))
            self.last_write = now


def write_metrics_csv(run_dir: Path, history: list[dict[str, Any]]) -> None:
    """metrics.csv, one row per finished epoch (empty cells for missing values)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRICS_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: "" if v is None or (isinstance(v, float) and math.isnan(v)) else v for k, v in row.items()})
    atomic_write_text(run_dir / METRICS_CSV, buffer.getvalue())


class _TqdmHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record), file=sys.stderr)


def attach_logs(run_dir: Path) -> list[logging.Handler]:
    """Send the ``petseg`` log to train.log (everything) and stderr (warnings, without breaking tqdm bars)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    file_handler = logging.FileHandler(run_dir / LOG_FILE, encoding="utf-8")
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    console = _TqdmHandler()
    console.setFormatter(logging.Formatter("%(message)s"))
    console.setLevel(logging.WARNING)
    handlers: list[logging.Handler] = [file_handler, console]
    for handler in handlers:
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    return handlers


def detach_logs(handlers: list[logging.Handler]) -> None:
    for handler in handlers:
        log.removeHandler(handler)
        handler.close()
    log.propagate = True


def write_config(
    run_dir: Path,
    *,
    train: dict[str, Any],
    model: dict[str, Any],
    runtime: dict[str, Any],
    ds: Dataset,
    train_ids: list[str],
    val_ids: list[str],
    corrections: dict[str, int],
    resumed: bool,
    scaling: dict[str, Any] | None = None,
) -> None:
    """config.json: the run's settings, model, runtime, data and corrections; creation and resume times kept.

    ``scaling``: ``world_size``, ``effective_batch_size``, ``effective_lr`` ... (:func:`core.train.train`),
    stored at the top level.
    """
    path = run_dir / CONFIG_FILE
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        previous = {}
    # Imported here, by the training process that has them loaded already: listing runs stays light.
    import segmentation_models_pytorch as smp
    import torch

    now = time.time()
    config = {
        "run": train["run"],
        "created_at": previous.get("created_at", now),
        "resumed_at": previous.get("resumed_at", []) + ([now] if resumed else []),
        "train": train,
        "model": model,
        "runtime": runtime,
        **(scaling or {}),
        "dataset": {
            "root": str(ds.root),
            "fingerprint": ds.fingerprint,
            "synthetic": bool(ds.synthetic),
            "train_images": len(train_ids),
            "val_images": len(val_ids),
            "val_ids": val_ids,
        },
        # image id -> correction version that replaced its official trimap in training or validation
        "corrections": dict(sorted(corrections.items())),
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "smp": smp.__version__},
    }
    atomic_write_text(path, json.dumps(config, indent=2))
