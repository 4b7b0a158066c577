"""Per-image segmentation metrics: one confusion count per image, smp's definitions (``get_stats`` + ``iou_score``).

    >>> from core.metrics import dataset_iou, image_metrics, pet_iou
    >>> m = image_metrics(pred_trimap, gt_trimap)        # both (H, W) uint8 coded 1 pet, 2 background, 3 border
    >>> m["iou_pet"], m["miou_3class"], m["pixel_accuracy"]
    (0.93, 0.81, 0.95)
    >>> pet_iou(corrected_trimap, official_trimap)       # the one pet IoU (ledger, editor readout, history, export)
    0.981
    >>> dataset_iou(table)                               # pet IoU over all pixels of the split (from stored counts)

Two implementations of the same numbers. :func:`image_metrics` counts the 3x3 confusion matrix of an image with
one ``np.bincount`` and derives every score from it: the evaluation of full-size images runs this, several times
faster than smp's ``get_stats`` on five binary planes. :func:`batch_metrics` is smp's own computation on tensors
(validation batches at the input size use it, and the tests compare the two exactly, value for value). The ratios
are taken in float32 as smp does, so both give identical numbers.

Definitions (pred and gt are trimap-coded; the model predicts all three classes):

- ``iou_pet``: pet vs not-pet, with the pixels whose *ground truth* is border (3) left out of both prediction
  and ground truth. A predicted border pixel elsewhere counts as "not pet".
- ``iou_pet_border_as_pet``: border counted as pet on both sides (pred in {1, 3} vs gt in {1, 3}): smp's
  Oxford-pet convention, comparable with its published per-image test IoU.
- ``dice_pet``: the F1 score of the same pet/not-pet counts as ``iou_pet``.
- ``miou_3class``: the mean over pet, background and border of the per-class IoU.
- ``pixel_accuracy``: share of pixels whose 3-class prediction equals the ground truth (micro recall).
- ``gt_pet_fraction`` / ``pred_pet_fraction``: share of all pixels that are pet (value 1).
- ``mean_confidence``: mean of the max softmax probability; ``uncertain_fraction``: share of pixels whose max
  probability is below ``UNCERTAIN_BELOW`` (0.6). These two depend on the prediction only.

Empty union: a score whose union is empty (no pet in the ground truth and none predicted, e.g. an image that is
all border, or a class absent from both masks in ``miou_3class``) is **1.0**, smp's ``zero_division=1.0``: the
model agreed that there is nothing to find. The dataset-wide ``dataset_iou`` sums the counts of all images
first, so such images add nothing to it.

The per-image pet counts (``pet_tp``, ``pet_fp``, ``pet_fn``, ``pet_tn``) are returned too, so a dataset-wide
score is a reduction over stored counts, never a second pass over the masks.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.errors import PetSegError

if TYPE_CHECKING:
    import torch

# torch and smp are imported where they are used: the per-image path (and core.runs, which names the table
# columns) stays a numpy module that loads in milliseconds.

UNCERTAIN_BELOW = 0.6
EMPTY_UNION = 1.0  # smp's zero_division: the value of a score whose union is empty

GT_METRICS = (
    "iou_pet",
    "iou_pet_border_as_pet",
    "miou_3class",
    "pixel_accuracy",
    "dice_pet",
    "gt_pet_fraction",
    "pet_tp",
    "pet_fp",
    "pet_fn",
    "pet_tn",
)
# The metrics that treat border as a class of its own: not applicable to a binary (pet vs background) model.
BORDER_METRICS = ("miou_3class", "pixel_accuracy")
PREDICTION_METRICS = ("pred_pet_fraction", "mean_confidence", "uncertain_fraction")

_PET = 1


# --- the fast path: one confusion matrix per image ---------------------------------------------------------------


def confusion(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(3, 3) int64 pixel counts: row = ground-truth class, column = predicted class (pet, background, border)."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
    codes = np.asarray(gt, dtype=np.uint16) * 4 + np.asarray(pred, dtype=np.uint8)
    counts = np.bincount(codes.ravel(), minlength=16)
    if len(counts) > 16:
        raise ValueError("masks hold values outside 1 pet / 2 background / 3 border")
    square = counts.reshape(4, 4)
    if square[0].any() or square[:, 0].any():
        raise ValueError("masks hold values outside 1 pet / 2 background / 3 border")
    return square[1:, 1:].astype(np.int64)


def _ratio(numerator: int, denominator: int) -> float:
    # float32, as smp divides its int64 count tensors; an empty denominator is smp's zero_division.
    if denominator == 0:
        return EMPTY_UNION
    return float(np.float32(numerator) / np.float32(denominator))


def metrics_from_confusion(matrix: np.ndarray) -> dict[str, float]:
    """The ground-truth metrics of one image (see the module docstring) from its :func:`confusion` matrix."""
    c = [[int(v) for v in row] for row in matrix]
    pet, bg, border = 0, 1, 2
    # pet vs not-pet, ground-truth border pixels left out
    tp = c[pet][pet]
    fp = c[bg][pet]
    fn = c[pet][bg] + c[pet][border]
    tn = c[bg][bg] + c[bg][border]
    # border counted as pet on both sides
    tp_b = c[pet][pet] + c[pet][border] + c[border][pet] + c[border][border]
    fp_b = c[bg][pet] + c[bg][border]
    fn_b = c[pet][bg] + c[border][bg]
    total = sum(map(sum, c))
    per_class = []
    for k in range(3):
        column = sum(c[g][k] for g in range(3))
        per_class.append(np.float32(_ratio(c[k][k], sum(c[k]) + column - c[k][k])))
    return {
        "iou_pet": _ratio(tp, tp + fp + fn),
        "iou_pet_border_as_pet": _ratio(tp_b, tp_b + fp_b + fn_b),
        "miou_3class": float(np.mean(np.array(per_class, dtype=np.float32), dtype=np.float32)),
        "pixel_accuracy": _ratio(c[0][0] + c[1][1] + c[2][2], total),
        "dice_pet": _ratio(2 * tp, 2 * tp + fn + fp),
        "gt_pet_fraction": sum(c[pet]) / total if total else math.nan,
        "pet_tp": tp,
        "pet_fp": fp,
        "pet_fn": fn,
        "pet_tn": tn,
    }


def image_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """The ground-truth metrics of one image (see the module docstring), as plain floats/ints."""
    return metrics_from_confusion(confusion(pred, gt))


def pet_iou(mask: np.ndarray, reference: np.ndarray) -> float:
    """Pet IoU of ``mask`` against ``reference`` (both trimaps), ignoring the reference's border pixels.

    The evaluation's ``iou_pet``; also "IoU against the official trimap" of a correction (ledger, history,
    manifest, editor readout). Border in ``mask`` counts as not-pet; two masks without pet score 1.0.
    """
    if mask.shape != reference.shape:
        raise PetSegError(f"cannot compare masks of shapes {mask.shape} and {reference.shape}")
    return image_metrics(mask, reference)["iou_pet"]


# --- smp's computation on batches (validation, and the reference the fast path is tested against) ------------------


def _as_batch(masks: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(H, W) or (B, H, W) trimap-coded masks as a (B, H, W) uint8 tensor of class indices 0..2."""
    import torch

    tensor = torch.as_tensor(masks)
    if tensor.ndim == 2:
        tensor = tensor.unsqueeze(0)
    return tensor.to(torch.uint8) - 1


