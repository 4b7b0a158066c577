"""The training data: which images, the validation split, the array cache, augmentation and batches.

    >>> from core import groundtruth
    >>> from core.data import ArrayCache, augment, batches, split_trainval, trainable_ids
    >>> usable, left_out = trainable_ids(ds)
    >>> train_ids, val_ids = split_trainval(usable, val_fraction=0.1)
    >>> truth = groundtruth.snapshot(settings, ds, usable, corrections=True)
    >>> with ArrayCache.open(settings, ds, truth, train_ids + val_ids, size=128) as cache:
    ...     for rows in batches(cache.rows(train_ids), 8, np.random.default_rng(0)):
    ...         images, masks = cache.load(rows)          # uint8 (B, S, S, 3) and (B, S, S) tensors
    ...         pixels, masks = augment(images, masks, torch.Generator().manual_seed(0))

The array cache lives in ``<workspace>/cache/arrays/`` as read-only ``.npy`` files, keyed by what they hold:

- ``<fingerprint>-<size>-images-<hash of the ids>/images.npy``: (N, S, S, 3) photos, resized;
- ``<fingerprint>-<size>-masks-<hash of {id: ground-truth version}>/masks.npy``: (N, S, S) trimap-coded masks,

each with ``ids.json`` (row order, the versions, the ids that could not be read). Runs on the official masks
and runs with corrections share the photos but never a mask array. A cache is built once, under an exclusive
lock, in a temporary folder renamed into place when complete, and never written again; rows that an older
cache of the same dataset and size already holds (same photo, same mask version) are copied, not decoded.
Every process that maps a cache holds a shared lock on ``<name>.lock``, and pruning deletes only the caches it
can lock exclusively, so no process ever loses (or sees a change in) the arrays it trains on.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from core import locks
from core.atomic import atomic_write_text, fsync_dir
from core.config import Settings
from core.dataset import Dataset, load_image
from core.errors import ImageUnreadable
from core.groundtruth import GroundTruth
from core.masks import resize_image, resize_mask

log = logging.getLogger("petseg")

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


# --- the array cache ----------------------------------------------------------

KINDS = ("images", "masks")
KEEP = {"images": 4, "masks": 8}  # caches kept per kind (mask caches are a third of the size)


class ArrayCache:
    """Photos and ground-truth masks of ``ids`` at ``size`` px, as read-only memory maps (see the module doc)."""

    def __init__(self, ids: list[str], versions: dict[str, int | None], images: np.ndarray, masks: np.ndarray,
                 missing: set[str], folders: tuple[Path, Path], held: list[locks.Lock]):
        self.ids = ids
        self.row = {image_id: i for i, image_id in enumerate(ids)}
        self.versions = versions  # id -> the ground-truth version its mask was made from (None: official trimap)
        self.images, self.masks = images, masks
        self.missing = missing  # ids whose photo or mask could not be read: never in rows()
        self.folders = folders
        self._held = held

    @classmethod
    def open(cls, settings: Settings, ds: Dataset, truth: GroundTruth, ids: Iterable[str], size: int,
             progress: bool = False) -> ArrayCache:
        """The cache of ``ids`` with the masks of ``truth``, built first if no process has built it yet."""
        ids = sorted(set(ids))
        versions = {image_id: truth.versions[image_id] for image_id in ids}
        root = settings.cache_dir / "arrays"
        prefix = f"{ds.fingerprint[:20]}-{size}"
        held: list[locks.Lock] = []

        def photo(image_id: str) -> np.ndarray:
            return resize_image(load_image(ds, image_id), size)

        def mask(image_id: str) -> np.ndarray | None:
            value = truth.mask(image_id)
            return None if value is None else resize_mask(value, size)

        try:
            images_dir = _published(root, f"{prefix}-images-{_digest(ids)}", held, lambda tmp: _build(
                tmp, "images", ids, None, (size, size, 3), _donors(root, prefix, "images"), photo, progress))
            masks_key = _digest(sorted(versions.items()))
            masks_dir = _published(root, f"{prefix}-masks-{masks_key}", held, lambda tmp: _build(
                tmp, "masks", ids, versions, (size, size), _donors(root, prefix, "masks"), mask, progress))
            missing: set[str] = set()
            for folder in (images_dir, masks_dir):
                missing |= set(json.loads((folder / "ids.json").read_text())["missing"])
            images = np.load(images_dir / "images.npy", mmap_mode="r")
            masks = np.load(masks_dir / "masks.npy", mmap_mode="r")
        except BaseException:
            for lock in held:
                lock.release()
            raise
        prune(root, keep=KEEP, skip={images_dir.name, masks_dir.name})
        return cls(ids, versions, images, masks, missing, (images_dir, masks_dir), held)

    def rows(self, ids: list[str]) -> np.ndarray:
        return np.array([self.row[i] for i in ids if i not in self.missing], dtype=np.int64)

    def load(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The photos and masks of ``rows`` as uint8 tensors (copies: the cache itself is read-only)."""
        return torch.from_numpy(self.images[rows]), torch.from_numpy(self.masks[rows])

    def close(self) -> None:
        """Unmap the arrays and let pruning delete the folders again."""
        self.images = self.masks = None  # type: ignore[assignment]
        for lock in self._held:
            lock.release()
        self._held = []

    def __enter__(self) -> ArrayCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, separators=(",", ":")).encode()).hexdigest()[:16]


