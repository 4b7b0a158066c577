"""The pure before/after functions behind the Runs page, on hand-made evaluation tables."""

import math
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd
import pytest

from dashboard import runs_compare as rc


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
    joined = rc.join_runs(a, b, "iou_pet")
    assert list(joined.index) == ["a1", "a2", "b1"]
    assert joined.loc["a1", "delta"] == pytest.approx(0.2)
    assert joined.loc["a2", "delta"] == pytest.approx(-0.2)
    assert joined.loc["b1", "delta"] == pytest.approx(0.0)
    assert list(joined["species"]) == ["cat", "cat", "dog"]


def test_nan_metric_rows_are_left_out():
    joined = rc.join_runs(table({"a1": None, "a2": 0.4}), table({"a1": 0.5, "a2": 0.5}))
    assert list(joined.index) == ["a2"]


def test_headline_means_difference_and_counts():
    joined = rc.join_runs(table({"a1": 0.5, "a2": 0.8, "b1": 0.9}), table({"a1": 0.7, "a2": 0.6, "b1": 0.9}))
    h = rc.headline(joined)
    assert h.images == 3
    assert h.mean_a == pytest.approx((0.5 + 0.8 + 0.9) / 3)
    assert h.mean_b == pytest.approx((0.7 + 0.6 + 0.9) / 3)
    assert h.delta == pytest.approx(h.mean_b - h.mean_a)
    assert (h.improved, h.worsened, h.unchanged) == (1, 1, 1)


def test_headline_of_nothing_is_empty_not_nan():
    h = rc.headline(rc.join_runs(table({"a1": 0.5}), table({"b1": 0.5})))
    assert (h.images, h.mean_a, h.delta) == (0, None, None)


def test_top_changes_order_and_exclude_unchanged():
    a = table({f"a{i}": 0.5 for i in range(6)})
    b = table({"a0": 0.9, "a1": 0.6, "a2": 0.5, "a3": 0.1, "a4": 0.4, "a5": 0.9})
    improved, worsened = rc.top_changes(rc.join_runs(a, b), n=2)
    assert list(improved.index) == ["a0", "a5"]  # equal deltas: by id
    assert list(worsened.index) == ["a3", "a4"]
    improved, worsened = rc.top_changes(rc.join_runs(a, b), n=10)
    assert "a2" not in improved.index and "a2" not in worsened.index


def test_restrict_to_corrected_images():
    joined = rc.join_runs(table({"a1": 0.5, "a2": 0.8}), table({"a1": 0.7, "a2": 0.6}))
    assert list(rc.restrict(joined, {"a2", "not-evaluated"}).index) == ["a2"]
    assert rc.restrict(joined, []).empty


def test_compare_links_encode_the_id_and_run():
    url = rc.compare_url("Abyssinian_1&x=<script>", "run-2")
    parsed = urlparse(url)
    assert parsed.path == "/compare"
    assert parse_qs(parsed.query) == {"image": ["Abyssinian_1&x=<script>"], "run": ["run-2"]}
    joined = rc.join_runs(table({"a1": 0.5}), table({"a1": 0.7}))
    links = rc.with_links(joined, "before", "after")
    assert links.loc[0, "open A"] == "/compare?image=a1&run=before"
    assert links.loc[0, "open B"] == "/compare?image=a1&run=after"
    assert links.loc[0, "delta"] == pytest.approx(0.2)


def test_mismatched_ground_truth_versions_are_counted():
    a = table({"a1": 0.5, "a2": 0.5, "a3": 0.5}, versions={"a2": 1, "a3": 2})
    b = table({"a1": 0.5, "a2": 0.5, "a3": 0.5}, versions={"a2": 1, "a3": 3})
    assert rc.mismatched_ground_truth(rc.join_runs(a, b)) == 1


def test_figures_show_every_point_and_the_diagonal():
    joined = rc.join_runs(table({"a1": 0.5, "a2": 0.8, "b1": 0.9}), table({"a1": 0.7, "a2": 0.6, "b1": 0.9}))
    fig = rc.scatter_figure(joined, "A", "B", "iou_pet")
    points = [t for t in fig.data if t.mode == "markers"]
    assert sum(len(t.x) for t in points) == 3
    diagonal = [t for t in fig.data if t.mode == "lines"][0]
    assert list(diagonal.x) == list(diagonal.y) == [0.0, 1.0]
    hist = rc.delta_histogram(joined, "A", "B", "iou_pet")
    assert sorted(np.round(hist.data[0].x, 4)) == [-0.2, 0.0, 0.2]


def test_only_higher_is_better_metrics_can_be_compared():
    with pytest.raises(ValueError, match="cannot be compared"):
        rc.join_runs(table({"a1": 0.5}), table({"a1": 0.5}), "uncertain_fraction")


def test_common_splits_keep_the_order_of_a():
    assert rc.common_splits(("test", "trainval"), ("trainval", "test", "all")) == ["test", "trainval"]
    assert rc.common_splits(("test",), ("trainval",)) == []
