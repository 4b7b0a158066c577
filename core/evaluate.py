"""Predict every image of a split at its original resolution and store per-image metrics.

    >>> from core.evaluate import evaluate, load_predictor
    >>> summary = evaluate(settings, run="quick-1", split="test")
    >>> summary["per_image_iou"], summary["metrics_path"]
    (0.87, '.../runs/quick-1/eval/test/metrics.parquet')
    >>> predictor = load_predictor(settings, "quick-1")            # what the dashboard caches
    >>> prediction = predictor.predict(load_image(ds, "Abyssinian_1"))
    >>> prediction.mask.shape, prediction.probabilities.shape      # (H, W) trimap-coded, (H, W, 3) softmax
    ((400, 600), (400, 600, 3))

Writes ``<run>/eval/<split>/pred/<image_id>.png`` (trimap-coded 1/2/3, the image's size) and
``<run>/eval/<split>/metrics.parquet``, one row per evaluated image with the columns of :data:`core.runs.EVAL_COLUMNS`
(metric definitions in :mod:`core.metrics`). Images are resized to the input size and batched for the model;
the logits of each image are resized back to its original size, then softmax and argmax.

- Unreadable images are skipped and counted (``skipped_unreadable``), not in the table.
- Images without ground truth are predicted and get a row whose ground-truth metrics are NaN
  (``has_gt`` False), so means and ``dataset_iou`` leave them out while views can still show them.
- Incremental: a rerun reuses every row made with the same checkpoint (sha256 in ``checkpoint_sha``) for an
  unchanged image file; rows whose ground truth changed since are rescored from the stored prediction PNG
  without the model (:mod:`core.scoring`, which every correction-changing operation also calls).
- Sharded under torchrun (``torchrun --nproc_per_node=N -m -- core evaluate ...``): rank 0 holds the folder and
  plans (what to predict, in which batches); the batches are dealt out to the ranks, each image to exactly one.
  Rank 0 keeps writing ``metrics.parquet`` as one process does; every other rank writes its rows to
  ``parts/rank-<r>.parquet`` (atomically, every 30 s and when it stops) and its PNGs to ``pred/``. At the end
  rank 0 merges the parts into the table once; a rerun after an interruption merges leftover parts first, so
  only images nobody finished are predicted again. Same checkpoint, precision, threads and batch size: the same
  batches, so the same table and PNGs as one process.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from core import distributed, groundtruth, users
from core.atomic import atomic_open, atomic_write_bytes, atomic_write_text
from core.config import Settings
from core.dataset import Dataset, load_image, open_dataset
from core.device import Runtime, inference, resolve_device, select_runtime
from core.errors import ImageUnreadable, PetSegError
from core.masks import encode_png_fast, resize_image
from core.metrics import prediction_metrics
from core.model import ModelConfig, file_sha256, load_checkpoint, to_input
from core.quality import IN_SAMPLE, Probabilities
from core.run_folder import lock_evaluation
from core.runs import (
    EVAL_COLUMNS,
    METRICS_FILE,
    OFFICIAL_COLUMNS,
    PRED_DIR,
    PROGRESS_FILE,
    eval_dir,
    read_eval_table,
    read_prediction,
    run_source,
    table_lock,
    write_eval_table,
)
from core.scoring import rescore_rows, score
from core.views import evaluation_headline

CHECKPOINTS = ("best", "last")
SAVE_EVERY_S = 30.0  # partial tables survive an interruption; the rerun continues from them
PARTS_DIR = "parts"  # in eval/<split>/: rows of ranks other than 0 until rank 0 merges them


# --- predicting -------------------------------------------------------------


@dataclass
class Prediction:
    """A prediction at the image's original size."""

    mask: np.ndarray  # (H, W) uint8, trimap coding (1 pet, 2 background, 3 border)
    probabilities: np.ndarray  # (H, W, 3) float32 softmax, channels in class order (pet, background, border)

    @property
    def confidence(self) -> np.ndarray:
        """(H, W) max softmax probability."""
        return self.probabilities.max(axis=2)


