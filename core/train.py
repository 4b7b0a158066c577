"""Train the U-Net on the trimaps: configuration, data cache, augmentation, the loop, checkpoints.

    >>> from core.config import Settings
    >>> from core.train import TrainConfig, train
    >>> settings = Settings.resolve(data="data/oxford-iiit-pet", workspace="workspace")
    >>> result = train(settings, TrainConfig(run="quick-1", preset="quick"))
    >>> result.best_val_iou_pet
    0.87

Read top to bottom: presets and the config object, the array cache, augmentation, then
:func:`train` (data, model, optimiser, loop, validation, checkpoints).

The run folder ``<workspace>/runs/<run>/`` gets ``config.json``, ``metrics.csv`` (one row per epoch),
``last.pt`` (with optimiser/scheduler/RNG state for ``--resume``), ``best.pt`` (best validation pet IoU),
``train.log`` and ``progress.json``, rewritten atomically about once a second while training::

    {"run": "quick-1", "status": "training", "epoch": 3, "epochs": 10, "step": 40, "steps_per_epoch": 112,
     "loss": 0.41, "images_per_second": 46.1, "elapsed_s": 95.2, "updated_at": 1764100000.0, "pid": 4242}

``status`` is one of ``caching`` (building the array cache), ``training``, ``validating``, ``done``,
``failed`` (with ``error``) or ``interrupted``.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import logging
import math
import os
import platform
import shutil
import sys
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from core import groundtruth
from core.atomic import atomic_write_text
from core.config import Settings, check_run_name
from core.dataset import Dataset, load_image, open_dataset
from core.device import Runtime, available_cores, configure_cpu_threads, resolve_device, select_runtime
from core.errors import CheckpointError, ImageUnreadable, PetSegError
from core.masks import resize_image, resize_mask
from core.metrics import batch_metrics
from core.model import (
    ModelConfig,
    build_model,
    check_image_size,
    config_of,
    load_state,
    network_from_config,
    normalize,
    read_checkpoint,
    restore_rng,
    rng_state,
    save_checkpoint,
    to_input,
)
from core.runs import CONFIG_FILE, LOG_FILE, METRICS_COLUMNS, METRICS_CSV, PROGRESS_FILE

log = logging.getLogger("petseg")

# --- configuration ----------------------------------------------------------

# "full" follows smp's Oxford-pet example (resnet34, 256 px, Adam 2e-4 with a per-step cosine schedule down
# to 1e-5, batch 8); "quick" is a CPU-sized variant: a small encoder, 128 px, a slimmer decoder and a
# larger learning rate because without network access the encoder starts from random weights.
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {
        "encoder": "resnet18",
        "image_size": 128,
        "batch_size": 8,
        "epochs": 10,
        "lr": 1e-3,
        "decoder_channels": (128, 64, 32, 16, 16),
    },
    "full": {
        "encoder": "resnet34",
        "image_size": 256,
        "batch_size": 8,
        "epochs": 10,
        "lr": 2e-4,
        "decoder_channels": (256, 128, 64, 32, 16),
    },
}
DEFAULT_PRESET = "full"
# A resumed run keeps its config.json; these flags, if given, must agree with it (epochs, device and precision
# may change).
FIXED_ON_RESUME = ("preset", "encoder", "image_size", "batch_size", "lr", "decoder_channels", "max_images")

PROGRESS_EVERY_S = 1.0


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``None`` fields take the preset's value (see :meth:`resolved`)."""

    run: str
    preset: str | None = None
    epochs: int | None = None
    image_size: int | None = None
    batch_size: int | None = None
    encoder: str | None = None
    encoder_weights: str | None = "imagenet"
    encoder_depth: int = 5
    decoder_channels: tuple[int, ...] | None = None
    lr: float | None = None
    min_lr: float = 1e-5
    weight_decay: float = 0.0
    seed: int = 0
    precision: str = "auto"
    device: str = "auto"
    max_images: int | None = None
    val_fraction: float = 0.1
    augment: bool = True
    resume: bool = False
    use_corrections: bool = False
    progress: bool = True  # tqdm bars on stderr

    def resolved(self) -> TrainConfig:
        """The preset's values filled into every field left ``None``."""
        preset = self.preset or DEFAULT_PRESET
        if preset not in PRESETS:
            raise PetSegError(f"unknown preset {preset!r}: use one of {', '.join(PRESETS)}")
        values = {k: v for k, v in PRESETS[preset].items() if getattr(self, k) is None}
        cfg = dataclasses.replace(self, preset=preset, **values)
        if cfg.encoder_weights in ("none", "None", ""):
            cfg = dataclasses.replace(cfg, encoder_weights=None)
        if cfg.decoder_channels is not None:
            cfg = dataclasses.replace(cfg, decoder_channels=tuple(cfg.decoder_channels)[: cfg.encoder_depth])
        check_run_name(cfg.run)
        check_image_size(int(cfg.image_size))
        if not 0.0 <= cfg.val_fraction < 1.0:
            raise PetSegError(f"validation fraction {cfg.val_fraction} must be in [0, 1)")
        return cfg

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if data["decoder_channels"] is not None:
            data["decoder_channels"] = list(data["decoder_channels"])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if known.get("decoder_channels") is not None:
            known["decoder_channels"] = tuple(known["decoder_channels"])
        return cls(**known)


