"""torchrun: real multi-process (gloo) training and sharded evaluation on this CPU, launched exactly as the README
and core.jobs launch them. Tiny models and images: each launch costs mostly the import of torch in every rank."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from core import groundtruth, jobs
from core.config import Settings
from core.data import ArrayCache, augment, shard
from core.dataset import open_dataset
from core.device import select_runtime
from core.distributed import launch_command
from core.evaluate import evaluate
from core.model import SegLoss, load_checkpoint
from core.runs import METRICS_FILE, PRED_DIR, eval_dir, read_metrics_csv, read_progress
from core.synth import generate
from core.train import TrainConfig, train, validate
from tests.conftest import PROJECT_ROOT, wait_for

TORCHRUN = str(Path(sys.executable).parent / "torchrun")
TINY = ["--preset", "quick", "--image-size", "64", "--encoder-weights", "none", "--batch-size", "4"]
# Two ranks share the two cores; a lost rank is noticed within seconds, a hung one within the group timeout.
ENV = {"PETSEG_THREADS": "1", "OMP_NUM_THREADS": "1", "PETSEG_DIST_TIMEOUT": "60", "PYTHONUNBUFFERED": "1"}


def env() -> dict[str, str]:
    return {**os.environ, **ENV, "PYTHONPATH": str(PROJECT_ROOT)}


def torchrun(args: list[str], settings: Settings, nproc: int = 2, timeout: float = 300) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=N -m -- core <args> --data .. --workspace ..``: the documented form."""
    command = launch_command(nproc, ["core", *args, "--data", str(settings.data),
                                     "--workspace", str(settings.workspace)])
    assert command[:5] == ["torchrun", "--standalone", f"--nproc_per_node={nproc}", "-m", "--"]
    return subprocess.run([TORCHRUN, *command[1:]], cwd=PROJECT_ROOT, env=env(), capture_output=True, text=True,
                          timeout=timeout)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


@pytest.fixture(scope="module")
def sample_run(sample_root, tmp_path_factory):
    """The real sample trained for one epoch by two gloo ranks."""
    root = tmp_path_factory.mktemp("ddp-sample")
    settings = Settings.resolve(data=sample_root, workspace=root / "workspace")
    proc = ok(torchrun(["train", "--run", "two", "--epochs", "1", *TINY], settings))
    return settings, proc


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("ddp-gen") / "data", count=24, seed=2, progress=False)


def test_split_batches_get_the_augmentation_one_process_gives_them():
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 255, (5, 32, 32, 3), dtype=np.uint8))
    masks = torch.from_numpy(rng.integers(1, 4, (5, 32, 32), dtype=np.uint8))
    whole = augment(images, masks, torch.Generator().manual_seed(7))
    rows = np.arange(5)
    parts = []
    for rank in range(2):
        mine, start = shard(rows, rank, 2)
        parts.append(augment(images[mine], masks[mine], torch.Generator().manual_seed(7), part=(start, 5)))
    assert torch.equal(torch.cat([p[0] for p in parts]), whole[0])
    assert torch.equal(torch.cat([p[1] for p in parts]), whole[1])
    # Every row exactly once, no padding, even when the split is uneven or a rank gets nothing.
    for n, world in ((7, 3), (2, 3), (8, 2)):
        pieces = [shard(np.arange(n), r, world)[0] for r in range(world)]
        assert np.array_equal(np.concatenate(pieces), np.arange(n))


