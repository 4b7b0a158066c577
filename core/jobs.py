"""Background jobs (train, evaluate, crossval): processes that outlive the page that started them, started from a
structured config stored in ``job.json``.

    >>> from core import jobs
    >>> from core.train import TrainConfig
    >>> job = jobs.start(settings, "train", TrainConfig(run="quick-1", preset="quick", epochs=5).to_dict())
    >>> shlex.join(job.command)            # its CLI twin, also the first line of its log
    'python -m core train --data ... --workspace ... --run quick-1 --preset quick --epochs 5'
    >>> jobs.status(settings, job.id).state     # 'running', then 'succeeded' / 'failed' / 'cancelled'
    >>> jobs.cancel(settings, job.id)           # a clean stop after the current step
    >>> jobs.restart(settings, job.id)          # the same config again; a train job resumes from last.pt
    >>> jobs.start(settings, "train", {**config, "processes": 2})   # through torchrun, 2 ranks on this machine

Each job lives in ``<workspace>/jobs/<id>/``: ``job.json`` (kind, config, CLI twin; written before anything
runs), ``log.txt`` (its output), ``lock``, ``worker.json`` (which process does the work) and ``exit.json`` (how
it ended). :func:`start` spawns the runner (``python -m core.jobs run <folder> ...``) in a new session, so the
runner's pid names the job's process group; the runner starts the worker (``python -m core.jobs work
<folder>``), which reads job.json and calls the core function of its kind (:data:`KINDS`), then records the
exit. Cancel sends SIGTERM to the runner, which passes it on to the worker as SIGINT: the CLI's clean stop.
With ``"processes": N`` (N > 1) in the config the worker is torchrun (:func:`core.distributed.launch_command`),
which runs ``python -m core.jobs work <folder>`` in N ranks and passes the SIGINT on to every rank.

What is trusted:
- A job runs while its ``lock`` is held. :func:`start` takes an exclusive ``flock`` on it before job.json exists
  and runner and worker inherit it, so the kernel releases it only when the last of them dies, however it dies.
  A recorded pid alone proves nothing: after a reboot or a killed runner it can belong to anything.
- One job of each kind per workspace: the same inherited lock on ``jobs/<kind>.lock``.
- A signal goes only to a process whose identity (:func:`core.process.process_token`: boot id and start time,
  recorded when it started) still matches, sent through a pidfd so the check and the signal name the same
  process.
Identity needs Linux's ``/proc``; elsewhere a job still runs and ends, but Cancel cannot verify, so it does not
signal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core import locks
from core.atomic import atomic_write_text
from core.config import Settings, check_run_name
from core.errors import PetSegError
from core.process import process_group, process_token, signal_if_same

JOB_FILE = "job.json"
LOG_FILE = "log.txt"
LOCK_FILE = "lock"
WORKER_FILE = "worker.json"
EXIT_FILE = "exit.json"


class JobBusy(PetSegError):
    """Another job of the same kind is running in this workspace."""


# --- the kinds ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """A job kind: how its config is checked, what the worker calls, its CLI twin, and how it starts again."""

    check: Callable[[dict[str, Any]], dict[str, Any]]  # the complete config, or PetSegError
    run: Callable[[Settings, dict[str, Any], str | None], None]  # in the worker: call the core function as the actor
    flags: Callable[[dict[str, Any]], tuple[list[str], dict[str, Any]]]  # CLI arguments, values without a flag
    again: Callable[[Settings, dict[str, Any]], dict[str, Any]] = lambda _settings, config: config


def _refuse_unknown(kind: str, config: object, known: set[str]) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise PetSegError(f"a {kind} job's config must be a dict, not {type(config).__name__}")
    unknown = sorted(str(k)[:40] for k in config if k not in known)
    if unknown:
        raise PetSegError(f"unknown {kind} setting(s) {', '.join(unknown)}: use {', '.join(sorted(known))}")
    return config


# TrainConfig field -> `python -m core train` flag (fields not listed have no flag)
_TRAIN_FLAGS = {"preset": "--preset", "epochs": "--epochs", "image_size": "--image-size",
                "batch_size": "--batch-size", "encoder": "--encoder", "encoder_weights": "--encoder-weights",
                "lr": "--lr", "seed": "--seed", "precision": "--precision", "device": "--device",
                "max_images": "--max-images", "corrections": "--corrections"}
_TRAIN_SWITCHES = {"resume": "--resume", "use_corrections": "--use-corrections"}
_TRAIN_CLI_ONLY = {"run", "progress"}  # the run is always named; tqdm bars are a matter of the terminal


def _train_check(config: dict[str, Any]) -> dict[str, Any]:
    from core.train import TrainConfig

    _refuse_unknown("train", config, set(TrainConfig.__dataclass_fields__))
    if "run" not in config:
        raise PetSegError("a train job needs a run name")
    cfg = TrainConfig.from_dict(config)
    try:
        cfg.resolved()  # a bad preset, run name or size is refused here, not in the log of a failed job
    except (TypeError, ValueError) as exc:
        raise PetSegError(f"train config: {exc}") from exc
    return cfg.to_dict()


def _train_run(settings: Settings, config: dict[str, Any], actor: str | None) -> None:
    from core.train import TrainConfig, train

    train(settings, TrainConfig.from_dict(config), actor=actor)


def _train_flags(config: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    from core.train import TrainConfig

    default = TrainConfig(run=config["run"]).to_dict()
    args = ["--run", config["run"]]
    for name, flag in _TRAIN_FLAGS.items():
        if config[name] != default[name]:
            args += [flag, "none" if config[name] is None else str(config[name])]
    args += [flag for name, flag in _TRAIN_SWITCHES.items() if config[name]]
    flagged = set(_TRAIN_FLAGS) | set(_TRAIN_SWITCHES) | _TRAIN_CLI_ONLY
    return args, {k: v for k, v in config.items() if k not in flagged and v != default[k]}


def _train_again(settings: Settings, config: dict[str, Any]) -> dict[str, Any]:
    # Continue after the last finished epoch; stopped before the first one ended, start afresh.
    return {**config, "resume": (settings.run_dir(config["run"]) / "last.pt").is_file()}


EVALUATE_DEFAULTS = {"split": "test", "checkpoint": "best", "corrections": "accepted"}


def _evaluate_check(config: dict[str, Any]) -> dict[str, Any]:
    from core.runs import EVAL_SPLITS

    full = {**EVALUATE_DEFAULTS, **_refuse_unknown("evaluate", config, {"run", *EVALUATE_DEFAULTS})}
    check_run_name(full.get("run"))
    if full["split"] not in EVAL_SPLITS:
        raise PetSegError(f"unknown split {str(full['split'])[:40]!r}: use one of {', '.join(EVAL_SPLITS)}")
    if full["checkpoint"] not in ("best", "last"):
        raise PetSegError(f"unknown checkpoint {str(full['checkpoint'])[:40]!r}: use best or last")
    return full


def _evaluate_run(settings: Settings, config: dict[str, Any], actor: str | None) -> None:
    from core.distributed import current
    from core.evaluate import evaluate

    summary = evaluate(settings, run=config["run"], split=config["split"], checkpoint=config["checkpoint"],
                       corrections=config.get("corrections", "accepted"), actor=actor)
    if current().is_main:  # under torchrun every rank has it
        print(json.dumps(summary), flush=True)


def _evaluate_flags(config: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    return ["--run", config["run"], "--split", config["split"], "--checkpoint", config["checkpoint"],
            "--corrections", config.get("corrections", "accepted")], {}


def _crossval_check(config: dict[str, Any]) -> dict[str, Any]:
    from core.crossval import MAX_FOLDS, MIN_FOLDS, fold_run

    if not isinstance(config, dict):
        raise PetSegError(f"a crossval job's config must be a dict, not {type(config).__name__}")
    folds = config.get("folds", 5)
    if isinstance(folds, bool) or not isinstance(folds, int) or not MIN_FOLDS <= folds <= MAX_FOLDS:
        raise PetSegError(f"folds must be a whole number {MIN_FOLDS}-{MAX_FOLDS}, not {str(folds)[:20]}")
    train_config = _train_check({k: v for k, v in config.items() if k != "folds"})
    fold_run(train_config["run"], folds)  # the fold runs' names must be valid too
    return {**train_config, "folds": folds}


def _crossval_run(settings: Settings, config: dict[str, Any], actor: str | None) -> None:
    from core.crossval import crossval
    from core.train import TrainConfig

    train_config = {k: v for k, v in config.items() if k != "folds"}
    summary = crossval(settings, TrainConfig.from_dict(train_config), folds=int(config["folds"]), actor=actor)
    print(json.dumps(summary), flush=True)


def _crossval_flags(config: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    args, rest = _train_flags({k: v for k, v in config.items() if k != "folds"})
    return [*args, "--folds", str(config["folds"])], rest


def _crossval_again(settings: Settings, config: dict[str, Any]) -> dict[str, Any]:
    # Finished folds are kept; an interrupted one continues from its last.pt (core.crossval).
    return {**config, "resume": (settings.run_dir(config["run"]) / "crossval.json").is_file()}


# A new kind is one more row; the kinds in _DISTRIBUTED_KINDS may also run through torchrun.
KINDS: dict[str, Kind] = {
    "train": Kind(check=_train_check, run=_train_run, flags=_train_flags, again=_train_again),
    "evaluate": Kind(check=_evaluate_check, run=_evaluate_run, flags=_evaluate_flags),
    "crossval": Kind(check=_crossval_check, run=_crossval_run, flags=_crossval_flags, again=_crossval_again),
}


# --- jobs and their state ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    run: str | None
    argv: list[str]  # what the worker executes
    started_at: float
    data: str = ""  # the dataset root (the workspace is where the job folder is)
    config: dict[str, Any] = field(default_factory=dict)  # the kind's config; empty for a command run by spawn()
    command: list[str] = field(default_factory=list)  # the CLI twin (``python -m core <kind> ...``)
    pid: int | None = None  # the runner; its process group is the job's
    pid_start: str | None = None  # the runner's process_token, to tell it from a later process with its pid
    actor: str | None = None  # who started it (core.users: the job runs with their role); None = the OS user

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


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


def start(settings: Settings, kind: str, config: dict[str, Any], *, actor: str | None = None) -> Job:
    """Start a ``kind`` job from its structured config (checked first) as ``actor`` (its role is checked now and
    again when the job runs); raise JobBusy if one is running.

    ``config["processes"]`` (train and evaluate; default 1): more than one runs the job through torchrun.
    The start is recorded in the audit trail as ``actor`` (default: the OS user) doing ``kind``.
    """
    # torch and the store (SQLAlchemy): only for the process that starts a job, never for its runner's start-up
    from core import users
    from core.distributed import launch_command

    spec = _kind(kind)
    users.require(settings, actor, kind)
    processes, config = _processes(kind, config)
    config = spec.check(config)
    args, _ = spec.flags(config)
    cli = ["core", *(["--as", actor] if actor else []), kind, "--data", str(settings.data),
           "--workspace", str(settings.workspace), *args]
    if processes == 1:
        command = ["python", "-m", *cli]
        argv_for = lambda folder: [sys.executable, "-m", "core.jobs", "work", str(folder)]  # noqa: E731
    else:
        command = launch_command(processes, cli)
        argv_for = lambda folder: launch_command(processes, ["core.jobs", "work", str(folder)],  # noqa: E731
                                                 python=sys.executable)
        config = {**config, PROCESSES: processes}
    job = _launch(settings, kind, argv_for, run=config.get("run"), config=config, command=command, actor=actor)
    # Imported here: the runner and worker processes import this module and must start fast (no pandas/SQL).
    from core import audit

    audit.record_now(settings, actor, kind, run=config.get("run"), job=job.id, via="job")
    return job


PROCESSES = "processes"  # in a job's config: how many torchrun ranks run it (absent: one process)
_DISTRIBUTED_KINDS = ("train", "evaluate")


def _processes(kind: str, config: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """The number of processes a job asks for, and its config without it."""
    if not isinstance(config, dict) or PROCESSES not in config:
        return 1, config
    value = config[PROCESSES]
    rest = {k: v for k, v in config.items() if k != PROCESSES}
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1024:
        raise PetSegError(f"processes must be a whole number from 1 to 1024, not {str(value)[:20]!r}")
    if value > 1 and kind not in _DISTRIBUTED_KINDS:
        raise PetSegError(f"a {kind} job runs in one process: leave out processes")
    return value, rest


def spawn(settings: Settings, kind: str, argv: list[str], run: str | None = None) -> Job:
    """Run any command as a job of ``kind`` (same lock, log, cancel and exit record as :func:`start`)."""
    _kind(kind)
    return _launch(settings, kind, lambda _folder: list(argv), run=run, config={}, command=list(argv))


def restart(settings: Settings, job_id: str, *, actor: str | None = None) -> Job:
    """Start a stopped job again from its stored config (a train job resumes from its last finished epoch)."""
    job = status(settings, job_id).job
    if not job.config:
        raise PetSegError(f"job {job.id} was not started from a config: start it again from the form")
    return start(settings, job.kind, _kind(job.kind).again(settings, job.config), actor=actor)


def _kind(kind: str) -> Kind:
    if kind not in KINDS:
        raise PetSegError(f"unknown job kind {str(kind)[:40]!r}: use one of {', '.join(KINDS)}")
    return KINDS[kind]


def _launch(settings: Settings, kind: str, argv_for: Callable[[Path], list[str]], *, run: str | None,
            config: dict[str, Any], command: list[str], actor: str | None = None) -> Job:
    running = active(settings, kind)
    if running is not None:
        raise JobBusy(
            f"a {kind} job is already running ({running.job.run or running.job.id}, pid {running.job.pid}): "
            "wait for it or cancel it first"
        )
    # Both locks are taken here, so two clicks cannot both start, and handed to the runner as inherited fds:
    # they stay held until every process holding them has exited, however they exit.
    kind_lock = locks.acquire(jobs_dir(settings) / f"{kind}.lock", wait=False)
    deadline = time.monotonic() + 1.0
    while kind_lock is None and time.monotonic() < deadline:  # a job that just ended may still be closing its fds
        time.sleep(0.05)
        kind_lock = locks.acquire(jobs_dir(settings) / f"{kind}.lock", wait=False)
    if kind_lock is None:
        raise JobBusy(f"a {kind} job is starting or running in this workspace: wait for it or cancel it first")
    job_lock = None
    try:
        job_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        folder = jobs_dir(settings) / job_id
        folder.mkdir(parents=True)
        job_lock = locks.acquire(folder / LOCK_FILE, wait=False)
        if job_lock is None:  # a new folder nobody else knows: cannot happen unless something else is very wrong
            raise PetSegError(f"the lock of the new job {job_id} is taken")
        job = Job(id=job_id, kind=kind, run=run, argv=argv_for(folder), started_at=time.time(),
                  data=str(settings.data), config=config, command=command, actor=actor)
        _write_job(folder, job)  # before the runner starts: it reads the config from here
        # SIGTERM stays blocked in the runner until it can pass it on: a cancel at once is a clean cancel.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        with open(folder / LOG_FILE, "wb") as log:
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "core.jobs", "run", str(folder), str(kind_lock.fileno()),
                     str(job_lock.fileno())],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    pass_fds=(kind_lock.fileno(), job_lock.fileno()),
                    start_new_session=True,  # survives the Streamlit server; its pid names the job's process group
                    cwd=Path(__file__).resolve().parents[1],
                    env=dict(os.environ, PYTHONUNBUFFERED="1"),
                )
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        # Our child, not yet reaped: its pid cannot have been reused, even if it already exited.
        job = dataclasses.replace(job, pid=proc.pid, pid_start=process_token(proc.pid))
        _write_job(folder, job)
    finally:
        kind_lock.release()
        if job_lock is not None:
            job_lock.release()
    return job


def _read_job(folder: Path) -> Job:
    data = _read_json(folder / JOB_FILE)
    try:
        return Job.from_dict(data or {})
    except TypeError as exc:
        raise PetSegError(f"{folder / JOB_FILE} is not a job record: delete the folder {folder.name}") from exc


def _write_job(folder: Path, job: Job) -> None:
    atomic_write_text(folder / JOB_FILE, json.dumps(asdict(job)))


def list_jobs(settings: Settings, kind: str | None = None) -> list[JobStatus]:
    """Every job in the workspace, newest first."""
    folder = jobs_dir(settings)
    if not folder.is_dir():
        return []
    found = []
    for entry in folder.iterdir():
        if entry.is_dir() and (entry / JOB_FILE).exists():
            try:
                job_status = status(settings, entry.name)
            except PetSegError:  # an unreadable job.json is not a job
                continue
            if kind is None or job_status.job.kind == kind:
                found.append(job_status)
    # By start time: ids only name the second, two jobs started within one would come in random order.
    return sorted(found, key=lambda s: (s.job.started_at, s.job.id), reverse=True)


def active(settings: Settings, kind: str) -> JobStatus | None:
    for job_status in list_jobs(settings, kind):
        if job_status.active:
            return job_status
    return None


def status(settings: Settings, job_id: str) -> JobStatus:
    folder = _job_folder(settings, job_id)
    job = _read_job(folder)
    # Running until its last process is gone, even after the runner recorded the exit: "not active" means the
    # job's locks are free, so the next job can start at once.
    if locks.held(folder / LOCK_FILE):
        return JobStatus(job, "running", None, None)
    exit_info = _read_json(folder / EXIT_FILE)
    if exit_info is not None:
        code = exit_info["returncode"]
        state = "succeeded" if code == 0 else "cancelled" if exit_info.get("cancelled") else "failed"
        return JobStatus(job, state, code, exit_info["finished_at"])
    # Every process of the job is gone without exit.json (killed, machine crash): the job failed.
    return JobStatus(job, "failed", None, None)


def cancel(settings: Settings, job_id: str, timeout: float = 30.0) -> JobStatus:
    """Stop the job cleanly (the last complete checkpoint stays usable); after ``timeout`` s, kill its process
    group. Only processes proven to be the job's are signalled."""
    job_status = status(settings, job_id)
    if not job_status.active:
        return job_status
    job, folder = job_status.job, _job_folder(settings, job_id)
    worker = _read_json(folder / WORKER_FILE) or {}
    # The runner passes SIGTERM on to the worker as SIGINT; if the runner was killed, the worker gets it directly.
    sent = signal_if_same(job.pid, job.pid_start, signal.SIGTERM) or signal_if_same(
        worker.get("pid"), worker.get("pid_start"), signal.SIGINT)
    if not sent:
        return job_status  # nothing provably the job's to stop (it is starting, or the record is foreign)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job_status = status(settings, job_id)
        if not job_status.active:
            return job_status
        time.sleep(0.1)
    # A verified live member of the group keeps the group id from being reused, so killpg hits only the job.
    members = [(job.pid, job.pid_start), (worker.get("pid"), worker.get("pid_start"))]
    if job.pid and any(process_group(pid, token) == job.pid for pid, token in members):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(job.pid, signal.SIGKILL)
    return status(settings, job_id)


