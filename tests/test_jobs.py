import os
import signal
import sys

import pytest

from core import jobs
from core.config import Settings
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




def test_job_runs_in_background_and_reports_success_with_its_log(settings):
    job = jobs.spawn(settings, "evaluate", [sys.executable, "-c", "print('hello from the job')"], run="r1")
    final = wait_for(lambda: (s := jobs.status(settings, job.id)) and not s.active and s)
    assert final.state == "succeeded" and final.returncode == 0
    assert "hello from the job" in jobs.log_tail(settings, job.id)
    assert [s.job.id for s in jobs.list_jobs(settings)] == [job.id]


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