def _logits_batch(model: torch.nn.Module, cfg: ModelConfig, runtime: Runtime, resized: np.ndarray) -> torch.Tensor:
    """(B, S, S, 3) uint8 -> (B, 3, S, S) float32 logits on the CPU."""
    with inference(runtime):
        x = runtime.prepare(to_input(torch.from_numpy(resized), cfg))
        return model(x).float().cpu()


def at_original_size(
    logits: torch.Tensor, height: int, width: int, probabilities: bool = False
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray | None]:
    """(3, S, S) logits -> (trimap-coded mask, max softmax probability, (H, W, 3) softmax if asked) at full size.

    The logits are resized (bilinear, as ``F.interpolate(align_corners=False)``), then softmax and argmax are
    taken per pixel (the first maximum wins ties, as ``torch.argmax``), written out over the three class planes:
    reductions across a 3-long channel axis are several times slower in torch than these elementwise ops.
    The resize runs on channels-last logits, whose kernel is about twice as fast as the planar one and gives the
    same values bit for bit (tests/test_evaluate.py checks both against the plain definition).
    """
    with torch.inference_mode():
        square = logits.unsqueeze(0).contiguous(memory_format=torch.channels_last)  # no copy for a channels-last model
        up = F.interpolate(square, size=(height, width), mode="bilinear", align_corners=False)[0]
        pet, background, border = up[0], up[1], up[2]
        top = torch.maximum(pet, background)
        torch.maximum(top, border, out=top)
        # argmax as 0 (pet is the top) / 1 (background is) / 2, in uint8 arithmetic on the comparisons: class
        # index = [pet is not the top] * (1 + [background is not the top])
        not_pet = (pet != top).view(torch.uint8)
        mask = (background != top).view(torch.uint8).add_(1).mul_(not_pet).add_(1)
        exps = up.sub_(top).exp_()  # the top class has exp(0) = 1
        confidence = (exps[0] + exps[1]).add_(exps[2]).reciprocal_()
        probs = exps.mul_(confidence).permute(1, 2, 0).contiguous().numpy() if probabilities else None
        return mask, confidence, probs


def predict_batch(
    model: torch.nn.Module, cfg: ModelConfig, images: list[np.ndarray], runtime: Runtime | None = None
) -> list[Prediction]:
    """Predict RGB uint8 images of any sizes (batched at the input size)."""
    if not images:
        return []
    runtime = runtime or _runtime_of(model)
    resized = np.stack([resize_image(image, cfg.image_size) for image in images])
    logits = _logits_batch(model, cfg, runtime, resized)
    out = []
    for image, item in zip(images, logits, strict=True):
        mask, _, probs = at_original_size(item, image.shape[0], image.shape[1], probabilities=True)
        out.append(Prediction(mask=mask.numpy(), probabilities=probs))
    return out


def predict_image(
    model: torch.nn.Module, cfg: ModelConfig, image: np.ndarray, runtime: Runtime | None = None
) -> Prediction:
    """Predict one RGB uint8 (H, W, 3) image at its original size."""
    return predict_batch(model, cfg, [image], runtime)[0]


def _runtime_of(model: torch.nn.Module) -> Runtime:
    return _default_runtime(str(next(model.parameters()).device))


@functools.cache
def _default_runtime(device: str) -> Runtime:
    return select_runtime(device, "auto")


@dataclass
class Predictor:
    """A loaded checkpoint ready to predict: what the dashboard caches (``st.cache_resource``)."""

    model: torch.nn.Module
    cfg: ModelConfig
    meta: dict[str, Any]
    runtime: Runtime
    checkpoint_path: Path

    def predict(self, image: np.ndarray) -> Prediction:
        return predict_image(self.model, self.cfg, image, self.runtime)