def log_tail(settings: Settings, job_id: str, max_bytes: int = 8000) -> str:
    """The end of the job's output; tqdm's carriage-return updates collapsed to their last state."""
    path = _job_folder(settings, job_id) / LOG_FILE
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
    if "/" in job_id or job_id.startswith(".") or not (folder / JOB_FILE).exists():
        raise PetSegError(f"no job {job_id[:40]!r} in this workspace")
    return folder


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# --- the runner and the worker (separate processes) -------------------------------------------------------------


def _runner(folder: Path, fds: tuple[int, ...]) -> int:
    """Keep the inherited locks, run the worker, record how it ended."""
    cancelled = False
    worker: subprocess.Popen | None = None

    def forward(_signum: int, _frame: object) -> None:
        nonlocal cancelled
        cancelled = True
        if worker is not None:
            with contextlib.suppress(ProcessLookupError):
                worker.send_signal(signal.SIGINT)  # the CLI's clean stop after the current step

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # blocked by start() until now
    job = _read_job(folder)
    print(f"$ {shlex.join(job.command)}", flush=True)
    if job.config:
        _, unflagged = KINDS[job.kind].flags(_processes(job.kind, job.config)[1])
        if unflagged:
            print(f"  (and, without a CLI flag: {json.dumps(unflagged)})", flush=True)
    returncode = 130
    if not cancelled:
        worker = subprocess.Popen(job.argv, pass_fds=fds)
        atomic_write_text(folder / WORKER_FILE, json.dumps({"pid": worker.pid,
                                                            "pid_start": process_token(worker.pid)}))
        if cancelled:  # SIGTERM arrived while the worker was starting
            worker.send_signal(signal.SIGINT)
        returncode = worker.wait()
    atomic_write_text(
        folder / EXIT_FILE,
        json.dumps({"returncode": returncode, "cancelled": cancelled, "finished_at": time.time()}),
    )
    return 0


def _worker(folder: Path) -> int:
    """Call the job's core function with its stored config; errors and Ctrl-C end it as the CLI's do."""
    from core.cli import run_command

    job = _read_job(folder)
    settings = Settings.resolve(data=job.data, workspace=folder.parents[1])

    def work() -> int:
        KINDS[job.kind].run(settings, _processes(job.kind, job.config)[1], job.actor)
        return 0

    return run_command(work)


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "run":
        return _runner(Path(argv[1]), tuple(int(fd) for fd in argv[2:]))
    if len(argv) == 2 and argv[0] == "work":
        return _worker(Path(argv[1]))
    print("usage: python -m core.jobs run <folder> <fd>... | work <folder> (started by core.jobs.start)",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    from core.jobs import main as _main  # the module's own copy, not __main__'s

    sys.exit(_main(sys.argv[1:]))
