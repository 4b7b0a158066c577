"""Label quality: how much a model that never saw a mask believes it, per pixel and pooled per image.

    >>> from core import quality
    >>> probs = quality.Probabilities(softmax_at_input_size, quality.OUT_OF_FOLD)    # (S, S, 3) float
    >>> quality.label_quality(probs, gt_trimap)
    {'label_quality': 0.031, 'label_quality_source': 'out-of-fold', 'suspect_pet_fraction': 0.28, ...}
    >>> quality.explain(row)
    '28% of the pixels labelled pet look like background to a model that never saw this mask.'
    >>> store = quality.ProbabilityStore.open(eval_folder)     # out-of-fold probabilities of a cross-validation
    >>> quality.suspect_map(store.probabilities("Abyssinian_1"), gt_trimap)    # (H, W) bool, for overlays

The method is cleanlab's (``cleanlab.segmentation.rank.get_label_quality_scores``, method ``softmin``): the
*self-confidence* of a pixel is the probability the model gives the class the mask assigns to it; an image's
score is the softmin of its pixels' self-confidences, ``sum(s * softmax((1 - s) / T))`` with ``T = 0.1``, which
sits near the worst pixels' values. Low scores first are the masks worth checking. Two differences, both
deliberate (tests/test_quality.py pins the equality where they do not apply):

- pixels the mask labels *border* (the trimap's uncertainty band) are left out: the band says "not sure", so it
  cannot be a wrong label, and counting it would rank images by how wide their band is;
- scores are taken at the model's input size (the mask resized nearest-neighbour to it), where the probabilities
  are stored: the same number for a mask whether it comes from the evaluation or from the stored probabilities.

The probabilities must be *out-of-sample* for the score to mean much: a model trained on a wrong mask learns to
agree with it. Cross-validation (:mod:`core.crossval`) gives every trainval image the prediction of the fold model
that did not see it and stores its probabilities here (:class:`ProbabilityStore`); a plain evaluation scores
in-sample and says so in ``label_quality_source``. The stored probabilities are what lets a correction rescore
the label quality against the new mask without a model (:mod:`core.scoring`); an in-sample score has no stored
probabilities, so a changed mask leaves it empty (NaN) rather than stale.

A *suspect pixel* is one labelled pet whose background probability is higher than its pet probability, or the
other way round: what the overlays draw and what :func:`explain` counts.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from core.atomic import atomic_write_text
from core.errors import PetSegError
from core.masks import BACKGROUND, BORDER, PET, resize_mask

TEMPERATURE = 0.1  # cleanlab's default softmin temperature
OUT_OF_FOLD = "out-of-fold"
IN_SAMPLE = "in-sample"
SOURCES = (OUT_OF_FOLD, IN_SAMPLE)
# Columns of the metrics table (core.runs.EVAL_COLUMNS).
QUALITY_COLUMNS = ("label_quality", "label_quality_source", "suspect_pet_fraction", "suspect_background_fraction")
PROBS_FILE = "probs.npy"  # in eval/<split>/: (N, S, S, 3) uint8, probability * 255
PROBS_INDEX = "probs.json"  # {"ids": [...], "size": S, "source": ...}
MAX_STORE_IMAGES = 100_000


@dataclass(frozen=True)
class Probabilities:
    """Per-class probabilities of one image at the model's input size: (S, S, 3), classes pet, background, border."""

    values: np.ndarray
    source: str

    @classmethod
    def from_logits(cls, logits: Any, source: str = IN_SAMPLE) -> Probabilities:
        """From (3, S, S) logits (a tensor or an array), as the evaluation has them."""
        array = np.asarray(logits.float().numpy() if hasattr(logits, "numpy") else logits, dtype=np.float32)
        return cls(softmax_channels_last(array), source)