def checkpoint_path(settings: Settings, run: str, checkpoint: str = "best") -> Path:
    if checkpoint not in CHECKPOINTS:
        raise PetSegError(f"unknown checkpoint {checkpoint!r}: use best or last")
    run_dir = settings.run_dir(run)
    if not run_dir.is_dir():
        raise PetSegError(f"no run named {run} in {settings.runs_dir}: train it first (python -m core train --run ...)")
    if run_source(run_dir) == "imported predictions":
        raise PetSegError(f"run {run} holds imported predictions, not a model: there is no checkpoint to evaluate "
                          "(python -m core predictions import again to replace them)")
    return run_dir / f"{checkpoint}.pt"


def load_predictor(
    settings: Settings, run: str, checkpoint: str = "best", device: str = "auto", precision: str = "auto"
) -> Predictor:
    """Load a run's checkpoint onto the chosen device, in eval mode, with the inference precision resolved."""
    path = checkpoint_path(settings, run, checkpoint)
    runtime = select_runtime(device, precision)
    model, cfg, meta = load_checkpoint(path, device=runtime.device)
    return Predictor(runtime.prepare_model(model), cfg, meta, runtime, path)


# --- evaluation folder ----------------------------------------------------------


def image_stat(ds: Dataset, image_id: str) -> str:
    """Size and mtime of the image file: a replaced image invalidates its prediction."""
    try:
        st = os.stat(ds.image_path(image_id))
    except OSError:
        return ""
    return f"{st.st_size}:{st.st_mtime_ns}"


# --- the evaluation -------------------------------------------------------------


def evaluate(
    settings: Settings,
    run: str,
    split: str = "test",
    checkpoint: str = "best",
    *,
    batch_size: int = 16,
    device: str = "auto",
    precision: str = "auto",
    progress: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
    image_ids: Iterable[str] | None = None,
    corrections: str = groundtruth.DEFAULT_POLICY,
    actor: str | None = None,
) -> dict[str, Any]:
    """Predict every image of ``split`` (or only ``image_ids`` of it) with the run's checkpoint; write PNGs and
    the metrics table, scored against the ground truth under the ``corrections`` policy. Returns the summary
    printed by ``python -m core evaluate --json``. An admin's action (``actor``, None = the OS user).

    One process at a time evaluates a run's split: a second is refused (``PetSegError``) while the first writes.
    Under torchrun the ranks share the work (see the module docstring) and all return rank 0's summary.
    """
    users.require(settings, actor, "evaluate")
    groundtruth.check_policy(corrections)
    checkpoint_path(settings, run, checkpoint)  # an unknown run is refused before a folder is made for it
    folder = eval_dir(settings, run, split)
    device = resolve_device(device)
    with distributed.session(device) as dist, contextlib.ExitStack() as held:

        def hold() -> None:  # rank 0 holds the folder; every rank gets the refusal if another process does
            held.enter_context(lock_evaluation(folder, run, split))

        dist.from_main(hold)
        return _evaluate(settings, run, split, checkpoint, batch_size=batch_size,
                         device=distributed.device_for(dist, device), precision=precision,
                         progress=progress and dist.is_main, on_progress=on_progress, image_ids=image_ids, dist=dist,
                         policy=corrections)


