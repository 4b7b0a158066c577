"""CVAT mask 1.1, Label Studio and FiftyOne: export -> read back -> identical masks, on the real sample.

The owning libraries read and write the formats where they install here (``make test`` installs both without
their dependency pins): Label Studio's RLE is checked against the Label Studio SDK's own brush code, the CVAT
zip against datumaro (the library CVAT's own import and export run on). FiftyOne (a large install that runs its
own database) is not installed: its layout is checked against the format's written spec.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from _tiny_dataset import copy_sample

from core import cli, groundtruth
from core.config import Settings
from core.corrections import import_masks, save
from core.dataset import load_trimap, open_dataset
from core.errors import PetSegError
from core.export import export_archive
from core.interop import cvat, labelstudio, read_masks
from core.interop.colour import decode_colour_png, encode_colour_png
from core.ledger import latest
from core.masks import BACKGROUND, BORDER, PET, decode_label_png, encode_png

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
FORMATS = ("cvat-mask", "labelstudio", "fiftyone", "trimap")


@pytest.fixture
def sample(tmp_path: Path, sample_root: Path):
    root = copy_sample(sample_root, tmp_path / "sample")
    settings = Settings.resolve(data=root, workspace=tmp_path / "ws-a")
    return settings, open_dataset(root, settings.workspace)


def _correct(settings: Settings, ds) -> dict[str, np.ndarray]:
    """Two corrections: the top rows of one image become pet, the border band of another disappears."""
    first, second = ds.ids()[0], ds.ids()[3]
    a = load_trimap(ds, first).copy()
    a[:25] = PET
    b = load_trimap(ds, second).copy()
    b[b == BORDER] = BACKGROUND
    save(settings, ds, first, a, base_version=None, source="gt", note="ears")
    save(settings, ds, second, b, base_version=None, source="gt")
    return {first: a, second: b}


def _effective(settings: Settings, ds) -> dict[str, np.ndarray]:
    truth = groundtruth.snapshot(settings, ds, ds.ids())
    return {i: truth.mask(i) for i in ds.ids()}


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_then_import_into_a_fresh_workspace_gives_identical_masks(sample, tmp_path, fmt):
    settings, ds = sample
    _correct(settings, ds)
    expected = _effective(settings, ds)
    zip_path = export_archive(settings, fmt=fmt, out=tmp_path / f"{fmt}.zip", ds=ds).path

    fresh = Settings.resolve(data=settings.data, workspace=tmp_path / "ws-b")
    report = import_masks(fresh, read_masks(fmt, zip_path), author="teammate", ds=ds)
    assert report.refused == 0, [r.line() for r in report.results if not r.ok]
    assert len(report.results) == len(ds)
    assert sorted(report.imported) == sorted(i for i in ds.ids() if not np.array_equal(expected[i], load_trimap(ds, i)))
    assert len(report.imported) == 2  # the rest are "identical to the official trimap"
    for image_id, mask in _effective(fresh, ds).items():
        np.testing.assert_array_equal(mask, expected[image_id], err_msg=f"{fmt}: {image_id}")

    # Back into the workspace it came from: nothing changes, every file says so.
    again = import_masks(settings, read_masks(fmt, zip_path), ds=ds)
    assert again.imported == [] and again.refused == 0


@pytest.mark.parametrize("fmt", ("cvat-mask", "fiftyone", "labelstudio"))
def test_an_unpacked_folder_reads_like_its_zip(sample, tmp_path, fmt):
    settings, ds = sample
    zip_path = export_archive(settings, fmt=fmt, out=tmp_path / "x.zip", ds=ds).path
    folder = tmp_path / "unpacked"
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(folder)
    from_zip = {m.stem: m.load(_size(ds, m.stem))[0] for m in read_masks(fmt, zip_path)}
    from_folder = {m.stem: m.load(_size(ds, m.stem))[0] for m in read_masks(fmt, folder)}
    assert from_zip.keys() == from_folder.keys() == set(ds.ids())
    for image_id in from_zip:
        np.testing.assert_array_equal(from_zip[image_id], from_folder[image_id])


def _size(ds, image_id: str) -> tuple[int, int]:
    row = ds.table.loc[image_id]
    return int(row["height"]), int(row["width"])


# --- CVAT: the layout of "Segmentation mask 1.1" ------------------------------------------------------------


def test_cvat_zip_follows_the_segmentation_mask_layout(sample, tmp_path):
    settings, ds = sample
    path = export_archive(settings, fmt="cvat-mask", out=tmp_path / "cvat.zip", ds=ds).path
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        labelmap = archive.read("labelmap.txt").decode()
        image_set = archive.read("ImageSets/Segmentation/default.txt").decode().split()
        image_id = ds.ids()[0]
        rgb, mode = decode_colour_png(archive.read(f"SegmentationClass/{image_id}.png"),
                                      expected_size=_size(ds, image_id))
        objects, _ = decode_colour_png(archive.read(f"SegmentationObject/{image_id}.png"),
                                       expected_size=_size(ds, image_id))
    assert image_set == ds.ids()
    assert {f"SegmentationClass/{i}.png" for i in ds.ids()} <= names
    assert {f"SegmentationObject/{i}.png" for i in ds.ids()} <= names
    labels = dict(cvat.parse_labelmap(labelmap))
    assert labels == {"background": (0, 0, 0), "pet": (128, 0, 0), "border": (224, 224, 192)}
    assert all(line.count(":") == 3 for line in labelmap.splitlines() if not line.startswith("#"))
    trimap = load_trimap(ds, image_id)
    assert mode == "rgb"
    for name, value in (("pet", PET), ("border", BORDER), ("background", BACKGROUND)):
        assert (rgb[trimap == value] == labels[name]).all()
    # one object colour for the pet, another for its border band, black elsewhere
    assert len({tuple(c) for c in objects[trimap == PET]}) == 1
    assert (objects[trimap == BACKGROUND] == 0).all()


def test_datumaro_reads_the_cvat_export_and_petseg_reads_datumaros(sample, tmp_path):
    """CVAT imports and exports Segmentation mask 1.1 through datumaro's voc_segmentation format."""
    dm = pytest.importorskip("datumaro", reason="datumaro is installed by make test (pip install --no-deps)")
    settings, ds = sample
    corrected = _correct(settings, ds)
    expected = _effective(settings, ds)
    path = export_archive(settings, fmt="cvat-mask", out=tmp_path / "cvat.zip", ds=ds).path
    with zipfile.ZipFile(path) as archive:
        archive.extractall(tmp_path / "cvat")
    dataset = dm.Dataset.import_from(str(tmp_path / "cvat"), "voc_segmentation")
    labels = dataset.categories()[dm.AnnotationType.label]
    assert [label.name for label in labels] == ["background", "pet", "border"]
    assert sorted(item.id for item in dataset) == sorted(ds.ids())
    value = {"pet": PET, "border": BORDER, "background": BACKGROUND}
    for item in dataset:
        rebuilt = np.full(expected[item.id].shape, BACKGROUND, np.uint8)
        for annotation in item.annotations:
            if annotation.type == dm.AnnotationType.mask:
                rebuilt[annotation.image.astype(bool)] = value[labels[annotation.label].name]
        np.testing.assert_array_equal(rebuilt, expected[item.id], err_msg=item.id)

    # ... and what datumaro writes (as CVAT's export does) reads back into the same masks
    dataset.export(str(tmp_path / "from-datumaro"), "voc_segmentation", save_media=False)
    fresh = Settings.resolve(data=settings.data, workspace=tmp_path / "ws-dm")
    report = import_masks(fresh, read_masks("cvat-mask", tmp_path / "from-datumaro"), ds=ds)
    assert report.refused == 0 and sorted(report.imported) == sorted(corrected)
    for image_id, mask in _effective(fresh, ds).items():
        np.testing.assert_array_equal(mask, expected[image_id])


