"""Cross-validation for label quality: K models on K folds of trainval, each predicting the fold it never saw.

    >>> from core.crossval import crossval
    >>> from core.train import TrainConfig
    >>> summary = crossval(settings, TrainConfig(run="cv-1", preset="quick", epochs=10), folds=5)
    >>> summary["folds_done"], summary["probabilities_bytes"]
    (5, 84541440)
    >>> load_eval(settings, "cv-1", "trainval").sort_values("label_quality").head()   # the wrong masks first

Layout: the fold models are ordinary runs ``<run>-fold1`` .. ``<run>-foldK`` (trained by :func:`core.train.train`
on the other folds, validated on their own fold; every run picker lists them like any run). The parent folder
``runs/<run>/`` holds ``crossval.json`` (the config, which image is in which fold, the folds finished),
``progress.json`` and ``eval/trainval/``: an evaluation table like any other (so Review, Browse and Compare read
it unchanged) whose every row is the out-of-fold prediction, scored against the current ground truth with its
label quality (``label_quality_source`` = out-of-fold), the prediction PNGs, and the probabilities
(:class:`core.quality.ProbabilityStore`, uint8 at the input size) that let a correction rescore it later.

Folds are a fixed hash order of the usable trainval ids dealt round-robin, so a rerun gets the same folds.
Predictions use each fold's ``last.pt``: picking the best epoch by validation on the held-out fold would let that
fold's labels choose the model that judges them. Resumable: ``--resume`` skips finished folds and resumes an
interrupted fold's training from its ``last.pt``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from core import groundtruth, locks, users
from core.atomic import atomic_write_bytes, atomic_write_text
from core.config import Settings, check_run_name
from core.data import trainable_ids
from core.dataset import Dataset, load_image, open_dataset
from core.device import inference
from core.errors import ImageUnreadable, PetSegError
from core.evaluate import at_original_size, image_identity, image_stat, load_predictor
from core.masks import encode_png_fast, resize_image
from core.metrics import prediction_metrics
from core.model import file_sha256, to_input
from core.quality import OUT_OF_FOLD, ProbabilityStore, disk_bytes, softmax_channels_last
from core.run_folder import Progress
from core.runs import EVAL_COLUMNS, LOCK_FILE, PRED_DIR, eval_dir, read_eval_table, table_lock, write_eval_table
from core.scoring import rescore_rows, score
from core.train import TrainConfig, train

log = logging.getLogger("petseg")

STATE_FILE = "crossval.json"
MIN_FOLDS, MAX_FOLDS = 2, 20
BATCH = 8


def fold_run(run: str, fold: int) -> str:
    """The run name of fold ``fold`` (1-based)."""
    return check_run_name(f"{run}-fold{fold}")


def assign_folds(ids: list[str], folds: int) -> dict[str, int]:
    """``{image_id: fold}`` (1-based): a fixed hash order dealt round-robin, independent of the seed."""
    order = sorted(ids, key=lambda i: hashlib.sha1(f"crossval:{i}".encode()).hexdigest())
    return {image_id: 1 + at % folds for at, image_id in enumerate(order)}


def crossval(settings: Settings, cfg: TrainConfig, folds: int = 5,
             on_progress: Callable[[dict[str, Any]], None] | None = None, *, actor: str | None = None
             ) -> dict[str, Any]:
    """Train the folds of ``cfg.run`` and store every trainval image's out-of-fold prediction (module doc).

    ``cfg`` is the training recipe of every fold (its ``run`` names the parent); ``cfg.resume`` continues a
    cross-validation that stopped. Returns a summary (folds done, images, seconds, bytes of probabilities).
    An admin's action (``actor``, None = the OS user), who is also the one training every fold.
    """
    users.require(settings, actor, "crossval")
    if not isinstance(folds, int) or not MIN_FOLDS <= folds <= MAX_FOLDS:
        raise PetSegError(f"--folds must be {MIN_FOLDS}-{MAX_FOLDS}, not {folds}")
    parent = settings.run_dir(cfg.run)
    fold_run(cfg.run, folds)  # the longest fold name must be a valid run name too
    recipe = cfg.resolved()
    parent.mkdir(parents=True, exist_ok=True)
    lock = locks.acquire(parent / LOCK_FILE, wait=False, record_pid=True)
    if lock is None:
        raise PetSegError(f"cross-validation {cfg.run} is running in another process "
                          f"(pid {locks.holder(parent / LOCK_FILE) or 'unknown'}): wait for it to finish")
    progress = Progress(parent, cfg.run, folds)
    try:
        return _crossval(settings, recipe, folds, parent, progress, on_progress, actor)
    except BaseException as exc:
        progress.update(force=True, status="interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                        error=str(exc).splitlines()[0] if str(exc) else repr(exc))
        raise
    finally:
        lock.release()


def _crossval(settings: Settings, cfg: TrainConfig, folds: int, parent: Path, progress: Progress,
              on_progress: Callable[[dict[str, Any]], None] | None, actor: str | None) -> dict[str, Any]:
    started = time.perf_counter()
    ds = open_dataset(settings.data, settings.workspace)
    training_truth = groundtruth.snapshot(settings, ds, ds.table.index, corrections=cfg.use_corrections)
    usable, _ = trainable_ids(ds, [i for i, v in training_truth.versions.items() if v is not None])
    if cfg.max_images:
        usable = sorted(sorted(usable, key=lambda i: hashlib.sha1(i.encode()).hexdigest())[: cfg.max_images])
    if len(usable) < folds:
        raise PetSegError(f"{len(usable)} trainable trainval images cannot make {folds} folds: use fewer --folds")
    fold_of = assign_folds(usable, folds)
    recipe = {k: v for k, v in cfg.to_dict().items() if k not in ("run", "resume", "progress", "device", "precision")}
    state = _read_state(parent)
    folder = eval_dir(settings, cfg.run, "trainval")
    store = ProbabilityStore.open(folder, writable=True)
    if state and not cfg.resume:
        raise PetSegError(f"cross-validation {cfg.run} already exists: add --resume to continue it "
                          "or choose another --run")
    if state and (state.get("recipe") != recipe or state.get("folds") != folds or state.get("fold_of") != fold_of
                  or store is None or store.size != int(cfg.image_size)):
        raise PetSegError(f"cross-validation {cfg.run} was made with other settings, images or folds: "
                          "resume it with the same flags, or choose another --run")
    if not state:
        if cfg.resume:
            raise PetSegError(f"nothing to resume: cross-validation {cfg.run} has not started; "
                              "start it without --resume")
        store = ProbabilityStore.create(folder, sorted(usable), int(cfg.image_size), OUT_OF_FOLD)
        state = {"recipe": recipe, "folds": folds, "fold_of": fold_of, "done": [], "runs": {},
                 "created_at": time.time()}
        _write_state(parent, state)
        atomic_write_text(parent / "config.json", json.dumps({"train": cfg.to_dict(), "crossval": {
            "folds": folds, "runs": [fold_run(cfg.run, k) for k in range(1, folds + 1)]}, "created_at": time.time()}))
    assert store is not None

    def report(**values: Any) -> None:
        progress.update(force=True, folds=folds, folds_done=len(state["done"]), **values)
        if on_progress is not None:
            on_progress(dict(progress.state))

    for fold in range(1, folds + 1):
        if fold in state["done"]:
            continue
        name = fold_run(cfg.run, fold)
        held_out = sorted(i for i, k in fold_of.items() if k == fold)
        kept = sorted(i for i, k in fold_of.items() if k != fold)
        report(status="training", fold=fold, fold_run=name)
        log.info("cross-validation %s: fold %d/%d, %d images to train on, %d to predict", cfg.run, fold, folds,
                 len(kept), len(held_out))
        resume = (settings.run_dir(name) / "last.pt").is_file()
        train(settings, dataclasses.replace(cfg, run=name, resume=resume), split=(kept, held_out), actor=actor)
        report(status="predicting", fold=fold, fold_run=name)
        _predict_fold(settings, ds, name, held_out, store, folder, cfg)
        state["done"] = sorted({*state["done"], fold})
        state["runs"][str(fold)] = name
        _write_state(parent, state)
    report(status="done", fold=folds)
    return {"run": cfg.run, "folds": folds, "folds_done": len(state["done"]), "images": len(fold_of),
            "image_size": int(cfg.image_size), "probabilities_path": str(folder / "probs.npy"),
            "probabilities_bytes": disk_bytes(len(fold_of), int(cfg.image_size)),
            "metrics_path": str(folder / "metrics.parquet"), "seconds": round(time.perf_counter() - started, 2)}


def _predict_fold(settings: Settings, ds: Dataset, name: str, ids: list[str], store: ProbabilityStore,
                  folder: Path, cfg: TrainConfig) -> None:
    """Predict the held-out ``ids`` with the fold's last.pt: probabilities into the store, PNGs and table rows."""
    predictor = load_predictor(settings, name, "last", cfg.device, cfg.precision)
    sha = file_sha256(predictor.checkpoint_path)
    truth = groundtruth.snapshot(settings, ds, ids)
    (folder / PRED_DIR).mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), BATCH):
        images = []
        for image_id in ids[start : start + BATCH]:
            try:
                images.append((image_id, load_image(ds, image_id)))
            except ImageUnreadable:
                log.warning("%s is unreadable: no out-of-fold prediction", image_id)
        if not images:
            continue
        small = np.stack([resize_image(image, predictor.cfg.image_size) for _, image in images])
        with inference(predictor.runtime):
            logits = predictor.model(predictor.runtime.prepare(to_input(torch.from_numpy(small), predictor.cfg)))
        logits = logits.float().cpu()
        for (image_id, image), item in zip(images, logits, strict=True):
            store.write(image_id, softmax_channels_last(item.numpy()))
            mask, confidence, _ = at_original_size(item, image.shape[0], image.shape[1])
            mask = mask.numpy()
            atomic_write_bytes(folder / PRED_DIR / f"{image_id}.png", encode_png_fast(mask))
            # Scored from the stored (quantised) probabilities: the numbers a later rescore will give.
            rows[image_id] = {**image_identity(ds, image_id), **prediction_metrics(mask, confidence),
                              **score(truth, image_id, mask, store.probabilities(image_id)),
                              "checkpoint": f"{name}/last", "checkpoint_sha": sha,
                              "dataset_fingerprint": ds.fingerprint, "image_stat": image_stat(ds, image_id),
                              "evaluated_at": time.time()}
    store.flush()
    with table_lock(folder):
        # A correction saved while this fold ran rescored the table on disk, not these rows: catch them up.
        now = groundtruth.snapshot(settings, ds, list(rows))
        rescore_rows(folder, now, rows, [i for i in rows if now.versions[i] != truth.versions[i]], ds.fingerprint)
        old = read_eval_table(folder)
        new = pd.DataFrame.from_records(list(rows.values()), columns=list(EVAL_COLUMNS))
        merged = new if old is None else pd.concat([old.drop(index=[i for i in rows if i in old.index]), new],
                                                   ignore_index=True)
        write_eval_table(folder, merged)


def _read_state(parent: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((parent / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not isinstance(state.get("fold_of"), dict):
        return None
    state["done"] = [int(k) for k in state.get("done") or []]
    state.setdefault("runs", {})
    return state


def _write_state(parent: Path, state: dict[str, Any]) -> None:
    atomic_write_text(parent / STATE_FILE, json.dumps(state))


def read_state(settings: Settings, run: str) -> dict[str, Any] | None:
    """The ``crossval.json`` of ``run`` (None when it is not a cross-validation)."""
    return _read_state(settings.run_dir(run))