def _evaluate(
    settings: Settings,
    run: str,
    split: str,
    checkpoint: str,
    *,
    batch_size: int,
    device: str,
    precision: str,
    progress: bool,
    on_progress: Callable[[int, int], None] | None,
    image_ids: Iterable[str] | None,
    dist: distributed.Context,
    policy: str,
) -> dict[str, Any]:
    started = time.perf_counter()
    folder = eval_dir(settings, run, split)
    ckpt = checkpoint_path(settings, run, checkpoint)
    if not ckpt.is_file():
        raise PetSegError(f"run {run} has no {checkpoint}.pt yet: train it (or wait for its first epoch) first")
    sha = file_sha256(ckpt)
    ds = open_dataset(settings.data, settings.workspace)
    table = ds.table.loc[ds.ids(None if split == "all" else split)]
    plan: dict[str, Any] = {}
    todo = dist.from_main(lambda: _plan(settings, ds, folder, table, sha, image_ids, plan, policy))
    predictor = load_predictor(settings, run, checkpoint, device, precision) if todo else None
    # The batches one process would make, dealt out to the ranks: the same batch composition for every image.
    mine = _batches(todo, batch_size, predictor)[dist.rank :: dist.world_size] if predictor else []
    truth = groundtruth.snapshot(settings, ds, [i for batch in mine for i in batch], policy=policy)
    if not dist.is_main:
        _predict_part(settings, ds, folder, predictor, mine, truth, checkpoint, sha, dist)
        return dist.from_main(dict)  # rank 0's summary, once it has merged the parts
    # If rank 0 fails, the others wait in vain only until torchrun stops them (it stops every rank when one fails).
    summary = _finish(settings, ds, folder, run, split, checkpoint, sha, plan, predictor, mine, truth,
                      started=started, progress=progress, on_progress=on_progress, dist=dist)
    return dist.from_main(lambda: summary)


def _plan(settings: Settings, ds: Dataset, folder: Path, table: pd.DataFrame, sha: str,
          image_ids: Iterable[str] | None, plan: dict[str, Any], policy: str) -> list[str]:
    """Rank 0 (or the one process): reuse and rescore what is stored, return what must be predicted; what
    :func:`_finish` needs besides goes into ``plan``."""
    old = read_eval_table(folder)
    old_rows = {} if old is None else {r["image_id"]: r for r in old.to_dict("records")}
    merged = _merge_parts(folder, old_rows)
    rows: dict[str, dict[str, Any]] = {}
    if image_ids is not None:
        wanted = set(image_ids)
        # Rows of the split's other images stay as they are.
        rows = {i: r for i, r in old_rows.items() if i not in wanted and i in table.index}
        table = table[table.index.isin(wanted)]
    readable = table[table["readable"]]
    skipped = len(table) - len(readable)
    truth = groundtruth.snapshot(settings, ds, readable.index, policy=policy)
    todo: list[str] = []
    rescored = 0
    for image_id in readable.index:
        row = old_rows.get(image_id)
        if row is None or row["checkpoint_sha"] != sha or row["image_stat"] != image_stat(ds, image_id):
            todo.append(image_id)
            continue
        gt_version = _gt_version(row)
        # A table written before the official columns existed is rescored once to fill them in.
        stale = row["dataset_fingerprint"] != ds.fingerprint or any(c not in row for c in OFFICIAL_COLUMNS)
        if stale or gt_version != truth.versions[image_id]:
            pred = read_prediction(folder, image_id)
            if pred is None:
                todo.append(image_id)
                continue
            row.update(score(truth, image_id, pred))
            row["dataset_fingerprint"] = ds.fingerprint
            rescored += 1
        rows[image_id] = row
    if rescored or merged:
        _write(settings, ds, folder, rows)
    plan.update(rows=rows, old=old, old_rows=old_rows, readable=len(readable), skipped=skipped, rescored=rescored,
                merged=merged)
    return todo


