"""Train the U-Net on the trimaps: presets, the config, the loop, validation, checkpoints and resume.

    >>> from core.config import Settings
    >>> from core.train import TrainConfig, train
    >>> settings = Settings.resolve(data="data/oxford-iiit-pet", workspace="workspace")
    >>> result = train(settings, TrainConfig(run="quick-1", preset="quick"))
    >>> result.best_val_iou_pet
    0.87

Read top to bottom: presets and the config object, then :func:`train` (lock the run, data, model, optimiser,
the loop, validation, checkpoints) and the resume maths. The data (split, array cache, augmentation, batches)
is :mod:`core.data`; the run folder's files other than checkpoints are written by :mod:`core.run_folder`.

The run folder ``<workspace>/runs/<run>/`` gets ``config.json``, ``metrics.csv`` (one row per epoch),
``last.pt`` (with optimiser/scheduler/RNG state for ``--resume``), ``best.pt`` (best validation pet IoU),
``train.log`` and ``progress.json``. One process at a time trains a run: a second is refused.

Under torchrun (``torchrun --nproc_per_node=N -m -- core train ...``) every rank runs this same loop on a
DistributedDataParallel model; rank 0 alone holds and writes the run folder. ``--batch-size`` is the global
batch: each step takes the batch one process would take (same shuffled order, same augmentation draws) and
splits it over the ranks, so the run's recipe (effective batch, learning rate, schedule, steps per epoch) does
not depend on the world size, and ``--resume`` continues on any number of processes. To keep 8 images per GPU
on 4 GPUs, ask for ``--batch-size 32`` (and scale ``--lr`` if you want the linear scaling rule).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from core import distributed, groundtruth, run_folder, users
from core.cleanup import sweep_stale
from core.config import Settings, check_run_name
from core.data import ArrayCache, augment, batches, shard, split_trainval, steps_per_epoch, trainable_ids
from core.dataset import Dataset, open_dataset
from core.device import Runtime, available_cores, configure_cpu_threads, resolve_device, select_runtime
from core.errors import CheckpointError, PetSegError
from core.metrics import batch_metrics
from core.model import (
    ModelConfig,
    SegLoss,
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

log = logging.getLogger("petseg")

# --- configuration ----------------------------------------------------------

# "full" follows smp's Oxford-pet example (resnet34, 256 px, Adam 2e-4 with a per-step cosine schedule down
# to 1e-5, batch 8); "quick" is a CPU-sized variant: a small encoder, 128 px, a slimmer decoder and a
# larger learning rate because without network access the encoder starts from random weights.
PRESETS: dict[str, dict[str, Any]] = {
    "quick": {"encoder": "resnet18", "image_size": 128, "batch_size": 8, "epochs": 10, "lr": 1e-3,
              "decoder_channels": (128, 64, 32, 16, 16)},
    "full": {"encoder": "resnet34", "image_size": 256, "batch_size": 8, "epochs": 10, "lr": 2e-4,
             "decoder_channels": (256, 128, 64, 32, 16)},
}
DEFAULT_PRESET = "full"  # with CUDA; without it, "quick" (default_preset): the full recipe takes hours on a CPU


def default_preset(device: str = "auto") -> str:
    """The preset a run without ``--preset`` uses: the published recipe on a CUDA GPU, the quick one elsewhere."""
    try:
        return DEFAULT_PRESET if resolve_device(device).startswith("cuda") else "quick"
    except PetSegError:  # an unavailable device is refused where the run starts, with its own message
        return "quick"
# A resumed run keeps its config.json; these flags, if given, must agree with it (epochs, device and precision
# may change).
FIXED_ON_RESUME = ("preset", "encoder", "image_size", "batch_size", "lr", "decoder_channels", "max_images")


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
    corrections: str = "accepted"  # with use_corrections: which version counts (core.groundtruth.POLICIES)
    progress: bool = True  # tqdm bars on stderr

    def resolved(self) -> TrainConfig:
        """The preset's values filled into every field left ``None``."""
        preset = self.preset or default_preset(self.device)
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
    fields = {name: getattr(args, name, None)
              for name in ("preset", "epochs", "image_size", "batch_size", "encoder", "lr", "max_images")}
    fields.update({name: bool(getattr(args, name, False)) for name in ("resume", "use_corrections")})
    # Flags whose default lives in TrainConfig: only a given value overrides it.
    fields.update({name: value for name in ("encoder_weights", "seed", "precision", "device", "corrections")
                   if (value := getattr(args, name, None)) is not None})
    return TrainConfig(run=args.run, **fields)


