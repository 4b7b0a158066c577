"""Runs that PetSeg did not train: a folder of predicted masks, or a checkpoint from outside.

    >>> from core.interop.runs import import_predictions, import_checkpoint
    >>> report = import_predictions(settings, "keras-unet", Path("preds/"), encoding="index")
    >>> report.split, report.imported, report.missing[:2], report.unknown
    ('test', 3667, ['Abyssinian_201', 'Bengal_4'], ['holiday_photo'])
    >>> import_checkpoint(settings, "smp-fpn", Path("pet_model.ckpt"))    # then core.evaluate.evaluate(...)

**Predictions** are ``<image_id>.png`` (or ``.npy`` for probabilities) files in a folder or a zip (at any depth,
read as :mod:`core.interop.source` reads imports). Encodings:

- ``trimap``: Oxford trimap values 1 pet, 2 background, 3 border.
- ``index``: class indices 0 pet, 1 background, 2 border (the "trimap - 1" of the tutorials' 3-class models).
- ``binary``: pet vs not, 0/255 or 0/1; no border class.
- ``probability``: the pet probability as an 8-bit (0..255) or 16-bit (0..65535) grayscale PNG, or a float
  ``.npy`` in 0..1; pet where it is above 0.5, and its confidence max(p, 1 - p) feeds the confidence columns.

Binary and probability predictions make a *binary* run (``"binary": true`` in its config): the metrics that
treat border as a class of its own (``miou_3class``, ``pixel_accuracy``) are not applicable and stored as NaN.
Hard masks carry no confidence: ``mean_confidence`` and ``uncertain_fraction`` are NaN for them.

A prediction of another size than its photo is refused with both sizes, unless ``resize=True`` (nearest
neighbour), which the run's config.json records with the ids resized. Files whose name is not an image id of
the dataset are listed (``unknown``), as are the split's images without a file (``missing``). The split is the
one the files cover (test, trainval, or all when they cover both), unless given.

The run is then evaluated exactly like a trained one: ``eval/<split>/pred/<id>.png`` (trimap-coded) and
``metrics.parquet`` through :func:`core.runs.write_eval_table`, scored by :func:`core.scoring.score` against
the ground truth of :mod:`core.groundtruth`, and rescored like any run when a correction changes. Its
config.json says ``"source": "imported predictions"``; views show that where a checkpoint would be.

**Checkpoints** (:func:`import_checkpoint`) are read by :func:`core.model.load_external` and saved as the run's
``best.pt`` (a PetSeg checkpoint, with where it came from in its meta), config.json saying
``"source": "external checkpoint"``; :func:`core.evaluate.evaluate` then evaluates it like any run.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
import struct
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np

from core import groundtruth, users
from core.atomic import atomic_write_bytes, atomic_write_text
from core.config import Settings, check_run_name
from core.dataset import Dataset, open_dataset
from core.errors import ImageUnreadable, PetSegError
from core.interop import PREDICTION_ENCODINGS
from core.interop.source import Source, open_source
from core.masks import BACKGROUND, MAX_MASK_PIXELS, PET, decode_label_png, encode_png_fast
from core.metrics import prediction_metrics
from core.model import ExternalSpec, ModelConfig, load_external, save_checkpoint
from core.run_folder import lock_evaluation
from core.runs import CONFIG_FILE, EVAL_SPLITS, PRED_DIR, eval_dir, read_config, table_lock, write_eval_table
from core.scoring import rescore_rows, score

ENCODINGS = PREDICTION_ENCODINGS
IMPORTED_PREDICTIONS = "imported predictions"
EXTERNAL_CHECKPOINT = "external checkpoint"
_CHECKPOINT_NAME = "best"  # the name core.evaluate loads by default


@dataclass
class PredictionImport:
    run: str
    split: str
    imported: int = 0
    refused: list[str] = field(default_factory=list)  # "file: reason"
    unknown: list[str] = field(default_factory=list)  # file names that are not image ids of the dataset
    missing: list[str] = field(default_factory=list)  # image ids of the split without a file
    resized: list[str] = field(default_factory=list)
    per_image_iou: float | None = None

    def summary(self) -> str:
        text = f"{self.imported} predictions imported as run {self.run} ({self.split})"
        if self.per_image_iou is not None:
            text += f", per-image pet IoU {self.per_image_iou:.4f}"
        for label, items in (("resized", self.resized), ("refused", self.refused), ("unknown ids", self.unknown),
                             ("missing", self.missing)):
            if items:
                text += f"; {len(items)} {label}: " + ", ".join(items[:10]) + (" ..." if len(items) > 10 else "")
        return text


def import_predictions(
    settings: Settings,
    run: str,
    folder: Path,
    encoding: str = "trimap",
    *,
    resize: bool = False,
    split: str | None = None,
    ds: Dataset | None = None,
    actor: str | None = None,
) -> PredictionImport:
    """Register the predicted masks of ``folder`` as run ``run`` (see the module docstring); an admin's action, like
    an evaluation (``actor``, None = the OS user)."""
    users.require(settings, actor, "evaluate")
    if encoding not in ENCODINGS:
        raise PetSegError(f"encoding {encoding!r} is not one of {', '.join(ENCODINGS)}")
    check_run_name(run)
    folder = Path(folder).expanduser()
    if not folder.is_dir() and not zipfile.is_zipfile(folder):
        raise PetSegError(f"prediction folder {folder} does not exist or is neither a folder nor a zip")
    source = open_source(folder)
    run_dir = settings.run_dir(run)
    _check_replaceable(run_dir, run, IMPORTED_PREDICTIONS)
    ds = ds if ds is not None else open_dataset(settings.data, settings.workspace)
    files: dict[str, str] = {}  # image id -> name in the source
    unknown: list[str] = []
    for name in source.names():
        path = PurePosixPath(name)
        if path.suffix.lower() not in (".png", ".npy"):
            continue
        if path.suffix.lower() == ".npy" and encoding != "probability":
            unknown.append(f"{name} (.npy files are read as --encoding probability only)")
        elif path.stem in ds and path.stem not in files:
            files[path.stem] = name
        else:
            unknown.append(name)
    if not files:
        raise PetSegError(f"no <image_id>.png in {folder} names an image of the dataset"
                          + (f" (found {', '.join(unknown[:5])})" if unknown else ""))
    split = split or _covered_split(ds, files)
    if split not in EVAL_SPLITS:
        raise PetSegError(f"unknown split {split!r}: use one of {', '.join(EVAL_SPLITS)}")
    in_split = set(ds.ids(None if split == "all" else split))
    report = PredictionImport(run=run, split=split, unknown=unknown)
    report.unknown += [f"{files[i]} (not in {split})" for i in files if i not in in_split]
    report.missing = [i for i in ds.ids(None if split == "all" else split) if i not in files]
    binary = encoding in ("binary", "probability")
    new_run = not run_dir.exists()
    try:
        return _import(settings, ds, run_dir, source, files, report, in_split, folder, encoding, resize, binary)
    except BaseException:
        if new_run:  # nothing of a failed first import stays behind as an empty run
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _import(settings: Settings, ds: Dataset, run_dir: Path, source: Source, files: dict[str, str],
            report: PredictionImport, in_split: set[str], folder: Path, encoding: str, resize: bool,
            binary: bool) -> PredictionImport:
    run, split = report.run, report.split
    target = eval_dir(settings, run, split)
    target.mkdir(parents=True, exist_ok=True)
    # Written first too: a correction saved while this import runs rescores the table as the binary run it is.
    _write_run_config(run_dir, IMPORTED_PREDICTIONS, {"binary": binary}, {
        "from": str(folder.absolute()), "encoding": encoding, "resize": resize, "split": split,
    })
    with lock_evaluation(target, run, split):
        ids = [i for i in files if i in in_split]
        truth = groundtruth.snapshot(settings, ds, ids)
        rows: dict[str, dict[str, Any]] = {}
        (target / PRED_DIR).mkdir(exist_ok=True)
        for image_id in ids:
            try:
                data = source.read(files[image_id])
                mask, confidence, resized = _read_prediction(files[image_id], data, encoding, _size(ds, image_id),
                                                             resize)
            except PetSegError as exc:
                report.refused.append(f"{files[image_id]}: {exc}")
                continue
            atomic_write_bytes(target / PRED_DIR / f"{image_id}.png", encode_png_fast(mask))
            if resized:
                report.resized.append(image_id)
            info = ds.table.loc[image_id]
            values = prediction_metrics(mask, confidence) if confidence is not None else {
                "pred_pet_fraction": float(np.count_nonzero(mask == PET)) / mask.size,
                "mean_confidence": np.nan, "uncertain_fraction": np.nan}
            rows[image_id] = {
                "image_id": image_id, "split": info["split"], "breed": info["breed"], "species": info["species"],
                "width": int(info["width"]), "height": int(info["height"]), **values,
                **score(truth, image_id, mask, border=not binary),
                "checkpoint": IMPORTED_PREDICTIONS, "checkpoint_sha": "", "dataset_fingerprint": ds.fingerprint,
                "image_stat": "", "evaluated_at": time.time(),
            }
            report.imported += 1
        if not rows:
            raise PetSegError(f"no prediction of {folder} could be imported: " + "; ".join(report.refused[:5]))
        with table_lock(target):
            # As an evaluation does: rows whose ground truth changed while this import ran are rescored first.
            now = groundtruth.snapshot(settings, ds, list(rows))
            rescore_rows(target, now, rows, [i for i in rows if rows[i]["gt_version"] != now.versions[i]],
                         ds.fingerprint)
            table = write_eval_table(target, rows)
        for old in (target / PRED_DIR).glob("*.png"):  # left by an earlier import of this run: not in the table
            if old.stem not in rows:
                old.unlink(missing_ok=True)
    _write_run_config(run_dir, IMPORTED_PREDICTIONS, {"binary": binary}, {
        "from": str(folder.absolute()), "encoding": encoding, "resize": resize, "split": split,
        "resized_ids": report.resized, "files": len(files), "imported": report.imported,
    })
    scored = table[table["has_gt"]]
    report.per_image_iou = float(scored["iou_pet"].mean()) if len(scored) else None
    return report


def import_checkpoint(settings: Settings, run: str, path: Path, spec: ExternalSpec | None = None,
                      actor: str | None = None) -> ModelConfig:
    """Load an outside checkpoint (:func:`core.model.load_external`) and save it as run ``run``'s best.pt (an
    admin's action, like training: ``actor``, None = the OS user)."""
    users.require(settings, actor, "train")
    check_run_name(run)
    run_dir = settings.run_dir(run)
    _check_replaceable(run_dir, run, EXTERNAL_CHECKPOINT)
    model, cfg, meta = load_external(Path(path), spec)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_checkpoint(run_dir / f"{_CHECKPOINT_NAME}.pt", model, cfg, meta={**meta, "epoch": None})
    _write_run_config(run_dir, EXTERNAL_CHECKPOINT, cfg.to_dict(), {
        "from": meta.get("imported_from"), "kind": meta.get("source"), "sha256": meta.get("sha256"),
    })
    return cfg


