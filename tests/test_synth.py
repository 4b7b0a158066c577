"""The generated dataset: official layout, zero problems for the reader, deterministic, trimaps like the real ones."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

import core.synth as synth
from core.dataset import BREEDS, breed_number, load_image, load_trimap, open_dataset, species_of, summarize
from core.errors import PetSegError
from core.synth import LIST_HEADER, generate

COUNT = 40


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("synth") / "data", count=COUNT, seed=0, progress=False)


def test_generated_set_reads_with_zero_problems(generated, tmp_path):
    ds = open_dataset(generated, tmp_path / "ws")
    summary = summarize(ds)
    assert ds.synthetic
    assert ds.problems == []
    assert summary["images"] == summary["with_trimap"] == COUNT
    assert summary["splits"] == {"trainval": COUNT // 2, "test": COUNT // 2, "unlisted": 0}
    assert set(summary["breeds"]) == set(BREEDS)
    assert ds.table["readable"].all()
    assert ds.table["width"].between(200, 600).all() and ds.table["height"].between(200, 600).all()
    assert ds.table["width"].nunique() > 10  # varied sizes


def test_layout_and_list_files_follow_the_official_format(generated):
    assert sorted(p.name for p in generated.iterdir()) == ["annotations", "images", "petseg-synthetic.json"]
    images = sorted(p.name for p in (generated / "images").iterdir())
    trimaps = sorted(p.name for p in (generated / "annotations" / "trimaps").iterdir())
    assert len(images) == COUNT and [n[:-4] for n in images] == [n[:-4] for n in trimaps]
    assert all((generated / "images" / n).read_bytes()[:3] == b"\xff\xd8\xff" for n in images)  # real JPEGs
    text = (generated / "annotations" / "list.txt").read_text()
    assert text.startswith(LIST_HEADER)
    rows = [line.split() for line in text.splitlines() if not line.startswith("#")]
    assert len(rows) == COUNT
    for image_id, class_id, species, breed_id in rows:
        breed = image_id.rsplit("_", 1)[0]
        assert BREEDS[int(class_id) - 1] == breed
        assert int(species) == (1 if species_of(breed) == "cat" else 2)
        assert int(breed_id) == breed_number(breed)
    trainval = (generated / "annotations" / "trainval.txt").read_text().splitlines()
    test = (generated / "annotations" / "test.txt").read_text().splitlines()
    assert sorted(trainval + test) == sorted(" ".join(r) for r in rows) and not set(trainval) & set(test)


def test_trimaps_have_a_border_band_like_the_real_ones(generated, tmp_path):
    ds = open_dataset(generated, tmp_path / "ws")
    widths, fractions = [], []
    for image_id in ds.ids():
        trimap = load_trimap(ds, image_id)
        assert set(np.unique(trimap).tolist()) == {1, 2, 3}, image_id
        assert trimap.shape == load_image(ds, image_id).shape[:2]
        # Band width at a border pixel = distance to the nearest pet pixel + to the nearest background pixel.
        to_pet = cv2.distanceTransform((trimap != 1).astype(np.uint8), cv2.DIST_L2, 5)
        to_background = cv2.distanceTransform((trimap != 2).astype(np.uint8), cv2.DIST_L2, 5)
        border = trimap == 3
        widths.append(np.median(to_pet[border] + to_background[border]) * 500 / max(trimap.shape))
        fractions.append((trimap == 1).mean())
    # The real sample's bands are ~15-22 px on ~500 px images.
    assert 10 <= np.median(widths) <= 26
    assert min(fractions) > 0.01 and max(fractions) < 0.9 and np.std(fractions) > 0.04


def test_same_seed_gives_byte_identical_files_whatever_the_worker_count(generated, tmp_path, monkeypatch):
    monkeypatch.setattr(synth, "_SERIAL_BELOW", 0)  # force the process pool, here with 2 workers
    again = generate(tmp_path / "again", count=COUNT, seed=0, progress=False, workers=2)
    assert _files(again) == _files(generated)


def test_another_seed_gives_other_images(generated, tmp_path):
    other = generate(tmp_path / "other", count=COUNT, seed=1, progress=False)
    ours, theirs = _files(generated), _files(other)
    assert ours.keys() == theirs.keys()  # same ids and layout
    assert sum(ours[k] != theirs[k] for k in ours if k.startswith("images/")) == COUNT


def test_progress_callback_counts_every_image(tmp_path):
    calls = []
    generate(tmp_path / "data", count=5, seed=3, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 5) for i in range(1, 6)]


def test_bad_requests_are_refused_with_a_reason(generated, tmp_path):
    with pytest.raises(PetSegError, match="not empty"):
        generate(generated, count=3, progress=False)
    with pytest.raises(PetSegError, match="count"):
        generate(tmp_path / "zero", count=0, progress=False)
    with pytest.raises(PetSegError, match="seed"):
        generate(tmp_path / "negative", count=3, seed=-1, progress=False)
    (tmp_path / "empty").mkdir()
    assert generate(tmp_path / "empty", count=2, progress=False) == tmp_path / "empty"


def test_a_failed_run_leaves_nothing_behind(tmp_path, monkeypatch):
    real_render = synth.render

    def fail_at_five(seed, index):
        if index == 5:
            raise RuntimeError("boom")
        return real_render(seed, index)

    monkeypatch.setattr(synth, "render", fail_at_five)
    with pytest.raises(RuntimeError, match="boom"):
        generate(tmp_path / "data", count=8, progress=False)
    assert list(tmp_path.iterdir()) == []
