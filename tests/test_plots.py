"""dashboard.plots distribution figures on a real evaluated run: few numbers per trace, selectable image ids."""

from __future__ import annotations

import pytest

from core import views
from dashboard import plots


def points_ids(fig) -> list[str]:
    return [row[0] for trace in fig.data if trace.type == "scatter" and trace.customdata is not None
            for row in trace.customdata]


def test_histogram_bars_are_the_counts(trained_scored):
    counts = views.histogram_counts(trained_scored, "iou_pet")
    fig = plots.histogram(counts, "iou_pet")
    assert {t.type for t in fig.data} == {"bar"}
    assert sum(sum(t.y) for t in fig.data) == len(trained_scored)


@pytest.mark.parametrize("kind", ["box", "violin"])
def test_per_breed_draws_the_stats_and_only_outliers_carry_ids(trained_scored, kind):
    stats = views.box_stats(trained_scored, "iou_pet")
    outliers = views.box_outliers(trained_scored, "iou_pet", stats)
    fig = plots.per_breed(stats, outliers, "iou_pet", kind, views.densities(trained_scored, "iou_pet"))
    boxes = [t for t in fig.data if t.type == "box"]
    assert sorted(m for t in boxes for m in t.median) == sorted(stats["median"])
    assert all(t.boxpoints is False for t in boxes) and not [t for t in fig.data if t.type == "scattergl"]
    assert sorted(points_ids(fig)) == sorted(outliers.index)
    event = {"selection": {"points": [{"customdata": [i, "x"]} for i in outliers.index]}}
    assert plots.selected_ids(event) == list(dict.fromkeys(outliers.index))


def test_box_ticks_are_breeds_worst_median_first(trained_scored):
    stats = views.box_stats(trained_scored, "iou_pet")
    fig = plots.per_breed(stats, views.box_outliers(trained_scored, "iou_pet", stats), "iou_pet")
    assert list(fig.layout.xaxis.categoryarray) == list(stats.index)
    medians = trained_scored.groupby("breed")["iou_pet"].median()
    assert list(fig.layout.xaxis.categoryarray) == sorted(medians.index, key=lambda b: (medians[b], b))


def test_scatter_is_svg_with_every_image_selectable(trained_scored):
    fig = plots.scatter(trained_scored, "gt_pet_fraction", "iou_pet")
    assert {t.type for t in fig.data} == {"scatter"}
    assert sorted(points_ids(fig)) == sorted(trained_scored.index)


def test_regions_of_a_selection_event_are_polygons_and_junk_is_dropped():
    event = {"selection": {"points": [], "box": [{"x": [0.1, 0.5], "y": [0.2, 0.9], "xref": "x", "yref": "y"}],
                           "lasso": [{"x": [0, 1, 1], "y": [0, 0, 1]}, {"x": ["nan", 1, 2], "y": [0, 1, 2]},
                                     {"x": [0, "<script>"], "y": [1, 2]}, {"y": [1]}, "junk"]}}
    assert plots.selected_regions(event) == [([0.1, 0.5, 0.5, 0.1], [0.2, 0.2, 0.9, 0.9]),
                                             ([0.0, 1.0, 1.0], [0.0, 0.0, 1.0])]
    assert plots.selected_regions(None) == [] and plots.selected_regions({"selection": 3}) == []


def test_training_curves_have_readable_epoch_and_score_ticks_for_long_runs():
    import pandas as pd

    from dashboard.plots import training_curves

    long = pd.DataFrame({"epoch": range(1, 151), "train_loss": 1.0, "val_loss": 1.0, "val_iou_pet": 0.5,
                         "val_miou_3class": 0.5, "val_pixel_accuracy": 0.5})
    fig = training_curves(long, "r")
    assert fig.layout.xaxis.dtick is None and fig.layout.xaxis.nticks == 12 and fig.layout.xaxis.tickformat == "d"
    assert (fig.layout.yaxis2.tick0, fig.layout.yaxis2.dtick, fig.layout.yaxis2.tickmode) == (0, 0.2, "linear")
    assert training_curves(long.head(5), "r").layout.xaxis.dtick == 1