def _finish(settings: Settings, ds: Dataset, folder: Path, run: str, split: str, checkpoint: str, sha: str,
            plan: dict[str, Any], predictor: Predictor | None, mine: list[list[str]], truth: groundtruth.GroundTruth,
            *, started: float, progress: bool, on_progress: Callable[[int, int], None] | None,
            dist: distributed.Context) -> dict[str, Any]:
    """Rank 0 (or the one process): predict its batches, merge the other ranks' parts, write the table once."""
    rows, old, old_rows, skipped = plan["rows"], plan["old"], plan["old_rows"], plan["skipped"]
    predicted, predict_seconds = 0, 0.0
    if mine:
        # Under torchrun rank 0 counts for every rank (they have equal shares): progress.json is an estimate.
        report = _Reporter(folder, plan["readable"], len(rows), progress, on_progress, step=dist.world_size)
        loop_started = last_save = time.perf_counter()
        try:
            for image_id, row in _rows(predictor, ds, mine, folder, truth, checkpoint, sha):
                if row is None:
                    skipped += 1
                    continue
                rows[image_id] = row
                predicted += 1
                report.advance()
                if time.perf_counter() - last_save > SAVE_EVERY_S:
                    _write(settings, ds, folder, rows)
                    last_save = time.perf_counter()
        except BaseException as exc:
            # Keep what was predicted: the rerun continues from here instead of starting over.
            _write(settings, ds, folder, rows)
            report.finish("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed")
            raise
        report.close()
        predict_seconds = time.perf_counter() - loop_started
    if dist.active:
        counts = dist.gather((0, 0))  # every rank has written its part (and its PNGs)
        predicted += sum(p for p, _ in counts[1:])
        skipped += sum(s for _, s in counts[1:])
        predict_seconds = time.perf_counter() - started  # the slowest rank's loop, model loading included
        _merge_parts(folder, rows)
    changed = predicted or plan["merged"] or old is None or len(rows) != len(old_rows)
    final = _write(settings, ds, folder, rows) if changed else old
    _remove_parts(folder)
    numbers = evaluation_headline(final)
    summary = {
        "run": run,
        "split": split,
        "checkpoint": checkpoint,
        "images": int(len(final)),
        # Against the official trimaps (the benchmark); None (JSON null) when no image of the split has one.
        "per_image_iou": _number(numbers["per_image_iou"]),
        "dataset_iou": _number(numbers["dataset_iou"]),
        # Against the ground truth in use: a correction where the image has one (corrected_images of them).
        "per_image_iou_corrected": _number(numbers["per_image_iou_corrected"]),
        "corrected_images": numbers["corrected_images"],
        "per_image_iou_border_as_pet": _number(numbers["per_image_iou_border_as_pet"]),
        "metrics_path": str(folder / METRICS_FILE),
        "predictions_dir": str(folder / PRED_DIR),
        "predicted": predicted,
        "reused": int(len(final)) - predicted,
        "rescored": plan["rescored"],
        "without_gt": int((~final["has_gt"]).sum()) if len(final) else 0,
        "skipped_unreadable": skipped,
        "seconds": round(time.perf_counter() - started, 2),
        # prediction loop only (decode, forward, original-size softmax, metrics, PNGs); model loading excluded
        "images_per_second": round(predicted / predict_seconds, 2) if predict_seconds else None,
    }
    atomic_write_text(folder / PROGRESS_FILE, json.dumps({"status": "done", "done": len(final),
                                                         "total": plan["readable"], "updated_at": time.time()}))
    return summary


def _predict_part(settings: Settings, ds: Dataset, folder: Path, predictor: Predictor | None, mine: list[list[str]],
                  truth: groundtruth.GroundTruth, checkpoint: str, sha: str, dist: distributed.Context) -> None:
    """A rank other than 0: predict its batches into ``parts/rank-<r>.parquet``, then report its counts."""
    rows: dict[str, dict[str, Any]] = {}
    predicted = skipped = 0
    part = folder / PARTS_DIR / f"rank-{dist.rank}.parquet"
    last_save = time.perf_counter()
    try:
        for image_id, row in _rows(predictor, ds, mine, folder, truth, checkpoint, sha) if mine else ():
            if row is None:
                skipped += 1
                continue
            rows[image_id] = row
            predicted += 1
            if time.perf_counter() - last_save > SAVE_EVERY_S:
                _write_part(part, rows)
                last_save = time.perf_counter()
    finally:
        if rows:
            _write_part(part, rows)  # also when interrupted: the rerun keeps these rows
    dist.gather((predicted, skipped))