def _published(root: Path, name: str, held: list[locks.Lock], build: Callable[[Path], None]) -> Path:
    """``root/name`` with a shared lock on it appended to ``held``; built first (by one process) when missing."""
    folder, lock_path = root / name, root / f"{name}.lock"
    while True:
        lock = locks.acquire(lock_path, shared=True)
        if folder.is_dir():  # only a complete build is ever renamed to this name
            with contextlib.suppress(OSError):
                os.utime(folder)  # recently used: pruned last
            held.append(lock)
            return folder
        lock.release()
        with locks.acquire(lock_path):
            if folder.is_dir():
                continue  # another process built it while we waited
            for leftover in root.glob(f".{name}.*"):  # a build that crashed (we hold its lock now)
                shutil.rmtree(leftover, ignore_errors=True)
            tmp = root / f".{name}.{os.getpid()}.tmp"
            tmp.mkdir(parents=True)
            try:
                build(tmp)
                os.rename(tmp, folder)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            fsync_dir(root)


def _donors(root: Path, prefix: str, kind: str) -> list[Path]:
    """Published caches of the same dataset, size and kind, most recent first."""
    found = [p for p in root.glob(f"{prefix}-{kind}-*") if p.is_dir() and not p.name.startswith(".")]
    return sorted(found, key=_mtime, reverse=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # pruned by another process meanwhile
        return 0.0


def _build(tmp: Path, kind: str, ids: list[str], versions: dict[str, int | None] | None, shape: tuple[int, ...],
           donors: list[Path], fill: Callable[[str], np.ndarray | None], progress: bool) -> None:
    """Write ``<kind>.npy`` and ``ids.json`` into ``tmp``: rows copied from donors where they match, else filled."""
    array = np.lib.format.open_memmap(tmp / f"{kind}.npy", mode="w+", dtype=np.uint8, shape=(len(ids), *shape))
    row = {image_id: i for i, image_id in enumerate(ids)}
    todo = set(ids)
    for donor in donors:
        todo -= _copy_rows(donor, kind, array, row, todo, versions)
    missing: list[str] = []
    if todo:
        log.info("caching %d %s at %d px in %s", len(todo), kind, shape[0], tmp.parent)

        def one(image_id: str) -> None:
            try:
                value = fill(image_id)
            except ImageUnreadable as exc:
                log.warning("skipped %s: %s", image_id, exc)
                value = None
            if value is None:
                missing.append(image_id)
            else:
                array[row[image_id]] = value

        # Decoding releases the GIL (PIL, OpenCV); the model is not running yet, so every core may decode.
        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            for _ in tqdm(pool.map(one, sorted(todo)), total=len(todo), desc=f"caching {kind}", disable=not progress,
                          leave=False):
                pass
    array.flush()
    index = {"ids": ids, "versions": versions, "missing": sorted(missing)}
    atomic_write_text(tmp / "ids.json", json.dumps(index))
    os.chmod(tmp / f"{kind}.npy", 0o444)  # published caches are never written again


def _copy_rows(donor: Path, kind: str, array: np.ndarray, row: dict[str, int], wanted: set[str],
               versions: dict[str, int | None] | None) -> set[str]:
    """Copy the rows of ``wanted`` that ``donor`` holds (with the same ground-truth version); returns their ids."""
    lock = locks.acquire(donor.parent / f"{donor.name}.lock", shared=True, wait=False)
    if lock is None:  # being pruned right now
        return set()
    with lock:
        try:
            index = json.loads((donor / "ids.json").read_text())
            source = np.load(donor / f"{kind}.npy", mmap_mode="r")
        except (OSError, ValueError):
            return set()
        skip = set(index.get("missing") or [])
        theirs = {image_id: i for i, image_id in enumerate(index.get("ids") or []) if image_id not in skip}
        old_versions = index.get("versions") or {}
        found = [i for i in sorted(wanted) if i in theirs
                 and (versions is None or (i in old_versions and old_versions[i] == versions[i]))]
        for start in range(0, len(found), 256):  # bounded memory for large caches
            chunk = found[start : start + 256]
            array[[row[i] for i in chunk]] = source[[theirs[i] for i in chunk]]
        del source
    return set(found)


def prune(root: Path, keep: dict[str, int], skip: Iterable[str] = ()) -> list[str]:
    """Delete the least recently used caches beyond ``keep`` per kind; returns the names deleted.

    Only a cache no process holds is deleted (its lock taken exclusively without waiting); leftovers of
    crashed builds, lock files without a cache and caches in an older layout are collected the same way.
    """
    if not root.is_dir():
        return []
    by_kind: dict[str, list[Path]] = {}
    for path in root.iterdir():
        if path.name in set(skip):
            continue
        if path.is_dir():
            kind = "leftover" if path.name.startswith(".") else next((k for k in KINDS if f"-{k}-" in path.name),
                                                                     "old layout")
        elif path.suffix == ".lock" and not path.with_suffix("").exists():
            kind = "lock"
        else:
            continue
        by_kind.setdefault(kind, []).append(path)
    deleted = []
    for kind, paths in by_kind.items():
        for path in sorted(paths, key=_mtime, reverse=True)[keep.get(kind, 0) :]:
            # .<name>.<pid>.tmp|trash, <name>.lock or <name>
            name = path.name[1:].rsplit(".", 2)[0] if kind == "leftover" else path.name.removesuffix(".lock")
            lock = locks.acquire(root / f"{name}.lock", wait=False)
            if lock is None:
                continue  # mapped, being built or being deleted by a live process
            with lock:
                if kind == "leftover":
                    shutil.rmtree(path, ignore_errors=True)
                elif kind != "lock":
                    trash = root / f".{name}.{os.getpid()}.trash"
                    try:
                        os.rename(path, trash)
                    except OSError:
                        continue
                    shutil.rmtree(trash, ignore_errors=True)
                    deleted.append(name)
                if not (root / name).exists():
                    lock.delete()
    return deleted


# --- augmentation -----------------------------------------------------------


def augment(
    images: torch.Tensor, masks: torch.Tensor, gen: torch.Generator, part: tuple[int, int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random flip, scale/crop and colour jitter of a whole batch at once, on tensors.

    ``images`` uint8 (B, S, S, 3), ``masks`` uint8 (B, S, S) trimap-coded. Returns float NCHW pixels in 0..255
    and the augmented trimap-coded masks. Geometry is one affine grid per image, applied to image (bilinear)
    and mask (nearest) alike, zooming in by up to 1/0.7 so the crop never leaves the picture.

    ``part=(start, total)``: the images are items ``start..start+B`` of a batch of ``total`` split over several
    processes (:func:`shard`). The random values are drawn for the whole batch, so every process's generator
    stays in step and each image gets the augmentation it would get in one process.
    """
    b, s = images.shape[0], images.shape[1]
    start, total = part or (0, b)
    x = images.permute(0, 3, 1, 2).float()
    m = masks.unsqueeze(1).float()

    def uniform(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(total, *shape, generator=gen)[start : start + b]

    scale_x, scale_y = uniform(0.7, 1.0), uniform(0.7, 1.0)
    flip = torch.where(uniform(0.0, 1.0) < 0.5, -1.0, 1.0)
    shift_x = (1 - scale_x) * uniform(-1.0, 1.0)
    shift_y = (1 - scale_y) * uniform(-1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = scale_x * flip, shift_x
    theta[:, 1, 1], theta[:, 1, 2] = scale_y, shift_y
    grid = F.affine_grid(theta, [b, 3, s, s], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    m = F.grid_sample(m, grid, mode="nearest", padding_mode="border", align_corners=False)

    brightness = uniform(0.75, 1.25, 1, 1, 1)
    contrast = uniform(0.75, 1.25, 1, 1, 1)
    saturation = uniform(0.7, 1.3, 1, 1, 1)
    gray = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    x = gray + (x - gray) * saturation
    mean = gray.mean(dim=(2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean) * brightness
    return x.clamp_(0, 255), m.squeeze(1).to(torch.uint8)


# --- batches ----------------------------------------------------------------


def batches(rows: np.ndarray, batch_size: int, rng: np.random.Generator | None) -> Iterator[np.ndarray]:
    """Row indices per step. Training (rng given): shuffled, remainder dropped; validation: all rows in order."""
    if rng is None:
        for start in range(0, len(rows), batch_size):
            yield rows[start : start + batch_size]
        return
    order = rows[rng.permutation(len(rows))]
    for step in range(steps_per_epoch(len(order), batch_size)):
        yield np.sort(order[step * batch_size : (step + 1) * batch_size])  # sorted rows read the memmap in order


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    return max(1, n_train // batch_size)


def shard(rows: np.ndarray, rank: int, world_size: int) -> tuple[np.ndarray, int]:
    """Rank ``rank``'s contiguous part of ``rows`` (sizes differ by at most one) and the index it starts at.

    Every row goes to exactly one rank, with no padding: a sampler that repeats rows to even out the parts
    would count them twice in validation metrics.
    """
    sizes = [len(rows) // world_size + (r < len(rows) % world_size) for r in range(world_size)]
    start = sum(sizes[:rank])
    return rows[start : start + sizes[rank]], start
