"""The one background-job UI (train, evaluate): start with a clear busy message, live progress, curves, log,
cancel, resume. Every page that starts or follows a job uses it.

    >>> from core.train import TrainConfig
    >>> from dashboard import jobs_view
    >>> jobs_view.start_job(settings, "train", TrainConfig(run="quick-1", preset="quick", epochs=5).to_dict())
    >>> jobs_view.job_panel(settings, "train")       # progress, curves, log, cancel / resume; polls while it runs
    >>> jobs_view.evaluate_button(settings, "quick-1", "test")          # for any page: evaluate as a job
    >>> jobs_view.job_panel(settings, "evaluate", run="quick-1", quiet=True)   # only while it runs or if it failed

Jobs are started from a structured config (see :mod:`core.jobs`), never from argument lists. Everything shown is
read from the workspace (``jobs/``, ``runs/``), so every browser tab sees the same job and a reload loses nothing.
``st.session_state`` only remembers which jobs this tab watched running, so that the tab clears
``st.cache_data`` and reruns once when one of them ends and the other views show the new files.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from core import jobs
from core.config import Settings
from core.errors import PetSegError
from core.runs import CONFIG_FILE, METRICS_CSV, eval_dir, load_eval, read_metrics_csv, read_progress, run_info
from dashboard import auth, plots, state
from dashboard.markdown import escape

POLL_ACTIVE_S = 1.5  # while a job runs
POLL_IDLE_S = 5.0  # to notice a job started from another tab or the CLI
CANCEL_TIMEOUT_S = 20.0
_LABELS = {"train": "Training", "evaluate": "Evaluation"}


def run_name_problem(settings: Settings, name: str) -> str | None:
    """Why ``name`` cannot be a new run (invalid, or taken), None when it can."""
    try:
        run_dir = settings.run_dir(name)
    except PetSegError as exc:
        return escape(exc, 1000)
    if (run_dir / "last.pt").exists() or (run_dir / METRICS_CSV).exists():
        return (f"a run named {escape(name, code=True)} already exists: choose another name (a stopped run is "
                "resumed from its job)")
    return None


def suggest_run_name(settings: Settings, prefix: str) -> str:
    """``<prefix>-<n>`` with the smallest n not taken by a run folder or a job (whose folder may not exist yet)."""
    taken = {j.job.run for j in jobs.list_jobs(settings)}
    n = 1
    while f"{prefix}-{n}" in taken or (settings.runs_dir / f"{prefix}-{n}").exists():
        n += 1
    return f"{prefix}-{n}"


# --- starting -----------------------------------------------------------------------------------------------


def start_job(settings: Settings, kind: str, config: dict[str, Any]) -> jobs.Job | None:
    """Start a job from its config; on a busy lock or another user error show it and return None."""
    return _started(lambda: jobs.start(settings, kind, config, actor=auth.current_user()))


def restart_job(settings: Settings, job_id: str) -> jobs.Job | None:
    """Start a stopped job again from its stored config (a train job resumes); errors shown as with start_job."""
    return _started(lambda: jobs.restart(settings, job_id, actor=auth.current_user()))


def _started(launch: Callable[[], jobs.Job]) -> jobs.Job | None:
    try:
        job = launch()
    except PetSegError as exc:
        st.error(escape(exc, 1000))
        return None
    _watched().add(job.id)
    return job


def busy_message(settings: Settings, kind: str) -> str | None:
    """A plain sentence when a job of ``kind`` already runs in this workspace (one per kind at a time)."""
    running = jobs.active(settings, kind)
    if running is None:
        return None
    what = f"run {escape(running.job.run, code=True)}" if running.job.run else f"job {running.job.id}"
    return (f"{_LABELS.get(kind, kind)} of {what} is running in this workspace (one {kind} job at a time): "
            "wait for it to finish or cancel it below.")


def evaluate_button(settings: Settings, run: str, split: str, key: str | None = None, label: str | None = None,
                    primary: bool = False) -> None:
    """A button that evaluates ``run`` on ``split`` as a background job (disabled while one is running)."""
    busy = busy_message(settings, "evaluate")
    clicked = st.button(label or f"Evaluate {escape(run)} on {split}", key=key or f"evaluate_{run}_{split}",
                        type="primary" if primary else "secondary", disabled=busy is not None, help=busy)
    if clicked and start_job(settings, "evaluate", {"run": run, "split": split, "checkpoint": "best"}):
        st.rerun()


def latest_job(settings: Settings, kind: str, run: str | None = None) -> jobs.JobStatus | None:
    """The newest job of ``kind`` (of ``run``, when given), None when there is none."""
    found = [j for j in jobs.list_jobs(settings, kind) if run is None or j.job.run == run]
    return found[0] if found else None


def _watched() -> set[str]:
    return st.session_state.setdefault(state.JOBS_WATCHED, set())


# --- the panel ----------------------------------------------------------------------------------------------


def job_panel(settings: Settings, kind: str, *, run: str | None = None,
              quiet: bool = False) -> jobs.JobStatus | None:
    """The latest job of ``kind`` (of ``run``, when given): state, progress, curves, log; cancel while it runs,
    resume or again when it stopped. ``quiet``: say nothing when there is no job or it succeeded (for a page
    that shows the result itself). Returns that job's status as the page run began."""
    current = latest_job(settings, kind, run)
    every = POLL_ACTIVE_S if current is not None and current.active else POLL_IDLE_S
    st.fragment(run_every=every)(_panel)(settings, kind, run, quiet, every)
    return current


