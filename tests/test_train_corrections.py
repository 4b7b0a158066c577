"""Training with corrections learns from the corrected masks, never from a corrected test image; a killed
training job resumes with one click on the Train page."""

import json
import os
import signal
from pathlib import Path

import numpy as np
import pandas as pd
from streamlit.testing.v1 import AppTest

from core import jobs
from core.corrections import save
from core.data import ArrayCache, trainable_ids
from core.dataset import load_trimap, open_dataset
from core.groundtruth import GroundTruth, snapshot
from core.masks import resize_mask
from core.runs import read_metrics_csv, read_progress
from core.train import TrainConfig, train
from tests.conftest import APP, wait_for


def box_mask(shape: tuple[int, int]) -> np.ndarray:
    """A mask no official trimap looks like: pet in the left half, background elsewhere."""
    mask = np.full(shape, 2, dtype=np.uint8)
    mask[:, : shape[1] // 2] = 1
    return mask


def test_training_with_corrections_uses_them_and_never_a_corrected_test_image(trained_copy, monkeypatch):
    settings = trained_copy.settings
    ds = open_dataset(settings.data, settings.workspace)
    usable, _ = trainable_ids(ds)
    fixed_id, test_id = usable[0], ds.ids("test")[0]
    corrected = box_mask(load_trimap(ds, fixed_id).shape)
    assert not np.array_equal(corrected, load_trimap(ds, fixed_id))
    save(settings, ds, fixed_id, corrected, base_version=None, source="gt", note="test")
    save(settings, ds, test_id, box_mask(load_trimap(ds, test_id).shape), base_version=None, source="gt")

    reads: list[tuple[str, int | None, np.ndarray | None]] = []
    real = GroundTruth.mask

    def recording(truth, image_id):
        mask = real(truth, image_id)
        reads.append((image_id, truth.versions[image_id], mask))
        return mask

    monkeypatch.setattr(GroundTruth, "mask", recording)
    train(settings, TrainConfig(run="with-fixes", preset="quick", epochs=1, image_size=64, encoder_weights=None,
                                use_corrections=True, progress=False))

    # The fixture's run cached the official masks at 64 px; only the corrected image's mask is read again.
    read_ids = [image_id for image_id, _, _ in reads]
    assert fixed_id in read_ids
    image_id, version, mask = next(r for r in reads if r[0] == fixed_id)
    assert version == 1 and np.array_equal(mask, corrected)
    assert not set(read_ids) & set(ds.ids("test")), "a test image's ground truth was read for training"

    # What the batches are drawn from: the corrected mask for that image, and no test image at all.
    reads.clear()
    cache = ArrayCache.open(settings, ds, snapshot(settings, ds, usable), usable, 64)
    assert reads == []  # the very arrays the run trained on, not a rebuild
    assert cache.versions[fixed_id] == 1
    assert np.array_equal(cache.masks[cache.row[fixed_id]], resize_mask(corrected, 64))
    assert test_id not in cache.row
    config = json.loads((settings.run_dir("with-fixes") / "config.json").read_text())
    assert config["train"]["use_corrections"] is True
    # The run records the correction versions it learned from: the trainval one, never the test one.
    assert config["corrections"] == {fixed_id: 1}
    assert set(config["dataset"]["val_ids"]) <= set(usable)

    # Without corrections the official trimap comes back, in a cache of its own: the corrected one is untouched.
    official = ArrayCache.open(settings, ds, snapshot(settings, ds, usable, corrections=False), usable, 64)
    assert np.array_equal(official.masks[official.row[fixed_id]], resize_mask(load_trimap(ds, fixed_id), 64))
    assert np.array_equal(cache.masks[cache.row[fixed_id]], resize_mask(corrected, 64))


def test_a_killed_training_job_resumes_with_one_click(monkeypatch, trained_copy):
    settings = trained_copy.settings
    config = TrainConfig(run="killed", preset="quick", image_size=64, epochs=4, encoder_weights=None).to_dict()
    job = jobs.start(settings, "train", config)
    run_dir = settings.run_dir("killed")
    try:
        wait_for(lambda: (run_dir / "last.pt").is_file() and len(read_metrics_csv(run_dir)), 120, "first epoch")
        os.kill(int(read_progress(run_dir)["pid"]), signal.SIGKILL)  # as the OOM killer would
        final = wait_for(lambda: (s := jobs.status(settings, job.id)) and not s.active and s, 120, "job end")
    finally:
        jobs.cancel(settings, job.id)
    assert final.state == "failed"
    before = read_metrics_csv(run_dir)
    assert 1 <= len(before) < 4

    monkeypatch.setenv("PETSEG_DATA", str(trained_copy.data))
    monkeypatch.setenv("PETSEG_HOME", str(trained_copy.workspace))
    at = AppTest.from_file(APP, default_timeout=60).switch_page("app_pages/train.py").run()
    assert not at.exception
    assert "Training of `killed` failed (it was killed)" in at.error[0].value
    button = at.button(key=f"resume_{job.id}")
    assert button.label == "Resume"
    button.click().run()
    assert not at.exception

    resumed = jobs.list_jobs(settings, "train")[0]
    assert resumed.job.id != job.id
    assert resumed.job.config == {**config, "resume": True}
    done = wait_for(lambda: (s := jobs.status(settings, resumed.job.id)) and not s.active and s, 120, "resume")
    assert done.state == "succeeded", jobs.log_tail(settings, resumed.job.id)
    after = read_metrics_csv(run_dir)
    assert list(after["epoch"]) == [1, 2, 3, 4]
    # The epochs finished before the kill are kept as they were, not trained again.
    pd.testing.assert_frame_equal(after.iloc[: len(before)], before)
    assert len(json.loads((run_dir / "config.json").read_text())["resumed_at"]) == 1
    at.run()
    assert "Training `killed` finished" in at.success[0].value


# A second process that maps the cache with a correction and reports what it sees before and after the parent
# has built and pruned caches around it (as a --use-corrections training would while another run starts).
HOLDER = """
import json, sys
from core.config import Settings
from core.data import ArrayCache
from core.dataset import open_dataset
from core.groundtruth import snapshot
settings = Settings.resolve(data=sys.argv[1], workspace=sys.argv[2])
ds = open_dataset(settings.data, settings.workspace)
ids, fixed = json.loads(sys.argv[3]), sys.argv[4]
cache = ArrayCache.open(settings, ds, snapshot(settings, ds, ids, corrections=True), ids, 64)
row = cache.row[fixed]
print(json.dumps({"folder": str(cache.folders[1]), "mask": cache.masks[row].tolist()}), flush=True)
sys.stdin.readline()
print(json.dumps({"mask": cache.masks[row].tolist()}), flush=True)
"""


def test_a_mapped_corrected_cache_survives_another_process_building_and_pruning(trained_copy, monkeypatch):
    import subprocess
    import sys

    from core import data
    from tests.conftest import PROJECT_ROOT

    settings = trained_copy.settings
    ds = open_dataset(settings.data, settings.workspace)
    usable, _ = trainable_ids(ds)
    fixed_id = usable[0]
    corrected = box_mask(load_trimap(ds, fixed_id).shape)
    save(settings, ds, fixed_id, corrected, base_version=None, source="gt")
    expected = resize_mask(corrected, 64)

    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(settings.data), str(settings.workspace), json.dumps(usable), fixed_id],
        cwd=PROJECT_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        first = json.loads(holder.stdout.readline())
        assert np.array_equal(np.array(first["mask"], np.uint8), expected)
        held = Path(first["folder"])

        # Meanwhile this process trains on the official masks: the same images, and a subset (other ids),
        # keeping no cache but the ones it maps.
        monkeypatch.setattr(data, "KEEP", {"images": 0, "masks": 0})
        for ids in (usable, usable[:-3]):
            official = ArrayCache.open(settings, ds, snapshot(settings, ds, ids, corrections=False), ids, 64)
            assert np.array_equal(official.masks[official.row[fixed_id]], resize_mask(load_trimap(ds, fixed_id), 64))
            official.close()
        assert held.is_dir(), "a cache another process maps was pruned"

        out, _ = holder.communicate("go\n", timeout=60)
        assert holder.returncode == 0
        assert np.array_equal(np.array(json.loads(out)["mask"], np.uint8), expected), \
            "the corrected mask changed under the process that maps it"
    finally:
        holder.kill()
    # Once nobody maps it, the corrected cache is pruned like any other.
    ArrayCache.open(settings, ds, snapshot(settings, ds, usable, corrections=False), usable, 64).close()
    assert not held.exists()


