"""Drawing a run-vs-run comparison (links and figures of the Runs page) from core.views joins of hand-made tables."""

from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

from core.views import join_runs
from dashboard import runs_compare as rc
from tests.test_views import table


def test_compare_links_encode_the_id_and_run():
    url = rc.compare_url("Abyssinian_1&x=<script>", "run-2")
    parsed = urlparse(url)
    assert parsed.path == "/compare"
    assert parse_qs(parsed.query) == {"image": ["Abyssinian_1&x=<script>"], "run": ["run-2"]}
    joined = join_runs(table({"a1": 0.5}), table({"a1": 0.7}))
    links = rc.with_links(joined, "before", "after")
    assert links.loc[0, "open A"] == "/compare?image=a1&run=before"
    assert links.loc[0, "open B"] == "/compare?image=a1&run=after"
    assert links.loc[0, "delta"] == pytest.approx(0.2)


def test_figures_show_every_point_and_the_diagonal():
    joined = join_runs(table({"a1": 0.5, "a2": 0.8, "b1": 0.9}), table({"a1": 0.7, "a2": 0.6, "b1": 0.9}))
    fig = rc.scatter_figure(joined, "A", "B", "iou_pet")
    points = [t for t in fig.data if t.mode == "markers"]
    assert sum(len(t.x) for t in points) == 3
    diagonal = [t for t in fig.data if t.mode == "lines"][0]
    assert list(diagonal.x) == list(diagonal.y) == [0.0, 1.0]
    hist = rc.delta_histogram(joined, "A", "B", "iou_pet")
    assert sorted(np.round(hist.data[0].x, 4)) == [-0.2, 0.0, 0.2]
