"""Background jobs: structured configs, locks, cancel, and never trusting a pid that may belong to someone else."""

import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from core import jobs
from core.cli import build_parser
from core.config import Settings
from core.process import process_token
from core.runs import PROGRESS_FILE, run_status
from core.train import TrainConfig, config_from_args
from tests.conftest import wait_for

SLEEPER = [sys.executable, "-c", "import time\nprint('working', flush=True)\ntime.sleep(60)"]
# Like the train CLI: SIGINT becomes a clean stop after the current step.
POLITE = [
    sys.executable,
    "-c",
    "import time\ntry:\n    print('step 1', flush=True)\n    time.sleep(60)\n"
    "except KeyboardInterrupt:\n    print('stopped cleanly', flush=True)\n    raise SystemExit(130)",
]


@pytest.fixture
def settings(tmp_path):
    return Settings.resolve(data=tmp_path / "data", workspace=tmp_path / "ws")


@pytest.fixture
def stranger():
    """A live process that has nothing to do with any job (as a process that got a dead job's pid)."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def write_job(settings, job_id: str, pid: int, pid_start: str | None = None):
    """A job folder as a runner leaves it when it is killed without a trace (no exit.json)."""
    folder = jobs.jobs_dir(settings) / job_id
    folder.mkdir(parents=True)
    (folder / "job.json").write_text(json.dumps({"id": job_id, "kind": "train", "run": "gone", "argv": ["x"],
                                                 "started_at": time.time(), "pid": pid, "pid_start": pid_start}))
    return folder


def test_job_runs_in_background_and_reports_success_with_its_log(settings):
    job = jobs.spawn(settings, "evaluate", [sys.executable, "-c", "print('hello from the job')"], run="r1")
    final = wait_for(lambda: (s := jobs.status(settings, job.id)) and not s.active and s)
    assert final.state == "succeeded" and final.returncode == 0
    assert "hello from the job" in jobs.log_tail(settings, job.id)
    assert [s.job.id for s in jobs.list_jobs(settings)] == [job.id]


def test_jobs_are_listed_newest_first_even_within_one_second(settings, stranger):
    # Ids name the second only; their random tails must not decide which job is the latest.
    older = write_job(settings, "20240101-000000-ffffff", stranger.pid)
    newer = write_job(settings, "20240101-000000-000000", stranger.pid)
    record = json.loads((newer / "job.json").read_text())
    (newer / "job.json").write_text(json.dumps({**record, "started_at": record["started_at"] + 0.5}))
    assert [s.job.id for s in jobs.list_jobs(settings)] == [newer.name, older.name]


def test_failing_command_is_reported_failed_with_its_exit_code(settings):
    job = jobs.spawn(settings, "train", [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"])
    final = wait_for(lambda: (s := jobs.status(settings, job.id)) and not s.active and s)
    assert (final.state, final.returncode) == ("failed", 3)
    assert "boom" in jobs.log_tail(settings, job.id)


def test_one_job_per_kind_at_a_time(settings):
    first = jobs.spawn(settings, "train", SLEEPER)
    try:
        assert jobs.status(settings, first.id).state == "running"
        with pytest.raises(jobs.JobBusy, match="already running"):
            jobs.spawn(settings, "train", SLEEPER)
        other_kind = jobs.spawn(settings, "evaluate", [sys.executable, "-c", "pass"])
        wait_for(lambda: not jobs.status(settings, other_kind.id).active)
    finally:
        jobs.cancel(settings, first.id)


def test_cancel_stops_the_command_cleanly_and_frees_the_lock(settings):
    job = jobs.spawn(settings, "train", POLITE)
    wait_for(lambda: "step 1" in jobs.log_tail(settings, job.id))
    final = jobs.cancel(settings, job.id)
    assert final.state == "cancelled"
    assert "stopped cleanly" in jobs.log_tail(settings, job.id)
    again = jobs.spawn(settings, "train", [sys.executable, "-c", "pass"])
    assert wait_for(lambda: jobs.status(settings, again.id).state == "succeeded")


def test_a_killed_job_is_failed_and_its_lock_is_released(settings):
    job = jobs.spawn(settings, "train", SLEEPER)
    wait_for(lambda: "working" in jobs.log_tail(settings, job.id))
    os.killpg(job.pid, signal.SIGKILL)  # runner and command die without writing exit.json
    final = wait_for(lambda: (s := jobs.status(settings, job.id)) and not s.active and s)
    assert final.state == "failed" and final.returncode is None
    assert jobs.active(settings, "train") is None
    again = jobs.spawn(settings, "train", [sys.executable, "-c", "pass"])
    assert wait_for(lambda: jobs.status(settings, again.id).state == "succeeded")


def test_unknown_job_ids_are_refused(settings):
    with pytest.raises(jobs.PetSegError):
        jobs.status(settings, "../../etc")
    with pytest.raises(jobs.PetSegError):
        jobs.spawn(settings, "format-disk", SLEEPER)


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"id": "x"}'])
def test_a_job_folder_with_an_unreadable_record_is_not_a_job(settings, content):
    folder = jobs.jobs_dir(settings) / "20240101-000000-bad001"
    folder.mkdir(parents=True)
    (folder / "job.json").write_text(content)
    assert jobs.list_jobs(settings) == []
    with pytest.raises(jobs.PetSegError, match="not a job record"):
        jobs.status(settings, folder.name)


def test_a_dead_job_whose_pid_now_belongs_to_another_process_is_failed_and_cancel_spares_that_process(
        settings, stranger):
    write_job(settings, "20240101-000000-dead01", stranger.pid)  # e.g. after a reboot: the pid is the stranger's
    assert jobs.status(settings, "20240101-000000-dead01").state == "failed"
    assert jobs.active(settings, "train") is None
    assert jobs.cancel(settings, "20240101-000000-dead01", timeout=2).state == "failed"
    time.sleep(0.2)
    assert stranger.poll() is None, "cancel signalled a process that is not the job"
    again = jobs.spawn(settings, "train", [sys.executable, "-c", "pass"])  # the kind is free
    assert wait_for(lambda: jobs.status(settings, again.id).state == "succeeded")


def test_cancel_signals_only_a_process_whose_start_time_matches_the_record(settings, stranger):
    # The job's lock is held (the job is alive), but the recorded pid is the stranger's with another start time.
    folder = write_job(settings, "20240101-000000-live01", stranger.pid, pid_start="another-boot:12345")
    lock = os.open(folder / "lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        assert jobs.status(settings, "20240101-000000-live01").state == "running"  # the lock is the truth
        jobs.cancel(settings, "20240101-000000-live01", timeout=1)
        time.sleep(0.2)
        assert stranger.poll() is None, "cancel signalled a process that is not the job"
    finally:
        os.close(lock)
    assert jobs.status(settings, "20240101-000000-live01").state == "failed"


def test_a_fresh_training_progress_with_a_reused_pid_is_interrupted(tmp_path, stranger):
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    def progress(pid: int, pid_start: str | None) -> str:
        (run_dir / PROGRESS_FILE).write_text(json.dumps({"status": "training", "updated_at": time.time(),
                                                         "pid": pid, "pid_start": pid_start}))
        return run_status(run_dir, epochs_done=1, epochs_planned=3)

    # The trainer died a moment ago and the stranger got its pid: its start time gives it away.
    assert progress(stranger.pid, "another-boot:12345") == "interrupted"
    assert progress(stranger.pid, None) == "training"  # only the timestamp can tell (older progress files)
    assert progress(os.getpid(), process_token(os.getpid())) == "training"
    assert process_token(stranger.pid) != process_token(os.getpid())


def test_start_stores_the_structured_config_and_its_cli_twin_means_the_same(settings):
    config = TrainConfig(run="twin", preset="quick", epochs=3, image_size=96, encoder_weights=None, seed=5,
                         use_corrections=True, resume=True)
    job = jobs.start(settings, "train", config.to_dict())
    try:
        stored = json.loads((jobs.jobs_dir(settings) / job.id / "job.json").read_text())
        assert stored["config"] == config.to_dict() == job.config
        assert stored["data"] == str(settings.data)
        # The command shown to the user parses back to the same config.
        assert job.command[:4] == ["python", "-m", "core", "train"]
        args = build_parser().parse_args(job.command[3:])
        assert args.workspace == str(settings.workspace)
        assert config_from_args(args).resolved() == config.resolved()  # the same training
        # The runner writes it first, before the worker has imported anything.
        assert wait_for(lambda: jobs.log_tail(settings, job.id).startswith(f"$ {shlex.join(job.command)}\n"))
    finally:
        jobs.cancel(settings, job.id)


@pytest.mark.parametrize(("kind", "config", "message"), [
    ("train", {"run": "x", "epoch": 3}, "unknown train setting"),
    ("train", {"preset": "quick"}, "needs a run name"),
    ("train", {"run": "../up", "preset": "quick"}, "not allowed"),
    ("train", {"run": "x", "preset": "huge"}, "unknown preset"),
    ("train", {"run": "x", "image_size": "big"}, "train config"),
    ("train", ["--run", "x"], "must be a dict"),
    ("evaluate", {"run": "x", "split": "val"}, "unknown split"),
    ("evaluate", {"run": "x", "checkpoint": "../../etc/passwd"}, "unknown checkpoint"),
    ("evaluate", {"split": "test"}, "not allowed"),
    ("crossval", {"run": "x", "folds": 1}, "folds must be"),
    ("crossval", {"run": "x", "folds": 3, "epoch": 3}, "unknown train setting"),
    ("nonsense", {"run": "x"}, "unknown job kind"),
])
def test_a_bad_config_is_refused_before_anything_starts(settings, kind, config, message):
    with pytest.raises(jobs.PetSegError, match=message):
        jobs.start(settings, kind, config)
    assert jobs.list_jobs(settings) == []


def test_a_job_trains_the_run_with_exactly_its_stored_config(trained_copy):
    settings = trained_copy.settings
    # Values a CLI flag cannot express (min_lr, val_fraction, augment) prove the worker used the config itself.
    config = TrainConfig(run="from-config", preset="quick", epochs=1, image_size=64, encoder_weights=None,
                         batch_size=4, lr=3e-4, min_lr=2e-5, val_fraction=0.2, augment=False, seed=11,
                         max_images=20, progress=False)
    job = jobs.start(settings, "train", config.to_dict())
    try:
        final = wait_for(lambda: (s := jobs.status(settings, job.id)) and not s.active and s, 180, "training")
    finally:
        jobs.cancel(settings, job.id)
    assert final.state == "succeeded", jobs.log_tail(settings, job.id)
    written = json.loads((settings.run_dir("from-config") / "config.json").read_text())
    # config.json's train section is the config, plus what the encoder was actually loaded with (issue 18 item 2).
    assert {k: v for k, v in written["train"].items() if k != "pretrained"} == config.resolved().to_dict()
    assert written["train"]["pretrained"] is False
    assert written["dataset"]["root"] == str(settings.data)
    log = jobs.log_tail(settings, job.id)
    assert '"min_lr": 2e-05' in log.splitlines()[1]  # the log names what the command line cannot say


def test_restart_resumes_a_stopped_train_job_from_its_config(settings):
    # (Without an epoch to resume, restart starts afresh: the failed-job test of the Train page.)
    config = TrainConfig(run="again", preset="quick", epochs=1, image_size=64, encoder_weights=None).to_dict()
    job = jobs.start(settings, "train", config)
    assert jobs.cancel(settings, job.id).state == "cancelled"
    last = settings.run_dir("again") / "last.pt"
    last.parent.mkdir(parents=True, exist_ok=True)
    last.write_bytes(b"")  # as if an epoch had finished
    again = jobs.restart(settings, job.id)
    assert again.id != job.id and again.config == {**config, "resume": True}
    jobs.cancel(settings, again.id)
    command_only = jobs.spawn(settings, "train", [sys.executable, "-c", "pass"])
    wait_for(lambda: not jobs.status(settings, command_only.id).active)
    with pytest.raises(jobs.PetSegError, match="not started from a config"):
        jobs.restart(settings, command_only.id)