# --- the loop -----------------------------------------------------------------


@dataclass
class TrainResult:
    run_dir: Path
    epochs: int
    best_epoch: int | None
    best_val_iou_pet: float | None
    history: list[dict[str, Any]]


def train(settings: Settings, cfg: TrainConfig, split: tuple[list[str], list[str]] | None = None, *,
          actor: str | None = None) -> TrainResult:
    """Train (or resume) the run described by ``cfg`` as ``actor`` (None = the OS user; an admin's action); see the
    module docstring for what is written.

    ``split``: train on these ids and validate on those (cross-validation folds) instead of the fixed split.
    """
    users.require(settings, actor, "train")
    run_dir = settings.run_dir(cfg.run)
    device = resolve_device(cfg.device)
    with distributed.session(device) as dist, contextlib.ExitStack() as held:
        if dist.is_main:
            sweep_stale(settings)  # checkpoint temporaries left by crashed trainings (stale and unlocked only)
        # One trainer per run: a second process is refused until this one returns (or dies). Under torchrun
        # rank 0 holds the run and every rank gets its answer (the saved config, or the refusal).
        saved = dist.from_main(lambda: held.enter_context(run_folder.claim(run_dir, cfg.run, cfg.resume)))
        default_recipe = cfg.preset is None and not saved
        cfg = (_merge_resumed(saved, cfg) if saved else cfg).resolved()
        progress: run_folder.Progress | _NoProgress = _NoProgress()
        if dist.is_main:
            held.callback(run_folder.detach_logs, run_folder.attach_logs(run_dir))
            progress = run_folder.Progress(run_dir, cfg.run, int(cfg.epochs))
        if default_recipe and cfg.preset != DEFAULT_PRESET and dist.is_main:
            log.info("no CUDA GPU: the default preset is %s (%s at %d px); --preset %s trains the published recipe",
                     cfg.preset, cfg.encoder, cfg.image_size, DEFAULT_PRESET)
        try:
            return _train(settings, cfg, run_dir, progress, held, dist, distributed.device_for(dist, device), split)
        except KeyboardInterrupt:
            distributed.failing()
            progress.update(force=True, status="interrupted")
            log.warning("interrupted: resume with --resume (continues after the last finished epoch)")
            raise
        except BaseException as exc:
            distributed.failing()
            message = distributed.describe_failure(exc)
            progress.update(force=True, status="failed", error=message)
            if dist.active:
                # The error every rank's log ends with, whichever rank failed first.
                log.error("%s failed: %s. torchrun stops the other ranks; the last finished epoch stays in %s: "
                          "resume with --resume", dist.describe(), message, run_dir / "last.pt")
            raise


class _NoProgress:
    """progress.json is rank 0's to write."""

    def update(self, force: bool = False, **values: Any) -> None:
        pass


