"""The reader on the real sample, on odd files built from it, the cached index and `info --json`."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import core.dataset as dataset
import core.masks as masks
from core.dataset import (
    BREEDS,
    SPLITS,
    Dataset,
    breed_number,
    format_summary,
    load_image,
    load_trimap,
    open_dataset,
    species_of,
    summarize,
)
from core.errors import ImageUnreadable, PetSegError, UnknownImage

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _kinds(ds: Dataset, image: str) -> set[str]:
    return {p.kind for p in ds.problems if p.image == image}


def _copy_sample(sample_root: Path, target: Path) -> Path:
    shutil.copytree(sample_root, target, ignore=shutil.ignore_patterns("README.md"))
    return target


# --- the real sample ----------------------------------------------------------------------------------------------


def test_real_sample_reads_with_official_splits_and_no_problems(sample_root, workspace):
    ds = open_dataset(sample_root, workspace)

    assert len(ds) == 20 and not ds.synthetic
    assert ds.problems == []
    assert (ds.table["split"].value_counts().to_dict()) == {"trainval": 15, "test": 5}
    assert ds.ids("unlisted") == [] and len(ds.ids("trainval")) == 15 and len(ds.ids("all")) == 20
    assert list(ds.table.index) == sorted(ds.table.index)
    assert ds.table["readable"].all() and ds.table["has_trimap"].all()
    assert (ds.table["problem"] == "").all()
    assert dict(ds.table["species"].value_counts()) == {"cat": 14, "dog": 6}
    assert list(ds.table.columns) == [
        "image_id", "breed", "class_id", "species", "split", "width", "height",
        "readable", "has_trimap", "gt_pet_fraction", "problem",
    ]


def test_real_trimaps_hold_exactly_pet_background_border(sample_root, workspace):
    ds = open_dataset(sample_root, workspace)
    values = set()
    for image_id in ds.ids():
        trimap = load_trimap(ds, image_id)
        image = load_image(ds, image_id)
        row = ds.table.loc[image_id]
        assert trimap.dtype == np.uint8 and image.dtype == np.uint8
        assert image.shape == (row["height"], row["width"], 3)
        assert trimap.shape == image.shape[:2]
        assert row["gt_pet_fraction"] == pytest.approx((trimap == 1).mean())
        values |= set(np.unique(trimap).tolist())
    assert values == {1, 2, 3}


def test_breed_order_matches_the_class_ids_of_the_real_list(sample_root):
    assert len(BREEDS) == 37 and len(set(BREEDS)) == 37
    assert sum(species_of(b) == "cat" for b in BREEDS) == 12
    lines = (sample_root / "annotations" / "list.txt").read_text().splitlines()
    rows = [line.split() for line in lines if line and not line.startswith("#")]
    assert len(rows) == 20
    for image_id, class_id, species, breed_id in rows:
        breed = image_id.rsplit("_", 1)[0]
        assert BREEDS[int(class_id) - 1] == breed
        assert ("cat", "dog")[int(species) - 1] == species_of(breed)
        assert breed_number(breed) == int(breed_id)


def test_table_labels_come_from_file_names(sample_root, workspace):
    ds = open_dataset(sample_root, workspace)
    row = ds.table.loc["great_pyrenees_174"]
    assert (row["breed"], row["class_id"], row["species"], row["split"]) == ("great_pyrenees", 16, "dog", "test")
    row = ds.table.loc["Abyssinian_1"]
    assert (row["breed"], row["class_id"], row["species"], row["width"], row["height"]) == (
        "Abyssinian", 1, "cat", 600, 400,
    )


def test_info_json_on_the_real_sample(sample_root, workspace):
    result = subprocess.run(
        [sys.executable, "-m", "core", "info", "--data", str(sample_root), "--workspace", str(workspace), "--json"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert list(summary) == ["images", "with_trimap", "splits", "species", "breeds", "problems"]
    assert summary["images"] == 20 and summary["with_trimap"] == 20
    assert summary["splits"] == {"trainval": 15, "test": 5, "unlisted": 0}
    assert summary["species"] == {"cat": 14, "dog": 6}
    assert summary["breeds"] == {
        "Abyssinian": 1, "american_bulldog": 1, "Bombay": 1, "British_Shorthair": 6, "great_pyrenees": 5,
        "Maine_Coon": 6,
    }
    assert summary["problems"] == []


def test_info_text_and_missing_data_root_via_cli(sample_root, workspace, tmp_path):
    ok = subprocess.run(
        [sys.executable, "-m", "core", "info", "--data", str(sample_root), "--workspace", str(workspace)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert ok.returncode == 0 and "20 images" in ok.stdout and "problems: none" in ok.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "core", "info", "--data", str(tmp_path / "nowhere"), "--workspace", str(workspace)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: no dataset at") and len(missing.stderr.strip().splitlines()) == 1
    assert "python -m core download" in missing.stderr and "python -m core synth --out DIR" in missing.stderr


def test_folders_that_are_not_datasets_say_how_to_get_one(tmp_path, workspace):
    with pytest.raises(PetSegError, match="python -m core download"):
        open_dataset(tmp_path / "missing", workspace)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PetSegError, match="no images/ folder"):
        open_dataset(tmp_path / "empty", workspace)
    (tmp_path / "half" / ".download").mkdir(parents=True)
    (tmp_path / "half" / "images").mkdir()
    (tmp_path / "half" / ".download" / "unfinished").touch()
    with pytest.raises(PetSegError, match="did not finish"):
        open_dataset(tmp_path / "half", workspace)


# --- odd files ----------------------------------------------------------------------------------------------------

MALFORMED = [
    "garbage",
    "Abyssinian_1 one 1 1",
    "Abyssinian_1 99 1 1",
    "../../etc/passwd 1 1 1",
    "<script>alert(1)</script> 1 1 1",
]


@pytest.fixture(scope="module")
def odd(sample_root, tmp_path_factory) -> Dataset:
    """A copy of the sample with one odd case per image, as the real release and users' folders have them."""
    base = tmp_path_factory.mktemp("odd")
    root = _copy_sample(sample_root, base / "data")
    images, trimaps, annotations = root / "images", root / "annotations" / "trimaps", root / "annotations"

    def reencode(image_id: str, mode: str | None, fmt: str, **save) -> None:
        with Image.open(images / f"{image_id}.jpg") as im:
            converted = im.convert(mode) if mode else im.copy()
        buffer = io.BytesIO()
        converted.save(buffer, fmt, **save)
        (images / f"{image_id}.jpg").write_bytes(buffer.getvalue())

    reencode("Abyssinian_1", None, "PNG")
    reencode("Bombay_182", "CMYK", "JPEG", quality=95)
    reencode("British_Shorthair_102", "L", "JPEG")
    reencode("British_Shorthair_103", "P", "PNG")
    with Image.open(images / "British_Shorthair_104.jpg") as im:
        rgba = im.convert("RGBA")
    alpha = np.full(rgba.size[::-1], 255, np.uint8)
    alpha[:20, :20] = 0  # a fully transparent corner
    rgba.putalpha(Image.fromarray(alpha))
    buffer = io.BytesIO()
    rgba.save(buffer, "PNG")
    (images / "British_Shorthair_104.jpg").write_bytes(buffer.getvalue())
    reencode("British_Shorthair_105", "P", "GIF")
    data = (images / "British_Shorthair_107.jpg").read_bytes()
    (images / "British_Shorthair_107.jpg").write_bytes(data[: len(data) * 6 // 10])
    (images / "British_Shorthair_108.jpg").write_bytes(np.random.default_rng(0).bytes(30_000))
    (images / "Maine_Coon_205.jpg").write_bytes(b"")

    (trimaps / "Maine_Coon_201.png").unlink()
    with Image.open(trimaps / "Maine_Coon_203.png") as im:
        im.resize((im.width // 2, im.height // 2), Image.NEAREST).save(trimaps / "Maine_Coon_203.png")
    bad = np.array(Image.open(trimaps / "Maine_Coon_204.png"))
    bad[:10, :10], bad[-5:, -5:] = 0, 255
    Image.fromarray(bad).save(trimaps / "Maine_Coon_204.png")
    (trimaps / "Maine_Coon_206.png").write_bytes(b"not a png at all")

    shutil.copy(images / "Maine_Coon_208.jpg", images / "Maine_Coon_900.jpg")  # on disk, in no list
    shutil.copy(trimaps / "Maine_Coon_208.png", trimaps / "Maine_Coon_900.png")
    shutil.copy(trimaps / "Maine_Coon_208.png", trimaps / "Persian_5.png")  # a trimap without an image
    (images / "Abyssinian_100.mat").write_bytes(b"MATLAB 5.0")  # the official release has a few of these
    (images / "my cat (2).jpg").write_bytes(b"whatever")
    (trimaps / "._Abyssinian_1.png").write_bytes(b"\x00\x05\x16\x07")  # a macOS resource fork

    with open(annotations / "list.txt", "a") as handle:
        handle.write("\n".join(MALFORMED) + "\n")
    lines = (annotations / "trainval.txt").read_text().splitlines()
    lines[-1] = "great_pyrenees_177 1 1 1"  # says Abyssinian/cat, the file name says great_pyrenees
    lines += ["Abyssinian_777 1 1 1", "Bombay_182 8 1 4"]  # no such image; a duplicate line
    (annotations / "trainval.txt").write_text("\n".join(lines) + "\n")
    with open(annotations / "test.txt", "a") as handle:
        handle.write("Maine_Coon_201 21 1 7\n")  # already in trainval

    return open_dataset(root, base / "workspace")


def test_odd_image_bytes_are_readable_as_rgb(odd):
    expectations = {
        "Abyssinian_1": {"not-jpeg"},
        "Bombay_182": {"cmyk"},
        "British_Shorthair_102": {"grayscale"},
        "British_Shorthair_103": {"not-jpeg", "palette"},
        "British_Shorthair_104": {"not-jpeg", "alpha"},
        "British_Shorthair_105": {"not-jpeg", "palette"},
    }
    for image_id, kinds in expectations.items():
        row = odd.table.loc[image_id]
        assert _kinds(odd, image_id) == kinds, image_id
        assert row["readable"] and row["has_trimap"], image_id
        image = load_image(odd, image_id)
        assert image.shape == (row["height"], row["width"], 3) and image.dtype == np.uint8, image_id
    gray = load_image(odd, "British_Shorthair_102")
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    assert (load_image(odd, "British_Shorthair_104")[:20, :20] == 255).all()  # transparency flattened onto white


def test_png_behind_jpg_name_loads_the_same_pixels(odd, sample_root, workspace):
    original = load_image(open_dataset(sample_root, workspace), "Abyssinian_1")
    assert np.array_equal(load_image(odd, "Abyssinian_1"), original)


def test_truncated_corrupt_and_empty_images_are_unreadable_with_a_reason(odd):
    for image_id, kind in (("British_Shorthair_107", "truncated"), ("British_Shorthair_108", "corrupt"),
                           ("Maine_Coon_205", "corrupt")):
        row = odd.table.loc[image_id]
        assert not row["readable"] and (row["width"], row["height"]) == (0, 0), image_id
        assert kind in _kinds(odd, image_id)
        detail = next(p.detail for p in odd.problems if p.image == image_id and p.kind == kind)
        assert "cannot be shown or trained on" in detail
        with pytest.raises(ImageUnreadable, match=image_id):
            load_image(odd, image_id)
    assert "empty file" in next(p.detail for p in odd.problems if p.image == "Maine_Coon_205")


def test_trimap_problems_keep_the_image_browsable(odd):
    cases = {
        "Maine_Coon_201": "missing-trimap",
        "Maine_Coon_203": "trimap-size",
        "Maine_Coon_204": "trimap-values",
        "Maine_Coon_206": "trimap-unreadable",
    }
    for image_id, kind in cases.items():
        row = odd.table.loc[image_id]
        assert kind in _kinds(odd, image_id), image_id
        assert row["readable"] and not row["has_trimap"] and math.isnan(row["gt_pet_fraction"]), image_id
        assert load_image(odd, image_id).shape[:2] == (row["height"], row["width"])
    assert load_trimap(odd, "Maine_Coon_201") is None
    for image_id in ("Maine_Coon_203", "Maine_Coon_204", "Maine_Coon_206"):
        with pytest.raises(ImageUnreadable, match="ground truth"):
            load_trimap(odd, image_id)
    values = next(p.detail for p in odd.problems if p.kind == "trimap-values")
    assert "0, 255" in values
    size = next(p.detail for p in odd.problems if p.kind == "trimap-size")
    assert "but the image is" in size


def test_malformed_list_lines_are_reported_with_file_and_line(odd, sample_root):
    header_and_rows = len((sample_root / "annotations" / "list.txt").read_text().splitlines())
    malformed = [p for p in odd.problems if p.kind == "malformed-line"]
    assert [p.image for p in malformed] == [
        f"annotations/list.txt:{header_and_rows + i}" for i in range(1, len(MALFORMED) + 1)
    ]
    assert all("<script" not in p.detail and "/etc/" not in p.detail for p in malformed)
    # The rest of the file still counts: every good line of list.txt labels its image.
    assert odd.table.loc["great_pyrenees_176", "split"] == "trainval"


def test_list_entries_without_images_and_other_list_problems(odd):
    missing = [p for p in odd.problems if p.kind == "missing-image"]
    assert [p.image for p in missing] == ["Abyssinian_777"]
    assert "annotations/trainval.txt:" in missing[0].detail
    assert "Abyssinian_777" not in odd
    assert _kinds(odd, "great_pyrenees_177") == {"label-mismatch"}
    assert odd.table.loc["great_pyrenees_177", "class_id"] == BREEDS.index("great_pyrenees") + 1
    assert any(p.kind == "duplicate-line" and p.image.startswith("annotations/trainval.txt:") for p in odd.problems)
    conflict = next(p for p in odd.problems if p.kind == "split-conflict")
    assert conflict.image.startswith("annotations/test.txt:") and "Maine_Coon_201" in conflict.detail
    assert odd.table.loc["Maine_Coon_201", "split"] == "trainval"


def test_unlisted_images_stray_files_and_orphans(odd):
    assert odd.table.loc["Maine_Coon_900", "split"] == "unlisted"
    assert _kinds(odd, "Maine_Coon_900") == set()
    assert odd.ids("unlisted") == ["Maine_Coon_900"]
    assert _kinds(odd, "Persian_5") == {"orphan-trimap"} and "Persian_5" not in odd
    assert _kinds(odd, "images/Abyssinian_100.mat") == {"stray-file"}
    assert any(p.kind == "bad-name" and p.image.startswith("images/my") for p in odd.problems)
    assert _kinds(odd, "annotations/trimaps/") == {"hidden-files"}
    assert len(odd) == 21  # the 20 sample images (odd or not) plus the unlisted copy; nothing dropped


def test_problem_column_and_summary_agree_with_the_problem_list(odd):
    for image_id, row in odd.table.iterrows():
        kinds = [p.kind for p in odd.problems if p.image == image_id]
        assert row["problem"] == ",".join(kinds), image_id
    summary = summarize(odd)
    assert summary["images"] == 21
    assert summary["with_trimap"] == int(odd.table["has_trimap"].sum()) == 21 - 4  # unreadable images keep theirs
    assert summary["splits"] == {"trainval": 15, "test": 5, "unlisted": 1}
    assert len(summary["problems"]) == len(odd.problems)
    assert all(set(p) == {"image", "kind", "detail"} for p in summary["problems"])
    json.dumps(summary)  # plain JSON types only
    text = format_summary(summary)
    assert "21 images" in text and "malformed-line 5" in text and "Maine_Coon_201: missing-trimap" in text


# --- ids from outside ---------------------------------------------------------------------------------------------

HOSTILE = [
    "../../etc/passwd",
    "/etc/passwd",
    "Abyssinian_1/../../x",
    "Abyssinian_1.jpg",
    "<script>alert('x')</script>",
    "A" * 100_000,
    "Abyssinian_1\x00",
    "",
    "abyssinian_1",
    "Abyssinian_2",
]


@pytest.mark.parametrize("image_id", HOSTILE, ids=lambda s: repr(s[:20]))
def test_require_rejects_unknown_and_hostile_ids(sample_root, workspace, image_id):
    ds = open_dataset(sample_root, workspace)
    with pytest.raises(UnknownImage) as caught:
        ds.require(image_id)
    message = str(caught.value)
    assert "<" not in message and "/etc" not in message and "\x00" not in message
    assert "A" * 61 not in message and len(message) < 200
    with pytest.raises(UnknownImage):
        ds.image_path(image_id)
    with pytest.raises(UnknownImage):
        load_image(ds, image_id)
    assert image_id not in ds


def test_require_rejects_non_strings_and_accepts_known_ids(sample_root, workspace):
    ds = open_dataset(sample_root, workspace)
    for value in (None, 1, ["Abyssinian_1"]):
        with pytest.raises(UnknownImage):
            ds.require(value)
        assert value not in ds
    assert ds.require("Abyssinian_1") == "Abyssinian_1"
    assert ds.image_path("Abyssinian_1") == sample_root / "images" / "Abyssinian_1.jpg"
    assert ds.trimap_path("Abyssinian_1") == sample_root / "annotations" / "trimaps" / "Abyssinian_1.png"
    with pytest.raises(PetSegError, match="unknown split"):
        ds.ids("validation")
    assert set(SPLITS) == {"trainval", "test", "unlisted"}


# --- the index cache ----------------------------------------------------------------------------------------------


def _forbid_decoding(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the warm path decoded a file")

    monkeypatch.setattr(dataset.Image, "open", refuse)
    monkeypatch.setattr(masks.cv2, "imdecode", refuse)  # the label-PNG decoder
    monkeypatch.setattr(dataset, "_inspect_all", refuse)
    monkeypatch.setattr(dataset, "_read_lists", refuse)


def test_warm_open_reads_the_cache_and_decodes_nothing(sample_root, workspace, monkeypatch):
    cold = open_dataset(sample_root, workspace)
    assert (workspace / "index" / f"{cold.fingerprint}.parquet").is_file()
    with monkeypatch.context() as patch:
        _forbid_decoding(patch)
        warm = open_dataset(sample_root, workspace)
    assert warm.fingerprint == cold.fingerprint
    pd.testing.assert_frame_equal(warm.table, cold.table)
    assert warm.problems == cold.problems


def test_index_is_rebuilt_when_a_file_changes(sample_root, tmp_path, workspace, monkeypatch):
    root = _copy_sample(sample_root, tmp_path / "data")
    first = open_dataset(root, workspace)
    (root / "annotations" / "trimaps" / "Bombay_182.png").unlink()
    second = open_dataset(root, workspace)
    assert second.fingerprint != first.fingerprint
    assert _kinds(second, "Bombay_182") == {"missing-trimap"}

    with open(root / "annotations" / "test.txt", "a") as handle:
        handle.write("oops\n")
    third = open_dataset(root, workspace)
    assert third.fingerprint != second.fingerprint
    assert any(p.kind == "malformed-line" for p in third.problems)

    with monkeypatch.context() as patch:  # the cache of an earlier state is still valid for that state
        (root / "annotations" / "test.txt").write_bytes((sample_root / "annotations" / "test.txt").read_bytes())
        os.utime(root / "annotations" / "test.txt", ns=(0, 0))
        rebuilt = open_dataset(root, workspace)
        _forbid_decoding(patch)
        again = open_dataset(root, workspace)
    assert again.fingerprint == rebuilt.fingerprint and again.problems == rebuilt.problems


def test_damaged_cache_is_rebuilt(sample_root, workspace):
    ds = open_dataset(sample_root, workspace)
    cache = workspace / "index" / f"{ds.fingerprint}.parquet"
    cache.write_bytes(b"PAR1 this is not parquet")
    again = open_dataset(sample_root, workspace)
    pd.testing.assert_frame_equal(again.table, ds.table)
    assert cache.read_bytes()[:4] == b"PAR1" and len(cache.read_bytes()) > 100


def test_list_files_with_bom_crlf_and_blank_lines_parse_cleanly(sample_root, tmp_path, workspace):
    root = _copy_sample(sample_root, tmp_path / "data")
    for name in ("list.txt", "trainval.txt", "test.txt"):
        path = root / "annotations" / name
        text = path.read_text().replace("\n", "\r\n\r\n")
        path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    ds = open_dataset(root, workspace)
    assert ds.problems == []
    assert summarize(ds)["splits"] == {"trainval": 15, "test": 5, "unlisted": 0}


def test_missing_list_files_and_trimap_folder_are_reported(sample_root, tmp_path, workspace):
    root = _copy_sample(sample_root, tmp_path / "data")
    (root / "annotations" / "test.txt").unlink()
    shutil.rmtree(root / "annotations" / "trimaps")
    ds = open_dataset(root, workspace)
    kinds = {(p.image, p.kind) for p in ds.problems}
    assert ("annotations/test.txt", "missing-list") in kinds
    assert ("annotations/trimaps", "missing-folder") in kinds
    assert summarize(ds)["splits"] == {"trainval": 15, "test": 0, "unlisted": 5}
    assert not ds.table["has_trimap"].any() and len(ds) == 20


# --- links out of the dataset and raw line contents ---------------------------------------------------------------

SECRET = "root:$6$s3cretHash:19000:0:99999:7:::"


@pytest.fixture
def outside(tmp_path) -> Path:
    """Files outside the dataset folder that a hostile dataset points at."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "shadow").write_text("\n".join([SECRET, "daemon:*:19000:0:99999:7:::", "x y z w"]) + "\n")
    return folder


def _details(ds: Dataset) -> str:
    return "\n".join(f"{p.image} {p.kind} {p.detail}" for p in ds.problems)


def test_list_files_linked_out_of_the_dataset_are_not_read(sample_root, tmp_path, workspace, outside):
    root = _copy_sample(sample_root, tmp_path / "data")
    for name in ("list.txt", "trainval.txt"):
        (root / "annotations" / name).unlink()
        os.symlink(outside / "shadow", root / "annotations" / name)
    ds = open_dataset(root, workspace)
    kinds = {(p.image, p.kind) for p in ds.problems}
    assert ("annotations/list.txt", "outside-link") in kinds and ("annotations/trainval.txt", "outside-link") in kinds
    assert not any(p.kind == "malformed-line" for p in ds.problems)  # nothing of the linked file was parsed
    text = _details(ds) + format_summary(summarize(ds), max_problems=1000)
    assert "s3cret" not in text and "daemon" not in text and str(outside) not in text
    assert summarize(ds)["splits"] == {"trainval": 0, "test": 5, "unlisted": 15}  # labels from the names still


def test_links_that_stay_inside_the_dataset_are_followed(sample_root, tmp_path, workspace):
    root = _copy_sample(sample_root, tmp_path / "data")
    (root / "annotations" / "list.txt").rename(root / "annotations" / "list-v1.txt")
    os.symlink("list-v1.txt", root / "annotations" / "list.txt")
    (root / "images" / "Abyssinian_1.jpg").rename(root / "Abyssinian_1-original.jpg")
    os.symlink(root / "Abyssinian_1-original.jpg", root / "images" / "Abyssinian_1.jpg")
    ds = open_dataset(root, workspace)
    assert ds.problems == []
    assert load_image(ds, "Abyssinian_1").shape == (400, 600, 3)


def test_images_and_trimaps_linked_out_of_the_dataset_are_problems_not_pixels(
    sample_root, tmp_path, workspace, outside
):
    root = _copy_sample(sample_root, tmp_path / "data")
    private = outside / "private.jpg"
    (root / "images" / "Abyssinian_1.jpg").rename(private)
    os.symlink(private, root / "images" / "Abyssinian_1.jpg")
    (root / "annotations" / "trimaps" / "Bombay_182.png").rename(outside / "label.png")
    os.symlink(outside / "label.png", root / "annotations" / "trimaps" / "Bombay_182.png")
    ds = open_dataset(root, workspace)

    row = ds.table.loc["Abyssinian_1"]
    assert not row["readable"] and (row["width"], row["height"]) == (0, 0)
    assert "outside-link" in _kinds(ds, "Abyssinian_1")
    with pytest.raises(ImageUnreadable, match="outside the dataset folder"):
        load_image(ds, "Abyssinian_1")
    with pytest.raises(ImageUnreadable, match="outside the dataset folder"):
        dataset.open_photo(ds, "Abyssinian_1")  # what thumbnails open
    assert not ds.table.loc["Bombay_182", "has_trimap"] and "outside-link" in _kinds(ds, "Bombay_182")
    with pytest.raises(ImageUnreadable, match="outside the dataset folder"):
        load_trimap(ds, "Bombay_182")
    assert str(outside) not in _details(ds)


def test_a_file_swapped_for_an_outside_link_after_indexing_is_not_read(sample_root, tmp_path, workspace, outside):
    root = _copy_sample(sample_root, tmp_path / "data")
    ds = open_dataset(root, workspace)
    Image.new("RGB", (600, 400), (255, 0, 0)).save(outside / "other.jpg")
    (root / "images" / "Abyssinian_1.jpg").unlink()
    os.symlink(outside / "other.jpg", root / "images" / "Abyssinian_1.jpg")
    with pytest.raises(ImageUnreadable, match="outside the dataset folder"):
        load_image(ds, "Abyssinian_1")


def test_folders_linked_out_of_the_dataset_are_not_read(sample_root, tmp_path, workspace, outside):
    root = _copy_sample(sample_root, tmp_path / "data")
    (root / "annotations" / "trimaps").rename(outside / "trimaps")
    os.symlink(outside / "trimaps", root / "annotations" / "trimaps")
    ds = open_dataset(root, workspace)
    assert ("annotations/trimaps", "outside-link") in {(p.image, p.kind) for p in ds.problems}
    assert not ds.table["has_trimap"].any()
    with pytest.raises(ImageUnreadable, match="outside the dataset folder"):
        load_trimap(ds, "Abyssinian_1")

    (root / "images").rename(outside / "images")
    os.symlink(outside / "images", root / "images")
    with pytest.raises(PetSegError, match="images/ .*outside the dataset folder"):
        open_dataset(root, workspace)


def test_problem_messages_never_echo_list_line_contents(sample_root, tmp_path, workspace):
    root = _copy_sample(sample_root, tmp_path / "data")
    with open(root / "annotations" / "list.txt", "a") as handle:
        handle.write("hunter2 is my passw0rd now\n")  # wrong field count
        handle.write("s3cretToken 1 1 1\n")  # not an id
        handle.write("Abyssinian_1 pa55word 1 1\n")  # non-numeric
        handle.write("Abyssinian_1 99 1 77777777\n")  # out of range
    ds = open_dataset(root, workspace)
    malformed = [p for p in ds.problems if p.kind == "malformed-line"]
    assert len(malformed) == 4 and all(p.image.startswith("annotations/list.txt:") for p in malformed)
    text = _details(ds)
    for secret in ("hunter2", "passw0rd", "s3cret", "pa55word", "77777777"):
        assert secret not in text
    assert sum("Abyssinian_1" in p.detail for p in malformed) == 2  # a valid id is named: it says which image


def _huge_png(width: int, height: int) -> bytes:
    """A real 1-bit PNG of width x height black pixels: a few KB on disk, width*height*3 bytes as RGB."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" + bytes((width + 7) // 8)
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(row * height, 9)) + \
        chunk(b"IEND", b"")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_photos_above_the_pixel_cap_are_a_problem_and_never_decoded(sample_root, tmp_path, workspace, monkeypatch):
    root = _copy_sample(sample_root, tmp_path / "data")
    (root / "images" / "Abyssinian_1.jpg").write_bytes(_huge_png(12000, 12000))  # 432 MB as RGB
    ds = open_dataset(root, workspace)
    row = ds.table.loc["Abyssinian_1"]
    assert not row["readable"] and "too-large" in _kinds(ds, "Abyssinian_1")
    detail = next(p.detail for p in ds.problems if p.image == "Abyssinian_1" and p.kind == "too-large")
    assert "12000x12000" in detail and "40-megapixel" in detail

    def refuse(*args, **kwargs):
        raise AssertionError("a photo above the cap was decoded")

    monkeypatch.setattr(dataset.Image.Image, "load", refuse)
    with pytest.raises(ImageUnreadable, match="12000x12000.*above the 40-megapixel cap"):
        load_image(ds, "Abyssinian_1")
