"""Other tools' formats in and out: CVAT, Label Studio and FiftyOne masks; predictions and checkpoints from outside.

    >>> from core.interop import read_masks
    >>> for item in read_masks("cvat-mask", Path("cvat-export.zip")):      # zip or unpacked folder
    ...     trimap, how = item.load((400, 600))                            # (height, width) of the photo
    >>> from core.interop.runs import import_predictions
    >>> report = import_predictions(settings, "keras-unet", Path("preds/"), encoding="index")

Each format is one module with a writer (used by :mod:`core.export`) and a reader that yields
:class:`core.interop.source.MaskFile` items for :func:`core.corrections.import_masks`, which validates and
stores them exactly like a folder import:

- :mod:`core.interop.cvat`: CVAT "Segmentation mask 1.1" (labelmap.txt, ImageSets/Segmentation/default.txt,
  SegmentationClass/ and SegmentationObject/ colour PNGs).
- :mod:`core.interop.labelstudio`: Label Studio tasks JSON whose results are brush labels in Label Studio's RLE.
- :mod:`core.interop.fiftyone`: FiftyOne ``ImageSegmentationDirectory`` (data/ photos + labels/ masks).
- :mod:`core.interop.plain`: folders or zips of ``<image_id>.png`` trimaps (1/2/3) or binary masks (0/255).
- :mod:`core.interop.runs`: a folder of predicted masks, or an outside checkpoint, registered as a run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from core.errors import PetSegError
from core.interop.source import MaskFile, open_source

# Formats the corrections import reads (``core corrections import --format``) and :mod:`core.export` writes.
IMPORT_FORMATS = ("cvat-mask", "labelstudio", "fiftyone", "trimap", "binary")
# How a folder of predicted masks is coded (``core predictions import --encoding``, :mod:`core.interop.runs`).
PREDICTION_ENCODINGS = ("trimap", "index", "binary", "probability")
EXPORT_FORMATS = ("trimap", "binary", "coco", "cvat-mask", "labelstudio", "fiftyone")


def read_masks(fmt: str, path: Path) -> Iterator[MaskFile]:
    """The masks of ``path`` (a zip, an unpacked folder, or for labelstudio also a .json file) in format ``fmt``."""
    from core.interop import cvat, fiftyone, labelstudio, plain

    readers = {"cvat-mask": cvat.read, "labelstudio": labelstudio.read, "fiftyone": fiftyone.read,
               "trimap": plain.read_trimaps, "binary": plain.read_binary}
    if fmt not in readers:
        raise PetSegError(f"import format {fmt!r} is not one of {', '.join(IMPORT_FORMATS)}")
    source = open_source(Path(path))
    return readers[fmt](source)
