"""Background jobs (train, evaluate) as separate processes that outlive the page that started them.

    >>> job = start(settings, "train", ["--data", "d", "--run", "quick"])   # python -m core train ...
    >>> status(settings, job.id).state          # 'running', then 'succeeded' / 'failed' / 'cancelled'
    >>> cancel(settings, job.id)

Each job lives in ``<workspace>/jobs/<id>/``: ``job.json`` (what was started), ``log.txt`` (its output) and
``exit.json`` (how it ended, written by the runner). One job of each kind runs per workspace at a time:
the runner holds an ``flock`` on ``jobs/<kind>.lock`` for its whole life, and the kernel releases it when the
process dies however it dies, so a crashed job can never leave the lock stuck.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from core.atomic import atomic_write_text
from core.config import Settings
from core.errors import PetSegError

KINDS = ("train", "evaluate")


class JobBusy(PetSegError):
    """Another job of the same kind is running in this workspace."""


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    argv: list[str]
    run: str | None
    started_at: float
    pid: int


@dataclass(frozen=True)
class JobStatus:
    job: Job
    state: str  # running | succeeded | failed | cancelled
    returncode: int | None
    finished_at: float | None

    @property
    def active(self) -> bool:
        return self.state == "running"


def jobs_dir(settings: Settings) -> Path:
    return settings.workspace / "jobs"


def _lock_path(settings: Settings, kind: str) -> Path:
    return jobs_dir(settings) / f"{kind}.lock"


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on ``path``, or None when someone else holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def start(settings: Settings, kind: str, args: list[str], run: str | None = None) -> Job:
    """Start ``python -m core <kind> <args>`` in the background; raise JobBusy if one is running."""
    return spawn(settings, kind, [sys.executable, "-m", "core", kind, *args], run=run)


def spawn(settings: Settings, kind: str, argv: list[str], run: str | None = None) -> Job:
    """Start any command as a job of ``kind`` (holding that kind's lock for its whole life)."""
    if kind not in KINDS:
        raise PetSegError(f"unknown job kind {kind!r}: use one of {', '.join(KINDS)}")
    running = active(settings, kind)
    if running is not None:
        raise JobBusy(
            f"a {kind} job is already running ({running.job.run or running.job.id}, pid {running.job.pid}): "
            "wait for it or cancel it first"
        )
    job_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    folder = jobs_dir(settings) / job_id
    folder.mkdir(parents=True)
    # The lock is taken here, so two clicks cannot both start, and handed to the runner as an inherited fd:
    # it stays held until every process holding it has exited, however they exit.
    fd = _try_lock(_lock_path(settings, kind))
    if fd is None:
        raise JobBusy(f"a {kind} job is starting or running in this workspace: wait for it or cancel it first")
    try:
        with open(folder / "log.txt", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "core.jobs", str(folder), str(fd), "--", *argv],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, pass_fds=(fd,),
                start_new_session=True,  # survives the Streamlit server
                cwd=Path(__file__).resolve().parents[1],
                env=dict(os.environ, PYTHONUNBUFFERED="1"),
            )
        job = Job(id=job_id, kind=kind, argv=argv, run=run, started_at=time.time(), pid=proc.pid)
        atomic_write_text(folder / "job.json", json.dumps(asdict(job)))
    finally:
        os.close(fd)
    return job


def list_jobs(settings: Settings, kind: str | None = None) -> list[JobStatus]:
    """Every job in the workspace, newest first."""
    folder = jobs_dir(settings)
    if not folder.is_dir():
        return []
    found = []
    for entry in sorted(folder.iterdir(), reverse=True):
        if entry.is_dir() and (entry / "job.json").exists():
            job_status = status(settings, entry.name)
            if kind is None or job_status.job.kind == kind:
                found.append(job_status)
    return found


def active(settings: Settings, kind: str) -> JobStatus | None:
    for job_status in list_jobs(settings, kind):
        if job_status.active:
            return job_status
    return None


def status(settings: Settings, job_id: str) -> JobStatus:
    folder = _job_folder(settings, job_id)
    job = Job(**json.loads((folder / "job.json").read_text()))
    exit_info = _read_json(folder / "exit.json")
    if exit_info is not None:
        code = exit_info["returncode"]
        state = "succeeded" if code == 0 else "cancelled" if exit_info.get("cancelled") else "failed"
        return JobStatus(job, state, code, exit_info["finished_at"])
    if process_alive(job.pid):
        return JobStatus(job, "running", None, None)
    # The runner died without writing exit.json (killed, machine crash): the job failed.
    return JobStatus(job, "failed", None, None)


def cancel(settings: Settings, job_id: str, timeout: float = 30.0) -> JobStatus:
    """Stop the job cleanly (SIGTERM to its process group); the last complete checkpoint stays usable."""
    job_status = status(settings, job_id)
    if not job_status.active:
        return job_status
    with contextlib.suppress(ProcessLookupError):
        os.kill(job_status.job.pid, signal.SIGTERM)  # the runner forwards it to the command as SIGINT
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job_status = status(settings, job_id)
        if not job_status.active:
            return job_status
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(job_status.job.pid, signal.SIGKILL)
    return status(settings, job_id)


def log_tail(settings: Settings, job_id: str, max_bytes: int = 8000) -> str:
    """The end of the job's output; tqdm's carriage-return updates collapsed to their last state."""
    path = _job_folder(settings, job_id) / "log.txt"
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            text = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def _job_folder(settings: Settings, job_id: str) -> Path:
    folder = jobs_dir(settings) / job_id
    if "/" in job_id or job_id.startswith(".") or not (folder / "job.json").exists():
        raise PetSegError(f"no job {job_id[:40]!r} in this workspace")
    return folder


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return True


def _run(folder: Path, lock_fd: int, argv: list[str]) -> int:
    """The runner: keep the inherited lock, run the command, record how it ended."""
    child = subprocess.Popen(argv, pass_fds=(lock_fd,))
    cancelled = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal cancelled
        cancelled = True
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGINT)  # the CLI turns SIGINT into a clean stop after the current step

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    returncode = child.wait()
    atomic_write_text(
        folder / "exit.json",
        json.dumps({"returncode": returncode, "cancelled": cancelled, "finished_at": time.time()}),
    )
    return 0


if __name__ == "__main__":
    _folder, _lock_fd, _sep, *_argv = sys.argv[1:]
    sys.exit(_run(Path(_folder), int(_lock_fd), _argv))