def softmax_channels_last(logits: np.ndarray) -> np.ndarray:
    """(3, S, S) logits -> (S, S, 3) float32 softmax."""
    shifted = logits - logits.max(axis=0, keepdims=True)
    exps = np.exp(shifted)
    return np.ascontiguousarray((exps / exps.sum(axis=0, keepdims=True)).transpose(1, 2, 0), dtype=np.float32)


def quantize(probs: np.ndarray) -> np.ndarray:
    """float probabilities -> uint8 (p * 255 rounded): what the store keeps, 1/510 at most off."""
    return np.clip(np.rint(np.asarray(probs, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def dequantize(stored: np.ndarray) -> np.ndarray:
    return np.asarray(stored, dtype=np.float32) / 255.0


# --- the score ------------------------------------------------------------------------------------------------


def softmin(scores: np.ndarray, temperature: float = TEMPERATURE) -> float:
    """cleanlab's softmin pooling: ``sum(s * softmax((1 - s) / T))``, NaN for no pixels."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    if s.size == 0:
        return math.nan
    weights = np.exp(((1.0 - s) - (1.0 - s).max()) / temperature)
    return float(np.dot(s, weights) / weights.sum())


def self_confidence(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the probability of the class the trimap-coded ``labels`` gives it (same (S, S) size as
    ``probs``' first two axes), and which pixels count (labelled pet or background: the border band does not)."""
    if probs.shape[:2] != labels.shape or probs.ndim != 3 or probs.shape[2] != 3:
        raise PetSegError(f"probabilities {probs.shape} do not fit labels {labels.shape}")
    index = np.clip(labels.astype(np.int64) - 1, 0, 2)
    scores = np.take_along_axis(probs, index[..., None], axis=2)[..., 0]
    counted = (labels == PET) | (labels == BACKGROUND)
    return scores, counted


def label_quality(probabilities: Probabilities | None, gt: np.ndarray | None) -> dict[str, Any]:
    """The quality columns of one image: the pooled score, its source and the suspect shares (see the module doc).

    ``gt`` is the trimap at the image's original size (None: no ground truth, all columns empty).
    """
    if probabilities is None or gt is None:
        return empty_columns()
    probs = np.asarray(probabilities.values, dtype=np.float32)
    labels = resize_mask(np.ascontiguousarray(gt), probs.shape[0])
    scores, counted = self_confidence(probs, labels)
    pet, background = labels == PET, labels == BACKGROUND
    return {
        "label_quality": softmin(scores[counted]),
        "label_quality_source": probabilities.source,
        "suspect_pet_fraction": _share(pet & (probs[..., 1] > probs[..., 0]), pet),
        "suspect_background_fraction": _share(background & (probs[..., 0] > probs[..., 1]), background),
    }


def empty_columns() -> dict[str, Any]:
    return {"label_quality": math.nan, "label_quality_source": "", "suspect_pet_fraction": math.nan,
            "suspect_background_fraction": math.nan}


def _share(part: np.ndarray, whole: np.ndarray) -> float:
    total = int(whole.sum())
    return float(part.sum()) / total if total else 0.0


def suspect_map(probabilities: Probabilities, gt: np.ndarray) -> np.ndarray:
    """(H, W) bool at ``gt``'s size: pixels labelled pet that look like background, or the reverse."""
    probs = np.asarray(probabilities.values, dtype=np.float32)
    labels = resize_mask(np.ascontiguousarray(gt), probs.shape[0])
    pet_looks_background = (labels == PET) & (probs[..., 1] > probs[..., 0])
    small = pet_looks_background | ((labels == BACKGROUND) & (probs[..., 0] > probs[..., 1]))
    height, width = gt.shape[:2]
    big = cv2.resize(small.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)
    return big & (gt != BORDER)  # the band is never suspect, whatever the resize did at its edge


def explain(row: Any) -> str:
    """One sentence on why an image is suspected, from its table row (a dict or a Series); "" without a score."""
    quality = _float(_get(row, "label_quality"))
    if math.isnan(quality):
        return ""
    source = _get(row, "label_quality_source")
    who = ("a model that never saw this mask" if source == OUT_OF_FOLD
           else "the model trained on this very mask (in-sample: run cross-validation for a fair score)")
    pet, background = _float(_get(row, "suspect_pet_fraction")), _float(_get(row, "suspect_background_fraction"))
    parts = []
    if pet > 0.005:
        parts.append(f"{pet:.0%} of the pixels labelled pet look like background")
    if background > 0.005:
        parts.append(f"{background:.0%} of the pixels labelled background look like pet")
    if not parts:
        return f"The mask agrees with {who} (label quality {quality:.2f})."
    sentence = f"{' and '.join(parts)} to {who} (label quality {quality:.2f})."
    return sentence[0].upper() + sentence[1:]


def _get(row: Any, name: str) -> Any:
    try:
        return row[name]
    except (KeyError, IndexError, TypeError):
        return None


def _float(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number


# --- the stored probabilities -------------------------------------------------------------------------------


def disk_bytes(images: int, size: int) -> int:
    """What a store of ``images`` probabilities at ``size`` px costs on disk (the array; the index is small)."""
    return int(images) * int(size) * int(size) * 3


class ProbabilityStore:
    """Quantised probabilities of many images: one memory-mapped ``probs.npy`` (N, S, S, 3) uint8 and its id index.

    Made once with every id it will hold (:meth:`create`); rows are filled in place as predictions come (a
    cross-validation fold at a time), so an interrupted run resumes into the same file.
    """

    def __init__(self, folder: Path, ids: list[str], size: int, source: str, array: np.ndarray):
        self.folder, self.ids, self.size, self.source, self.array = Path(folder), ids, size, source, array
        self.row = {image_id: i for i, image_id in enumerate(ids)}

    @classmethod
    def create(cls, folder: Path, ids: list[str], size: int, source: str = OUT_OF_FOLD) -> ProbabilityStore:
        """A new store for ``ids`` (zeros until written), replacing any store in ``folder``."""
        if not 0 < len(ids) <= MAX_STORE_IMAGES or size <= 0:
            raise PetSegError(f"a probability store holds 1-{MAX_STORE_IMAGES} images of a positive size")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / PROBS_INDEX).unlink(missing_ok=True)  # no index: the half-made array is never read as a store
        array = np.lib.format.open_memmap(folder / PROBS_FILE, mode="w+", dtype=np.uint8,
                                          shape=(len(ids), size, size, 3))
        array.flush()
        atomic_write_text(folder / PROBS_INDEX, json.dumps({"ids": list(ids), "size": int(size), "source": source}))
        return cls(folder, list(ids), int(size), source, array)

    @classmethod
    def open(cls, folder: Path, writable: bool = False) -> ProbabilityStore | None:
        """The store in ``folder``, None when there is none (or it does not match its index)."""
        folder = Path(folder)
        try:
            index = json.loads((folder / PROBS_INDEX).read_text())
            array = np.load(folder / PROBS_FILE, mmap_mode="r+" if writable else "r")
        except (OSError, ValueError):
            return None
        ids, size, source = index.get("ids"), index.get("size"), index.get("source")
        if (not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or not isinstance(size, int)
                or source not in SOURCES or array.dtype != np.uint8 or array.shape != (len(ids), size, size, 3)):
            return None
        return cls(folder, ids, size, source, array)

    def write(self, image_id: str, probs: np.ndarray) -> None:
        """Store one image's (S, S, 3) float probabilities (quantised)."""
        self.array[self.row[image_id]] = quantize(probs)

    def flush(self) -> None:
        if isinstance(self.array, np.memmap):
            self.array.flush()

    def probabilities(self, image_id: str) -> Probabilities | None:
        """The stored probabilities of ``image_id`` (dequantised), None when the store does not hold it."""
        at = self.row.get(image_id)
        return None if at is None else Probabilities(dequantize(self.array[at]), self.source)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self.row