def config_from_args(args: Any) -> TrainConfig:
    """The ``python -m core train`` flags as a TrainConfig (unset flags stay ``None`` -> preset)."""
    fields = {
        "run": args.run,
        "preset": getattr(args, "preset", None),
        "epochs": getattr(args, "epochs", None),
        "image_size": getattr(args, "image_size", None),
        "batch_size": getattr(args, "batch_size", None),
        "encoder": getattr(args, "encoder", None),
        "lr": getattr(args, "lr", None),
        "max_images": getattr(args, "max_images", None),
        "resume": bool(getattr(args, "resume", False)),
        "use_corrections": bool(getattr(args, "use_corrections", False)),
    }
    for name in ("encoder_weights", "seed", "precision", "device"):
        value = getattr(args, name, None)
        if value is not None:
            fields[name] = value
    return TrainConfig(**fields)


# --- which images ----------------------------------------------------------


def _hash_order(ids: list[str]) -> list[str]:
    """A fixed pseudo-random order of ids (independent of the seed, so every run validates on the same images)."""
    return sorted(ids, key=lambda i: hashlib.sha1(i.encode()).hexdigest())


def split_trainval(ids: list[str], val_fraction: float = 0.1, max_images: int | None = None) -> tuple[list, list]:
    """``(train_ids, val_ids)``: validation is the first ``val_fraction`` of a fixed hash order of ``ids``."""
    order = _hash_order(ids)
    if max_images:
        order = order[:max_images]
    n_val = 0 if val_fraction <= 0 or len(order) < 2 else max(1, round(len(order) * val_fraction))
    return sorted(order[n_val:]), sorted(order[:n_val])


def trainable_ids(ds: Dataset, corrected: Iterable[str] = ()) -> tuple[list[str], int]:
    """trainval images that decode and have a trimap (or a correction), and how many trainval images were left out.

    Test images are never trainable, corrected or not: their corrections only ever serve as evaluation ground truth.
    """
    table = ds.table[ds.table["split"] == "trainval"]
    usable = table[table["readable"] & (table["has_trimap"] | table.index.isin(list(corrected)))]
    return list(usable.index), len(table) - len(usable)


# --- array cache ------------------------------------------------------------


