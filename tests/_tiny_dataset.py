"""A few tiny images in the official Oxford-IIIT Pet layout, for the corrections/export/review tests.

Small on purpose (the crash tests save hundreds of masks); the real sample covers real photo sizes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np

from core.masks import binary_to_trimap

# (id, class id, species 1 cat / 2 dog, breed id) in the official numbering
ROWS = [
    ("Abyssinian_1", 1, 1, 1),
    ("Abyssinian_2", 1, 1, 1),
    ("Bengal_1", 6, 1, 2),
    ("beagle_1", 5, 2, 4),
    ("beagle_2", 5, 2, 4),
]


def ellipse_pet(shape: tuple[int, int], shift: int = 0) -> np.ndarray:
    height, width = shape
    yy, xx = np.mgrid[:height, :width]
    cy, cx = height / 2 + shift, width / 2 - shift
    return ((yy - cy) / (height * 0.3)) ** 2 + ((xx - cx) / (width * 0.3)) ** 2 <= 1


def make_tiny_dataset(root: Path, size: tuple[int, int] = (24, 32), missing_trimap: tuple[str, ...] = ()) -> Path:
    """Write the official layout under ``root``; image ``k`` is ``size`` grown by ``k`` pixels each way."""
    images = root / "images"
    trimaps = root / "annotations" / "trimaps"
    images.mkdir(parents=True)
    trimaps.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k, (image_id, *_rest) in enumerate(ROWS):
        shape = (size[0] + k, size[1] + k)
        photo = rng.integers(0, 255, size=(*shape, 3), dtype=np.uint8)
        cv2.imwrite(str(images / f"{image_id}.jpg"), photo)
        if image_id not in missing_trimap:
            cv2.imwrite(str(trimaps / f"{image_id}.png"), binary_to_trimap(ellipse_pet(shape), half_width=1))
    lines = [f"{image_id} {cls} {species} {breed}" for image_id, cls, species, breed in ROWS]
    (root / "annotations" / "list.txt").write_text("#Image CLASS-ID SPECIES BREED ID\n" + "\n".join(lines) + "\n")
    (root / "annotations" / "trainval.txt").write_text("\n".join(lines[:3]) + "\n")
    (root / "annotations" / "test.txt").write_text("\n".join(lines[3:]) + "\n")
    return root


def copy_sample(sample_root: Path, dest: Path) -> Path:
    """A writable copy of the real sample."""
    shutil.copytree(sample_root, dest)
    return dest
