"""core.views on hand-made tables: filter/sort, tension score, breed summary, review queue, run against run."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from core import views
from core.errors import PetSegError
from core.views import (
    EVALUATED,
    UNTAGGED,
    Filters,
    apply_filters,
    breed_summary,
    neighbours,
    order,
    review_queue,
    sort_table,
    tension_score,
    view_table,
)


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


def test_review_queue_worst_first_or_tension_first_and_only_ranked_images(view):
    assert list(review_queue(view, Filters(), "iou_pet", "worst").index) == ["beagle_1", "beagle_2", "Abyssinian_1"]
    tension = review_queue(view, Filters(), "iou_pet", "tension")
    assert list(tension.index)[0] == "beagle_1" and "beagle_3" not in tension.index  # no IoU: no tension
    assert tension["tension"].is_monotonic_decreasing
    # The filter narrows the queue; its own sort does not reorder it.
    cats_last = review_queue(view, Filters(species=("dog",), sort="metric_desc"), "iou_pet", "worst")
    assert list(cats_last.index) == ["beagle_1", "beagle_2"]
    with pytest.raises(PetSegError, match="unknown review order"):
        review_queue(view, Filters(), "iou_pet", "random")



# --- run against run ---


def table(values: dict[str, float | None], has_gt: dict[str, bool] | None = None, versions=None) -> pd.DataFrame:
    ids = list(values)
    frame = pd.DataFrame(
        {
            "image_id": ids,
            "split": "test",
            "breed": ["Abyssinian" if i.startswith("a") else "beagle" for i in ids],
            "species": ["cat" if i.startswith("a") else "dog" for i in ids],
            "iou_pet": np.array([math.nan if v is None else v for v in values.values()], dtype="float32"),
            "has_gt": [True if has_gt is None else has_gt.get(i, True) for i in ids],
            "gt_version": [None if versions is None else versions.get(i) for i in ids],
        }
    )
    return frame.set_index("image_id", drop=False).rename_axis(None)


def test_join_keeps_only_images_scored_by_both_and_deltas_are_b_minus_a():
    a = table({"a1": 0.5, "a2": 0.8, "b1": 0.9, "only_a": 0.1, "no_gt": 0.3})
    b = table({"a1": 0.7, "a2": 0.6, "b1": 0.9, "only_b": 0.2, "no_gt": 0.9}, has_gt={"no_gt": False})
    joined = views.join_runs(a, b, "iou_pet")
    assert list(joined.index) == ["a1", "a2", "b1"]
    assert joined.loc["a1", "delta"] == pytest.approx(0.2)
    assert joined.loc["a2", "delta"] == pytest.approx(-0.2)
    assert joined.loc["b1", "delta"] == pytest.approx(0.0)
    assert list(joined["species"]) == ["cat", "cat", "dog"]


def test_nan_metric_rows_are_left_out():
    joined = views.join_runs(table({"a1": None, "a2": 0.4}), table({"a1": 0.5, "a2": 0.5}))
    assert list(joined.index) == ["a2"]


def test_headline_means_difference_and_counts():
    joined = views.join_runs(table({"a1": 0.5, "a2": 0.8, "b1": 0.9}), table({"a1": 0.7, "a2": 0.6, "b1": 0.9}))
    h = views.headline(joined)
    assert h.images == 3
    assert h.mean_a == pytest.approx((0.5 + 0.8 + 0.9) / 3)
    assert h.mean_b == pytest.approx((0.7 + 0.6 + 0.9) / 3)
    assert h.delta == pytest.approx(h.mean_b - h.mean_a)
    assert (h.improved, h.worsened, h.unchanged) == (1, 1, 1)


def test_headline_of_nothing_is_empty_not_nan():
    h = views.headline(views.join_runs(table({"a1": 0.5}), table({"b1": 0.5})))
    assert (h.images, h.mean_a, h.delta) == (0, None, None)


def test_top_changes_order_and_exclude_unchanged():
    a = table({f"a{i}": 0.5 for i in range(6)})
    b = table({"a0": 0.9, "a1": 0.6, "a2": 0.5, "a3": 0.1, "a4": 0.4, "a5": 0.9})
    improved, worsened = views.top_changes(views.join_runs(a, b), n=2)
    assert list(improved.index) == ["a0", "a5"]  # equal deltas: by id
    assert list(worsened.index) == ["a3", "a4"]
    improved, worsened = views.top_changes(views.join_runs(a, b), n=10)
    assert "a2" not in improved.index and "a2" not in worsened.index


def test_restrict_to_corrected_images():
    joined = views.join_runs(table({"a1": 0.5, "a2": 0.8}), table({"a1": 0.7, "a2": 0.6}))
    assert list(views.restrict(joined, {"a2", "not-evaluated"}).index) == ["a2"]
    assert views.restrict(joined, []).empty


def test_mismatched_ground_truth_versions_are_counted():
    a = table({"a1": 0.5, "a2": 0.5, "a3": 0.5}, versions={"a2": 1, "a3": 2})
    b = table({"a1": 0.5, "a2": 0.5, "a3": 0.5}, versions={"a2": 1, "a3": 3})
    assert views.mismatched_ground_truth(views.join_runs(a, b)) == 1


def test_only_higher_is_better_metrics_can_be_compared():
    with pytest.raises(ValueError, match="cannot be compared"):
        views.join_runs(table({"a1": 0.5}), table({"a1": 0.5}), "uncertain_fraction")


def test_common_splits_keep_the_order_of_a():
    assert views.common_splits(("test", "trainval"), ("trainval", "test", "all")) == ["test", "trainval"]
    assert views.common_splits(("test",), ("trainval",)) == []


def test_comparison_summarises_all_and_corrected_images():
    a = table({"a1": 0.5, "a2": 0.8, "b1": 0.9, "b2": 0.4})
    b = table({"a1": 0.7, "a2": 0.6, "b1": 0.9, "b2": 0.8})
    comparison = views.compare(a, b, "before", "after", "test", "iou_pet", ["b2", "a1", "not-evaluated"])
    assert (comparison.overall.improved, comparison.overall.worsened, comparison.overall.unchanged) == (2, 1, 1)
    assert list(comparison.corrected_rows.index) == ["a1", "b2"]
    assert comparison.corrected.images == 2 and comparison.corrected.improved == 2
    assert comparison.corrected.delta == pytest.approx(((0.7 - 0.5) + (0.8 - 0.4)) / 2)
    data = comparison.to_dict(top=1)
    assert data["all"]["images"] == 4 and data["corrected"]["mean_a"] == pytest.approx(0.45)
    assert [r["image_id"] for r in data["most_improved"]] == ["b2"]
    assert [r["image_id"] for r in data["most_worsened"]] == ["a2"]
    assert data["mismatched_ground_truth"] == 0



# --- distribution summaries, against numpy/pandas on a real evaluated run ----------------------------------------


def test_histogram_counts_equal_numpy_per_species_on_shared_edges(trained_scored):
    counts = views.histogram_counts(trained_scored, "iou_pet", bins=12)
    edges = np.histogram_bin_edges(trained_scored["iou_pet"].to_numpy(float), bins=12)
    assert set(counts["species"]) == set(trained_scored["species"])
    for species, rows in counts.groupby("species"):
        values = trained_scored.loc[trained_scored["species"] == species, "iou_pet"].to_numpy(float)
        expected, _ = np.histogram(values, bins=edges)
        assert rows["count"].tolist() == expected.tolist()
        np.testing.assert_array_equal(rows["left"], edges[:-1])
        np.testing.assert_array_equal(rows["right"], edges[1:])
    assert counts["count"].sum() == len(trained_scored)


@pytest.mark.parametrize("by", ["breed", "species"])
def test_box_stats_and_outliers_equal_numpy_quartiles_and_tukey_fences(trained_scored, by):
    stats = views.box_stats(trained_scored, "iou_pet", by=by)
    outliers = views.box_outliers(trained_scored, "iou_pet", stats, by=by)
    assert set(stats.index) == set(trained_scored[by])
    assert list(stats["median"]) == sorted(stats["median"])  # worst median first
    for group, values in trained_scored.groupby(by)["iou_pet"]:
        v = values.to_numpy(float)
        q1, median, q3 = np.quantile(v, [0.25, 0.5, 0.75])
        row = stats.loc[group]
        assert row["n"] == len(v) and row["species"] == trained_scored.loc[values.index, "species"].iloc[0]
        assert row[["q1", "median", "q3"]].tolist() == pytest.approx([q1, median, q3], abs=1e-12)
        reach = (q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1))
        inside = v[(v >= reach[0]) & (v <= reach[1])]
        assert (row["lowerfence"], row["upperfence"]) == pytest.approx((inside.min(), inside.max()))
        beyond = values[(v < reach[0]) | (v > reach[1])]
        mine = outliers[outliers["group"] == group]
        assert sorted(mine.index) == sorted(beyond.index)
        assert mine["value"].to_dict() == beyond.to_dict()


def test_box_outliers_are_found_on_a_made_up_group():
    ids = [f"pug_{i}" for i in range(9)]
    table = pd.DataFrame({"breed": "pug", "species": "dog", "iou_pet": [0.5, 0.6, 0.6, 0.6, 0.7, 0.7, 0.7, 0.8, 0.0]},
                         index=ids)
    stats = views.box_stats(table, "iou_pet")
    assert list(views.box_outliers(table, "iou_pet", stats).index) == ["pug_8"]
    assert stats.loc["pug", "lowerfence"] == 0.5 and stats.loc["pug", "upperfence"] == 0.8


def test_densities_are_a_gaussian_kde_with_silverman_bandwidth(trained_scored):
    dens = views.densities(trained_scored, "iou_pet", by="species", points=50)
    for species, values in trained_scored.groupby("species")["iou_pet"]:
        v = values.to_numpy(float)
        rows = dens[dens["group"] == species]
        assert rows["value"].min() == v.min() and rows["value"].max() == v.max()
        if len(v) > 2 and v.max() > v.min():
            sigma = min(v.std(ddof=1), (np.quantile(v, 0.75) - np.quantile(v, 0.25)) / 1.349) or v.std(ddof=1)
            h = 1.059 * sigma * len(v) ** -0.2
            x = rows["value"].to_numpy()[17]
            expected = np.mean(np.exp(-0.5 * ((x - v) / h) ** 2)) / (h * math.sqrt(2 * math.pi))
            assert rows["density"].iloc[17] == pytest.approx(expected)


def test_summaries_of_nothing_are_empty():
    empty = pd.DataFrame({"breed": [], "species": [], "iou_pet": []})
    assert views.histogram_counts(empty, "iou_pet").empty
    stats = views.box_stats(empty, "iou_pet")
    assert stats.empty and views.box_outliers(empty, "iou_pet", stats).empty
    assert views.densities(empty, "iou_pet").empty


def test_thin_keeps_one_image_per_species_and_cell(trained_scored):
    thinned = views.thin(trained_scored, "gt_pet_fraction", "iou_pet", cells=(4, 3))
    frame = trained_scored.dropna(subset=["gt_pet_fraction", "iou_pet"])
    assert set(thinned.index) <= set(frame.index) and 0 < len(thinned) <= 2 * 5 * 4
    def cell(t):
        x = np.floor((t["gt_pet_fraction"] - frame["gt_pet_fraction"].min())
                     / np.ptp(frame["gt_pet_fraction"]) * 4)
        y = np.floor((t["iou_pet"] - frame["iou_pet"].min()) / np.ptp(frame["iou_pet"]) * 3)
        return set(zip(t["species"], x, y, strict=True))
    assert cell(thinned) == cell(frame) and len(cell(thinned)) == len(thinned)
    assert views.thin(trained_scored, "gt_pet_fraction", "iou_pet", cells=(10**6, 10**6)).index.equals(frame.index)


def test_inside_finds_every_row_in_a_box_or_lasso():
    table = pd.DataFrame({"x": [0.1, 0.5, 0.9, 0.5, math.nan], "y": [0.1, 0.5, 0.9, 0.95, 0.5]},
                         index=["a", "b", "c", "d", "e"])
    box = ([0.0, 0.6, 0.6, 0.0], [0.0, 0.0, 0.6, 0.6])
    assert views.inside(table, "x", "y", [box]) == ["a", "b"]
    above = ([0.0, 1.0, 0.0], [0.2, 1.2, 1.2])  # a lasso over y >= x + 0.2
    assert views.inside(table, "x", "y", [above]) == ["d"]
    assert views.inside(table, "x", "y", [above, box]) == ["a", "b", "d"]
    assert views.inside(table, "x", "y", [([0, 1], [0, 1]), ([0, math.inf, 1], [0, 1, 1])]) == []


def test_configs_that_differ_only_in_corrections_have_no_other_differences():
    base = {"train": {"epochs": 3, "encoder_weights": "imagenet", "pretrained": True, "seed": 0, "lr": 1e-3},
            "model": {"encoder": "resnet18", "image_size": 128, "encoder_weights": "imagenet"},
            "dataset": {"fingerprint": "f", "val_ids": ["a_1", "a_2"]}, "corrections": {}}
    corrected = {**base, "train": {**base["train"], "use_corrections": True}, "corrections": {"a_3": 2}}
    table = views.compare_configs(base, corrected)
    assert views.other_differences(table) == []
    assert table.set_index("setting").loc["corrections used", ["A", "B"]].tolist()[0] == "none"
    longer = {**corrected, "train": {**corrected["train"], "epochs": 150, "pretrained": False},
              "dataset": {"fingerprint": "f", "val_ids": ["a_1", "a_9"]}}
    assert views.other_differences(views.compare_configs(base, longer)) == ["epochs", "encoder weights",
                                                                            "validation images"]
    # A setting one run did not record (an older config.json) is not reported as a difference.
    assert views.other_differences(views.compare_configs({}, base)) == []


def test_ids_sort_in_natural_order_and_worst_ties_break_by_border_iou_then_pet_size():
    ids = ["Ragdoll_10", "Ragdoll_100", "Ragdoll_2", "Ragdoll_102", "ragdoll_3"]
    assert sorted(ids, key=views.natural_key) == ["Ragdoll_2", "ragdoll_3", "Ragdoll_10", "Ragdoll_100",
                                                  "Ragdoll_102"]
    table = pd.DataFrame({
        "iou_pet": [0.0, 0.0, 0.0, 0.0, 0.5],
        "iou_pet_border_as_pet": [0.1, 0.0, 0.0, 0.0, 0.6],
        "gt_pet_fraction": [0.9, 0.2, 0.6, 0.2, 0.3],
    }, index=["Ragdoll_10", "Ragdoll_100", "Ragdoll_102", "Ragdoll_2", "Ragdoll_1"])
    # IoU 0 for four: no border overlap first, the larger missed pet first, then natural id order.
    assert list(views.worst_first(table, "iou_pet").index) == ["Ragdoll_102", "Ragdoll_2", "Ragdoll_100",
                                                              "Ragdoll_10", "Ragdoll_1"]
    assert list(sort_table(table, "metric_asc", "iou_pet").index) == list(views.worst_first(table, "iou_pet").index)
    assert list(sort_table(table, "id", "iou_pet").index) == ["Ragdoll_1", "Ragdoll_2", "Ragdoll_10", "Ragdoll_100",
                                                             "Ragdoll_102"]
    assert list(sort_table(table, "metric_desc", "iou_pet").index)[0] == "Ragdoll_1"
    missing = table.assign(iou_pet=[np.nan, 0.0, 0.0, 0.0, 0.5])
    assert list(views.worst_first(missing, "iou_pet").index)[-1] == "Ragdoll_10"  # missing values last


def test_worst_breed_is_one_ordering_for_the_summary_table_and_the_boxes():
    # Mean and median disagree: A has the lowest median (0.1), B the lowest mean. Both views rank by mean.
    values = {"A_1": 0.1, "A_2": 0.1, "A_3": 1.0, "B_1": 0.0, "B_2": 0.2, "B_3": 0.3, "c_1": 0.3, "C_1": 0.3}
    table = pd.DataFrame({"iou_pet": list(values.values()), "breed": [k.split("_")[0] for k in values],
                          "species": "cat"}, index=list(values))
    summary = breed_summary(table, "iou_pet")
    boxes = views.box_stats(table, "iou_pet")
    assert list(summary["breed"]) == list(boxes.index) == views.group_order(table, "iou_pet") == ["B", "C", "c", "A"]


def test_an_empty_prediction_is_a_model_failure_not_a_confident_disagreement():
    table = pd.DataFrame({
        "mean_confidence": [0.99, 0.95], "uncertain_fraction": [0.0, 0.01], "iou_pet": [0.0, 0.3],
        "pred_pet_fraction": [0.002, 0.4],
    }, index=["empty_1", "wrong_gt_1"])
    scores = tension_score(table)
    assert scores["empty_1"] == 0.0  # confident, no pet predicted: the model failed
    assert scores["wrong_gt_1"] == pytest.approx(0.95 * 0.99 * 0.7)
    assert math.isnan(tension_score(table.assign(iou_pet=[np.nan, 0.3]))["empty_1"])  # no ground truth: NaN


def test_a_weak_run_is_told_its_label_error_ranking_means_little():
    weak = pd.DataFrame({"iou_pet": [0.1, 0.3, 0.32]})
    assert "too weak" in views.weak_run_warning(weak) and "0.24" in views.weak_run_warning(weak)
    assert views.weak_run_warning(pd.DataFrame({"iou_pet": [0.8, 0.9]})) is None
    assert views.weak_run_warning(pd.DataFrame({"iou_pet": [np.nan]})) is None


def test_a_filter_and_a_selection_round_trip_through_the_url():
    chosen = Filters(species=("cat",), metric_max=0.5, problems_only=True, sort="id", ids=("b_2", "a_10"))
    query = chosen.to_query()
    assert query == {"species": "cat", "max": "0.5", "problems": "1", "sort": "id", "ids": "b_2,a_10"}
    assert Filters.from_query(query) == chosen
    assert Filters.from_query({"run": "x", "image": "y"}) is None  # names no filter
    junk = Filters.from_query({"min": "abc", "sort": "<script>", "in": "nowhere", "tags": "fine,bogus",
                               "ids": ",".join(["x" * 300, "ok_1"] + [f"i_{n}" for n in range(3000)])})
    assert junk.sort == "metric_asc" and junk.split == "evaluated" and junk.tags == ("fine",)
    assert junk.ids[0] == "ok_1" and len(junk.ids) == views.MAX_SELECTION


def test_a_selection_keeps_only_its_images(view):
    picked = ("beagle_3", "Abyssinian_1", "not_an_image")
    assert sorted(order(view, Filters(split="all", ids=picked, sort="id"), "iou_pet")) == ["Abyssinian_1",
                                                                                           "beagle_3"]
