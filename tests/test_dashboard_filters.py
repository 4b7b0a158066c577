"""The shared filter/sort (pure pandas), the tension score and the per-breed summary."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from dashboard.filters import (
    EVALUATED,
    UNTAGGED,
    Filters,
    apply_filters,
    neighbours,
    order,
    sort_table,
    tension_score,
    view_table,
)
from dashboard.tables import breed_summary


@pytest.fixture
def dataset_table() -> pd.DataFrame:
    ids = ["Abyssinian_1", "Abyssinian_2", "beagle_1", "beagle_2", "beagle_3", "pug_1"]
    frame = pd.DataFrame({
        "image_id": ids,
        "breed": ["Abyssinian", "Abyssinian", "beagle", "beagle", "beagle", "pug"],
        "species": ["cat", "cat", "dog", "dog", "dog", "dog"],
        "split": ["test", "trainval", "test", "test", "test", "unlisted"],
        "gt_pet_fraction": [0.3, 0.4, 0.5, 0.6, 0.2, math.nan],
        "problem": ["", "", "", "", "", "missing-trimap"],
    }, index=ids)
    return frame


@pytest.fixture
def evaluation() -> pd.DataFrame:
    ids = ["Abyssinian_1", "beagle_1", "beagle_2", "beagle_3"]
    return pd.DataFrame({
        "image_id": ids,
        "split": "test",
        "iou_pet": [0.9, 0.2, 0.5, math.nan],
        "mean_confidence": [0.95, 0.99, 0.6, 0.9],
        "uncertain_fraction": [0.01, 0.0, 0.5, 0.1],
        "gt_pet_fraction": [0.31, 0.5, 0.6, 0.2],
        "gt_version": pd.array([None, 1, None, None], dtype="Int64"),
    }, index=ids)


@pytest.fixture
def view(dataset_table, evaluation) -> pd.DataFrame:
    reviews = pd.DataFrame({"image_id": ["beagle_1", "pug_1"], "tag": ["label_error", None]},
                           index=["beagle_1", "pug_1"])
    return view_table(dataset_table, evaluation, {"beagle_1": 2}, reviews)


def test_view_table_joins_metrics_corrections_and_tags(view):
    assert list(view.index) == ["Abyssinian_1", "Abyssinian_2", "beagle_1", "beagle_2", "beagle_3", "pug_1"]
    assert view.loc["Abyssinian_1", "gt_pet_fraction"] == pytest.approx(0.31)  # the evaluation's value wins
    assert view.loc["Abyssinian_2", "gt_pet_fraction"] == pytest.approx(0.4)  # kept where not evaluated
    assert view["evaluated"].tolist() == [True, False, True, True, True, False]
    assert view.loc["beagle_1", "corrected"] and view.loc["beagle_1", "correction_version"] == 2
    assert view.loc["beagle_1", "scored_gt_version"] == 1
    assert not view.loc["beagle_2", "corrected"] and pd.isna(view.loc["beagle_2", "correction_version"])
    assert view.loc["beagle_1", "tag"] == "label_error" and view.loc["pug_1", "tag"] is None


def test_view_table_without_evaluation_keeps_every_image(dataset_table):
    view = view_table(dataset_table, None, {}, None)
    assert len(view) == 6 and not view["evaluated"].any() and view["tension"].isna().all()
    assert order(view, Filters(), "iou_pet") == sorted(view.index)  # nothing scored: id order


def test_tension_is_confident_certain_disagreement(view):
    expected = 0.99 * (1 - 0.0) * (1 - 0.2)
    assert view.loc["beagle_1", "tension"] == pytest.approx(expected)
    assert view.loc["Abyssinian_1", "tension"] == pytest.approx(0.95 * 0.99 * 0.1)
    assert math.isnan(view.loc["beagle_3", "tension"])  # no IoU: no tension
    assert tension_score(pd.DataFrame({"iou_pet": [0.1]})).isna().all()
    # A confident wrong image outranks an unsure one with a lower IoU.
    both = pd.DataFrame({"iou_pet": [0.3, 0.1], "mean_confidence": [0.98, 0.55], "uncertain_fraction": [0.02, 0.8]})
    scores = tension_score(both)
    assert scores[0] > scores[1]


def test_default_filter_is_the_evaluated_images_worst_first_missing_last(view):
    assert order(view, Filters(), "iou_pet") == ["beagle_1", "beagle_2", "Abyssinian_1", "beagle_3"]
    assert order(view, Filters(sort="metric_desc"), "iou_pet") == ["Abyssinian_1", "beagle_2", "beagle_1",
                                                                   "beagle_3"]
    assert order(view, Filters(sort="tension"), "iou_pet")[0] == "beagle_1"


@pytest.mark.parametrize(("filters", "expected"), [
    (Filters(split="all"), ["Abyssinian_1", "Abyssinian_2", "beagle_1", "beagle_2", "beagle_3", "pug_1"]),
    (Filters(split="trainval"), ["Abyssinian_2"]),
    (Filters(species=("cat",)), ["Abyssinian_1"]),
    (Filters(breeds=("beagle",)), ["beagle_1", "beagle_2", "beagle_3"]),
    (Filters(metric_min=0.4, metric_max=1.0), ["Abyssinian_1", "beagle_2"]),
    (Filters(corrected="corrected"), ["beagle_1"]),
    (Filters(corrected="not corrected"), ["Abyssinian_1", "beagle_2", "beagle_3"]),
    (Filters(tags=("label_error",)), ["beagle_1"]),
    (Filters(tags=(UNTAGGED,)), ["Abyssinian_1", "beagle_2", "beagle_3"]),
    (Filters(split="all", problems_only=True), ["pug_1"]),
    (Filters(search="BEAGLE_2"), ["beagle_2"]),
    (Filters(search="[.*"), []),
])
def test_each_filter(view, filters, expected):
    assert sorted(apply_filters(view, filters, "iou_pet").index) == expected


def test_sorts_are_stable_with_id_tie_break(view):
    ids = list(sort_table(view, "gt_pet_desc", "iou_pet").index)
    assert ids == ["beagle_2", "beagle_1", "Abyssinian_2", "Abyssinian_1", "beagle_3", "pug_1"]
    assert list(sort_table(view, "confidence_asc", "iou_pet").index)[:2] == ["beagle_2", "beagle_3"]
    assert list(sort_table(view, "unknown", "iou_pet").index) == sorted(view.index)


def test_neighbours():
    ids = ["a_1", "b_1", "c_1"]
    assert neighbours(ids, "a_1") == (None, "b_1")
    assert neighbours(ids, "b_1") == ("a_1", "c_1")
    assert neighbours(ids, "c_1") == ("b_1", None)
    assert neighbours(ids, "zz_1") == (None, "a_1")
    assert neighbours([], "a_1") == (None, None)


def test_filters_from_junk_fall_back_to_defaults():
    assert Filters.from_dict(None) == Filters()
    junk = {"split": "../../etc", "sort": "drop table", "metric_min": 5, "metric_max": -3, "tags": ["fine", "<b>"],
            "species": "cat", "search": "x" * 5000, "corrected": 3, "unknown": 1}
    filters = Filters.from_dict(junk)
    assert filters.split == EVALUATED and filters.sort == "metric_asc"
    assert (filters.metric_min, filters.metric_max) == (0.0, 1.0)
    assert filters.tags == ("fine",) and filters.species == () and len(filters.search) == 100
    assert Filters.from_dict(Filters(species=("dog",), sort="id").to_dict()) == Filters(species=("dog",), sort="id")


def test_breed_summary_worst_breed_first_with_worst_image(view):
    summary = breed_summary(view[view["evaluated"]], "iou_pet")
    assert list(summary["breed"]) == ["beagle", "Abyssinian"]
    beagle = summary.iloc[0]
    assert beagle["n"] == 2 and beagle["mean"] == pytest.approx(0.35) and beagle["worst_image"] == "beagle_1"
    assert beagle["p10"] == pytest.approx(0.23)
