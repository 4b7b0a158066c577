"""One palette: the same colour for a class and for a species on every page, the editor included."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from core.masks import BORDER, PET
from dashboard import images, palette, plots, runs_compare


def test_ground_truth_prediction_and_editor_share_the_class_colours():
    assert images.GT_COLOURS == images.PRED_COLOURS == {PET: palette.CLASS_RGB[PET], BORDER: palette.CLASS_RGB[BORDER]}
    js = (Path(images.__file__).parent / "editor.js").read_text()
    for label in (PET, BORDER):
        rgba = re.search(rf"^\s*{label}: \[(\d+), (\d+), (\d+), \d+\]", js, re.MULTILINE)
        assert rgba and tuple(int(v) for v in rgba.groups()) == palette.CLASS_RGB[label]


def test_species_have_one_colour_in_every_plot():
    joined = pd.DataFrame({"a": [0.1, 0.5], "b": [0.2, 0.4], "delta": [0.1, -0.1], "species": ["cat", "dog"]},
                          index=["Abyssinian_1", "beagle_1"])
    scatter = runs_compare.scatter_figure(joined, "A", "B", "iou_pet")
    colours = {t.name: t.marker.color for t in scatter.data if t.name in ("cat", "dog")}
    assert colours == palette.SPECIES_HEX == plots.SPECIES_COLOURS


def test_the_ground_truth_is_an_outline_on_the_prediction():
    photo = np.zeros((60, 60, 3), np.uint8)
    gt = np.full((60, 60), 2, np.uint8)
    gt[20:40, 20:40] = PET
    drawn = images.outline(photo, gt)
    edge = (drawn == palette.CLASS_RGB[PET]).all(axis=2)
    assert edge[20, 30] and edge[39, 30] and not edge[30, 30] and not edge[5, 5]
