"""Per-image segmentation metrics, computed with smp's own functions (``get_stats`` + ``iou_score``...).

    >>> from core.metrics import image_metrics, dataset_iou
    >>> m = image_metrics(pred_trimap, gt_trimap)        # both (H, W) uint8 coded 1 pet, 2 background, 3 border
    >>> m["iou_pet"], m["miou_3class"], m["pixel_accuracy"]
    (0.93, 0.81, 0.95)
    >>> dataset_iou(table)                               # pet IoU over all pixels of the split (from stored counts)

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
from typing import Any

import numpy as np
import pandas as pd
import segmentation_models_pytorch as smp
import torch

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
PREDICTION_METRICS = ("pred_pet_fraction", "mean_confidence", "uncertain_fraction")

_PET = 1


def _as_batch(masks: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(H, W) or (B, H, W) trimap-coded masks as a (B, H, W) uint8 tensor of class indices 0..2."""
    tensor = torch.as_tensor(masks)
    if tensor.ndim == 2:
        tensor = tensor.unsqueeze(0)
    return tensor.to(torch.uint8) - 1


def batch_metrics(pred: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor) -> dict[str, np.ndarray]:
    """The ground-truth metrics of a batch of same-size trimap-coded masks, one value per image."""
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


def image_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """The ground-truth metrics of one image (see the module docstring), as plain floats/ints."""
    values = batch_metrics(pred, gt)
    return {k: (int(v[0]) if k.startswith("pet_") else float(v[0])) for k, v in values.items()}


def prediction_metrics(pred: np.ndarray | torch.Tensor, max_probability: np.ndarray | torch.Tensor) -> dict[str, float]:
    """Metrics that need no ground truth: they survive a correction of the ground truth unchanged."""
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
    counts = table[["pet_tp", "pet_fp", "pet_fn", "pet_tn"]].dropna()
    if counts.empty:
        return math.nan
    tp, fp, fn, tn = (torch.tensor(counts[c].to_numpy(dtype=np.int64)) for c in counts.columns)
    if int((tp + fp + fn).sum()) == 0:
        return EMPTY_UNION
    return float(smp.metrics.iou_score(tp, fp, fn, tn, reduction="micro"))