def _train(settings: Settings, cfg: TrainConfig, run_dir: Path, progress: run_folder.Progress | _NoProgress,
           held: contextlib.ExitStack, dist: distributed.Context, device: str,
           split: tuple[list[str], list[str]] | None = None) -> TrainResult:
    runtime = select_runtime(device, cfg.precision)
    torch.manual_seed(cfg.seed)
    numpy_rng = np.random.default_rng(cfg.seed)
    aug_gen = torch.Generator().manual_seed(cfg.seed)

    # Data: usable trainval images, a fixed validation slice, and the array cache.
    ds = open_dataset(settings.data, settings.workspace)
    truth = groundtruth.snapshot(settings, ds, ds.table.index, corrections=cfg.use_corrections,
                                 policy=cfg.corrections)
    usable, left_out = trainable_ids(ds, [i for i, v in truth.versions.items() if v is not None])
    if left_out:
        log.warning("%d trainval images are unreadable or have no trimap: left out of training", left_out)
    train_ids, val_ids = split_trainval(usable, cfg.val_fraction, cfg.max_images) if split is None else split
    if not train_ids:
        raise PetSegError(f"no trainable images in {ds.root}: the trainval split has no readable image with a trimap")
    progress.update(force=True, status="caching")
    # Read-only arrays holding exactly this snapshot's masks, kept mapped (and unpruned) until train() returns.
    cache = held.enter_context(ArrayCache.open(settings, ds, truth, train_ids + val_ids, int(cfg.image_size),
                                               cfg.progress and dist.is_main))
    train_rows, val_rows = cache.rows(train_ids), cache.rows(val_ids)
    if dist.world_size > min(int(cfg.batch_size), len(train_rows)):
        raise PetSegError(f"a batch of {min(int(cfg.batch_size), len(train_rows))} images cannot be split over "
                          f"{dist.world_size} processes: use --batch-size of at least {dist.world_size} "
                          "(the global batch) or fewer processes")

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
    net = runtime.prepare_model(model)  # what checkpoints hold; ``model`` syncs gradients under torchrun
    model = net
    if dist.active:
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[runtime.torch_device.index] if runtime.device_type == "cuda" else None)
    optimizer = torch.optim.Adam(net.parameters(), lr=float(cfg.lr), weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=int(cfg.epochs) * steps, eta_min=cfg.min_lr)
    scaler = torch.amp.GradScaler(runtime.device_type, enabled=runtime.precision == "fp16")
    loss_fn = SegLoss()
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"epoch": None, "val_iou_pet": None}
    start_epoch = 1
    if payload is not None:
        start_epoch, history, best = _restore(payload, optimizer, scheduler, numpy_rng, aug_gen, cfg, steps, last)

    # The masks this run learns from, so a result can be traced to the corrections behind it.
    used = {i: v for i, v in cache.versions.items() if v is not None and i not in cache.missing}
    if dist.is_main:
        # "pretrained": what was loaded, beside the requested encoder_weights (offline, ImageNet falls back to
        # random init).
        run_folder.write_config(run_dir, train={**cfg.to_dict(), "pretrained": model_cfg.encoder_weights is not None},
                                model=model_cfg.to_dict(),
                                runtime={**dataclasses.asdict(runtime), "threads": torch.get_num_threads()}, ds=ds,
                                train_ids=train_ids, val_ids=val_ids, corrections=used, resumed=payload is not None,
                                scaling=_scaling(cfg, dist))
    log.info("run %s: %s, %s; %d train / %d val images, %d steps per epoch%s",
             cfg.run, model_cfg.describe(), runtime.describe(), len(train_rows), len(val_rows), steps,
             f"; {dist.world_size} processes" if dist.active else "")
    if start_epoch > int(cfg.epochs):
        log.warning("run %s already finished its %d epochs: pass a larger --epochs with --resume to train longer",
                    cfg.run, int(cfg.epochs))
    progress.update(force=True, status="training", epoch=start_epoch, steps_per_epoch=steps)

    for epoch in range(start_epoch, int(cfg.epochs) + 1):
        if runtime.device_type == "cpu" and epoch > start_epoch:
            _share_cpu_fairly()
        started = time.perf_counter()
        model.train()
        total, seen, seen_everywhere = 0.0, 0, 0
        bar = tqdm(batches(train_rows, int(cfg.batch_size), numpy_rng), total=steps,
                   disable=not (cfg.progress and dist.is_main), desc=f"epoch {epoch}/{cfg.epochs}", leave=False,
                   unit="step")
        for step, batch in enumerate(bar, start=1):
            # Every rank draws the same batch and augmentation values; each trains on its own part of them.
            rows, start = shard(batch, dist.rank, dist.world_size)
            images, masks = cache.load(rows)
            if cfg.augment:
                pixels, masks = augment(images, masks, aug_gen, part=(start, len(batch)))
            else:
                pixels = images.permute(0, 3, 1, 2).float()
            x = runtime.prepare(normalize(pixels, model_cfg))
            target = (masks.long() - 1).to(runtime.torch_device)
            with runtime.autocast():
                logits = model(x)
            loss = loss_fn(logits, target)
            optimizer.zero_grad(set_to_none=True)
            # DDP averages the ranks' gradients: weighting each by its share of the batch makes that average
            # the batch's, also when the parts differ in size.
            scale = len(rows) * dist.world_size / len(batch) if dist.active else 1.0
            scaler.scale(loss * scale).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            total += loss.item() * len(rows)
            seen += len(rows)
            seen_everywhere += len(batch)
            bar.set_postfix(loss=f"{total / seen:.4f}")
            progress.update(epoch=epoch, step=step, loss=round(total / seen, 5),
                            images_per_second=round(seen_everywhere / (time.perf_counter() - started), 2))
        bar.close()
        train_seconds = time.perf_counter() - started
        total, seen = dist.sum([total, seen])
        dist.share_buffers(net)  # validate (and save) the one model: rank 0's BatchNorm statistics everywhere

        progress.update(force=True, status="validating")
        val = validate(net, model_cfg, runtime, cache, val_rows, int(cfg.batch_size), loss_fn, dist)
        row = {
            "epoch": epoch,
            "train_loss": total / max(seen, 1),
            **val,
            "seconds": round(time.perf_counter() - started, 2),
            "lr": optimizer.param_groups[0]["lr"],
            "images_per_second": round(seen_everywhere / train_seconds, 2),
        }
        history.append(row)
        # Without a validation set (tiny datasets) the latest model is the best one we know of.
        score = val["val_iou_pet"]
        improved = score is None or best["val_iou_pet"] is None or score > best["val_iou_pet"]
        if improved:
            best = {"epoch": epoch, "val_iou_pet": score}
        if dist.is_main:
            meta = _meta(cfg, ds, runtime, epoch, row, best)
            if improved:
                save_checkpoint(run_dir / "best.pt", net, model_cfg, meta)
            train_state = {"epoch": epoch, "epochs": int(cfg.epochs), "steps_per_epoch": steps,
                           "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                           "scaler": scaler.state_dict(), "rng": rng_state(numpy_rng, aug_gen), "history": history,
                           "best": best}
            save_checkpoint(last, net, model_cfg, meta, train_state=train_state)
            run_folder.write_metrics_csv(run_dir, history)
        dist.barrier()  # the epoch's checkpoints are complete before any rank goes on (or a reader is told so)
        log.info("epoch %d/%d: train loss %.4f, val loss %s, val pet IoU %s, %.1f s (%.1f img/s)%s", epoch, cfg.epochs,
                 row["train_loss"], _fmt(val["val_loss"]), _fmt(val["val_iou_pet"]), row["seconds"],
                 row["images_per_second"], " (best)" if improved else "")
        if cfg.progress and dist.is_main:
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
def validate(model: torch.nn.Module, model_cfg: ModelConfig, runtime: Runtime, cache: ArrayCache, rows: np.ndarray,
             batch_size: int, loss_fn: torch.nn.Module,
             dist: distributed.Context = distributed.SINGLE) -> dict[str, float | None]:
    """Loss and per-image metrics (mean over images) on the cached validation arrays at the input size.

    Under torchrun each rank validates its own part of ``rows`` (each image once) and the sums are all-reduced.
    The metrics are per image, so they do not depend on the world size; the loss's Dice term is per batch, so
    ``val_loss`` does a little.
    """
    if len(rows) == 0:
        return {"val_loss": None, "val_iou_pet": None, "val_miou_3class": None, "val_pixel_accuracy": None}
    model.eval()
    loss_sum, n = 0.0, 0
    parts: dict[str, list[np.ndarray]] = {"iou_pet": [], "miou_3class": [], "pixel_accuracy": []}
    for batch in batches(shard(rows, dist.rank, dist.world_size)[0], batch_size * 2, None):
        images, masks = cache.load(batch)
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
    sums = [float(np.concatenate(parts[key]).sum()) if parts[key] else 0.0 for key in parts]
    loss_sum, n, *sums = dist.sum([loss_sum, n, *sums])
    return {"val_loss": loss_sum / n, **{f"val_{key}": value / n for key, value in zip(parts, sums, strict=True)}}