class ArrayCache:
    """Images and ground-truth masks decoded once and resized to the input size, as uint8 ``.npy`` memmaps.

    ``<workspace>/cache/arrays/<dataset fingerprint>-<size>/`` holds ``images.npy`` (N, S, S, 3),
    ``masks.npy`` (N, S, S) for every usable trainval image, and ``state.json`` listing the rows filled so far
    with the ground-truth version each mask was made from. Rows are filled on demand, so a ``--max-images``
    run decodes only what it trains on; a mask whose ground-truth version changed is refilled.
    """

    KEEP = 4  # cache folders kept (one per dataset version and size seen recently)

    def __init__(self, folder: Path, ids: list[str], size: int):
        self.folder = folder
        self.ids = ids
        self.size = size
        self.row = {image_id: i for i, image_id in enumerate(ids)}
        self.folder.mkdir(parents=True, exist_ok=True)
        state = self._read_state()
        if state is None or state.get("ids") != ids or state.get("size") != size:
            state = {"ids": ids, "size": size, "filled": {}}
            self._create_arrays()
        self.filled: dict[str, int | None] = state["filled"]
        self.images = np.load(folder / "images.npy", mmap_mode="r+")
        self.masks = np.load(folder / "masks.npy", mmap_mode="r+")

    @classmethod
    def open(cls, settings: Settings, ds: Dataset, ids: list[str], size: int) -> ArrayCache:
        root = settings.cache_dir / "arrays"
        folder = root / f"{ds.fingerprint[:20]}-{size}"
        cache = cls(folder, sorted(ids), size)
        _prune_old(root, keep=cls.KEEP, current=folder)
        return cache

    def _read_state(self) -> dict | None:
        try:
            return json.loads((self.folder / "state.json").read_text())
        except (OSError, ValueError):
            return None

    def _create_arrays(self) -> None:
        n, s = len(self.ids), self.size
        for name, shape in (("images.npy", (n, s, s, 3)), ("masks.npy", (n, s, s))):
            np.lib.format.open_memmap(self.folder / name, mode="w+", dtype=np.uint8, shape=shape).flush()
        atomic_write_text(self.folder / "state.json", json.dumps({"ids": self.ids, "size": self.size, "filled": {}}))

    def ensure(self, settings: Settings, ds: Dataset, ids: list[str], use_corrections: bool, progress: bool) -> None:
        """Decode and resize every id not cached yet (or whose ground truth changed since)."""
        truth = groundtruth.snapshot(settings, ds, ids, corrections=use_corrections)
        todo = [i for i in ids if i not in self.filled or self.filled[i] != truth.versions[i]]
        if not todo:
            return
        log.info("caching %d images at %d px in %s", len(todo), self.size, self.folder)

        def fill(image_id: str) -> tuple[str, int | None] | None:
            try:
                image = load_image(ds, image_id)
                mask, version = truth.mask(image_id), truth.versions[image_id]
            except ImageUnreadable as exc:
                log.warning("skipped %s: %s", image_id, exc)
                return None
            if mask is None:
                return None
            row = self.row[image_id]
            self.images[row] = resize_image(image, self.size)
            self.masks[row] = resize_mask(mask, self.size)
            return image_id, version

        # Decoding releases the GIL (PIL, OpenCV); the model is not running yet, so both cores may decode.
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            results = list(tqdm(pool.map(fill, todo), total=len(todo), desc="caching", disable=not progress,
                                leave=False))
        self.images.flush()
        self.masks.flush()
        for result in results:
            if result is not None:
                self.filled[result[0]] = result[1]
        atomic_write_text(
            self.folder / "state.json", json.dumps({"ids": self.ids, "size": self.size, "filled": self.filled})
        )

    def rows(self, ids: list[str]) -> np.ndarray:
        return np.array([self.row[i] for i in ids if i in self.filled], dtype=np.int64)


def _prune_old(root: Path, keep: int, current: Path) -> None:
    folders = sorted((p for p in root.iterdir() if p.is_dir() and p != current), key=lambda p: p.stat().st_mtime)
    for old in folders[: max(0, len(folders) - (keep - 1))]:
        shutil.rmtree(old, ignore_errors=True)


# --- augmentation -----------------------------------------------------------