def _panel(settings: Settings, kind: str, run: str | None, quiet: bool, every: float) -> None:
    current = latest_job(settings, kind, run)
    if current is None:
        if not quiet:
            st.caption(f"No {kind} job has run in this workspace yet.")
        return
    watched = _watched()
    if current.active:
        watched.add(current.job.id)
        if every != POLL_ACTIVE_S:
            st.rerun()  # started in another tab or from the CLI: poll at the faster pace
    elif current.job.id in watched:
        # It ended while this tab watched: cached tables are stale (new run, new evaluation).
        watched.discard(current.job.id)
        st.cache_data.clear()
        st.rerun()
    if quiet and current.state == "succeeded":
        return
    if kind == "train":
        _train_view(settings, current)
    elif kind == "crossval":
        _crossval_view(settings, current)
    else:
        _evaluate_view(settings, current)
    with st.expander("Log", expanded=current.state == "failed"):
        st.code(jobs.log_tail(settings, current.job.id) or "(no output yet)", language=None)


def _train_view(settings: Settings, current: jobs.JobStatus) -> None:
    job, run = current.job, current.job.run or "?"
    run_dir = settings.run_dir(run) if current.job.run else None
    progress = (read_progress(run_dir) if run_dir else None) or {}
    metrics = read_metrics_csv(run_dir) if run_dir else pd.DataFrame()
    if current.state == "running":
        st.info(f"Training {escape(run, code=True)} ({escape(progress.get('status', 'starting'))}); it keeps "
                "running if you close this tab.")
        fraction, text = train_fraction(progress)
        st.progress(fraction, text=text)
        _weights_note(settings, run_dir)
        _cancel_button(settings, job)
    elif current.state == "succeeded":
        best = metrics["val_iou_pet"].max() if len(metrics) else None
        extra = "" if best is None or pd.isna(best) else f": best validation pet IoU {best:.3f}"
        info = run_info(settings, run_dir) if run_dir else None
        st.success(f"Training {escape(run, code=True)} finished{extra}."
                   f"{'' if info is None or info.pretrained is None else ' Encoder: ' + escape(info.weights) + '.'}"
                   " Evaluate it to compare it with other runs.")
        evaluate_button(settings, run, "test", key=f"evaluate_after_{job.id}")
    else:
        _stopped(settings, current, "Training")
        if job.run:
            _resume_button(settings, job)
    if len(metrics):
        st.plotly_chart(plots.training_curves(metrics, run), width="stretch", key=f"curves_{job.id}")


