"""core.train: a tiny model learns, overfits real photos, resumes, caches its arrays, augments consistently."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import core.data as data
import core.train as training
from core.cli import main
from core.config import Settings
from core.corrections import save
from core.data import ArrayCache, augment, split_trainval, trainable_ids
from core.dataset import BREEDS, breed_number, load_trimap, open_dataset, species_of
from core.errors import PetSegError
from core.groundtruth import GroundTruth, snapshot
from core.masks import binary_to_trimap
from core.model import load_checkpoint
from core.runs import read_metrics_csv, read_progress
from core.synth import generate
from core.train import TrainConfig, train

# The tiny model of these tests: resnet18 down to stride 16 with a slim decoder, at 64 px.
TINY = {"encoder": "resnet18", "encoder_weights": None, "encoder_depth": 4, "decoder_channels": (64, 32, 16, 16),
        "image_size": 64, "progress": False}


def write_blob_pets(root: Path, count: int, seed: int = 0) -> Path:
    """A small generated set in the official layout: textured blob "pets" on smooth, cluttered backgrounds.

    Much easier than core.synth's cartoon pets (no occlusion, no pet-coloured clutter), so a tiny model from
    random weights segments it well within seconds: what a learning test on a 2-core CPU can afford.
    """
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "annotations" / "trimaps").mkdir(parents=True)
    lines = []
    for i in range(count):
        breed = BREEDS[i % len(BREEDS)]
        h, w = (int(v) for v in rng.integers(100, 160, 2))
        yy, xx = np.mgrid[:h, :w] / max(h, w)
        a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        t = (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1))[..., None]
        image = a + (b - a) * (t - t.min()) / (np.ptp(t) + 1e-6)
        for _ in range(int(rng.integers(0, 4))):  # flat-coloured clutter
            y0, x0 = int(rng.integers(0, h - 20)), int(rng.integers(0, w - 20))
            image[y0 : y0 + int(rng.integers(8, 30)), x0 : x0 + int(rng.integers(8, 30))] = rng.uniform(0, 255, 3)
        cy, cx = rng.uniform(0.35, 0.65) * h, rng.uniform(0.35, 0.65) * w
        ry, rx = rng.uniform(0.15, 0.3) * h, rng.uniform(0.15, 0.3) * w
        pet = ((np.mgrid[:h, :w][0] - cy) / ry) ** 2 + ((np.mgrid[:h, :w][1] - cx) / rx) ** 2 <= 1
        hy, hx, hr = cy - ry * rng.uniform(0.6, 1.0), cx + rx * rng.uniform(-0.8, 0.8), min(ry, rx) * 0.7
        pet |= (np.mgrid[:h, :w][0] - hy) ** 2 + (np.mgrid[:h, :w][1] - hx) ** 2 <= hr**2
        fur = rng.uniform(0, 255, 3) + rng.normal(0, 35, (h, w, 1))  # the texture is what makes a pet
        image = np.where(pet[..., None], fur, image) + rng.normal(0, 4, (h, w, 3))
        image_id = f"{breed}_{i + 1}"
        cv2.imwrite(str(root / "images" / f"{image_id}.jpg"), cv2.cvtColor(np.clip(image, 0, 255).astype(np.uint8),
                                                                            cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "annotations" / "trimaps" / f"{image_id}.png"), binary_to_trimap(pet, half_width=2))
        species = 1 if species_of(breed) == "cat" else 2
        lines.append(f"{image_id} {BREEDS.index(breed) + 1} {species} {breed_number(breed)}")
    cut = int(count * 0.8)
    (root / "annotations" / "list.txt").write_text("#Image CLASS-ID SPECIES BREED ID\n" + "\n".join(lines) + "\n")
    (root / "annotations" / "trainval.txt").write_text("\n".join(lines[:cut]) + "\n")
    (root / "annotations" / "test.txt").write_text("\n".join(lines[cut:]) + "\n")
    return root


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("blobs")
    return Settings.resolve(data=write_blob_pets(root / "data", 400), workspace=root / "workspace")


def _all_pet_baseline(settings: Settings, ids: list[str]) -> float:
    from core.metrics import image_metrics

    ds = open_dataset(settings.data, settings.workspace)
    scores = []
    for image_id in ids:
        gt = load_trimap(ds, image_id)
        scores.append(image_metrics(np.ones_like(gt), gt)["iou_pet"])
    return float(np.mean(scores))


def test_a_tiny_model_learns_to_segment_generated_pets(blobs: Settings) -> None:
    result = train(blobs, TrainConfig(run="learn", epochs=15, batch_size=8, lr=2e-3, **TINY))
    ds = open_dataset(blobs.data, blobs.workspace)
    _, val_ids = split_trainval(trainable_ids(ds)[0])
    baseline = _all_pet_baseline(blobs, val_ids)  # all-background scores 0
    assert result.best_val_iou_pet >= 0.8 > 2 * baseline
    run_dir = blobs.run_dir("learn")
    metrics = read_metrics_csv(run_dir)
    assert metrics["epoch"].tolist() == list(range(1, 16))
    assert metrics["val_iou_pet"].max() == pytest.approx(result.best_val_iou_pet)
    assert metrics[["train_loss", "val_loss", "val_miou_3class", "val_pixel_accuracy", "seconds"]].notna().all().all()
    assert metrics["train_loss"].iloc[-1] < metrics["train_loss"].iloc[0]
    _, cfg, meta = load_checkpoint(run_dir / "best.pt")
    assert meta["epoch"] == result.best_epoch and meta["dataset_fingerprint"] == ds.fingerprint
    assert cfg.encoder_weights is None and cfg.image_size == 64 and meta["precision"] in ("bf16", "fp32")
    config = json.loads((run_dir / "config.json").read_text())
    assert config["dataset"]["val_images"] == len(val_ids) == 32 and config["train"]["epochs"] == 15
    progress = read_progress(run_dir)
    assert progress["status"] == "done" and progress["epoch"] == 15
    assert {"step", "steps_per_epoch", "loss", "updated_at"} <= set(progress)
    assert "epoch 15/15" in (run_dir / "train.log").read_text()


def test_a_tiny_model_overfits_the_real_sample(sample_root: Path, tmp_path: Path) -> None:
    from core.evaluate import evaluate

    settings = Settings.resolve(data=sample_root, workspace=tmp_path / "ws")
    train(settings, TrainConfig(run="overfit", epochs=30, batch_size=5, lr=3e-3, val_fraction=0.0, augment=False,
                                **TINY))
    summary = evaluate(settings, "overfit", "trainval", checkpoint="last", progress=False)
    assert summary["images"] == 15
    assert summary["per_image_iou"] >= 0.8  # measured at the photos' original resolution


def _cli_train(data: Path, ws: Path, *extra: str) -> int:
    return main(["train", "--data", str(data), "--workspace", str(ws), "--run", "r", "--preset", "quick",
                 "--image-size", "64", "--batch-size", "8", "--encoder-weights", "none", *extra])


def test_resume_after_an_interruption_continues_exactly(tmp_path: Path, monkeypatch, capsys) -> None:
    data = generate(tmp_path / "synth", count=48, seed=0, progress=False)
    assert _cli_train(data, tmp_path / "straight", "--epochs", "3") == 0

    real_validate = training.validate
    calls = []

    def interrupt_in_epoch_two(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_validate(*args, **kwargs)

    monkeypatch.setattr(training, "validate", interrupt_in_epoch_two)
    ws = tmp_path / "resumed"
    assert _cli_train(data, ws, "--epochs", "3", "--use-corrections") == 130
    run_dir = ws / "runs" / "r"
    assert read_progress(run_dir)["status"] == "interrupted"
    assert read_metrics_csv(run_dir)["epoch"].tolist() == [1]
    monkeypatch.setattr(training, "validate", real_validate)

    assert _cli_train(data, ws, "--epochs", "3") == 2
    assert "already exists" in capsys.readouterr().err
    assert _cli_train(data, ws, "--resume", "--image-size", "96") == 2
    assert "image_size=64" in capsys.readouterr().err
    assert _cli_train(data, ws, "--resume") == 0

    resumed, straight = read_metrics_csv(run_dir), read_metrics_csv(tmp_path / "straight" / "runs" / "r")
    assert resumed["epoch"].tolist() == [1, 2, 3]
    # Optimiser, schedule and RNG states came back: the resumed epochs are the ones a straight run trains.
    assert resumed["lr"].tolist() == pytest.approx(straight["lr"].tolist())
    assert resumed["train_loss"].tolist() == pytest.approx(straight["train_loss"].tolist(), rel=1e-3)
    _, _, meta = load_checkpoint(run_dir / "last.pt")
    assert meta["epoch"] == 3 and meta["use_corrections"] is True
    config = json.loads((run_dir / "config.json").read_text())
    assert len(config["resumed_at"]) == 1 and config["train"]["use_corrections"] is True
    assert _cli_train(data, tmp_path / "elsewhere", "--resume") == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_the_array_cache_is_reused_and_refreshed_when_ground_truth_changes(blobs, tmp_path, monkeypatch) -> None:
    settings = Settings.resolve(data=blobs.data, workspace=tmp_path / "ws")
    ds = open_dataset(settings.data, settings.workspace)
    ids = trainable_ids(ds)[0][:12]
    cache = ArrayCache.open(settings, ds, snapshot(settings, ds, ids, corrections=False), ids, 64)
    first = cache.rows(ids[:1])[0]
    official = np.array(cache.masks[first])
    assert set(np.unique(official)) <= {1, 2, 3} and cache.images[first].std() > 0

    decoded, masks_read = [], []
    real_load, real_mask = data.load_image, GroundTruth.mask
    monkeypatch.setattr(data, "load_image", lambda ds, i: decoded.append(i) or real_load(ds, i))
    monkeypatch.setattr(GroundTruth, "mask", lambda truth, i: masks_read.append(i) or real_mask(truth, i))
    reopened = ArrayCache.open(settings, ds, snapshot(settings, ds, ids, corrections=False), ids, 64)
    assert decoded == [] and masks_read == []  # every row came from the cache
    assert reopened.folders == cache.folders

    corrected = ids[0]
    save(settings, ds, corrected, np.ones_like(load_trimap(ds, corrected)), base_version=None, source="gt")
    fixed = ArrayCache.open(settings, ds, snapshot(settings, ds, ids, corrections=True), ids, 64)
    # The photos are shared; only the mask whose ground truth changed is read again, into a cache of its own.
    assert decoded == [] and masks_read == [corrected]
    assert fixed.folders[0] == cache.folders[0] and fixed.folders[1] != cache.folders[1]
    assert fixed.versions[corrected] == 1 and (fixed.masks[first] == 1).all()
    assert np.array_equal(cache.masks[first], official)  # the official cache is never rewritten
    # A run on a subset reuses the rows it shares with the caches already built: nothing is decoded again.
    subset = ArrayCache.open(settings, ds, snapshot(settings, ds, ids[:5], corrections=True), ids[:5], 64)
    assert decoded == [] and masks_read == [corrected]
    assert np.array_equal(subset.images[subset.rows(ids[:5])], fixed.images[fixed.rows(ids[:5])])
    assert (subset.masks[subset.row[corrected]] == 1).all()


def test_the_array_cache_is_read_only(blobs, tmp_path) -> None:
    settings = Settings.resolve(data=blobs.data, workspace=tmp_path / "ws")
    ds = open_dataset(settings.data, settings.workspace)
    ids = trainable_ids(ds)[0][:4]
    with ArrayCache.open(settings, ds, snapshot(settings, ds, ids), ids, 64) as cache:
        for array in (cache.images, cache.masks):
            assert not array.flags.writeable
            with pytest.raises(ValueError, match="read-only"):
                array[0] = 0
        for folder, name in zip(cache.folders, ("images.npy", "masks.npy"), strict=True):
            assert (folder / name).stat().st_mode & 0o222 == 0  # nobody is invited to open it for writing
        images, masks = cache.load(cache.rows(ids))
        images[0] = 0  # a batch is a copy: writing to it leaves the cache alone
        assert cache.images[0].std() > 0


def test_pruning_collects_old_caches_and_crash_leftovers_but_not_a_held_cache(tmp_path: Path) -> None:
    from core import locks

    root = tmp_path / "arrays"
    names = [f"fp-64-masks-{i}" for i in range(3)] + ["fp-64", ".fp-64-images-x.123.tmp", ".fp-64-masks-y.9.trash"]
    for name in names:
        (root / name).mkdir(parents=True)
        (root / name / "masks.npy").write_bytes(b"x")
    (root / "fp-64-images-gone.lock").touch()  # a lock file whose cache is gone
    held = locks.acquire(root / "fp-64-masks-0.lock", shared=True)  # another reader maps this one
    deleted = data.prune(root, keep={"masks": 0})
    assert sorted(deleted) == ["fp-64", "fp-64-masks-1", "fp-64-masks-2"]
    assert sorted(p.name for p in root.iterdir()) == ["fp-64-masks-0", "fp-64-masks-0.lock"]
    held.release()
    assert data.prune(root, keep={"masks": 0}) == ["fp-64-masks-0"] and list(root.iterdir()) == []


def test_augmentation_moves_image_and_mask_together() -> None:
    gen = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    masks = np.full((16, 64, 64), 2, np.uint8)
    for k in range(16):
        y, x = rng.integers(8, 40, 2)
        masks[k, y : y + 20, x : x + 12] = 3
        masks[k, y + 2 : y + 18, x + 2 : x + 10] = 1
        masks[k, :, :4] = 1  # an asymmetric stripe: a horizontal flip moves it to the other side
    gray = np.array([0, 200, 40, 120], np.uint8)[masks]
    images = np.repeat(gray[..., None], 3, axis=3)
    pixels, out = augment(torch.from_numpy(images), torch.from_numpy(masks), gen)
    assert pixels.shape == (16, 3, 64, 64) and out.shape == (16, 64, 64) and out.dtype == torch.uint8
    value = pixels[:, 0].numpy()
    out = out.numpy()
    flipped = 0
    for k in range(16):
        centres = {c: value[k][out[k] == c].mean() for c in (1, 2, 3)}
        assert centres[1] > centres[3] > centres[2]  # brightness/contrast jitter keeps the order
        # classify each pixel by its value: it must agree with the augmented mask almost everywhere
        edges = sorted(centres.values())
        guess = np.where(value[k] > (edges[1] + edges[2]) / 2, 1, np.where(value[k] > (edges[0] + edges[1]) / 2, 3, 2))
        assert np.mean(guess == out[k]) > 0.97
        flipped += int(out[k][:, -2:].mean() < 1.5)
    assert 0 < flipped < 16  # some images were flipped, some not


def test_validation_is_a_fixed_tenth_of_trainval() -> None:
    ids = [f"Abyssinian_{i}" for i in range(1, 201)]
    train_ids, val_ids = split_trainval(ids)
    assert (train_ids, val_ids) == split_trainval(list(reversed(ids)))
    assert len(val_ids) == 20 and not set(train_ids) & set(val_ids) and len(train_ids) + len(val_ids) == 200
    small_train, small_val = split_trainval(ids, max_images=50)
    assert len(small_train) + len(small_val) == 50 and len(small_val) == 5
    assert split_trainval(ids[:1]) == (ids[:1], [])


def test_cli_flags_override_the_preset_and_the_default_is_the_full_recipe_on_cuda(monkeypatch) -> None:
    from core.cli import build_parser
    from core.train import config_from_args

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    full = config_from_args(build_parser().parse_args(["train", "--run", "a"])).resolved()
    assert (full.preset, full.encoder, full.image_size, full.batch_size, full.lr) == ("full", "resnet34", 256, 8, 2e-4)
    assert full.encoder_weights == "imagenet"
    # Without CUDA the default is the quick recipe: the full one takes hours on a CPU.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    cpu = config_from_args(build_parser().parse_args(["train", "--run", "a"])).resolved()
    assert (cpu.preset, cpu.encoder, cpu.image_size) == ("quick", "resnet18", 128)
    forced = config_from_args(build_parser().parse_args(["train", "--run", "a", "--preset", "full"])).resolved()
    assert forced.preset == "full"
    quick = config_from_args(build_parser().parse_args(
        ["train", "--run", "b", "--preset", "quick", "--epochs", "3", "--encoder-weights", "none", "--max-images", "50"]
    )).resolved()
    assert (quick.encoder, quick.image_size, quick.epochs, quick.max_images) == ("resnet18", 128, 3, 50)
    assert quick.encoder_weights is None
    with pytest.raises(PetSegError, match="multiple of 32"):
        TrainConfig(run="c", image_size=100).resolved()


def test_a_second_training_of_the_same_run_is_refused_and_the_first_finishes(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys

    from tests.conftest import PROJECT_ROOT, wait_for

    data = generate(tmp_path / "synth", count=24, seed=0, progress=False)
    ws = tmp_path / "ws"

    def start(seed: str, epochs: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "core", "train", "--data", str(data), "--workspace", str(ws), "--run", "same",
             "--preset", "quick", "--image-size", "64", "--encoder-weights", "none", "--seed", seed,
             "--epochs", epochs], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    first = start("1", "2")
    run_dir = ws / "runs" / "same"
    try:
        wait_for(lambda: (read_progress(run_dir) or {}).get("pid") == first.pid, 120, "first training started")
        first.send_signal(signal.SIGSTOP)  # both are now "running": the first holds the run while paused
        try:
            second = start("2", "3")
            _, err = second.communicate(timeout=120)
        finally:
            first.send_signal(signal.SIGCONT)
        assert second.returncode == 2
        assert err.strip() == (f"error: run same is being trained by another process (pid {first.pid}): "
                               "wait for it to finish or choose another --run")
        _, err = first.communicate(timeout=300)
        assert first.returncode == 0, err
    finally:
        first.kill()

    # Every file of the run folder comes from the first training (seed 1, 2 epochs).
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["train"]["seed"], config["train"]["epochs"]) == (1, 2)
    metrics = read_metrics_csv(run_dir)
    assert metrics["epoch"].tolist() == [1, 2]
    _, _, last = load_checkpoint(run_dir / "last.pt")
    _, _, best = load_checkpoint(run_dir / "best.pt")
    assert last["epoch"] == 2 and best["epoch"] in (1, 2)
    assert best["metrics"]["train_loss"] == pytest.approx(metrics.set_index("epoch").loc[best["epoch"], "train_loss"])
    assert read_progress(run_dir)["pid"] == first.pid and read_progress(run_dir)["status"] == "done"
    # The lock went with the process: the run can be resumed now.
    resumed = train(Settings.resolve(data=data, workspace=ws), TrainConfig(run="same", epochs=3, resume=True,
                                                                           progress=False))
    assert resumed.epochs == 3 and read_metrics_csv(run_dir)["epoch"].tolist() == [1, 2, 3]


def test_a_second_evaluation_of_the_same_run_and_split_is_refused(trained_copy) -> None:
    import subprocess
    import sys

    from core.evaluate import evaluate
    from core.run_folder import lock_evaluation
    from core.runs import eval_dir
    from tests.conftest import PROJECT_ROOT

    settings, run = trained_copy.settings, trained_copy.run
    folder = eval_dir(settings, run, "test")
    before = (folder / "metrics.parquet").read_bytes()
    with lock_evaluation(folder, run, "test"):  # this process is evaluating test
        other = subprocess.run(
            [sys.executable, "-m", "core", "evaluate", "--data", str(settings.data), "--workspace",
             str(settings.workspace), "--run", run, "--split", "test"],
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
        assert other.returncode == 2
        assert other.stderr.strip() == (f"error: run {run} is being evaluated on test by another process "
                                        f"(pid {os.getpid()}): wait for it to finish")
        assert (folder / "metrics.parquet").read_bytes() == before
        # Another split of the same run is not held.
        assert evaluate(settings, run, "trainval", progress=False)["images"] > 0
    assert evaluate(settings, run, "test", progress=False)["images"] > 0  # free again once released


def test_training_sweeps_stale_temporaries_of_crashed_writes_first(blobs: Settings) -> None:
    """From Python as from the CLI or a job: train() itself clears what crashed trainings left behind."""
    import os
    import time

    leftovers = blobs.workspace / "runs" / "crashed"
    leftovers.mkdir(parents=True)
    stale, fresh = leftovers / ".last.pt.a1b2c3d4.tmp", leftovers / ".best.pt.e5f6g7h8.tmp"
    for path, age in ((stale, 3 * 3600), (fresh, 5)):
        path.write_bytes(b"half written")
        os.utime(path, (time.time() - age, time.time() - age))
    train(blobs, TrainConfig(run="sweeps", epochs=1, batch_size=8, max_images=16, **TINY))
    assert not stale.exists() and fresh.exists()


@pytest.mark.parametrize(("requested", "loads", "pretrained"), [("imagenet", False, False), ("imagenet", True, True),
                                                                 (None, True, False)])
def test_config_records_whether_the_requested_encoder_weights_were_loaded(tmp_path: Path, monkeypatch, requested,
                                                                          loads, pretrained) -> None:
    import core.model as model
    from core.runs import run_info

    real = model.create_network

    def create(cfg, encoder_weights=None):
        if encoder_weights and not loads:
            raise OSError("no network")
        return real(cfg, None)  # "loaded": the test needs no download, only the record of it

    monkeypatch.setattr(model, "create_network", create)
    settings = Settings.resolve(data=generate(tmp_path / "synth", count=16, seed=0, progress=False),
                                workspace=tmp_path / "ws")
    train(settings, TrainConfig(run="w", epochs=1,
                                **{**TINY, "encoder_weights": requested}))
    config = json.loads((settings.run_dir("w") / "config.json").read_text())
    assert config["train"]["encoder_weights"] == requested  # what was asked for ...
    assert config["train"]["pretrained"] is pretrained  # ... and what was loaded, beside it
    info = run_info(settings, settings.run_dir("w"))
    assert info.pretrained is pretrained
    assert ("could not be loaded" in info.weights) is (requested is not None and not loads)
