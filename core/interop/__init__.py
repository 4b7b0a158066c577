"""Other tools' formats in and out: CVAT, Label Studio and FiftyOne masks; predictions and checkpoints from outside.

    >>> from core.interop import read_masks
    >>> for item in read_masks("cvat-mask", Path("cvat-export.zip")):      # zip or unpacked folder
    ...     trimap, how = item.load((400, 600))                            # (height, width) of the photo
    >>> from core.interop.runs import import_predictions
    >>> report = import_predictions(settings, "keras-unet", Path("preds/"), encoding="index")

Each format is one module with a writer (used by :mod:`core.export`) and a reader that yields
:class:`MaskFile` items for :func:`core.corrections.import_masks`, which validates and stores them exactly like
a folder import:

- :mod:`core.interop.cvat`: CVAT "Segmentation mask 1.1" (labelmap.txt, ImageSets/Segmentation/default.txt,
  SegmentationClass/ and SegmentationObject/ colour PNGs).
- :mod:`core.interop.labelstudio`: Label Studio tasks JSON whose results are brush labels in Label Studio's RLE.
- :mod:`core.interop.fiftyone`: FiftyOne ``ImageSegmentationDirectory`` (data/ photos + labels/ masks).
- :mod:`core.interop.plain`: folders or zips of ``<image_id>.png`` trimaps (1/2/3) or binary masks (0/255).
- :mod:`core.interop.runs`: a folder of predicted masks, or an outside checkpoint, registered as a run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import PetSegError

# Formats the corrections import reads (``core corrections import --format``) and :mod:`core.export` writes.
IMPORT_FORMATS = ("cvat-mask", "labelstudio", "fiftyone", "trimap", "binary")
# How a folder of predicted masks is coded (``core predictions import --encoding``, :mod:`core.interop.runs`).
PREDICTION_ENCODINGS = ("trimap", "index", "binary", "probability")
EXPORT_FORMATS = ("trimap", "binary", "coco", "cvat-mask", "labelstudio", "fiftyone")


@dataclass(frozen=True)
class MaskFile:
    """One mask found in an import: where it came from, the image id it names, and how to decode it."""

    name: str  # the file (and entry) it came from, for the per-file report
    stem: str  # the image id it claims (checked against the dataset by the importer)
    # (height, width) of the photo -> (trimap-coded mask, how it was coded); raises PetSegError with the reason
    load: Callable[[tuple[int, int]], tuple[np.ndarray, str]]


def read_masks(fmt: str, path: Path) -> Iterator[MaskFile]:
    """The masks of ``path`` (a zip, an unpacked folder, or for labelstudio also a .json file) in format ``fmt``."""
    from core.interop import cvat, fiftyone, labelstudio, plain
    from core.interop.source import open_source

    readers = {"cvat-mask": cvat.read, "labelstudio": labelstudio.read, "fiftyone": fiftyone.read,
               "trimap": plain.read_trimaps, "binary": plain.read_binary}
    if fmt not in readers:
        raise PetSegError(f"import format {fmt!r} is not one of {', '.join(IMPORT_FORMATS)}")
    source = open_source(Path(path))
    return readers[fmt](source)
