"""Export the effective masks (latest correction, else the official trimap) as one zip.

    >>> from core.export import export, export_archive
    >>> export(settings, fmt="trimap")                      # -> <workspace>/exports/trimap-20250101-120000.zip
    >>> report = export_archive(settings, fmt="coco", out=Path("pets.zip"), only_corrected=True)
    >>> report.images, report.corrected, report.left_out
    (12, 12, [])
    >>> export_archive(settings, fmt="labelstudio", run="quick-1", split="test")   # a run's predictions instead

What goes in: the effective masks (latest correction, else the official trimap), or with ``run`` the stored
predictions of that run's evaluated ``split`` (e.g. as pre-annotations for a team in CVAT or Label Studio).

Formats (each zip also holds ``manifest.csv``):

- ``trimap``: ``annotations/trimaps/<id>.png``, trimap-coded: a drop-in replacement for the official folder.
- ``binary``: ``binary/<id>.png``, 0 background / 255 pet with the border counted as pet (the smp convention).
- ``coco``: ``annotations.json``, COCO instances with ``pycocotools`` RLE segmentations, one annotation per
  image and category (1 pet, 2 border), ``file_name`` = the photo's name under ``images/``; every image and
  annotation carries ``species`` and ``breed`` attributes, and an ``info`` block says what was exported when.
- ``cvat-mask``: CVAT "Segmentation mask 1.1" (:mod:`core.interop.cvat`).
- ``labelstudio``: Label Studio tasks with brush-label RLE pre-annotations (:mod:`core.interop.labelstudio`).
- ``fiftyone``: FiftyOne ``ImageSegmentationDirectory``, photos included (:mod:`core.interop.fiftyone`).

``manifest.csv`` has one row per image of the dataset in scope: image_id, split, breed, status (corrected,
official, prediction, or left_out), version, source, author, created_at, note, iou_gt (pet IoU against the
official trimap), sha256 (of the trimap PNG: the ledger file for corrections), reason (why an image was left out).
Images
with neither a correction nor a readable official trimap are left out of the masks and listed there.
Text cells that a spreadsheet would run as a formula (starting with ``= + - @``, tab or carriage return,
say a note ``=HYPERLINK(...)``) get a leading ``'`` (OWASP's CSV-injection advice): strip it to get the
stored text back.

The zip is written to a temporary file and moved into place, so a crash never leaves half a zip. A default
name never replaces an existing file (two exports in the same second get ``-2``, ``-3``, ... even when they
run in parallel); an explicit ``out`` is replaced. The zip gets the permissions of any new file (0666 less the
umask, so 0644 usually): teammates can read it.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import json
import os
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from pycocotools import mask as mask_utils

from core import groundtruth, users
from core.atomic import atomic_create, atomic_open
from core.cleanup import sweep_stale
from core.config import Settings
from core.dataset import Dataset, open_dataset
from core.errors import ImageUnreadable, PetSegError
from core.interop import EXPORT_FORMATS, cvat, fiftyone, labelstudio
from core.masks import BORDER, PET, encode_png, sha256_hex, trimap_to_binary
from core.runs import eval_dir, read_eval_table, read_prediction

FORMATS = EXPORT_FORMATS
MANIFEST_COLUMNS = [
    "image_id", "split", "breed", "status", "version", "source", "author", "created_at", "note", "iou_gt", "sha256",
    "reason",
]
COCO_CATEGORIES = [
    {"id": 1, "name": "pet", "supercategory": "animal"},
    {"id": 2, "name": "border", "supercategory": "animal"},
]


@dataclass
class ExportReport:
    path: Path
    fmt: str
    images: int = 0  # masks written
    corrected: int = 0  # of which from a correction
    left_out: list[str] = field(default_factory=list)  # "image_id: reason"

    def summary(self) -> str:
        text = f"{self.images} mask{'' if self.images == 1 else 's'} ({self.corrected} corrected) in {self.path}"
        if self.left_out:
            text += f"; {len(self.left_out)} left out (listed in manifest.csv): " + ", ".join(self.left_out[:5])
            text += " ..." if len(self.left_out) > 5 else ""
        return text


def export(settings: Settings, fmt: str = "trimap", out: Path | None = None, only_corrected: bool = False) -> Path:
    """Write the export zip and return its path (see :func:`export_archive` for the counts)."""
    return export_archive(settings, fmt=fmt, out=out, only_corrected=only_corrected).path


def export_archive(
    settings: Settings,
    fmt: str = "trimap",
    out: Path | None = None,
    only_corrected: bool = False,
    *,
    ds: Dataset | None = None,
    run: str | None = None,
    split: str = "test",
    corrections: str = groundtruth.DEFAULT_POLICY,
    actor: str | None = None,
) -> ExportReport:
    """Write ``out`` (default ``<workspace>/exports/<fmt>-<time>.zip``) and report what went in: the ground truth
    under the ``corrections`` policy, or with ``run`` that run's stored predictions of ``split``. An admin's action
    (``actor``, None = the OS user).
    """
    users.require(settings, actor, "export")
    if fmt not in FORMATS:
        raise PetSegError(f"export format {fmt!r} is not one of {', '.join(FORMATS)}")
    ds = ds if ds is not None else open_dataset(settings.data, settings.workspace)
    masks = _predictions(settings, ds, run, split) if run else None
    if run and only_corrected:
        raise PetSegError("--only-corrected applies to corrections, not to a run's predictions")
    names = _output_names(settings, fmt if not run else f"{fmt}-{run}-{split}", out)
    sweep_stale(settings)  # temporaries left by crashed exports and trainings (stale and unlocked only)
    if masks is not None:
        ids, truth = list(masks), None
    else:
        truth = groundtruth.snapshot(settings, ds, ds.ids(), policy=corrections)  # one ledger query for the export
        ids = [i for i in ds.ids() if truth.versions[i] is not None] if only_corrected else ds.ids()
        if only_corrected and not ids:
            raise PetSegError("no image of this dataset has a correction; export without --only-corrected")

    report = ExportReport(path=names[0], fmt=fmt)
    manifest: list[dict] = []
    coco = {"info": _coco_info(ds, run, split), "images": [], "annotations": [], "categories": COCO_CATEGORIES}
    with _open_output(names, explicit=out is not None) as (handle, landed), zipfile.ZipFile(handle, "w") as archive:
        writer = _writer(fmt, archive, ds, f"petseg:{run}" if run else "petseg:corrections")
        for number, image_id in enumerate(ids, start=1):
            where = {"image_id": image_id, "split": ds.table.at[image_id, "split"],
                     "breed": ds.table.at[image_id, "breed"]}
            if masks is not None:
                version, mask, reason = None, masks[image_id], "the stored prediction is missing or unreadable"
            else:
                version = truth.versions[image_id]
                try:
                    mask = truth.mask(image_id)
                except ImageUnreadable as exc:
                    mask, version, reason = None, None, str(exc)
                else:
                    reason = "no official trimap and no correction"
            if mask is None:
                report.left_out.append(f"{image_id}: {reason}")
                manifest.append({**where, "status": "left_out", "reason": reason})
                continue
            trimap_png = encode_png(mask)
            row = {**where, "status": "official", "iou_gt": 1.0, "sha256": sha256_hex(trimap_png)}
            if masks is not None:
                row.update(status="prediction", source=f"{run}/{split}", iou_gt=None)
            elif version is not None:
                info = truth.rows[image_id]
                row.update(status="corrected", version=version, source=info.source, author=info.author,
                           created_at=info.created_at, note=info.note,
                           iou_gt=None if info.iou_gt is None else round(info.iou_gt, 6))
                report.corrected += 1
            manifest.append(row)
            report.images += 1
            if fmt == "trimap":
                archive.writestr(f"annotations/trimaps/{image_id}.png", trimap_png)
            elif fmt == "binary":
                archive.writestr(f"binary/{image_id}.png", encode_png(trimap_to_binary(mask)))
            elif fmt == "coco":
                _add_coco(coco, number, ds.image_path(image_id).name, mask, where["breed"],
                          str(ds.table.at[image_id, "species"]))
            else:
                writer.add(image_id, mask)
        if fmt == "coco":
            archive.writestr("annotations.json", json.dumps(coco), compress_type=zipfile.ZIP_DEFLATED)
        elif writer is not None:
            writer.finish()
        archive.writestr("manifest.csv", _manifest_csv(manifest), compress_type=zipfile.ZIP_DEFLATED)
    report.path = landed()
    return report


def _writer(fmt: str, archive: zipfile.ZipFile, ds: Dataset, model_version: str):  # noqa: ANN202 - one of three
    if fmt == "cvat-mask":
        return cvat.Writer(archive)
    if fmt == "labelstudio":
        return labelstudio.Writer(archive, ds, model_version)
    if fmt == "fiftyone":
        return fiftyone.Writer(archive, ds)
    return None


def _predictions(settings: Settings, ds: Dataset, run: str, split: str) -> dict[str, np.ndarray | None]:
    """The stored predictions of an evaluated split, by image id (None for one whose PNG is unreadable)."""
    folder = eval_dir(settings, run, split)
    table = read_eval_table(folder)
    if table is None:
        raise PetSegError(f"run {run} has no evaluation of {split}: evaluate it first (python -m core evaluate)")
    return {i: read_prediction(folder, i) for i in sorted(table.index) if i in ds}


def _coco_info(ds: Dataset, run: str | None, split: str) -> dict:
    now = dt.datetime.now(dt.UTC)
    what = f"predictions of run {run} on {split}" if run else "effective masks (latest correction, else official)"
    return {"description": f"Oxford-IIIT Pet segmentation exported by PetSeg: {what}", "contributor": "PetSeg",
            "version": "1", "year": now.year, "date_created": now.isoformat(timespec="seconds"),
            "dataset_fingerprint": ds.fingerprint}


def _add_coco(coco: dict, image_number: int, file_name: str, mask: np.ndarray, breed: str, species: str) -> None:
    height, width = mask.shape
    attributes = {"species": species, "breed": breed}
    coco["images"].append({"id": image_number, "file_name": file_name, "width": width, "height": height,
                           **attributes})
    for category_id, value in ((1, PET), (2, BORDER)):
        binary = np.asfortranarray(mask == value, dtype=np.uint8)
        if not binary.any():
            continue
        rle = mask_utils.encode(binary)
        coco["annotations"].append({
            "id": len(coco["annotations"]) + 1,
            "image_id": image_number,
            "category_id": category_id,
            "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
            "area": float(mask_utils.area(rle)),
            "bbox": [float(v) for v in mask_utils.toBbox(rle)],
            "iscrowd": 0,
            "attributes": attributes,
        })


def _manifest_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _spreadsheet_safe(row.get(key)) for key in MANIFEST_COLUMNS})
    return buffer.getvalue()


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _spreadsheet_safe(value: object) -> object:
    """A manifest cell: text a spreadsheet would evaluate as a formula gets a leading ``'``; numbers stay numbers."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