def augment(
    images: torch.Tensor, masks: torch.Tensor, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flip, scale/crop and colour jitter of a whole batch at once, on tensors.

    ``images`` uint8 (B, S, S, 3), ``masks`` uint8 (B, S, S) trimap-coded. Returns float NCHW pixels in 0..255
    and the augmented trimap-coded masks. Geometry is one affine grid per image, applied to image (bilinear)
    and mask (nearest) alike, zooming in by up to 1/0.7 so the crop never leaves the picture.
    """
    b, s = images.shape[0], images.shape[1]
    x = images.permute(0, 3, 1, 2).float()
    m = masks.unsqueeze(1).float()

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(*shape, generator=gen)

    scale_x, scale_y = uniform(0.7, 1.0, b), uniform(0.7, 1.0, b)
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    shift_x = (1 - scale_x) * uniform(-1.0, 1.0, b)
    shift_y = (1 - scale_y) * uniform(-1.0, 1.0, b)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = scale_x * flip, shift_x
    theta[:, 1, 1], theta[:, 1, 2] = scale_y, shift_y
    grid = F.affine_grid(theta, [b, 3, s, s], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    m = F.grid_sample(m, grid, mode="nearest", padding_mode="border", align_corners=False)

    brightness = uniform(0.75, 1.25, b, 1, 1, 1)
    contrast = uniform(0.75, 1.25, b, 1, 1, 1)
    saturation = uniform(0.7, 1.3, b, 1, 1, 1)
    gray = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    x = gray + (x - gray) * saturation
    mean = gray.mean(dim=(2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean) * brightness
    return x.clamp_(0, 255), m.squeeze(1).to(torch.uint8)


# --- batches ----------------------------------------------------------------


def _batches(rows: np.ndarray, batch_size: int, rng: np.random.Generator | None) -> Iterator[np.ndarray]:
    """Row indices per step. Training (rng given): shuffled, remainder dropped; validation: all rows in order."""
    if rng is None:
        for start in range(0, len(rows), batch_size):
            yield rows[start : start + batch_size]
        return
    order = rows[rng.permutation(len(rows))]
    steps = max(1, len(order) // batch_size)
    for step in range(steps):
        yield np.sort(order[step * batch_size : (step + 1) * batch_size])  # sorted rows read the memmap in order


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    return max(1, n_train // batch_size)


def _load(cache: ArrayCache, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(cache.images[rows]), torch.from_numpy(cache.masks[rows])


# --- loss -------------------------------------------------------------------


class SegLoss(torch.nn.Module):
    """smp's multiclass Dice loss plus cross-entropy, on logits (computed in fp32 under autocast)."""

    def __init__(self) -> None:
        super().__init__()
        import segmentation_models_pytorch as smp

        self.dice = smp.losses.DiceLoss(mode="multiclass", from_logits=True)
        self.ce = torch.nn.CrossEntropyLoss()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        return self.dice(logits, target) + self.ce(logits, target)


# --- progress and run files ---------------------------------------------------


class Progress:
    """``progress.json`` for pollers (the dashboard), rewritten atomically at most once a second."""

    def __init__(self, run_dir: Path, run: str, epochs: int):
        self.path = run_dir / PROGRESS_FILE
        self.state: dict[str, Any] = {"run": run, "status": "starting", "epoch": 0, "epochs": epochs, "step": 0,
                                      "steps_per_epoch": 0, "loss": None, "pid": os.getpid()}
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


def _write_metrics_csv(path: Path, history: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=METRICS_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({k: "" if v is None or (isinstance(v, float) and math.isnan(v)) else v for k, v in row.items()})
    atomic_write_text(path, buffer.getvalue())


class _TqdmHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record), file=sys.stderr)


def _attach_logs(run_dir: Path) -> list[logging.Handler]:
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


def _detach_logs(handlers: list[logging.Handler]) -> None:
    for handler in handlers:
        log.removeHandler(handler)
        handler.close()
    log.propagate = True


# --- the loop -----------------------------------------------------------------


@dataclass
class TrainResult:
    run_dir: Path
    epochs: int
    best_epoch: int | None
    best_val_iou_pet: float | None
    history: list[dict[str, Any]]


def train(settings: Settings, cfg: TrainConfig) -> TrainResult:
    """Train (or resume) the run described by ``cfg``; see the module docstring for what is written."""
    run_dir = settings.run_dir(cfg.run)
    saved = _check_run_folder(run_dir, cfg)
    default_recipe = cfg.preset is None and not saved
    cfg = (_merge_resumed(saved, cfg) if saved else cfg).resolved()
    handlers = _attach_logs(run_dir)
    progress = Progress(run_dir, cfg.run, int(cfg.epochs))
    if default_recipe and resolve_device(cfg.device) == "cpu":
        log.warning("training the full recipe (%s at %d px) on the CPU: hours on the full dataset; "
                    "--preset quick trains a small model in minutes", cfg.encoder, cfg.image_size)
    try:
        return _train(settings, cfg, run_dir, progress)
    except KeyboardInterrupt:
        progress.update(force=True, status="interrupted")
        log.warning("interrupted: resume with --resume (continues after the last finished epoch)")
        raise
    except BaseException as exc:
        progress.update(force=True, status="failed", error=str(exc).splitlines()[0] if str(exc) else repr(exc))
        raise
    finally:
        _detach_logs(handlers)