def _scaling(cfg: TrainConfig, dist: distributed.Context) -> dict[str, Any]:
    """What config.json records about the processes: the recipe is the same for any world size."""
    return {"world_size": dist.world_size, "effective_batch_size": int(cfg.batch_size),
            "batch_size_per_process": int(cfg.batch_size) / dist.world_size, "effective_lr": float(cfg.lr),
            "scaling_rule": "global batch: --batch-size and --lr are the whole job's, each process takes "
                            "batch_size / world_size images per step; steps per epoch and the schedule do not "
                            "depend on the world size"}


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


def _restore(payload: dict[str, Any], optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
             numpy_rng: np.random.Generator, aug_gen: torch.Generator, cfg: TrainConfig, steps: int,
             path: Path) -> tuple[int, list[dict[str, Any]], dict[str, Any]]:
    """Optimiser, schedule and RNG states as ``path`` left them; returns (first epoch to train, history, best)."""
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
    """The checkpoint's metadata: what the model is, what it was trained on, how well it did."""
    return {"run": cfg.run, "epoch": epoch,
            "metrics": {k: (None if v is None else float(v)) for k, v in row.items() if k != "epoch"}, "best": best,
            "dataset_fingerprint": ds.fingerprint, "dataset_synthetic": bool(ds.synthetic),
            "precision": runtime.precision, "device": runtime.device, "use_corrections": cfg.use_corrections,
            "saved_at": time.time(), "torch": str(torch.__version__)}