def test_training_with_accepted_corrections_leaves_out_versions_under_review(trained_copy):
    """``--corrections accepted`` (the default) trains on accepted versions only; ``latest`` also on submitted ones;
    config.json records the choice and the versions used."""
    from core import corrections

    settings = trained_copy.settings
    ds = open_dataset(settings.data, settings.workspace)
    usable, _ = trainable_ids(ds)
    accepted_id, submitted_id = usable[0], usable[1]
    save(settings, ds, accepted_id, box_mask(load_trimap(ds, accepted_id).shape), base_version=None, source="gt",
         author="ana@example.org")
    corrections.set_review_mode(settings, "required")  # a single-user store: the OS user is its admin
    save(settings, ds, accepted_id, np.fliplr(box_mask(load_trimap(ds, accepted_id).shape)).copy(), base_version=1,
         source="correction", author="ana@example.org")  # v2, submitted: not used under "accepted"
    save(settings, ds, submitted_id, box_mask(load_trimap(ds, submitted_id).shape), base_version=None, source="gt",
         author="ana@example.org")

    for policy, expected in (("accepted", {accepted_id: 1}), ("latest", {accepted_id: 2, submitted_id: 1})):
        run = f"policy-{policy}"
        train(settings, TrainConfig(run=run, preset="quick", epochs=1, image_size=64, encoder_weights=None,
                                    use_corrections=True, corrections=policy, progress=False))
        config = json.loads((settings.run_dir(run) / "config.json").read_text())
        assert config["train"]["corrections"] == policy
        assert config["corrections"] == expected