def _weights_note(settings: Settings, run_dir: Path | None) -> None:
    """What the encoder was loaded with, once the model is built; a warning when requested weights were not."""
    info = run_info(settings, run_dir) if run_dir is not None and (run_dir / CONFIG_FILE).is_file() else None
    if info is None or info.pretrained is None:
        return
    if info.pretrained or not info.requested_weights:
        st.caption(f"Encoder: {escape(info.weights)}.")
    else:
        st.warning(f"Encoder: {escape(info.weights)}: training from random weights needs more epochs. Check the "
                   "network (or the Hugging Face cache) and start a new run to use them.")


def train_fraction(progress: dict) -> tuple[float, str]:
    """Overall progress of a training run from its progress.json, and a one-line description."""
    epochs = int(progress.get("epochs") or 0)
    epoch = int(progress.get("epoch") or 0)
    steps = int(progress.get("steps_per_epoch") or 0)
    step = int(progress.get("step") or 0)
    status = progress.get("status") or "starting"
    if status in ("starting", "caching") or not epochs:
        return 0.0, "caching images…" if status == "caching" else "starting…"
    done = (max(epoch, 1) - 1) * steps + step if steps else max(epoch - 1, 0)
    total = epochs * steps if steps else epochs
    parts = [f"epoch {epoch}/{epochs}"]
    if steps:
        parts.append(f"step {step}/{steps}")
    if progress.get("loss") is not None:
        parts.append(f"loss {float(progress['loss']):.4f}")
    if progress.get("images_per_second"):
        parts.append(f"{float(progress['images_per_second']):.1f} img/s")
    if status == "validating":
        parts.append("validating")
    return min(max(done / total, 0.0), 1.0), " · ".join(parts)


def crossval_fraction(progress: dict, fold_progress: dict) -> tuple[float, str]:
    """Overall progress of a cross-validation (its progress.json and the current fold run's), and a line."""
    folds, done = int(progress.get("folds") or 0), int(progress.get("folds_done") or 0)
    if not folds:
        return 0.0, "starting…"
    status = progress.get("status") or "starting"
    if status == "done":
        return 1.0, f"{folds} of {folds} folds"
    fold_share, fold_text = train_fraction(fold_progress) if status == "training" else (1.0, "out-of-fold predictions")
    text = f"fold {progress.get('fold') or done + 1}/{folds} · {fold_text}"
    return min(max((done + 0.95 * fold_share) / folds, 0.0), 1.0), text


def _crossval_view(settings: Settings, current: jobs.JobStatus) -> None:
    job, run = current.job, current.job.run or "?"
    progress = (read_progress(settings.run_dir(run)) if job.run else None) or {}
    fold = progress.get("fold_run")
    fold_progress = (read_progress(settings.run_dir(fold)) if isinstance(fold, str) and fold else None) or {}
    if current.state == "running":
        st.info(f"Cross-validation {escape(run, code=True)}: {escape(progress.get('status', 'starting'))}; it keeps "
                "running if you close this tab.")
        fraction, text = crossval_fraction(progress, fold_progress)
        st.progress(fraction, text=escape(text))
        _cancel_button(settings, job)
    elif current.state == "succeeded":
        st.success(f"Cross-validation {escape(run, code=True)} finished: pick run {escape(run, code=True)}, split "
                   "trainval, and open Review → suspected label errors.")
        st.page_link("app_pages/review.py", label="Review suspected label errors", icon=":material/rule:")
    else:
        _stopped(settings, current, "Cross-validation")
        busy = busy_message(settings, "crossval")
        if st.button("Resume", key=f"again_{job.id}", type="primary", disabled=busy is not None,
                     help=busy or "keeps the finished folds; an interrupted fold continues after its last epoch"):
            if restart_job(settings, job.id):
                st.rerun()


