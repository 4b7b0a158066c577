"""CVAT "Segmentation mask 1.1" (a Pascal VOC layout), written and read.

    >>> from core.interop import cvat
    >>> writer = cvat.Writer(archive)            # an open zipfile.ZipFile
    >>> writer.add("Abyssinian_1", trimap); writer.finish()
    >>> [item.stem for item in cvat.read(open_source(Path("task_export.zip")))]

The zip holds (CVAT's documented layout)::

    labelmap.txt                         # label:r,g,b:parts:actions, one line per label
    ImageSets/Segmentation/default.txt   # image names without extension
    SegmentationClass/<image_id>.png     # RGB, one colour per label (background 0,0,0; pet 128,0,0;
                                         #   border 224,224,192, the Pascal VOC "void" colour)
    SegmentationObject/<image_id>.png    # RGB, one colour per object (the pet, its border band)

Reading takes the colours from the zip's own labelmap.txt (a CVAT project may have recoloured the labels) and
maps labels named ``pet``, ``border`` and ``background`` (any case) to the trimap; a pixel of another colour or
label refuses that file with the reason. 1-channel class masks (label indices in labelmap order) are read too.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import PurePosixPath

import numpy as np

from core.errors import PetSegError
from core.interop.colour import decode_colour_png, encode_colour_png, pack_rgb
from core.interop.source import MaskFile, Source
from core.masks import BACKGROUND, BORDER, PET

LABELS = (("background", (0, 0, 0), BACKGROUND), ("pet", (128, 0, 0), PET), ("border", (224, 224, 192), BORDER))
OBJECT_COLOURS = {PET: (128, 0, 0), BORDER: (0, 128, 0)}  # Pascal VOC instance colours 1 and 2
LABELMAP = "labelmap.txt"
IMAGE_SET = "ImageSets/Segmentation/default.txt"
CLASS_DIR = "SegmentationClass/"
OBJECT_DIR = "SegmentationObject/"
_TRIMAP_OF_NAME = {name: value for name, _, value in LABELS}


class Writer:
    def __init__(self, archive: zipfile.ZipFile):
        self.archive = archive
        self.names: list[str] = []
        self.class_lut = np.zeros((4, 3), np.uint8)
        self.object_lut = np.zeros((4, 3), np.uint8)
        for _, colour, value in LABELS:
            self.class_lut[value] = colour
        for value, colour in OBJECT_COLOURS.items():
            self.object_lut[value] = colour

    def add(self, image_id: str, trimap: np.ndarray) -> None:
        self.archive.writestr(f"{CLASS_DIR}{image_id}.png", encode_colour_png(self.class_lut[trimap]))
        self.archive.writestr(f"{OBJECT_DIR}{image_id}.png", encode_colour_png(self.object_lut[trimap]))
        self.names.append(image_id)

    def finish(self) -> None:
        lines = ["# label:color_rgb:parts:actions"]
        lines += [f"{name}:{','.join(str(c) for c in colour)}::" for name, colour, _ in LABELS]
        self.archive.writestr(LABELMAP, "\n".join(lines) + "\n", compress_type=zipfile.ZIP_DEFLATED)
        self.archive.writestr(IMAGE_SET, "".join(f"{n}\n" for n in self.names), compress_type=zipfile.ZIP_DEFLATED)


def parse_labelmap(text: str) -> list[tuple[str, tuple[int, int, int]]]:
    """``[(label, (r, g, b))]`` in file order; raises PetSegError naming the bad line."""
    labels = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition(":")
        colour = rest.partition(":")[0]
        try:
            rgb = tuple(int(v) for v in colour.split(","))
        except ValueError:
            rgb = ()
        if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
            raise PetSegError(f"{LABELMAP} line {number} ({line[:80]!r}) is not 'label:r,g,b::'")
        labels.append((name.strip(), rgb))  # type: ignore[arg-type]
    return labels


def read(source: Source) -> Iterator[MaskFile]:
    names = source.names()
    prefix = _root_prefix(names)
    labelmap_name = prefix + LABELMAP
    if labelmap_name in names:
        labels = parse_labelmap(source.read(labelmap_name).decode("utf-8", errors="replace"))
    else:  # optional in CVAT when the labels are Pascal VOC's; PetSeg's own colours are the best guess
        labels = [(name, colour) for name, colour, _ in LABELS]
    known = {name.lower() for name, _ in labels} & set(_TRIMAP_OF_NAME)
    if "pet" not in known:
        raise PetSegError(f"{LABELMAP} has no label named 'pet' (it has {', '.join(n for n, _ in labels)}): "
                          "name the pet label 'pet' (and the border band 'border') in CVAT")
    for name in names:
        if name.startswith(prefix + CLASS_DIR) and name.lower().endswith(".png"):
            yield MaskFile(source.describe(name), PurePosixPath(name).stem,
                           lambda size, name=name: _load(source, name, size, labels))


def _root_prefix(names: list[str]) -> str:
    """CVAT zips have the layout at the top; an unpacked folder may sit one level down."""
    for name in names:
        if name == LABELMAP or name.endswith("/" + LABELMAP):
            return name[: -len(LABELMAP)]
    for name in names:
        at = f"/{name}".find(f"/{CLASS_DIR}")
        if at >= 0:
            return name[:at]
    return ""


def _load(source: Source, name: str, size: tuple[int, int],
          labels: list[tuple[str, tuple[int, int, int]]]) -> tuple[np.ndarray, str]:
    pixels, mode = decode_colour_png(source.read(name), expected_size=size)
    trimap = np.zeros(size, np.uint8)
    if mode == "index":
        keys, lookup = pixels.astype(np.int32), {i: label for i, (label, _) in enumerate(labels)}
    else:
        keys = pack_rgb(pixels)
        lookup = {(r << 16) | (g << 8) | b: label for label, (r, g, b) in labels}
    for key in np.unique(keys):
        label = lookup.get(int(key))
        if label is None:
            shown = f"index {key}" if mode == "index" else "colour " + ",".join(
                str(int(key) >> s & 255) for s in (16, 8, 0))
            raise PetSegError(f"has {shown}, which no label of {LABELMAP} has")
        value = _TRIMAP_OF_NAME.get(label.lower())
        if value is None:
            raise PetSegError(f"has pixels of label {label!r}; PetSeg knows pet, border and background")
        trimap[keys == key] = value
    return trimap, "CVAT class mask"
