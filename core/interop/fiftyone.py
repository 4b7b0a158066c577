"""FiftyOne ``ImageSegmentationDirectory``: ``data/<photo>`` + ``labels/<image_id>.png``, written and read.

    >>> from core.interop import fiftyone
    >>> writer = fiftyone.Writer(archive, ds); writer.add("Abyssinian_1", trimap); writer.finish()

Labels are 8-bit PNGs of class indices 0 background, 1 pet, 2 border (0 is "no label" in the FiftyOne App,
so the background is not painted over the photo); ``mask_targets.json`` names them. Load the unpacked zip
with::

    dataset = fo.Dataset.from_dir(dataset_dir=folder, dataset_type=fo.types.ImageSegmentationDirectory,
                                  label_field="ground_truth")
    dataset.mask_targets = {"ground_truth": {1: "pet", 2: "border"}}

and write it back with ``dataset.export(export_dir=..., dataset_type=fo.types.ImageSegmentationDirectory,
label_field="ground_truth")``; PetSeg reads that folder (or its zip) again.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import PurePosixPath

import numpy as np

from core.dataset import Dataset
from core.errors import ImageUnreadable, PetSegError
from core.interop.source import MaskFile, Source
from core.masks import BACKGROUND, BORDER, PET, decode_label_png, encode_png

DATA_DIR = "data/"
LABELS_DIR = "labels/"
MASK_TARGETS = {0: "background", 1: "pet", 2: "border"}
_TO_INDEX = np.array([0, 1, 0, 2], np.uint8)  # trimap value -> class index (index 0 of the table is unused)
_TO_TRIMAP = np.array([BACKGROUND, PET, BORDER], np.uint8)


class Writer:
    def __init__(self, archive: zipfile.ZipFile, ds: Dataset):
        self.archive, self.ds = archive, ds

    def add(self, image_id: str, trimap: np.ndarray) -> None:
        photo = self.ds.image_path(image_id)
        # Photos are JPEGs already: stored, not deflated again.
        self.archive.write(photo, f"{DATA_DIR}{photo.name}", compress_type=zipfile.ZIP_STORED)
        self.archive.writestr(f"{LABELS_DIR}{image_id}.png", encode_png(_TO_INDEX[trimap]))

    def finish(self) -> None:
        self.archive.writestr("mask_targets.json", json.dumps({str(k): v for k, v in MASK_TARGETS.items()}))


def read(source: Source) -> Iterator[MaskFile]:
    names = source.names()
    labels = [n for n in names if f"/{LABELS_DIR}" in f"/{n}" and n.lower().endswith(".png")]
    if not labels and any(n.lower().endswith(".npy") for n in names):
        raise PetSegError("the labels are .npy files; export them from FiftyOne as PNG masks (mask_format='.png')")
    for name in labels:
        yield MaskFile(source.describe(name), PurePosixPath(name).stem,
                       lambda size, name=name: _load(source, name, size))


def _load(source: Source, name: str, size: tuple[int, int]) -> tuple[np.ndarray, str]:
    try:
        index = decode_label_png(source.read(name), what="mask", expected_size=size)
    except ImageUnreadable as exc:
        raise PetSegError(str(exc)) from None
    if index.size and int(index.max()) > 2:
        found = sorted(int(v) for v in np.unique(index) if v > 2)[:5]
        raise PetSegError(f"has class indices {found}; FiftyOne masks here are 0 background, 1 pet, 2 border")
    return _TO_TRIMAP[index], "FiftyOne class indices"