_MAX_SAME_SECOND = 1000


def _output_names(settings: Settings, fmt: str, out: Path | None) -> list[Path]:
    """The explicit ``out``, or the default name followed by its ``-2``, ``-3``, ... variants."""
    if out is None:
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        first = settings.exports_dir / f"{fmt}-{stamp}.zip"
        return [first] + [settings.exports_dir / f"{fmt}-{stamp}-{n}.zip" for n in range(2, _MAX_SAME_SECOND)]
    out = Path(out).expanduser().absolute()
    if out.suffix.lower() != ".zip":
        raise PetSegError(f"export file {out} must end in .zip")
    if out.is_dir():
        raise PetSegError(f"export path {out} is a folder; name a .zip file")
    if not out.parent.is_dir():
        raise PetSegError(f"folder {out.parent} does not exist; create it or choose another --out")
    return [out]


@contextlib.contextmanager
def _open_output(names: list[Path], explicit: bool) -> Iterator[tuple[BinaryIO, Callable[[], Path]]]:
    """The zip's file handle and a function giving where it landed (known once the block is left)."""
    if explicit:  # the user named this file: replacing it is what they asked for
        with atomic_open(names[0]) as handle:
            yield handle, lambda: names[0]
            _readable(handle)
        return
    with atomic_create(names) as new:
        yield new.handle, lambda: new.path
        _readable(new.handle)


def _readable(handle: BinaryIO) -> None:
    """Give the temporary (0600, from mkstemp) the mode a plainly created file would have: 0666 less the umask."""
    mask = os.umask(0)
    os.umask(mask)
    os.fchmod(handle.fileno(), 0o666 & ~mask)
