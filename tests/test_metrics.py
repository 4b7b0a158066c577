"""core.metrics (smp's get_stats + iou_score...) pinned against an independent numpy implementation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from core.metrics import (
    EMPTY_UNION,
    GT_METRICS,
    UNCERTAIN_BELOW,
    batch_metrics,
    dataset_iou,
    empty_gt_metrics,
    image_metrics,
    prediction_metrics,
)

PET, BACKGROUND, BORDER = 1, 2, 3


def _ratio(num: int, den: int) -> float:
    return num / den if den else EMPTY_UNION


def reference(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """The metric definitions of core.metrics, written out with plain numpy set operations."""
    counted = gt != BORDER
    p, g = (pred == PET) & counted, (gt == PET)
    inter, union = np.sum(p & g), np.sum(p | g)
    pb, gb = pred != BACKGROUND, gt != BACKGROUND
    per_class = [_ratio(np.sum((pred == c) & (gt == c)), np.sum((pred == c) | (gt == c))) for c in (1, 2, 3)]
    return {
        "iou_pet": _ratio(inter, union),
        "dice_pet": _ratio(2 * inter, p.sum() + g.sum()),
        "iou_pet_border_as_pet": _ratio(np.sum(pb & gb), np.sum(pb | gb)),
        "miou_3class": float(np.mean(per_class)),
        "pixel_accuracy": float(np.mean(pred == gt)),
        "gt_pet_fraction": float(np.mean(gt == PET)),
        "pet_tp": int(inter),
        "pet_fp": int(np.sum(p & ~g)),
        "pet_fn": int(np.sum(~p & g)),
        "pet_tn": int(np.sum(~p & ~g & counted)),
    }


def _assert_matches(got: dict, want: dict) -> None:
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-6), key


def _blobby(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A trimap-like mask: a pet ellipse, a border ring, background elsewhere, plus some noise."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    ry, rx = rng.uniform(0.15, 0.4) * h, rng.uniform(0.15, 0.4) * w
    d = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
    mask = np.where(d < 0.8, PET, np.where(d < 1.2, BORDER, BACKGROUND)).astype(np.uint8)
    noise = rng.random(shape) < 0.05
    mask[noise] = rng.integers(1, 4, size=int(noise.sum()), dtype=np.uint8)
    return mask


@pytest.mark.parametrize("seed", range(6))
def test_random_masks_match_numpy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(5, 90)), int(rng.integers(5, 90)))
    pred, gt = _blobby(rng, shape), _blobby(rng, shape)
    _assert_matches(image_metrics(pred, gt), reference(pred, gt))
    uniform_pred, uniform_gt = rng.integers(1, 4, shape, dtype=np.uint8), rng.integers(1, 4, shape, dtype=np.uint8)
    _assert_matches(image_metrics(uniform_pred, uniform_gt), reference(uniform_pred, uniform_gt))


def _full(value: int, shape: tuple[int, int] = (12, 17)) -> np.ndarray:
    return np.full(shape, value, dtype=np.uint8)


def test_empty_ground_truth_with_predicted_pet_scores_zero() -> None:
    gt = _full(BACKGROUND)
    pred = gt.copy()
    pred[2:6, 3:9] = PET
    got = image_metrics(pred, gt)
    assert got["iou_pet"] == 0.0 and got["dice_pet"] == 0.0
    _assert_matches(got, reference(pred, gt))


def test_empty_prediction_scores_zero() -> None:
    gt = _full(BACKGROUND)
    gt[4:8, 4:12] = PET
    pred = _full(BACKGROUND)
    got = image_metrics(pred, gt)
    assert got["iou_pet"] == 0.0 and got["pet_fn"] == 32
    _assert_matches(got, reference(pred, gt))


def test_empty_union_scores_one() -> None:
    """No pet in the ground truth and none predicted: the model found correctly that there is nothing."""
    got = image_metrics(_full(BACKGROUND), _full(BACKGROUND))
    assert got["iou_pet"] == EMPTY_UNION == 1.0
    assert got["dice_pet"] == 1.0 and got["iou_pet_border_as_pet"] == 1.0
    # pet and border absent from both masks count 1.0 each in the 3-class mean
    assert got["miou_3class"] == 1.0 and got["pixel_accuracy"] == 1.0


def test_all_border_ground_truth_ignores_every_pixel_for_pet_iou() -> None:
    gt = _full(BORDER)
    pred = _full(PET)
    got = image_metrics(pred, gt)
    assert got["iou_pet"] == 1.0  # every pixel is left out: an empty union
    assert got["pet_tp"] == got["pet_fp"] == got["pet_fn"] == got["pet_tn"] == 0
    assert got["iou_pet_border_as_pet"] == 1.0  # border counted as pet on both sides
    assert got["miou_3class"] == pytest.approx(1 / 3)  # pet 0, background 1 (absent), border 0
    _assert_matches(got, reference(pred, gt))


def test_predicted_border_counts_as_not_pet() -> None:
    gt = _full(PET)
    pred = _full(BORDER)
    got = image_metrics(pred, gt)
    assert got["iou_pet"] == 0.0
    assert got["iou_pet_border_as_pet"] == 1.0


def test_batch_equals_per_image() -> None:
    rng = np.random.default_rng(7)
    preds = np.stack([_blobby(rng, (40, 30)) for _ in range(5)])
    gts = np.stack([_blobby(rng, (40, 30)) for _ in range(5)])
    batch = batch_metrics(preds, gts)
    for i in range(5):
        single = image_metrics(preds[i], gts[i])
        for key in GT_METRICS:
            assert batch[key][i] == pytest.approx(single[key], abs=1e-9), key


def test_dataset_iou_pools_pixels_over_images() -> None:
    rng = np.random.default_rng(3)
    pairs = [(_blobby(rng, (30 + i, 20 + 2 * i)), _blobby(rng, (30 + i, 20 + 2 * i))) for i in range(6)]
    table = pd.DataFrame([image_metrics(p, g) for p, g in pairs])
    inter = sum(np.sum((p == PET) & (g != BORDER) & (g == PET)) for p, g in pairs)
    union = sum(np.sum(((p == PET) & (g != BORDER)) | (g == PET)) for p, g in pairs)
    assert dataset_iou(table) == pytest.approx(inter / union, abs=1e-6)
    # per-image mean and pooled IoU differ in general: they are different questions
    assert not math.isclose(table["iou_pet"].mean(), inter / union, abs_tol=1e-9)


def test_dataset_iou_skips_images_without_ground_truth() -> None:
    scored = image_metrics(_full(PET), _full(PET))
    table = pd.DataFrame([scored, empty_gt_metrics()])
    assert dataset_iou(table) == 1.0
    assert math.isnan(dataset_iou(pd.DataFrame([empty_gt_metrics()])))


def test_prediction_metrics_match_numpy() -> None:
    rng = np.random.default_rng(11)
    pred = rng.integers(1, 4, (25, 31), dtype=np.uint8)
    confidence = rng.uniform(1 / 3, 1.0, (25, 31)).astype(np.float32)
    got = prediction_metrics(pred, confidence)
    assert got["pred_pet_fraction"] == pytest.approx(np.mean(pred == PET))
    assert got["mean_confidence"] == pytest.approx(float(np.mean(confidence.astype(np.float64))))
    assert got["uncertain_fraction"] == pytest.approx(np.mean(confidence < UNCERTAIN_BELOW))


def test_size_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="differ in size"):
        image_metrics(_full(PET, (4, 4)), _full(PET, (4, 5)))


def _smp(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    values = batch_metrics(pred, gt)
    return {k: (int(v[0]) if k.startswith("pet_") else float(v[0])) for k, v in values.items()}


def test_the_confusion_count_gives_exactly_smp_s_numbers(sample_root) -> None:
    """image_metrics (one bincount) and batch_metrics (smp's get_stats + iou_score) agree value for value."""
    import cv2

    from core.masks import regenerate_border

    rng = np.random.default_rng(7)
    pairs = []
    for path in sorted((sample_root / "annotations" / "trimaps").glob("*.png"))[:8]:
        truth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        pairs.append((regenerate_border(truth, half_width=4), truth))
        pairs.append((rng.integers(1, 4, size=truth.shape, dtype=np.uint8), truth))
    for shape in [(1, 1), (3, 7), (16, 16)]:
        for fill in (PET, BACKGROUND, BORDER):
            pairs.append((np.full(shape, fill, np.uint8), np.full(shape, BORDER, np.uint8)))  # empty unions
            pairs.append((rng.integers(1, 4, size=shape, dtype=np.uint8), np.full(shape, fill, np.uint8)))
    for pred, gt in pairs:
        assert image_metrics(pred, gt) == _smp(pred, gt)


def test_the_confusion_count_refuses_values_outside_the_trimap_coding() -> None:
    good = np.ones((4, 4), np.uint8)
    for bad in (np.zeros((4, 4), np.uint8), np.full((4, 4), 4, np.uint8), np.full((4, 4), 255, np.uint8)):
        with pytest.raises(ValueError, match="outside"):
            image_metrics(bad, good)
        with pytest.raises(ValueError, match="outside"):
            image_metrics(good, bad)