def _train(settings: Settings, cfg: TrainConfig, run_dir: Path, progress: Progress) -> TrainResult:
    runtime = select_runtime(cfg.device, cfg.precision)
    torch.manual_seed(cfg.seed)
    numpy_rng = np.random.default_rng(cfg.seed)
    aug_gen = torch.Generator().manual_seed(cfg.seed)

    # Data: usable trainval images, a fixed validation slice, and the array cache.
    ds = open_dataset(settings.data, settings.workspace)
    corrected = groundtruth.snapshot(settings, ds, ds.table.index, corrections=cfg.use_corrections).versions
    usable, left_out = trainable_ids(ds, [i for i, v in corrected.items() if v is not None])
    if left_out:
        log.warning("%d trainval images are unreadable or have no trimap: left out of training", left_out)
    train_ids, val_ids = split_trainval(usable, cfg.val_fraction, cfg.max_images)
    if not train_ids:
        raise PetSegError(f"no trainable images in {ds.root}: the trainval split has no readable image with a trimap")
    progress.update(force=True, status="caching")
    cache = ArrayCache.open(settings, ds, usable, int(cfg.image_size))
    cache.ensure(settings, ds, train_ids + val_ids, cfg.use_corrections, cfg.progress)
    train_rows, val_rows = cache.rows(train_ids), cache.rows(val_ids)

    # Model, optimiser, schedule: fresh, or exactly as last.pt left them.
    last = run_dir / "last.pt"
    steps = steps_per_epoch(len(train_rows), int(cfg.batch_size))
    if cfg.resume:
        payload = read_checkpoint(last)
        model_cfg = config_of(payload, last)
        model = network_from_config(model_cfg)
        load_state(model, payload["state_dict"], model_cfg, last)
    else:
        model, model_cfg = build_model(
            cfg.encoder, int(cfg.image_size), cfg.encoder_weights, cfg.decoder_channels, cfg.encoder_depth
        )
        payload = None
    model = runtime.prepare_model(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=float(cfg.lr), weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=int(cfg.epochs) * steps, eta_min=cfg.min_lr)
    scaler = torch.amp.GradScaler(runtime.device_type, enabled=runtime.precision == "fp16")
    loss_fn = SegLoss()
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"epoch": None, "val_iou_pet": None}
    start_epoch = 1
    if payload is not None:
        start_epoch, history, best = _restore(payload, optimizer, scheduler, numpy_rng, aug_gen, cfg, steps, last)

    # The masks this run learns from, so a result can be traced to the corrections behind it.
    used = {i: cache.filled[i] for i in train_ids + val_ids if cache.filled.get(i) is not None}
    _write_config(run_dir, cfg, model_cfg, runtime, ds, train_ids, val_ids, used, resumed=payload is not None)
    log.info("run %s: %s, %s; %d train / %d val images, %d steps per epoch",
             cfg.run, model_cfg.describe(), runtime.describe(), len(train_rows), len(val_rows), steps)
    if start_epoch > int(cfg.epochs):
        log.warning("run %s already finished its %d epochs: pass a larger --epochs with --resume to train longer",
                    cfg.run, int(cfg.epochs))
    progress.update(force=True, status="training", epoch=start_epoch, steps_per_epoch=steps)

    for epoch in range(start_epoch, int(cfg.epochs) + 1):
        if runtime.device_type == "cpu" and epoch > start_epoch:
            _share_cpu_fairly()
        started = time.perf_counter()
        model.train()
        total, seen = 0.0, 0
        bar = tqdm(_batches(train_rows, int(cfg.batch_size), numpy_rng), total=steps, disable=not cfg.progress,
                   desc=f"epoch {epoch}/{cfg.epochs}", leave=False, unit="step")
        for step, rows in enumerate(bar, start=1):
            images, masks = _load(cache, rows)
            if cfg.augment:
                pixels, masks = augment(images, masks, aug_gen)
            else:
                pixels = images.permute(0, 3, 1, 2).float()
            x = runtime.prepare(normalize(pixels, model_cfg))
            target = (masks.long() - 1).to(runtime.torch_device)
            with runtime.autocast():
                logits = model(x)
            loss = loss_fn(logits, target)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            total += loss.item() * len(rows)
            seen += len(rows)
            bar.set_postfix(loss=f"{total / seen:.4f}")
            progress.update(epoch=epoch, step=step, loss=round(total / seen, 5),
                            images_per_second=round(seen / (time.perf_counter() - started), 2))
        bar.close()
        train_seconds = time.perf_counter() - started

        progress.update(force=True, status="validating")
        val = validate(model, model_cfg, runtime, cache, val_rows, int(cfg.batch_size), loss_fn)
        row = {
            "epoch": epoch,
            "train_loss": total / max(seen, 1),
            **val,
            "seconds": round(time.perf_counter() - started, 2),
            "lr": optimizer.param_groups[0]["lr"],
            "images_per_second": round(seen / train_seconds, 2),
        }
        history.append(row)
        # Without a validation set (tiny datasets) the latest model is the best one we know of.
        score = val["val_iou_pet"]
        improved = score is None or best["val_iou_pet"] is None or score > best["val_iou_pet"]
        if improved:
            best = {"epoch": epoch, "val_iou_pet": score}
        meta = _meta(cfg, ds, runtime, epoch, row, best)
        if improved:
            save_checkpoint(run_dir / "best.pt", model, model_cfg, meta)
        train_state = {
            "epoch": epoch,
            "epochs": int(cfg.epochs),
            "steps_per_epoch": steps,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "rng": rng_state(numpy_rng, aug_gen),
            "history": history,
            "best": best,
        }
        save_checkpoint(last, model, model_cfg, meta, train_state=train_state)
        _write_metrics_csv(run_dir / METRICS_CSV, history)
        log.info("epoch %d/%d: train loss %.4f, val loss %s, val pet IoU %s, %.1f s (%.1f img/s)%s", epoch, cfg.epochs,
                 row["train_loss"], _fmt(val["val_loss"]), _fmt(val["val_iou_pet"]), row["seconds"],
                 row["images_per_second"], " (best)" if improved else "")
        if cfg.progress:
            tqdm.write(f"epoch {epoch}/{cfg.epochs}: train loss {row['train_loss']:.4f}, "
                       f"val pet IoU {_fmt(val['val_iou_pet'])}, {row['seconds']:.1f} s", file=sys.stderr)
        progress.update(force=True, status="training", epoch=epoch, step=steps)

    progress.update(force=True, status="done")
    return TrainResult(run_dir, len(history), best["epoch"], best["val_iou_pet"], history)