def test_cvat_reads_the_zips_own_labelmap_colours_and_refuses_unknown_ones(sample, tmp_path):
    settings, ds = sample
    image_id = ds.ids()[2]
    trimap = load_trimap(ds, image_id)
    folder = tmp_path / "task"
    (folder / "SegmentationClass").mkdir(parents=True)
    # A CVAT project with its own colours, and the labels in another order
    (folder / "labelmap.txt").write_text("# label:color_rgb:parts:actions\nPet:250,50,83::\nbackground:0,0,0::\n"
                                         "border:61,61,245::\n")
    lut = np.array([[0, 0, 0], [250, 50, 83], [0, 0, 0], [61, 61, 245]], np.uint8)
    (folder / "SegmentationClass" / f"{image_id}.png").write_bytes(encode_colour_png(lut[trimap]))
    bad = lut[trimap].copy()
    bad[0, 0] = (1, 2, 3)
    other = ds.ids()[3]
    other_map = lut[load_trimap(ds, other)].copy()
    other_map[0, 0] = (1, 2, 3)
    (folder / "SegmentationClass" / f"{other}.png").write_bytes(encode_colour_png(other_map))
    items = {m.stem: m for m in read_masks("cvat-mask", folder)}
    np.testing.assert_array_equal(items[image_id].load(_size(ds, image_id))[0], trimap)
    with pytest.raises(PetSegError, match="colour 1,2,3"):
        items[other].load(_size(ds, other))
    report = import_masks(settings, read_masks("cvat-mask", folder), ds=ds)
    refused = [r.line() for r in report.results if not r.ok]
    assert len(refused) == 1 and other in refused[0] and "colour 1,2,3" in refused[0]


