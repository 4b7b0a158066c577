"""core.export: trimap / binary / COCO zips with a manifest, read back by our reader and by pycocotools."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from _tiny_dataset import copy_sample, ellipse_pet, make_tiny_dataset
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from core import cli
from core import export as export_module
from core.config import Settings
from core.corrections import import_folder, save
from core.dataset import load_trimap, open_dataset
from core.errors import PetSegError
from core.export import MANIFEST_COLUMNS, export, export_archive
from core.ledger import latest
from core.masks import BORDER, PET, binary_to_trimap, decode_label_png
from core.metrics import pet_iou

# pycocotools' decode predates numpy 2's __array__ copy keyword; harmless here.
# Every export test runs on both store engines (conftest ``engine``): the export reads the ledger in one query.
pytestmark = [pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
              pytest.mark.usefixtures("engine")]


@pytest.fixture
def sample(tmp_path: Path, sample_root: Path, workspace: Path):
    root = copy_sample(sample_root, tmp_path / "sample")
    settings = Settings.resolve(data=root, workspace=workspace)
    return settings, open_dataset(root, workspace)


def _edit(mask: np.ndarray, rows: slice) -> np.ndarray:
    edited = mask.copy()
    edited[rows] = PET
    return edited


def _correct_two(settings: Settings, ds) -> dict[str, np.ndarray]:
    first, second = ds.ids()[0], ds.ids()[5]
    masks = {
        first: _edit(load_trimap(ds, first), slice(0, 30)),
        second: _edit(load_trimap(ds, second), slice(-40, None)),
    }
    save(settings, ds, first, masks[first], base_version=None, source="gt", author="Ana", note="top, pet")
    save(settings, ds, second, masks[second], base_version=None, source="prediction", author="Ben")
    return masks


def _manifest(archive: zipfile.ZipFile) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode("utf-8"))))


def test_trimap_export_is_a_drop_in_replacement_read_back_by_our_reader(tmp_path: Path, sample):
    settings, ds = sample
    assert ds.problems == []
    corrected = _correct_two(settings, ds)
    out = export(settings, fmt="trimap", out=tmp_path / "trimaps.zip")
    assert out == tmp_path / "trimaps.zip"

    # lay the exported folder over a fresh copy of the dataset and read it back
    overlay = copy_sample(ds.root, tmp_path / "overlay")
    shutil.rmtree(overlay / "annotations" / "trimaps")
    with zipfile.ZipFile(out) as archive:
        names = [n for n in archive.namelist() if n.startswith("annotations/trimaps/")]
        archive.extractall(overlay, members=names)
    assert len(names) == len(ds)
    reread = open_dataset(overlay, tmp_path / "other-workspace")
    assert reread.problems == [] and reread.ids() == ds.ids()
    for image_id in ds.ids():
        expected = corrected.get(image_id, load_trimap(ds, image_id))
        assert np.array_equal(load_trimap(reread, image_id), expected), image_id


def test_manifest_lists_every_image_with_its_version_author_iou_and_sha(tmp_path: Path, sample):
    settings, ds = sample
    corrected = _correct_two(settings, ds)
    with zipfile.ZipFile(export(settings, fmt="trimap", out=tmp_path / "t.zip")) as archive:
        rows = {row["image_id"]: row for row in _manifest(archive)}
        assert list(_manifest(archive)[0]) == MANIFEST_COLUMNS
        for image_id, row in rows.items():
            png = archive.read(f"annotations/trimaps/{image_id}.png")
            assert row["sha256"] == hashlib.sha256(png).hexdigest()
    assert set(rows) == set(ds.ids())
    first = ds.ids()[0]
    ledger = latest(settings, first)
    assert rows[first]["status"] == "corrected" and rows[first]["version"] == "1"
    assert (rows[first]["author"], rows[first]["note"], rows[first]["source"]) == ("Ana", "top, pet", "gt")
    assert rows[first]["sha256"] == ledger.sha256 and rows[first]["created_at"] == ledger.created_at
    assert float(rows[first]["iou_gt"]) == pytest.approx(pet_iou(corrected[first], load_trimap(ds, first)))
    official = rows[ds.ids()[1]]
    assert (official["status"], official["version"], official["iou_gt"]) == ("official", "", "1.0")


def test_binary_export_counts_the_border_as_pet(tmp_path: Path, sample):
    settings, ds = sample
    corrected = _correct_two(settings, ds)
    with zipfile.ZipFile(export(settings, fmt="binary", out=tmp_path / "b.zip", only_corrected=True)) as archive:
        names = sorted(n for n in archive.namelist() if n.startswith("binary/"))
        assert names == sorted(f"binary/{i}.png" for i in corrected)
        for image_id, mask in corrected.items():
            binary = decode_label_png(archive.read(f"binary/{image_id}.png"))
            assert set(np.unique(binary)) <= {0, 255}
            assert np.array_equal(binary == 255, (mask == PET) | (mask == BORDER))
        assert {row["image_id"] for row in _manifest(archive)} == set(corrected)


def test_coco_rles_decode_back_to_the_exact_masks(tmp_path: Path, sample):
    settings, ds = sample
    corrected = _correct_two(settings, ds)
    out = export(settings, fmt="coco", out=tmp_path / "c.zip")
    extracted = tmp_path / "coco"
    with zipfile.ZipFile(out) as archive:
        archive.extractall(extracted)
    coco = COCO(str(extracted / "annotations.json"))
    assert {c["name"] for c in coco.loadCats(coco.getCatIds())} == {"pet", "border"}
    assert len(coco.getImgIds()) == len(ds)
    for info in coco.loadImgs(coco.getImgIds()):
        image_id = Path(info["file_name"]).stem
        assert info["file_name"] == ds.image_path(image_id).name
        expected = corrected.get(image_id, load_trimap(ds, image_id))
        assert (info["height"], info["width"]) == expected.shape
        for category_id, value in ((1, PET), (2, BORDER)):
            anns = coco.loadAnns(coco.getAnnIds(imgIds=info["id"], catIds=[category_id]))
            assert len(anns) == 1
            decoded = mask_utils.decode(anns[0]["segmentation"])
            assert np.array_equal(decoded.astype(bool), expected == value), (image_id, category_id)
            assert np.array_equal(coco.annToMask(anns[0]).astype(bool), expected == value)
            assert anns[0]["area"] == int((expected == value).sum())


def test_import_then_export_gives_the_imported_masks_back(tmp_path: Path, sample):
    settings, ds = sample
    folder = tmp_path / "fixed"
    folder.mkdir()
    imported = {}
    for k, image_id in enumerate(ds.ids()[:4]):
        shape = load_trimap(ds, image_id).shape
        pet = ellipse_pet(shape, shift=k * 5)
        if k % 2:  # binary 0/255: becomes a trimap with a regenerated border band
            cv2.imwrite(str(folder / f"{image_id}.png"), np.where(pet, 255, 0).astype(np.uint8))
            imported[image_id] = binary_to_trimap(pet)
        else:
            imported[image_id] = binary_to_trimap(pet, half_width=3)
            cv2.imwrite(str(folder / f"{image_id}.png"), imported[image_id])
    results = import_folder(settings, folder, author="lab", ds=ds).results
    assert all(r.ok for r in results) and len(results) == 4
    with zipfile.ZipFile(export(settings, fmt="trimap", out=tmp_path / "i.zip", only_corrected=True)) as archive:
        names = sorted(n for n in archive.namelist() if n.endswith(".png"))
        assert names == sorted(f"annotations/trimaps/{i}.png" for i in imported)
        for image_id, expected in imported.items():
            assert np.array_equal(decode_label_png(archive.read(f"annotations/trimaps/{image_id}.png")), expected)
        assert {row["source"] for row in _manifest(archive)} == {"import"}


def test_images_without_any_mask_are_left_out_and_listed(tmp_path: Path, workspace: Path):
    root = make_tiny_dataset(tmp_path / "data", missing_trimap=("beagle_1", "beagle_2"))
    settings = Settings.resolve(data=root, workspace=workspace)
    ds = open_dataset(root, workspace)
    shape = (int(ds.table.loc["beagle_2", "height"]), int(ds.table.loc["beagle_2", "width"]))
    fixed = binary_to_trimap(ellipse_pet(shape), half_width=1)
    save(settings, ds, "beagle_2", fixed, base_version=None, source="correction")  # its only mask
    report = export_archive(settings, fmt="trimap", out=tmp_path / "m.zip", ds=ds)
    assert report.images == 4 and report.corrected == 1
    assert len(report.left_out) == 1 and report.left_out[0].startswith("beagle_1:")
    assert "1 left out" in report.summary()
    with zipfile.ZipFile(report.path) as archive:
        assert "annotations/trimaps/beagle_1.png" not in archive.namelist()
        assert np.array_equal(decode_label_png(archive.read("annotations/trimaps/beagle_2.png")), fixed)
        rows = {row["image_id"]: row for row in _manifest(archive)}
    assert rows["beagle_1"]["status"] == "left_out" and "no official trimap" in rows["beagle_1"]["reason"]
    assert rows["beagle_2"]["status"] == "corrected" and rows["beagle_2"]["iou_gt"] == ""


def test_default_path_is_in_the_workspace_and_bad_paths_are_refused(tmp_path: Path, sample):
    settings, ds = sample
    first = export(settings, fmt="binary")
    second = export(settings, fmt="binary")
    assert first.parent == second.parent == settings.exports_dir and first != second
    assert first.name.startswith("binary-") and first.suffix == ".zip"
    assert sorted(p.name for p in settings.exports_dir.iterdir()) == sorted([first.name, second.name])
    with pytest.raises(PetSegError, match="must end in .zip"):
        export(settings, out=tmp_path / "x.tar")
    (tmp_path / "dir.zip").mkdir()
    with pytest.raises(PetSegError, match="is a folder"):
        export(settings, out=tmp_path / "dir.zip")
    with pytest.raises(PetSegError, match="does not exist"):
        export(settings, out=tmp_path / "no" / "such" / "x.zip")
    with pytest.raises(PetSegError, match="format 'png'"):
        export(settings, fmt="png")
    with pytest.raises(PetSegError, match="no image of this dataset has a correction"):
        export(settings, only_corrected=True)


def test_an_export_that_fails_half_way_leaves_no_zip_and_no_temporary(tmp_path: Path, sample, monkeypatch):
    settings, ds = sample
    out = tmp_path / "partial.zip"
    out.write_bytes(b"the previous export")
    calls = {"n": 0}
    real = export_module.encode_png

    def failing(mask):
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError("disk full")
        return real(mask)

    monkeypatch.setattr(export_module, "encode_png", failing)
    with pytest.raises(OSError, match="disk full"):
        export(settings, out=out)
    assert out.read_bytes() == b"the previous export"
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["partial.zip"]


def test_cli_export(tmp_path: Path, sample, capsys):
    settings, ds = sample
    _correct_two(settings, ds)
    out = tmp_path / "cli.zip"
    argv = ["export", "--data", str(settings.data), "--workspace", str(settings.workspace), "--format", "coco",
            "--out", str(out), "--only-corrected"]
    assert cli.main(argv) == 0
    assert str(out) in capsys.readouterr().out
    with zipfile.ZipFile(out) as archive:
        assert len(json.loads(archive.read("annotations.json"))["images"]) == 2
    assert cli.main(argv[:-3] + ["--out", str(tmp_path / "x.txt")]) == 2
    assert "must end in .zip" in capsys.readouterr().err


def test_manifest_cells_that_a_spreadsheet_would_run_as_formulas_are_quoted(tmp_path: Path, sample):
    settings, ds = sample
    first, second = ds.ids()[0], ds.ids()[1]
    note = '=HYPERLINK("http://x","y")'
    save(settings, ds, first, load_trimap(ds, first), base_version=None, source="gt", author="@SUM(1+1)", note=note)
    save(settings, ds, second, load_trimap(ds, second), base_version=None, source="gt", author="Ana",
         note="-2+3 and a safe 'quote'")
    with zipfile.ZipFile(export(settings, out=tmp_path / "m.zip")) as archive:
        rows = {row["image_id"]: row for row in _manifest(archive)}
    assert (rows[first]["author"], rows[first]["note"]) == ("'@SUM(1+1)", "'" + note)
    assert (rows[second]["author"], rows[second]["note"]) == ("Ana", "'-2+3 and a safe 'quote'")
    assert rows[first]["iou_gt"] == "1.0" and rows[first]["version"] == "1"  # numbers stay numbers


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1", "@x", "\tx", "\rx"])
def test_every_formula_trigger_gets_the_quote(text):
    assert export_module._spreadsheet_safe(text) == "'" + text
    assert export_module._spreadsheet_safe("a" + text) == "a" + text


def test_an_export_finishing_into_a_default_name_taken_meanwhile_keeps_both(sample, monkeypatch):
    """Two exports in the same second: the name is free when both start, so the second to finish must not
    replace the first (the race a dashboard export and a CLI export run into)."""
    settings, ds = sample
    monkeypatch.setattr(export_module.dt, "datetime", _FrozenClock)
    real = export_module.encode_png
    inner: list[Path] = []

    def export_meanwhile(mask):
        if not inner:
            inner.append(Path("pending"))  # only once
            inner[0] = export(settings, fmt="trimap")  # finishes while the outer export is still writing
        return real(mask)

    monkeypatch.setattr(export_module, "encode_png", export_meanwhile)
    outer = export(settings, fmt="trimap")
    assert outer != inner[0] and outer.parent == inner[0].parent == settings.exports_dir
    assert sorted(p.name for p in settings.exports_dir.iterdir()) == sorted([outer.name, inner[0].name])
    for path in (outer, inner[0]):
        with zipfile.ZipFile(path) as archive:
            assert len(_manifest(archive)) == len(ds)


def test_an_explicit_out_is_replaced(tmp_path: Path, sample):
    settings, ds = sample
    out = tmp_path / "mine.zip"
    out.write_bytes(b"old")
    assert export(settings, out=out) == out
    assert zipfile.is_zipfile(out)


class _FrozenClock(export_module.dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return cls(2025, 1, 1, 12, 0, 0)