def test_two_processes_train_the_real_sample_into_one_run_that_one_process_resumes(sample_run, tmp_path):
    settings, proc = sample_run
    run_dir = settings.run_dir("two")
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock", "best.pt", "config.json", "last.pt", "metrics.csv",
                                                         "progress.json", "train.log"]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["world_size"] == 2 and config["effective_batch_size"] == 4
    assert config["batch_size_per_process"] == 2 and config["effective_lr"] == config["train"]["lr"]
    log = (run_dir / "train.log").read_text()
    # Rank 0 alone writes the folder: one start line, one line per epoch, and its pid in progress.json.
    assert log.count("; 2 processes") == 1 and log.count("epoch 1/1:") == 1, log
    assert read_progress(run_dir)["status"] == "done"
    history = read_metrics_csv(run_dir)
    assert len(history) == 1 and 0.0 <= history["val_iou_pet"].iloc[0] <= 1.0
    model, cfg, meta = load_checkpoint(run_dir / "last.pt")  # a plain model: no DDP "module." prefix
    assert cfg.image_size == 64 and meta["epoch"] == 1

    # --resume in one process continues the two-process run (a private copy: the fixture is shared).
    workspace = tmp_path / "workspace"
    shutil.copytree(settings.workspace, workspace)
    one = Settings.resolve(data=settings.data, workspace=workspace)
    result = train(one, TrainConfig(run="two", epochs=2, resume=True, progress=False))
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert json.loads((one.run_dir("two") / "config.json").read_text())["world_size"] == 1
    assert load_checkpoint(one.run_dir("two") / "last.pt")[2]["epoch"] == 2


def test_the_recorded_validation_is_the_saved_models(sample_run, monkeypatch):
    """Each rank validates its part of the images. With the BatchNorm statistics its own last half-batch left it,
    rank 1 scored a model nobody saved (here pet IoU 0.1500 recorded, 0.1486 for last.pt); rank 0's statistics,
    the saved ones, must be every rank's."""
    settings, _ = sample_run
    run_dir = settings.run_dir("two")
    config = json.loads((run_dir / "config.json").read_text())
    val_ids = config["dataset"]["val_ids"]
    assert len(val_ids) == 2  # one per rank
    model, model_cfg, meta = load_checkpoint(run_dir / "last.pt")
    runtime = select_runtime("cpu", config["runtime"]["precision"])
    ds = open_dataset(settings.data, settings.workspace)
    truth = groundtruth.snapshot(settings, ds, val_ids)
    threads = torch.get_num_threads()
    monkeypatch.setenv("PETSEG_THREADS", "1")  # as each rank
    torch.set_num_threads(1)
    try:
        with ArrayCache.open(settings, ds, truth, val_ids, model_cfg.image_size, False) as cache:
            single = validate(runtime.prepare_model(model), model_cfg, runtime, cache, cache.rows(val_ids), 1,
                              SegLoss())
    finally:
        torch.set_num_threads(threads)
    recorded = read_metrics_csv(run_dir).iloc[0]
    # Per-image metrics only: the loss's Dice term is taken over a batch, and the ranks' batches are other ones.
    for key in ("val_iou_pet", "val_miou_3class", "val_pixel_accuracy"):
        assert single[key] == pytest.approx(recorded[key], abs=1e-6), (key, single[key], recorded[key])
        assert single[key] == pytest.approx(meta["metrics"][key], abs=1e-6), key