def _share_cpu_fairly() -> None:
    """Re-pick the thread count: another process may have started (or ended) on these cores meanwhile."""
    before = torch.get_num_threads()
    after = configure_cpu_threads()
    if after != before:
        log.info("CPU threads %d -> %d (other processes busy on %d cores)", before, after, available_cores() - after)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


@torch.inference_mode()
def validate(
    model: torch.nn.Module,
    model_cfg: ModelConfig,
    runtime: Runtime,
    cache: ArrayCache,
    rows: np.ndarray,
    batch_size: int,
    loss_fn: torch.nn.Module,
) -> dict[str, float | None]:
    """Loss and per-image metrics (mean over images) on the cached validation arrays at the input size."""
    if len(rows) == 0:
        return {"val_loss": None, "val_iou_pet": None, "val_miou_3class": None, "val_pixel_accuracy": None}
    model.eval()
    loss_sum, n = 0.0, 0
    parts: dict[str, list[np.ndarray]] = {"iou_pet": [], "miou_3class": [], "pixel_accuracy": []}
    for batch in _batches(rows, batch_size * 2, None):
        images, masks = _load(cache, batch)
        x = runtime.prepare(to_input(images, model_cfg))
        with runtime.autocast():
            logits = model(x)
        target = (masks.long() - 1).to(runtime.torch_device)
        loss_sum += float(loss_fn(logits, target)) * len(batch)
        n += len(batch)
        pred = (logits.argmax(1) + 1).to(torch.uint8).cpu()
        values = batch_metrics(pred, masks)
        for key in parts:
            parts[key].append(values[key])
    model.train()
    return {
        "val_loss": loss_sum / n,
        "val_iou_pet": float(np.concatenate(parts["iou_pet"]).mean()),
        "val_miou_3class": float(np.concatenate(parts["miou_3class"]).mean()),
        "val_pixel_accuracy": float(np.concatenate(parts["pixel_accuracy"]).mean()),
    }


# --- run folder helpers ---------------------------------------------------------


