"""Overlay and error-map colours, zoom crops, and the on-disk thumbnail cache."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core.dataset import open_dataset
from core.synth import generate
from dashboard import images
from dashboard.images import CORRECT, FALSE_PET, GT_BORDER, MISSED_PET, error_codes


def test_error_codes_count_pet_the_way_iou_pet_does():
    gt = np.array([[1, 1, 2, 2, 3, 3]], dtype=np.uint8)
    pred = np.array([[1, 2, 1, 3, 1, 2]], dtype=np.uint8)
    # pet/pet ok, pet->bg missed, bg->pet false, bg->border ok (border predicted = not pet), GT border apart
    assert error_codes(pred, gt).tolist() == [[CORRECT, MISSED_PET, FALSE_PET, CORRECT, GT_BORDER, GT_BORDER]]
    assert error_codes(np.array([[3]], np.uint8), np.array([[1]], np.uint8)).tolist() == [[MISSED_PET]]
    with pytest.raises(ValueError):
        error_codes(pred, gt[:, :3])


def test_blend_colours_only_labelled_pixels_with_the_given_opacity():
    image = np.full((1, 3, 3), 100, dtype=np.uint8)
    labels = np.array([[0, 1, 3]], dtype=np.uint8)
    out = images.blend(image, labels, {1: (200, 0, 0), 3: (0, 0, 200)}, 0.5)
    assert out[0, 0].tolist() == [100, 100, 100]
    assert out[0, 1].tolist() == [150, 50, 50]
    assert out[0, 2].tolist() == [50, 50, 150]
    assert images.blend(image, labels, {1: (200, 0, 0)}, 1.0)[0, 1].tolist() == [200, 0, 0]
    assert images.blend(image, labels, {1: (200, 0, 0)}, 0.0)[0, 1].tolist() == [100, 100, 100]


def test_error_overlay_uses_the_error_palette():
    image = np.zeros((1, 4, 3), dtype=np.uint8)
    gt = np.array([[1, 2, 1, 3]], dtype=np.uint8)
    pred = np.array([[1, 1, 2, 2]], dtype=np.uint8)
    out = images.error_overlay(image, pred, gt, opacity=1.0)
    assert out[0, 0].tolist() == [0, 0, 0]
    assert tuple(out[0, 1]) == images.ERROR_COLOURS[FALSE_PET]
    assert tuple(out[0, 2]) == images.ERROR_COLOURS[MISSED_PET]
    assert tuple(out[0, 3]) == images.ERROR_COLOURS[GT_BORDER]
    assert len({images.ERROR_COLOURS[c] for c in (FALSE_PET, MISSED_PET, GT_BORDER)}) == 3


def test_crop_zooms_around_the_centre_and_stays_inside():
    array = np.arange(100 * 200).reshape(100, 200)
    assert images.crop(array, 1.0, (0.5, 0.5)) is array
    half = images.crop(array, 2.0, (0.5, 0.5))
    assert half.shape == (50, 100) and half[0, 0] == array[25, 50]
    corner = images.crop(array, 4.0, (1.0, 1.0))
    assert corner.shape == (25, 50) and corner[-1, -1] == array[-1, -1]


def test_thumbnails_are_cached_on_disk_and_change_with_the_mask(tmp_path, workspace):
    from core.config import Settings

    root = generate(tmp_path / "data", count=20, seed=2, progress=False)
    ds = open_dataset(root, workspace)
    settings = Settings.resolve(data=root, workspace=workspace)
    image_id = ds.ids()[0]
    plain = images.thumbnail(settings, ds, image_id)
    with Image.open(io.BytesIO(plain)) as im:
        assert im.format == "JPEG" and max(im.size) <= images.THUMB_SIZE
    cached = images.thumbnail_path(settings, ds, image_id)
    assert cached.is_file() and cached.parent == workspace / "cache" / "thumbs"
    cached.write_bytes(b"sentinel")  # a second call reads the file, it does not redraw
    assert images.thumbnail(settings, ds, image_id) == b"sentinel"
    with_gt = images.thumbnail_path(settings, ds, image_id, "gt")
    assert with_gt != cached
    assert images.thumbnail_path(settings, ds, image_id, "gt", gt_version=3) != with_gt
    assert images.thumbnail(settings, ds, image_id, "gt") != plain
    with pytest.raises(Exception, match="unknown image id"):
        images.thumbnail_path(settings, ds, "../../etc/passwd")