def _check_replaceable(run_dir: Path, run: str, source: str) -> None:
    """A run of the same kind may be imported again (replaced); a trained run, or one of another kind, never."""
    if run_dir.exists() and any(run_dir.iterdir()):
        existing = str(read_config(run_dir).get("source") or "trained")
        if existing != source:
            raise PetSegError(f"run {run} exists already ({existing}); choose another run name")


def _write_run_config(run_dir: Path, source: str, model: dict[str, Any], imported: dict[str, Any]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {"source": source, "created_at": time.time(), "model": model,
              "imported": {**imported, "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}}
    atomic_write_text(run_dir / CONFIG_FILE, json.dumps(config, indent=2))


def _size(ds: Dataset, image_id: str) -> tuple[int, int]:
    row = ds.table.loc[image_id]
    height, width = int(row["height"]), int(row["width"])
    if height <= 0 or width <= 0:
        raise PetSegError(f"the photo of {image_id} is unreadable, so the prediction's size cannot be checked")
    return height, width


def _covered_split(ds: Dataset, files: dict[str, Path]) -> str:
    splits = set(ds.table.loc[list(files), "split"])
    return splits.pop() if len(splits) == 1 and splits <= {"test", "trainval"} else "all"


def _read_prediction(name: str, data: bytes, encoding: str, size: tuple[int, int],
                     resize: bool) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """``(trimap-coded mask, max probability or None, resized?)`` of one prediction file."""
    if encoding == "probability":
        prob = _read_probability(name, data)
        prob, resized = _fit(prob, size, resize)
        mask = np.where(prob > 0.5, PET, BACKGROUND).astype(np.uint8)
        return mask, np.maximum(prob, 1.0 - prob), resized
    try:
        values = decode_label_png(data, what="prediction")
    except ImageUnreadable as exc:
        raise PetSegError(str(exc)) from None
    values, resized = _fit(values, size, resize)
    found = {int(v) for v in np.flatnonzero(np.bincount(values.ravel(), minlength=256))}
    allowed = {"trimap": {1, 2, 3}, "index": {0, 1, 2}, "binary": {0, 1, 255}}[encoding]
    if not found <= allowed or (encoding == "binary" and {1, 255} <= found):
        hint = {"trimap": "1 pet, 2 background, 3 border", "index": "0 pet, 1 background, 2 border",
                "binary": "0 background and 255 (or 1) pet"}[encoding]
        raise PetSegError(f"has values {sorted(found)[:8]}, not the {encoding} encoding ({hint}): choose the "
                          "--encoding the files use")
    if encoding == "trimap":
        return values, None, resized
    if encoding == "index":
        return values + 1, None, resized
    return np.where(values > 0, PET, BACKGROUND).astype(np.uint8), None, resized


def _read_probability(name: str, data: bytes) -> np.ndarray:
    if name.lower().endswith(".npy"):
        try:
            array = np.load(io.BytesIO(data), allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise PetSegError(f"is not a plain numpy array file ({exc}); pickled arrays are refused") from None
        if array.ndim == 3 and array.shape[0] == 1:
            array = array[0]
        if array.ndim != 2 or array.dtype.kind != "f":
            raise PetSegError(f"holds a {array.dtype} array of shape {array.shape}, not an (H, W) float pet "
                              "probability")
        array = array.astype(np.float32)
        if not np.isfinite(array).all():
            raise PetSegError("holds NaN or infinite values")
        if array.size and (array.min() < 0 or array.max() > 1):
            raise PetSegError("holds values outside 0..1; save the pet probability (after the sigmoid)")
        return array
    if len(data) >= 24 and data[:8] == b"\x89PNG\r\n\x1a\n":
        width, height = struct.unpack(">II", data[16:24])
        if width * height > MAX_MASK_PIXELS:
            raise PetSegError(f"claims a size far larger than any photo ({width}x{height}): refused")
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data[:4] == b"\x89PNG" else None
    if decoded is None or decoded.ndim != 2 or decoded.dtype not in (np.uint8, np.uint16):
        raise PetSegError("is not an 8- or 16-bit grayscale PNG of pet probabilities")
    return decoded.astype(np.float32) / (255.0 if decoded.dtype == np.uint8 else 65535.0)


def _fit(array: np.ndarray, size: tuple[int, int], resize: bool) -> tuple[np.ndarray, bool]:
    if array.shape == tuple(size):
        return array, False
    height, width = size
    if not resize:
        raise PetSegError(f"is {array.shape[1]}x{array.shape[0]} (width x height) but the image is "
                          f"{width}x{height}; pass --resize to resize it (nearest neighbour, recorded)")
    return cv2.resize(array, (width, height), interpolation=cv2.INTER_NEAREST), True
