"""Label Studio: tasks JSON with brush-label results in Label Studio's RLE, written and read.

    >>> from core.interop import labelstudio
    >>> rle = labelstudio.encode_rle(pet_mask)                  # (H, W) bool -> list of ints, as Label Studio's
    >>> (labelstudio.decode_rle(rle, *pet_mask.shape) == pet_mask).all()
    True

The zip holds ``tasks.json`` (import it into a project with ``labeling_config.xml`` as the labeling interface)
and that config; past :data:`TASKS_PER_FILE` tasks they are split into ``tasks-001.json``,
``tasks-002.json``, ... (the whole dataset's RLE is ~200 MB of JSON; Label Studio imports several files at
once). Each task names its photo as ``/data/local-files/?d=images/<file>``: serve the dataset folder with
Label Studio's local files (``LOCAL_FILES_SERVING_ENABLED=true``, ``LOCAL_FILES_DOCUMENT_ROOT=<dataset
folder>``), or change the prefix. The masks are ``predictions`` (pre-annotations the team edits and submits),
one ``brushlabels`` result per label (``pet``, ``border``; the background is what is left), each an RLE of
the RGBA image whose alpha is 255 on the label.

**The RLE.** Label Studio's brush format is thi.ng's ``rle-pack`` over the RGBA bytes: a 32-bit value count,
5 bits word size - 1 (8 bits), four 4-bit run-length field sizes - 1 (3, 4, 8, 16), then per run a flag bit
(1 = a repeated value, 0 = literal values), 2 bits choosing the field size, the length - 1 and the 8-bit value,
padded with zero bits to whole bytes. :func:`encode_rle` writes exactly the bytes of the Label Studio SDK's
``label_studio_sdk.converter.brush.encode_rle`` (the tests compare them with the SDK's own code). The SDK is
not a dependency: it pulls in ~45 packages (black, nltk, datamodel-code-generator, an older numpy and
OpenCV) for these two functions.

**Reading back** (Label Studio's JSON export, or the tasks.json written here): per task the last submitted,
not cancelled annotation, else the last prediction. The image id is ``data.image_id`` when present (PetSeg's
tasks have it), else the photo's file name without Label Studio's upload prefix (``1a2b3c4d-``). A task
without a ``border`` result (drawn by hand with the pet label only) gets the border band regenerated around the
pet outline, as a binary mask import does; one with it is taken exactly.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from core.dataset import Dataset
from core.errors import PetSegError
from core.interop.source import MaskFile, Source
from core.masks import BACKGROUND, BORDER, PET, binary_to_trimap

TASKS = "tasks.json"
CONFIG = "labeling_config.xml"
FROM_NAME, TO_NAME = "label", "image"
IMAGE_URL = "/data/local-files/?d=images/"
LABELS = (("pet", PET, "#ff7f0e"), ("border", BORDER, "#1f77b4"))
LABELING_CONFIG = (
    "<View>\n"
    f'  <Image name="{TO_NAME}" value="$image" zoom="true"/>\n'
    f'  <BrushLabels name="{FROM_NAME}" toName="{TO_NAME}">\n'
    + "".join(f'    <Label value="{name}" background="{colour}"/>\n' for name, _, colour in LABELS)
    + "  </BrushLabels>\n</View>\n"
)
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")
_RLE_SIZES = (3, 4, 8, 16)
TASKS_PER_FILE = 1000
MAX_JSON_BYTES = 1024 * 1024 * 1024  # a whole project's export from Label Studio (one file, ~200 MB for 7,390 images)


# --- the RLE ------------------------------------------------------------------------------------------------


def encode_rle(mask: np.ndarray) -> list[int]:
    """A (H, W) boolean mask as Label Studio brush RLE (RGBA, every channel 255 on the mask, 0 elsewhere)."""
    values = np.repeat(np.where(np.asarray(mask, dtype=bool).ravel(), 255, 0).astype(np.uint8), 4)
    return _encode(values)


def _encode(values: np.ndarray) -> list[int]:
    count = len(values)
    bits = [f"{count:032b}", f"{8 - 1:05b}", "".join(f"{size - 1:04b}" for size in _RLE_SIZES)]
    if count:
        ends = np.append(np.flatnonzero(values[1:] != values[:-1]), count - 1)
        lengths = np.diff(np.append(-1, ends))
        for length, value in zip(lengths.tolist(), values[ends].tolist(), strict=True):
            word = f"{value:08b}"
            if length == 1:
                bits.append("000000" + word)  # literal block of one value
                continue
            while length > 2**16:  # the SDK's chunking of very long runs, kept byte for byte
                bits.append("111" + f"{2**16 - 1:016b}" + word)
                length -= 2**16
            if length <= 8:
                bits.append("100" + f"{length - 1:03b}" + word)
            elif length <= 16:
                bits.append("101" + f"{length - 1:04b}" + word)
            elif length <= 256:
                bits.append("110" + f"{length - 1:08b}" + word)
            else:
                bits.append("111" + f"{length - 1:016b}" + word)
    text = "".join(bits)
    text += "0" * (8 - len(text) % 8)  # always pads (a whole zero byte when aligned), as the SDK does
    return list(int(text, 2).to_bytes(len(text) // 8, "big"))


def decode_rle(rle: list[int], height: int, width: int) -> np.ndarray:
    """Label Studio brush RLE -> (H, W) boolean mask (alpha >= 128); PetSegError when it does not fit the size."""
    try:
        data = np.asarray(rle, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise PetSegError("brush RLE is not a list of byte values") from exc
    if data.ndim != 1 or data.size < 7 or data.min() < 0 or data.max() > 255:
        raise PetSegError("brush RLE is not a list of byte values 0..255")
    bits = np.unpackbits(data.astype(np.uint8))
    reader = _Bits(bits)
    count = reader.read(32)
    if count != height * width * 4:
        raise PetSegError(f"brush RLE holds {count:,} values but the image needs {height * width * 4:,} "
                          f"({width}x{height} RGBA): it belongs to another image size")
    word = reader.read(5) + 1
    sizes = [reader.read(4) + 1 for _ in range(4)]
    if word > 16:
        raise PetSegError(f"brush RLE word size {word} bits is not supported")
    out = np.zeros(count, dtype=np.uint16)
    i = 0
    while i < count:
        repeated = reader.read(1)
        j = min(count, i + 1 + reader.read(sizes[reader.read(2)]))
        if repeated:
            out[i:j] = reader.read(word)
        else:
            for k in range(i, j):
                out[k] = reader.read(word)
        i = j
    return out.reshape(height, width, 4)[:, :, 3] >= 128


class _Bits:
    def __init__(self, bits: np.ndarray):
        self.bits, self.at = bits, 0

    def read(self, size: int) -> int:
        if self.at + size > len(self.bits):
            raise PetSegError("brush RLE ends early: it is truncated")
        value = 0
        for bit in self.bits[self.at : self.at + size].tolist():
            value = (value << 1) | bit
        self.at += size
        return value


# --- tasks --------------------------------------------------------------------------------------------------


def task(image_id: str, photo_name: str, trimap: np.ndarray, model_version: str) -> dict[str, Any]:
    """One Label Studio task with the mask as a prediction (pre-annotation)."""
    height, width = trimap.shape
    results = [{
        "id": f"{image_id}-{name}",
        "from_name": FROM_NAME,
        "to_name": TO_NAME,
        "type": "brushlabels",
        "origin": "prediction",
        "original_width": int(width),
        "original_height": int(height),
        "image_rotation": 0,
        "value": {"format": "rle", "rle": encode_rle(trimap == value), "brushlabels": [name]},
    } for name, value, _ in LABELS]
    return {"data": {"image": IMAGE_URL + photo_name, "image_id": image_id},
            "predictions": [{"model_version": model_version, "result": results}]}


class Writer:
    def __init__(self, archive: zipfile.ZipFile, ds: Dataset, model_version: str):
        self.archive, self.ds, self.model_version = archive, ds, model_version
        self.tasks: list[dict[str, Any]] = []
        self.files = 0

    def add(self, image_id: str, trimap: np.ndarray) -> None:
        if len(self.tasks) == TASKS_PER_FILE:  # a full file and more to come: numbered files
            self._write(f"tasks-{self.files + 1:03d}.json")
        self.tasks.append(task(image_id, self.ds.image_path(image_id).name, trimap, self.model_version))

    def finish(self) -> None:
        self._write(f"tasks-{self.files + 1:03d}.json" if self.files else TASKS)
        self.archive.writestr(CONFIG, LABELING_CONFIG, compress_type=zipfile.ZIP_DEFLATED)

    def _write(self, name: str) -> None:
        self.archive.writestr(name, json.dumps(self.tasks), compress_type=zipfile.ZIP_DEFLATED)
        self.files += 1
        self.tasks = []


def read(source: Source) -> Iterator[MaskFile]:
    names = [n for n in source.names() if n.lower().endswith(".json") and not n.endswith("mask_targets.json")]
    if not names:
        raise PetSegError("no .json file found: export the Label Studio project as JSON (or give PetSeg's zip)")
    for name in names:
        try:
            tasks = json.loads(source.read(name, MAX_JSON_BYTES))
        except ValueError as exc:
            raise PetSegError(f"{source.describe(name)} is not valid JSON ({exc})") from exc
        if isinstance(tasks, dict):
            tasks = [tasks]
        if not isinstance(tasks, list):
            raise PetSegError(f"{source.describe(name)} is not a list of Label Studio tasks")
        for number, item in enumerate(tasks, start=1):
            where = f"{source.describe(name)} task {number}"
            stem = _image_id(item)
            yield MaskFile(where + (f" ({stem})" if stem else ""), stem or f"task-{number}",
                           lambda size, item=item, where=where: _load(item, size, where))


def _image_id(item: object) -> str:
    if not isinstance(item, dict) or not isinstance(item.get("data"), dict):
        return ""
    data = item["data"]
    if isinstance(data.get("image_id"), str):
        return data["image_id"]
    image = data.get("image")
    if not isinstance(image, str):
        return ""
    stem = PurePosixPath(image.replace("\\", "/").split("?d=")[-1]).stem
    return _UPLOAD_PREFIX.sub("", stem)


def _load(item: object, size: tuple[int, int], where: str) -> tuple[np.ndarray, str]:
    if not isinstance(item, dict):
        raise PetSegError("is not a Label Studio task (an object with data and annotations)")
    results = _chosen_results(item)
    height, width = size
    layers: dict[str, np.ndarray] = {}
    for result in results:
        if not isinstance(result, dict) or str(result.get("type", "")).lower() != "brushlabels":
            continue
        value = result.get("value") if isinstance(result.get("value"), dict) else {}
        rle = value.get("rle", result.get("rle"))
        labels = value.get("brushlabels") or []
        if rle is None or not labels:
            continue
        if (result.get("original_height"), result.get("original_width")) != (height, width):
            raise PetSegError(f"was drawn on a {result.get('original_width')}x{result.get('original_height')} image "
                              f"but the photo is {width}x{height}")
        label = str(labels[0]).lower()
        if label not in {name for name, _, _ in LABELS}:
            raise PetSegError(f"has brush label {labels[0]!r}; PetSeg knows pet and border")
        pixels = decode_rle(rle, height, width)
        layers[label] = layers[label] | pixels if label in layers else pixels
    if "pet" not in layers:
        raise PetSegError("has no pet brush result: nothing to import")
    if "border" not in layers:
        return binary_to_trimap(layers["pet"]), "Label Studio pet brush, border band regenerated"
    trimap = np.full(size, BACKGROUND, np.uint8)
    trimap[layers["pet"]] = PET
    trimap[layers["border"]] = BORDER
    return trimap, "Label Studio brush labels"


def _chosen_results(item: dict[str, Any]) -> list[Any]:
    annotations = [a for a in item.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
    if annotations:
        return list(annotations[-1].get("result") or [])
    predictions = [p for p in item.get("predictions") or [] if isinstance(p, dict)]
    if predictions:
        return list(predictions[-1].get("result") or [])
    raise PetSegError("has neither an annotation nor a prediction")