def _rows(predictor: Predictor | None, ds: Dataset, batches: list[list[str]], folder: Path,
          truth: groundtruth.GroundTruth, checkpoint: str, sha: str) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """The table row of each predicted image (None for one that cannot be decoded)."""
    assert predictor is not None
    for image_id, prediction_row in _predict_all(predictor, ds, batches, folder, truth):
        if prediction_row is None:
            yield image_id, None
            continue
        row = {**image_identity(ds, image_id), **prediction_row}
        row.update(checkpoint=checkpoint, checkpoint_sha=sha, dataset_fingerprint=ds.fingerprint,
                   image_stat=image_stat(ds, image_id), evaluated_at=time.time())
        yield image_id, row


def _write_part(path: Path, rows: dict[str, dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as handle:
        pd.DataFrame.from_records(list(rows.values()), columns=list(EVAL_COLUMNS)).to_parquet(handle, index=False)


def _merge_parts(folder: Path, rows: dict[str, dict[str, Any]]) -> int:
    """Add the rows of ``parts/*.parquet`` (other ranks' work, finished or interrupted) to ``rows``; a row
    evaluated later wins. Returns how many rows were taken."""
    taken = 0
    for path in sorted((folder / PARTS_DIR).glob("rank-*.parquet")):
        try:
            part = pd.read_parquet(path)
        except (OSError, ValueError):
            continue  # torn files cannot happen (atomic writes); anything else unreadable is redone
        if set(part.columns) != set(EVAL_COLUMNS):
            continue
        for row in part.to_dict("records"):
            image_id = row["image_id"]
            if image_id not in rows or row["evaluated_at"] > rows[image_id].get("evaluated_at", 0):
                rows[image_id] = row
                taken += 1
    return taken


def _remove_parts(folder: Path) -> None:
    for path in (folder / PARTS_DIR).glob("rank-*.parquet"):
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        (folder / PARTS_DIR).rmdir()


def _write(settings: Settings, ds: Dataset, folder: Path, rows: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Write the table under its lock, first rescoring rows whose ground truth changed while this evaluation ran
    (a correction saved meanwhile rescored the table on disk, which this write replaces)."""
    with table_lock(folder):
        now = groundtruth.snapshot(settings, ds, [i for i in rows if i in ds.table.index])
        changed = [i for i in now.versions if _gt_version(rows[i]) != now.versions[i]]
        rescore_rows(folder, now, rows, changed, ds.fingerprint)
        return write_eval_table(folder, rows)


def _gt_version(row: dict[str, Any]) -> int | None:
    value = row.get("gt_version")
    return None if value is None or pd.isna(value) else int(value)


def _number(value: float) -> float | None:
    return None if value is None or math.isnan(float(value)) else float(value)


def image_identity(ds: Dataset, image_id: str) -> dict[str, Any]:
    """The identity columns of an evaluation row (core.runs.ID_COLUMNS but has_gt)."""
    info = ds.table.loc[image_id]
    return {
        "image_id": image_id,
        "split": info["split"],
        "breed": info["breed"],
        "species": info["species"],
        "width": int(info["width"]),
        "height": int(info["height"]),
    }


def _batches(ids: list[str], batch_size: int, predictor: Predictor) -> list[list[str]]:
    """``ids`` in batches for :func:`_predict_all`: every worker gets a batch even for a short list (a lone batch
    on one worker would use a share of the cores)."""
    workers = _worker_count(predictor.runtime, torch.get_num_threads())
    batch_size = max(1, min(batch_size, math.ceil(len(ids) / workers)))
    return [ids[i : i + batch_size] for i in range(0, len(ids), batch_size)]


def _predict_all(
    predictor: Predictor, ds: Dataset, batches: list[list[str]], folder: Path, truth: groundtruth.GroundTruth
) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """Yield ``(image_id, prediction and ground-truth columns)`` per image; None for an image that cannot be decoded.

    Batches go to a few worker threads that each do the whole job for theirs (decode, forward pass, logits at
    original size, metrics, scores, PNG encoding) with a share of the intra-op threads, so while one worker is
    in Python, PIL or OpenCV, another keeps the model busy. On the CPU that beats one forward pass spread over
    all cores with helper threads beside it: OpenMP threads that wait at every layer's barrier for a core a helper
    holds lose more than the helper's work weighs. A writer thread stores the PNGs (fsync waits for the disk, not
    the CPU). Batches are yielded in order (undecodable images first), and an image only once its PNG is on disk.
    """
    cfg, runtime = predictor.cfg, predictor.runtime
    pred_dir = folder / PRED_DIR
    pred_dir.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    workers = _worker_count(runtime, threads)
    # A GPU runs one batch at a time anyway, and MPS crashes when two threads use it at once.
    on_device = threading.Lock() if runtime.device_type != "cpu" else contextlib.nullcontext()

    def run(batch: list[str]) -> list[tuple[str, dict[str, Any] | None, Future | None]]:
        out, good = [], []
        for image_id in batch:
            try:
                image = load_image(ds, image_id)
            except ImageUnreadable:
                out.append((image_id, None, None))
                continue
            good.append((image_id, image.shape[:2], resize_image(image, cfg.image_size)))
        if not good:
            return out
        with on_device:
            logits = _logits_batch(predictor.model, cfg, runtime, np.stack([small for _, _, small in good]))
        for (image_id, (height, width), _), item in zip(good, logits, strict=True):
            mask, confidence, _ = at_original_size(item, height, width)
            values = prediction_metrics(mask, confidence)
            mask = mask.numpy()
            values.update(score(truth, image_id, mask, Probabilities.from_logits(item, IN_SAMPLE),
                                border=not cfg.binary))
            written = writer.submit(atomic_write_bytes, pred_dir / f"{image_id}.png", encode_png_fast(mask))
            out.append((image_id, values, written))
        return out

    # torch.set_num_threads sets the intra-op threads of the calling thread (and of threads started later, hence
    # the reset below).
    pool = ThreadPoolExecutor(max_workers=workers, initializer=torch.set_num_threads,
                              initargs=(max(1, threads // workers),))
    writer = ThreadPoolExecutor(max_workers=1)
    try:
        for future in [pool.submit(run, batch) for batch in batches]:
            for image_id, values, written in future.result():
                if written is not None:
                    written.result()
                yield image_id, values
    finally:
        pool.shutdown(cancel_futures=True)
        writer.shutdown()  # every yielded image's PNG is written before the table that lists it
        torch.set_num_threads(threads)


def _worker_count(runtime: Runtime, threads: int) -> int:
    """One worker per core up to four (more would hold more batches in memory than the speed-up is worth); two
    with a GPU, so that one worker's CPU work overlaps the other's forward pass."""
    if runtime.device_type != "cpu":
        return 2
    return max(1, min(4, threads))


class _Reporter:
    """tqdm on stderr, ``eval/<split>/progress.json`` for pollers, and an optional callback."""

    def __init__(self, folder: Path, total: int, done: int, progress: bool, callback: Callable | None, step: int = 1):
        folder.mkdir(parents=True, exist_ok=True)
        self.path, self.total, self.done, self.callback = folder / PROGRESS_FILE, total, done, callback
        self.step = step
        self.bar = tqdm(total=total, initial=done, desc="evaluating", unit="img", disable=not progress, leave=False)
        self.last = 0.0
        self._write("evaluating")

    def _write(self, status: str) -> None:
        atomic_write_text(self.path, json.dumps({"status": status, "done": self.done, "total": self.total,
                                                 "updated_at": time.time(), "pid": os.getpid()}))
        self.last = time.time()

    def advance(self) -> None:
        step = min(self.step, self.total - self.done)
        self.done += step
        self.bar.update(step)
        if self.callback is not None:
            self.callback(self.done, self.total)
        if time.time() - self.last >= 1.0:
            self._write("evaluating")

    def close(self) -> None:
        self.bar.close()

    def finish(self, status: str) -> None:
        self.bar.close()
        self._write(status)
