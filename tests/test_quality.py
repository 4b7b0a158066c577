"""core.quality: the score against cleanlab's, the border band, the suspect map, the sentence, the store."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from core.errors import PetSegError
from core.masks import BACKGROUND, BORDER, PET, binary_to_trimap
from core.quality import (
    IN_SAMPLE,
    OUT_OF_FOLD,
    PROBS_INDEX,
    Probabilities,
    ProbabilityStore,
    dequantize,
    disk_bytes,
    explain,
    label_quality,
    quantize,
    softmax_channels_last,
    softmin,
    suspect_map,
)
from core.runs import EVAL_COLUMNS, read_eval_table, write_eval_table

SIZE = 24


def _images(count: int, seed: int, border: bool) -> tuple[np.ndarray, np.ndarray]:
    """Trimap-coded labels (N, S, S) and softmax probabilities (N, S, S, 3): a model that mostly agrees with the
    labels, and labels with wrong patches of various sizes in some images."""
    rng = np.random.default_rng(seed)
    labels, probs = [], []
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for n in range(count):
        pet = (yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2 < rng.uniform(20, 60)
        truth = binary_to_trimap(pet, 1) if border else np.where(pet, PET, BACKGROUND).astype(np.uint8)
        logits = rng.normal(0, 1, (3, SIZE, SIZE)) + 4.0 * np.eye(3)[truth - 1].transpose(2, 0, 1)
        given = truth.copy()
        if n % 3 == 0:  # a wrong patch: the label says pet where the model sees background
            size = int(rng.integers(2, 8))
            y, x = rng.integers(0, SIZE - size, 2)
            given[y:y + size, x:x + size] = np.where(given[y:y + size, x:x + size] == BACKGROUND, PET, BACKGROUND)
        labels.append(given)
        probs.append(softmax_channels_last(logits.astype(np.float32)))
    return np.stack(labels), np.stack(probs)


def _ours(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    return np.array([label_quality(Probabilities(p, OUT_OF_FOLD), gt)["label_quality"] for gt, p in zip(labels, probs,
                                                                                                         strict=True)])


def test_without_border_labels_the_score_is_cleanlabs_softmin_and_orders_images_the_same() -> None:
    rank = pytest.importorskip("cleanlab.segmentation.rank")
    labels, probs = _images(30, seed=1, border=False)
    ours = _ours(labels, probs)
    theirs, pixel_scores = rank.get_label_quality_scores(labels.astype(np.int64) - 1, probs.transpose(0, 3, 1, 2),
                                                         verbose=False)
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-9)
    assert list(np.argsort(ours, kind="stable")) == list(np.argsort(theirs, kind="stable"))
    # and the wrong patches are what sinks an image: every image with one ranks below every clean image
    damaged = np.arange(30) % 3 == 0
    assert ours[damaged].max() < ours[~damaged].min()


def test_border_pixels_are_left_out_where_cleanlab_counts_them() -> None:
    """The documented difference: cleanlab scores the border band too; PetSeg equals cleanlab's softmin over the
    pet and background pixels only."""
    rank = pytest.importorskip("cleanlab.segmentation.rank")
    labels, probs = _images(12, seed=2, border=True)
    ours = _ours(labels, probs)
    _, pixel_scores = rank.get_label_quality_scores(labels.astype(np.int64) - 1, probs.transpose(0, 3, 1, 2),
                                                    verbose=False)
    counted = labels != BORDER
    assert (~counted).any()
    np.testing.assert_allclose(ours, [softmin(s[c]) for s, c in zip(pixel_scores, counted, strict=True)], rtol=1e-6)
    # a model unsure of the band changes nothing
    unsure = probs.copy()
    unsure[~counted] = 1 / 3
    np.testing.assert_allclose(_ours(labels, unsure), ours, rtol=1e-6)


def test_softmin_sits_near_the_worst_pixels() -> None:
    assert softmin(np.ones(100)) == pytest.approx(1.0)
    few_wrong = softmin(np.r_[np.full(95, 0.99), np.full(5, 0.01)])
    assert few_wrong < 0.05
    assert math.isnan(softmin(np.array([])))


def test_label_quality_is_taken_at_the_probability_size_and_counts_suspect_pixels() -> None:
    pet = np.zeros((60, 90), bool)
    pet[10:50, 20:70] = True
    gt = binary_to_trimap(pet, 2)
    probs = np.zeros((30, 30, 3), np.float32)
    probs[..., 1] = 1.0  # the model sees background everywhere: every pixel labelled pet is suspect
    columns = label_quality(Probabilities(probs, IN_SAMPLE), gt)
    assert columns["label_quality_source"] == IN_SAMPLE
    assert columns["suspect_pet_fraction"] == 1.0 and columns["suspect_background_fraction"] == 0.0
    assert columns["label_quality"] < 0.01
    assert math.isnan(label_quality(None, gt)["label_quality"])
    assert math.isnan(label_quality(Probabilities(probs, IN_SAMPLE), None)["label_quality"])
    with pytest.raises(PetSegError):
        label_quality(Probabilities(probs[..., :2], IN_SAMPLE), gt)


def test_suspect_map_is_at_the_mask_size_and_never_in_the_border_band() -> None:
    pet = np.zeros((64, 96), bool)
    pet[16:48, 24:72] = True
    gt = binary_to_trimap(pet, 3)
    probs = np.zeros((32, 32, 3), np.float32)
    probs[..., 1] = 1.0
    suspect = suspect_map(Probabilities(probs, OUT_OF_FOLD), gt)
    assert suspect.shape == gt.shape and suspect.dtype == bool
    assert not suspect[gt == BORDER].any() and not suspect[gt == BACKGROUND].any()
    assert suspect[gt == PET].mean() > 0.9


def test_explain_names_the_share_the_class_and_who_judged() -> None:
    row = {"label_quality": 0.03, "label_quality_source": OUT_OF_FOLD, "suspect_pet_fraction": 0.28,
           "suspect_background_fraction": 0.0}
    assert explain(row) == ("28% of the pixels labelled pet look like background to a model that never saw this "
                            "mask (label quality 0.03).")
    both = explain(pd.Series({**row, "suspect_background_fraction": 0.1, "label_quality_source": IN_SAMPLE}))
    assert "10% of the pixels labelled background look like pet" in both and "in-sample" in both
    assert explain({**row, "suspect_pet_fraction": 0.0}).startswith("The mask agrees with")
    assert explain({**row, "label_quality": float("nan")}) == ""
    assert explain({}) == ""


def test_probability_store_round_trips_quantised_rows_and_refuses_a_mismatched_index(tmp_path) -> None:
    ids = ["a_1", "b_2", "c_3"]
    store = ProbabilityStore.create(tmp_path, ids, 16)
    rng = np.random.default_rng(0)
    probs = softmax_channels_last(rng.normal(size=(3, 16, 16)).astype(np.float32))
    store.write("b_2", probs)
    store.flush()
    again = ProbabilityStore.open(tmp_path)
    assert again is not None and again.ids == ids and again.source == OUT_OF_FOLD and "b_2" in again
    assert np.abs(again.probabilities("b_2").values - probs).max() <= 1 / 510 + 1e-6
    assert again.probabilities("zzz") is None
    assert (tmp_path / "probs.npy").stat().st_size - disk_bytes(3, 16) < 200  # the .npy header only
    index = json.loads((tmp_path / PROBS_INDEX).read_text())
    (tmp_path / PROBS_INDEX).write_text(json.dumps({**index, "size": 32}))
    assert ProbabilityStore.open(tmp_path) is None
    assert ProbabilityStore.open(tmp_path / "nothing") is None
    with pytest.raises(PetSegError):
        ProbabilityStore.create(tmp_path, [], 16)
    assert (quantize(np.array([0.0, 0.5, 1.0, 1.2])) == [0, 128, 255, 255]).all()
    assert dequantize(np.array([255], np.uint8))[0] == 1.0


def test_disk_cost_of_7390_images() -> None:
    assert disk_bytes(7390, 128) == 363_233_280
    assert disk_bytes(7390, 256) == 1_452_933_120


def test_old_tables_without_the_quality_columns_read_as_empty(tmp_path) -> None:
    old_columns = [c for c in EVAL_COLUMNS if not c.startswith(("label_quality", "suspect_"))]
    row = {c: None for c in old_columns} | {"image_id": "a_1", "has_gt": True, "iou_pet": 0.5}
    pd.DataFrame([row], columns=old_columns).to_parquet(tmp_path / "metrics.parquet", index=False)
    table = read_eval_table(tmp_path)
    assert math.isnan(table.loc["a_1", "label_quality"]) and table.loc["a_1", "label_quality_source"] == ""
    written = write_eval_table(tmp_path, table)
    assert list(written.columns) == list(EVAL_COLUMNS)