def _evaluate_view(settings: Settings, current: jobs.JobStatus) -> None:
    job, run = current.job, current.job.run or "?"
    split = str(job.config.get("split") or "test")
    if current.state == "running":
        progress = _eval_progress(settings, run, split)
        done, total = int(progress.get("done") or 0), int(progress.get("total") or 0)
        text = f"Evaluating `{run}` on {split}: {done} of {total} images" if total else f"Evaluating `{run}`: starting…"
        st.progress(done / total if total else 0.0, text=text)
        _cancel_button(settings, job)
    elif current.state == "succeeded":
        table = _eval_table(settings, run, split)
        scored = table[table["has_gt"]] if table is not None and "has_gt" in table.columns else table
        mean = None if scored is None or not len(scored) else scored["iou_pet"].mean()
        extra = "" if mean is None or pd.isna(mean) else f": mean per-image pet IoU {mean:.3f}"
        st.success(f"Evaluation of {escape(run, code=True)} on {split} finished{extra}.")
        st.page_link("app_pages/runs.py", label="Compare runs on the Runs page", icon=":material/compare_arrows:")
    else:
        _stopped(settings, current, "Evaluation")
        busy = busy_message(settings, "evaluate")
        if st.button("Evaluate again", key=f"again_{job.id}", disabled=busy is not None,
                     help=busy or "reuses every prediction already made"):
            if restart_job(settings, job.id):
                st.rerun()


def _eval_progress(settings: Settings, run: str, split: str) -> dict:
    try:
        return read_progress(eval_dir(settings, run, split)) or {}
    except PetSegError:
        return {}


def _eval_table(settings: Settings, run: str, split: str) -> pd.DataFrame | None:
    try:
        return load_eval(settings, run, split)
    except PetSegError:
        return None


def _stopped(settings: Settings, current: jobs.JobStatus, what: str) -> None:
    who = escape(current.job.run, code=True) if current.job.run else f"job {current.job.id}"
    if current.state == "cancelled":
        if current.job.kind == "train":
            st.warning(f"{what} of {who} was cancelled; the last complete checkpoint is kept.")
        else:
            st.warning(f"{what} of {who} was cancelled.")
    else:
        code = "it was killed" if current.returncode is None or current.returncode < 0 else (
            f"exit code {current.returncode}")
        st.error(f"{what} of {who} failed ({code}). The end of its log is below.")


def _cancel_button(settings: Settings, job: jobs.Job) -> None:
    if st.button("Cancel", key=f"cancel_{job.id}", help="stops after the current step; finished epochs are kept"):
        with st.spinner("Stopping…"):
            jobs.cancel(settings, job.id, timeout=CANCEL_TIMEOUT_S)
        st.rerun()


def _resume_button(settings: Settings, job: jobs.Job) -> None:
    resumable = (settings.run_dir(job.run) / "last.pt").is_file()
    label = "Resume" if resumable else "Start again"
    help_text = ("continues after the last finished epoch (--resume)" if resumable
                 else "no epoch finished yet: runs the same config from the start")
    busy = busy_message(settings, "train")
    if st.button(label, key=f"resume_{job.id}", type="primary", help=busy or help_text, disabled=busy is not None):
        if restart_job(settings, job.id):
            st.rerun()


def recent_jobs(settings: Settings, limit: int = 20) -> pd.DataFrame:
    """The newest jobs of the workspace as a small table (any kind)."""
    rows = []
    for item in jobs.list_jobs(settings)[:limit]:
        rows.append({
            "started": datetime.fromtimestamp(item.job.started_at).strftime("%Y-%m-%d %H:%M:%S"),
            "kind": item.job.kind,
            "run": item.job.run,
            "state": item.state,
            "exit code": item.returncode,
            "job": item.job.id,
        })
    return pd.DataFrame(rows)