def batch_metrics(pred: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
    """The ground-truth metrics of a batch of same-size trimap-coded masks, one value per image."""
    import segmentation_models_pytorch as smp
    import torch

    p, g = _as_batch(pred), _as_batch(gt)
    if p.shape != g.shape:
        raise ValueError(f"prediction {tuple(p.shape)} and ground truth {tuple(g.shape)} differ in size")
    pet, background, border = 0, 1, 2
    counted = g != border
    # One get_stats call over five binary views of the masks (as uint8 0/1 planes):
    #   0: pet vs not-pet on pixels whose ground truth is not border (zeroed there on both sides, so those pixels
    #      only land in tn, which is corrected below and enters no score)
    #   1: pet-or-border vs background (border counted as pet)
    #   2-4: each of the three classes
    pred_planes = torch.stack([(p == pet) & counted, p != background, p == pet, p == background, p == border], 1)
    gt_planes = torch.stack([g == pet, g != background, g == pet, g == background, g == border], 1)
    tp, fp, fn, tn = smp.metrics.get_stats(pred_planes.to(torch.uint8), gt_planes.to(torch.uint8), mode="multilabel")
    tn = torch.cat([tn[:, :1] - (~counted).flatten(1).sum(1, keepdim=True), tn[:, 1:]], dim=1)
    kw: dict[str, Any] = {"reduction": "none", "zero_division": EMPTY_UNION}
    iou = smp.metrics.iou_score(tp, fp, fn, tn, **kw)
    dice_pet = smp.metrics.f1_score(tp[:, :1], fp[:, :1], fn[:, :1], tn[:, :1], **kw)[:, 0]
    three = (tp[:, 2:], fp[:, 2:], fn[:, 2:], tn[:, 2:])
    # Micro recall over the three classes = correctly classified pixels / all pixels.
    pixel_accuracy = smp.metrics.recall(*(s.sum(dim=1, keepdim=True) for s in three), **kw)[:, 0]

    pixels = g[0].numel()
    return {
        "iou_pet": iou[:, 0].double().numpy(),
        "iou_pet_border_as_pet": iou[:, 1].double().numpy(),
        "miou_3class": iou[:, 2:].mean(dim=1).double().numpy(),
        "pixel_accuracy": pixel_accuracy.double().numpy(),
        "dice_pet": dice_pet.double().numpy(),
        "gt_pet_fraction": ((tp[:, 2] + fn[:, 2]).double() / pixels).numpy(),
        "pet_tp": tp[:, 0].numpy(),
        "pet_fp": fp[:, 0].numpy(),
        "pet_fn": fn[:, 0].numpy(),
        "pet_tn": tn[:, 0].numpy(),
    }


def prediction_metrics(pred: np.ndarray | torch.Tensor, max_probability: np.ndarray | torch.Tensor) -> dict[str, float]:
    """Metrics that need no ground truth: they survive a correction of the ground truth unchanged."""
    import torch

    pred, confidence = torch.as_tensor(pred), torch.as_tensor(max_probability)
    return {
        "pred_pet_fraction": float((pred == _PET).sum()) / pred.numel(),
        "mean_confidence": float(confidence.mean(dtype=torch.float64)),
        "uncertain_fraction": float((confidence < UNCERTAIN_BELOW).sum()) / confidence.numel(),
    }


def empty_gt_metrics() -> dict[str, float]:
    """The ground-truth columns of an image without ground truth: NaN, so means skip it."""
    return {name: math.nan for name in GT_METRICS}


def dataset_iou(table: pd.DataFrame) -> float:
    """Pet IoU over all pixels of the images in ``table`` (smp's "micro" reduction of the stored counts)."""
    import segmentation_models_pytorch as smp
    import torch

    counts = table[["pet_tp", "pet_fp", "pet_fn", "pet_tn"]].dropna()
    if counts.empty:
        return math.nan
    tp, fp, fn, tn = (torch.tensor(counts[c].to_numpy(dtype=np.int64)) for c in counts.columns)
    if int((tp + fp + fn).sum()) == 0:
        return EMPTY_UNION
    return float(smp.metrics.iou_score(tp, fp, fn, tn, reduction="micro"))
