"""Folders or zips of ``<image_id>.png`` masks: PetSeg's own trimap and binary exports, or any such folder.

    >>> from core.interop.plain import read_trimaps
    >>> items = list(read_trimaps(open_source(Path("trimap-20250101-120000.zip"))))
    >>> items[0].stem, items[0].load((400, 600))[1]
    ('Abyssinian_1', 'trimap')

``trimap`` reads ``annotations/trimaps/*.png`` when the source has that folder (PetSeg's trimap export, the
dataset's own layout), else every ``.png``; values must be 1/2/3. ``binary`` reads ``binary/*.png`` likewise;
values 0/255 (255 pet) get the border band regenerated around the outline, as a folder import does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import PurePosixPath

import numpy as np

from core.errors import ImageUnreadable, PetSegError
from core.interop.source import MaskFile, Source
from core.masks import decode_label_png, to_trimap


def read_trimaps(source: Source) -> Iterator[MaskFile]:
    return _read(source, "annotations/trimaps/", "trimap")


def read_binary(source: Source) -> Iterator[MaskFile]:
    return _read(source, "binary/", "binary")


def _read(source: Source, folder: str, kind: str) -> Iterator[MaskFile]:
    pngs = [n for n in source.names() if n.lower().endswith(".png")]
    preferred = [n for n in pngs if n.startswith(folder)]
    for name in preferred or pngs:
        yield MaskFile(source.describe(name), PurePosixPath(name).stem,
                       lambda size, name=name: _load(source, name, size, kind))


def _load(source: Source, name: str, size: tuple[int, int], kind: str) -> tuple[np.ndarray, str]:
    try:
        mask = decode_label_png(source.read(name), what="mask", expected_size=size)
    except ImageUnreadable as exc:
        raise PetSegError(str(exc)) from None
    trimap, found = to_trimap(mask)
    if found != kind:
        raise PetSegError(f"is a {found} mask, not a {kind} one: import it with --format {found}")
    return trimap, "trimap" if kind == "trimap" else "binary 0/255, border band regenerated"