def test_sharded_evaluation_equals_one_process_row_by_row_and_reruns_only_missing_images(
        sample_run, tmp_path, monkeypatch):
    settings, _ = sample_run
    workspace = tmp_path / "workspace"
    shutil.copytree(settings.workspace, workspace)
    one = Settings.resolve(data=settings.data, workspace=workspace)
    proc = ok(torchrun(["evaluate", "--run", "two", "--split", "all", "--json"], settings))
    summary = json.loads(proc.stdout.strip().splitlines()[-1])  # printed once, by rank 0
    assert proc.stdout.count('"run": "two"') == 1 and summary["predicted"] == summary["images"] == 20

    threads = torch.get_num_threads()
    monkeypatch.setenv("PETSEG_THREADS", "1")  # as each rank: the same batches, the same kernels
    try:
        single = evaluate(one, "two", "all", progress=False)
    finally:
        torch.set_num_threads(threads)
    assert single["predicted"] == 20
    sharded_dir, single_dir = eval_dir(settings, "two", "all"), eval_dir(one, "two", "all")
    a, b = (pd.read_parquet(d / METRICS_FILE).drop(columns="evaluated_at") for d in (sharded_dir, single_dir))
    pd.testing.assert_frame_equal(a, b)
    assert not (sharded_dir / "parts").exists()
    names = sorted(p.name for p in (single_dir / PRED_DIR).iterdir())
    assert names == sorted(p.name for p in (sharded_dir / PRED_DIR).iterdir()) and len(names) == 20
    for name in names:
        assert (sharded_dir / PRED_DIR / name).read_bytes() == (single_dir / PRED_DIR / name).read_bytes(), name

    # An interruption: rank 0 had written 8 rows to the table, rank 1 had 5 in its part; 7 were never finished.
    table = pd.read_parquet(single_dir / METRICS_FILE)
    table.iloc[:8].to_parquet(single_dir / METRICS_FILE, index=False)
    (single_dir / "parts").mkdir()
    table.iloc[8:13].to_parquet(single_dir / "parts" / "rank-1.parquet", index=False)
    try:
        again = evaluate(one, "two", "all", progress=False)
    finally:
        torch.set_num_threads(threads)
    assert again["predicted"] == 7 and again["reused"] == 13 and again["images"] == 20
    pd.testing.assert_frame_equal(pd.read_parquet(single_dir / METRICS_FILE).drop(columns="evaluated_at"), b)
    assert not (single_dir / "parts").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_nodes_on_one_machine_rendezvous_and_train_one_run(generated, tmp_path):
    settings = Settings.resolve(data=generated, workspace=tmp_path / "workspace")
    endpoint = f"127.0.0.1:{free_port()}"
    nodes = []
    for node_rank in range(2):
        command = [TORCHRUN, "--nnodes=2", f"--node_rank={node_rank}", "--nproc_per_node=1", "--rdzv-backend=c10d",
                   f"--rdzv-endpoint={endpoint}", "--rdzv-id=petseg-test", "-m", "--", "core", "train",
                   "--data", str(generated), "--workspace", str(settings.workspace), "--run", "nodes",
                   "--epochs", "1", *TINY]
        nodes.append(subprocess.Popen(command, cwd=PROJECT_ROOT, env=env(), stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    config = json.loads((settings.run_dir("nodes") / "config.json").read_text())
    assert config["world_size"] == 2
    assert len(read_metrics_csv(settings.run_dir("nodes"))) == 1
    load_checkpoint(settings.run_dir("nodes") / "best.pt")


def ranks_of(launcher_pid: int) -> dict[int, int]:
    """{rank: pid} of the workers torchrun ``launcher_pid`` started (their environment names their rank)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid != launcher_pid:
                continue
            environ = dict(item.split("=", 1) for item in (entry / "environ").read_text().split("\0") if "=" in item)
        except (OSError, IndexError, ValueError):
            continue
        if "RANK" in environ:
            found[int(environ["RANK"])] = int(entry.name)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_killed_rank_ends_the_job_with_a_clear_error_and_a_loadable_checkpoint(generated, tmp_path):
    settings = Settings.resolve(data=generated, workspace=tmp_path / "workspace")
    command = launch_command(2, ["core", "train", "--data", str(generated), "--workspace", str(settings.workspace),
                                 "--run", "doomed", "--epochs", "200", *TINY])
    launcher = subprocess.Popen([TORCHRUN, *command[1:]], cwd=PROJECT_ROOT, env=env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    run_dir = settings.run_dir("doomed")
    try:
        # (A launch that fails before its first epoch ends the wait at once; its output says why.)
        wait_for(lambda: (run_dir / "metrics.csv").is_file() or launcher.poll() is not None, 240, "the first epoch")
        assert launcher.poll() is None, launcher.communicate()[0][-3000:]
        ranks = wait_for(lambda: (r := ranks_of(launcher.pid)) and len(r) == 2 and r, 10, "both ranks")
        os.kill(ranks[1], signal.SIGKILL)
        killed = time.monotonic()
        output = launcher.communicate(timeout=90)[0]
        ended = time.monotonic() - killed
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode != 0
    assert ended < 60, f"the job took {ended:.0f} s to end after a rank was killed"
    assert not alive(ranks[0]), "rank 0 outlived the job"
    assert "Signal 9 (SIGKILL)" in output or "exitcode  : -9" in output, output[-3000:]
    progress = read_progress(run_dir)
    assert progress["status"] == "failed" and progress["error"], progress
    assert "rank 0 of 2 failed" in (run_dir / "train.log").read_text()
    model, cfg, meta = load_checkpoint(run_dir / "last.pt")
    assert meta["epoch"] >= 1


def test_a_job_with_two_processes_cancels_every_rank_and_resumes(generated, tmp_path, monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    settings = Settings.resolve(data=generated, workspace=tmp_path / "workspace")
    config = TrainConfig(run="shared", preset="quick", epochs=200, image_size=64, encoder_weights=None,
                         batch_size=4, progress=False).to_dict()
    job = jobs.start(settings, "train", {**config, "processes": 2})
    assert job.config == {**config, "processes": 2}
    assert job.command[:5] == ["torchrun", "--standalone", "--nproc_per_node=2", "-m", "--"]
    assert job.command[5:7] == ["core", "train"]
    run_dir = settings.run_dir("shared")
    try:
        wait_for(lambda: len(read_metrics_csv(run_dir)) >= 1 or not jobs.status(settings, job.id).active, 240,
                 "the first epoch")
        assert jobs.status(settings, job.id).active, jobs.log_tail(settings, job.id)
        worker = json.loads((jobs.jobs_dir(settings) / job.id / "worker.json").read_text())["pid"]
        ranks = ranks_of(worker)
        assert sorted(ranks) == [0, 1]
        final = jobs.cancel(settings, job.id, timeout=60)
    finally:
        jobs.cancel(settings, job.id, timeout=5)
    assert final.state == "cancelled", jobs.log_tail(settings, job.id)
    assert not any(alive(pid) for pid in ranks.values()), "a rank outlived the cancelled job"
    assert read_progress(run_dir)["status"] == "interrupted"
    done = len(read_metrics_csv(run_dir))

    again = jobs.restart(settings, job.id)
    assert again.config == {**config, "resume": True, "processes": 2}
    try:
        wait_for(lambda: len(read_metrics_csv(run_dir)) > done, 240, "an epoch after the resume")
    finally:
        jobs.cancel(settings, again.id, timeout=60)
    assert "resuming run shared after epoch" in (run_dir / "train.log").read_text()


def test_the_train_page_starts_a_torchrun_job_with_the_chosen_processes(monkeypatch, trained_copy):
    from tests.test_pages_train import tiny_form, train_page

    settings = trained_copy.settings
    at = tiny_form(train_page(monkeypatch, trained_copy))
    assert at.number_input(key="train_processes").value == (torch.cuda.device_count() or 1)
    at.number_input(key="train_processes").set_value(2).run()
    at.button(key="train_start").click().run()
    assert not at.exception
    job = jobs.list_jobs(settings, "train")[0].job
    try:
        assert job.config == {**TrainConfig(run="quick-1", preset="quick", encoder="resnet18", image_size=64,
                                            epochs=1, encoder_weights=None).to_dict(), "processes": 2}
        assert job.command[:5] == ["torchrun", "--standalone", "--nproc_per_node=2", "-m", "--"]
        assert job.argv[1:3] == ["-m", "torch.distributed.run"] and job.argv[-3:-1] == ["core.jobs", "work"]
    finally:
        jobs.cancel(settings, job.id)


@pytest.mark.parametrize("value", [0, -1, "2", 2.0, True, None, 100000])
def test_a_bad_number_of_processes_is_refused_before_anything_starts(tmp_path, value):
    settings = Settings.resolve(data=tmp_path / "data", workspace=tmp_path / "ws")
    with pytest.raises(jobs.PetSegError, match="processes must be"):
        jobs.start(settings, "train", {"run": "x", "preset": "quick", "processes": value})
    assert jobs.list_jobs(settings) == []