def _check_run_folder(run_dir: Path, cfg: TrainConfig) -> dict[str, Any] | None:
    """The saved config of a run being resumed; refuse to overwrite an existing run by accident."""
    last = run_dir / "last.pt"
    if cfg.resume:
        if not last.is_file():
            raise PetSegError(f"nothing to resume: run {cfg.run} has no last.pt yet; start it without --resume")
        try:
            saved = json.loads((run_dir / CONFIG_FILE).read_text())
        except (OSError, ValueError):
            return None  # the model config in last.pt is still authoritative
        return saved if isinstance(saved.get("train"), dict) else None
    if last.is_file() or (run_dir / METRICS_CSV).is_file():
        raise PetSegError(
            f"run {cfg.run} already exists in {run_dir.parent}: add --resume to continue it or choose another --run"
        )
    return None


def _merge_resumed(saved: dict[str, Any], requested: TrainConfig) -> TrainConfig:
    """The run's own settings, plus the few a resume may change (more epochs, another device or precision)."""
    old = TrainConfig.from_dict(saved["train"])
    for name in FIXED_ON_RESUME:
        new, was = getattr(requested, name), getattr(old, name)
        if name == "decoder_channels" and new is not None:
            new = tuple(new)
        # A flag that contradicts the run would silently be ignored: refuse instead.
        if new is not None and new != was:
            raise PetSegError(
                f"run {requested.run} was trained with {name}={was}, not {new}: resume without that flag "
                "or start a new --run"
            )
    return dataclasses.replace(
        old,
        resume=True,
        epochs=requested.epochs or old.epochs,
        device=requested.device,
        precision=requested.precision,
        progress=requested.progress,
    )


def _restore(
    payload: dict[str, Any],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    numpy_rng: np.random.Generator,
    aug_gen: torch.Generator,
    cfg: TrainConfig,
    steps: int,
    path: Path,
) -> tuple[int, list[dict[str, Any]], dict[str, Any]]:
    state = payload.get("train_state")
    if not state:
        raise CheckpointError(f"checkpoint {path} has no training state (is it a best.pt copy?): start a new --run")
    try:
        optimizer.load_state_dict(state["optimizer"])
        if state.get("epochs") == int(cfg.epochs) and state.get("steps_per_epoch") == steps:
            scheduler.load_state_dict(state["scheduler"])
        else:
            # Another number of epochs than planned: continue on the cosine of the new length, from the point
            # it has reached after the epochs already done (a finished run is re-warmed to that learning rate).
            done, total = int(state["epoch"]) * steps, int(cfg.epochs) * steps
            lr = cfg.min_lr + (float(cfg.lr) - cfg.min_lr) * (1 + math.cos(math.pi * min(done, total) / total)) / 2
            for group in optimizer.param_groups:
                group["initial_lr"], group["lr"] = float(cfg.lr), lr
            scheduler.last_epoch, scheduler.T_max = done, total
        restore_rng(state["rng"], numpy_rng, aug_gen)
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} has an unusable training state ({exc}): start a new --run") from exc
    history = list(state.get("history") or [])
    log.info("resuming run %s after epoch %d", cfg.run, int(state["epoch"]))
    return int(state["epoch"]) + 1, history, dict(state.get("best") or {"epoch": None, "val_iou_pet": None})


def _meta(
    cfg: TrainConfig, ds: Dataset, runtime: Runtime, epoch: int, row: dict[str, Any], best: dict[str, Any]
) -> dict[str, Any]:
    return {
        "run": cfg.run,
        "epoch": epoch,
        "metrics": {k: (None if v is None else float(v)) for k, v in row.items() if k != "epoch"},
        "best": best,
        "dataset_fingerprint": ds.fingerprint,
        "dataset_synthetic": bool(ds.synthetic),
        "precision": runtime.precision,
        "device": runtime.device,
        "use_corrections": cfg.use_corrections,
        "saved_at": time.time(),
        "torch": str(torch.__version__),
    }


def _write_config(
    run_dir: Path,
    cfg: TrainConfig,
    model_cfg: ModelConfig,
    runtime: Runtime,
    ds: Dataset,
    train_ids: list[str],
    val_ids: list[str],
    corrections: dict[str, int],
    resumed: bool,
) -> None:
    path = run_dir / CONFIG_FILE
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        previous = {}
    import segmentation_models_pytorch as smp

    now = time.time()
    config = {
        "run": cfg.run,
        "created_at": previous.get("created_at", now),
        "resumed_at": previous.get("resumed_at", []) + ([now] if resumed else []),
        "train": cfg.to_dict(),
        "model": model_cfg.to_dict(),
        "runtime": {**dataclasses.asdict(runtime), "threads": torch.get_num_threads()},
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