def test_cvat_without_a_pet_label_is_refused_with_the_labels_it_has(tmp_path):
    folder = tmp_path / "task"
    (folder / "SegmentationClass").mkdir(parents=True)
    (folder / "labelmap.txt").write_text("background:0,0,0::\ncat:128,0,0::\n")
    with pytest.raises(PetSegError, match="no label named 'pet'.*cat"):
        list(read_masks("cvat-mask", folder))


# --- Label Studio: the SDK's own brush code ------------------------------------------------------------------


def _sdk_brush():
    """label_studio_sdk/converter/brush.py, loaded by path (the SDK's package __init__ needs its ~45 deps)."""
    spec = importlib.util.find_spec("label_studio_sdk")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("label-studio-sdk is not installed (pip install --no-deps label-studio-sdk)")
    path = Path(list(spec.submodule_search_locations)[0]) / "converter" / "brush.py"
    module_spec = importlib.util.spec_from_file_location("ls_brush", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_labelstudio_rle_is_the_sdks_byte_for_byte_and_the_sdk_decodes_the_export(sample, tmp_path):
    brush = _sdk_brush()
    settings, ds = sample
    corrected = _correct(settings, ds)
    path = export_archive(settings, fmt="labelstudio", out=tmp_path / "ls.zip", ds=ds).path
    with zipfile.ZipFile(path) as archive:
        tasks = json.loads(archive.read("tasks.json"))
        config = archive.read("labeling_config.xml").decode()
    assert '<BrushLabels name="label" toName="image">' in config and 'value="pet"' in config
    assert len(tasks) == len(ds)
    expected = _effective(settings, ds)
    for task in tasks:
        image_id = task["data"]["image_id"]
        assert task["data"]["image"] == "/data/local-files/?d=images/" + ds.image_path(image_id).name
        (prediction,) = task["predictions"]
        # the SDK's converter reads the flattened form of Label Studio's own export (rle and labels beside value)
        flat = [{**r, "rle": r["value"]["rle"], "brushlabels": r["value"]["brushlabels"]} for r in prediction["result"]]
        layers = brush.decode_from_annotation("label", flat)
        pet = layers["label-pet-0"] == 255
        border = layers["label-border-0"] == 255
        np.testing.assert_array_equal(pet, expected[image_id] == PET)
        np.testing.assert_array_equal(border, expected[image_id] == BORDER)
    image_id = next(iter(corrected))
    mask = expected[image_id] == PET
    assert labelstudio.encode_rle(mask) == brush.mask2rle(np.where(mask, 255, 0).astype(np.uint8))


def test_labelstudio_decodes_what_the_sdk_encodes():
    brush = _sdk_brush()
    rng = np.random.default_rng(1)
    mask = np.zeros((97, 131), bool)
    mask[10:80, 20:120] = True
    mask[rng.random(mask.shape) < 0.05] ^= True  # many runs of length 1 (the literal blocks)
    rle = brush.mask2rle(np.where(mask, 255, 0).astype(np.uint8))
    np.testing.assert_array_equal(labelstudio.decode_rle(rle, 97, 131), mask)
    long_run = np.ones((300, 400), bool)  # one run longer than 2**16 values
    assert labelstudio.encode_rle(long_run) == brush.mask2rle(np.full((300, 400), 255, np.uint8))
    np.testing.assert_array_equal(labelstudio.decode_rle(labelstudio.encode_rle(long_run), 300, 400), long_run)


def test_labelstudio_export_json_with_a_hand_drawn_pet_only_annotation(sample):
    """Label Studio's own JSON export: the submitted annotation wins over the prediction; a pet-only drawing gets
    the border band regenerated; an upload-prefixed file name still finds the image."""
    settings, ds = sample
    image_id = ds.ids()[1]
    height, width = _size(ds, image_id)
    drawn = np.zeros((height, width), bool)
    drawn[40:200, 60:220] = True
    result = {"from_name": "label", "to_name": "image", "type": "brushlabels", "original_width": width,
              "original_height": height, "value": {"format": "rle", "rle": labelstudio.encode_rle(drawn),
                                                     "brushlabels": ["pet"]}}
    exported = [{"id": 7, "data": {"image": f"/data/upload/3/1a2b3c4d-{image_id}.jpg"},
                 "annotations": [{"was_cancelled": True, "result": []}, {"result": [result]}],
                 "predictions": [{"result": []}]}]
    path = settings.workspace / "project-3.json"
    settings.workspace.mkdir(exist_ok=True)
    path.write_text(json.dumps(exported))
    (item,) = list(read_masks("labelstudio", path))
    assert item.stem == image_id
    trimap, how = item.load((height, width))
    assert "border band regenerated" in how
    assert set(np.unique(trimap)) == {PET, BACKGROUND, BORDER}
    assert (trimap[drawn] != BACKGROUND).all() and (trimap[~drawn] != PET).all()
    with pytest.raises(PetSegError, match="another image size"):
        labelstudio.decode_rle(result["value"]["rle"], height + 1, width)


# --- FiftyOne: ImageSegmentationDirectory -----------------------------------------------------------------------


def test_fiftyone_zip_has_the_photos_and_class_index_masks(sample, tmp_path):
    settings, ds = sample
    path = export_archive(settings, fmt="fiftyone", out=tmp_path / "fo.zip", ds=ds).path
    with zipfile.ZipFile(path) as archive:
        for image_id in ds.ids():
            photo = ds.image_path(image_id)
            assert archive.read(f"data/{photo.name}") == photo.read_bytes()
            labels = decode_label_png(archive.read(f"labels/{image_id}.png"))
            trimap = load_trimap(ds, image_id)
            np.testing.assert_array_equal(labels, np.select([trimap == PET, trimap == BORDER], [1, 2], 0))
        assert json.loads(archive.read("mask_targets.json")) == {"0": "background", "1": "pet", "2": "border"}


def test_fiftyone_mask_with_a_class_it_does_not_know_is_refused(sample, tmp_path):
    settings, ds = sample
    image_id = ds.ids()[0]
    (tmp_path / "fo" / "labels").mkdir(parents=True)
    bad = np.zeros(_size(ds, image_id), np.uint8)
    bad[5, 5] = 7
    (tmp_path / "fo" / "labels" / f"{image_id}.png").write_bytes(encode_png(bad))
    report = import_masks(settings, read_masks("fiftyone", tmp_path / "fo"), ds=ds)
    assert report.refused == 1 and "class indices [7]" in report.results[0].message
    assert latest(settings, image_id) is None


# --- sources: zips are read safely -------------------------------------------------------------------------------


def test_zip_members_outside_the_folder_are_never_read(sample, tmp_path):
    settings, ds = sample
    image_id = ds.ids()[0]
    trimap = load_trimap(ds, image_id).copy()
    trimap[:10] = PET
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr(f"../{image_id}.png", encode_png(trimap))
        archive.writestr(f"/abs/{image_id}.png", encode_png(trimap))
    with pytest.raises(PetSegError, match="no mask was found"):
        import_masks(settings, read_masks("trimap", evil), ds=ds)
    assert latest(settings, image_id) is None


def test_a_file_that_is_not_a_zip_or_folder_is_refused(tmp_path):
    with pytest.raises(PetSegError, match="does not exist"):
        list(read_masks("cvat-mask", tmp_path / "nothing.zip"))


# --- export details (issue 18): permissions, COCO info and attributes, manifest columns -----------------------------


def test_export_zip_is_readable_by_the_team_and_coco_has_info_and_breed_attributes(sample, tmp_path):
    settings, ds = sample
    old = os.umask(0o022)
    try:
        named = export_archive(settings, fmt="coco", out=tmp_path / "coco.zip", ds=ds).path
        default = export_archive(settings, fmt="trimap", ds=ds).path
    finally:
        os.umask(old)
    assert named.stat().st_mode & 0o777 == 0o644
    assert default.stat().st_mode & 0o777 == 0o644
    with zipfile.ZipFile(named) as archive:
        coco = json.loads(archive.read("annotations.json"))
        manifest = list(csv.DictReader(io.StringIO(archive.read("manifest.csv").decode())))
    assert coco["info"]["contributor"] == "PetSeg" and coco["info"]["date_created"]
    by_file = {image["file_name"]: image for image in coco["images"]}
    for image_id in ds.ids():
        image = by_file[ds.image_path(image_id).name]
        assert image["breed"] == ds.table.at[image_id, "breed"]
        assert image["species"] == ds.table.at[image_id, "species"]
    assert all(a["attributes"]["breed"] for a in coco["annotations"])
    assert [(r["image_id"], r["split"], r["breed"]) for r in manifest] == [
        (i, ds.table.at[i, "split"], ds.table.at[i, "breed"]) for i in ds.ids()]


def test_cli_exports_and_imports_every_format(sample, tmp_path, capsys):
    settings, ds = sample
    _correct(settings, ds)
    fresh = tmp_path / "ws-cli"
    for fmt in ("cvat-mask", "labelstudio", "fiftyone"):
        out = tmp_path / f"cli-{fmt}.zip"
        assert cli.main(["export", "--data", str(settings.data), "--workspace", str(settings.workspace),
                         "--format", fmt, "--out", str(out)]) == 0
        assert cli.main(["corrections", "import", "--data", str(settings.data), "--workspace", str(fresh),
                         "--format", fmt, "--from", str(out)]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[-2].endswith("0 refused"), lines[-3:]
    fresh_settings = Settings.resolve(data=settings.data, workspace=fresh)
    expected = _effective(settings, ds)
    for image_id, mask in _effective(fresh_settings, ds).items():
        np.testing.assert_array_equal(mask, expected[image_id])
    assert cli.main(["corrections", "import", "--data", str(settings.data), "--workspace", str(fresh),
                     "--format", "cvat-mask", "--from", str(tmp_path / "missing.zip")]) == 2


def test_shutil_unpacked_export_of_the_dataset_trimaps_reads_as_trimap(sample, tmp_path):
    """The dataset's own annotations folder is a valid --format trimap source (annotations/trimaps/*.png)."""
    settings, ds = sample
    folder = tmp_path / "copy"
    shutil.copytree(settings.data / "annotations" / "trimaps", folder / "annotations" / "trimaps")
    report = import_masks(settings, read_masks("trimap", folder), ds=ds)
    assert report.refused == 0 and report.imported == []


def test_labelstudio_splits_many_tasks_into_numbered_files_and_reads_them_all(sample, tmp_path, monkeypatch):
    settings, ds = sample
    monkeypatch.setattr(labelstudio, "TASKS_PER_FILE", 8)
    path = export_archive(settings, fmt="labelstudio", out=tmp_path / "ls.zip", ds=ds).path
    with zipfile.ZipFile(path) as archive:
        files = sorted(n for n in archive.namelist() if n.endswith(".json"))
        counts = [len(json.loads(archive.read(n))) for n in files]
    assert files == ["tasks-001.json", "tasks-002.json", "tasks-003.json"] and counts == [8, 8, 4]
    assert sorted(m.stem for m in read_masks("labelstudio", path)) == sorted(ds.ids())
