"""Start an evaluation from the UI as a background job and follow it until it ends.

    >>> from dashboard import evaluation_job
    >>> evaluation_job.start_button(settings, run="quick-1", split="test")   # "Evaluate now"
    >>> evaluation_job.follow(settings)        # progress polled every second; views refresh when it finishes

The job is ``python -m core evaluate`` run by :mod:`core.jobs` (it outlives the page); its id is kept in
``st.session_state[state.EVAL_JOB]``, and a job already running in the workspace is picked up on any visit.
"""

from __future__ import annotations

import streamlit as st

from core import jobs
from core.config import Settings
from core.errors import PetSegError
from core.runs import eval_dir, read_progress
from dashboard import state, tables
from dashboard.markdown import escape


def start_button(settings: Settings, run: str, split: str, label: str = "Evaluate now") -> None:
    if st.button(label, type="primary", key=f"evaluate_{split}"):
        args = ["--data", str(settings.data), "--workspace", str(settings.workspace), "--run", run, "--split", split]
        try:
            job = jobs.start(settings, "evaluate", args, run=run)
        except PetSegError as exc:
            st.error(escape(exc, 1000))
            return
        st.session_state[state.EVAL_JOB] = job.id
        st.rerun()


def running_job(settings: Settings) -> str | None:
    """The evaluation job this session follows, or one another session started that is still running."""
    job_id = st.session_state.get(state.EVAL_JOB)
    if job_id:
        return job_id
    active = jobs.active(settings, "evaluate") if jobs.jobs_dir(settings).is_dir() else None
    if active is not None:
        st.session_state[state.EVAL_JOB] = active.job.id
        return active.job.id
    return None


@st.fragment(run_every=1.0)
def follow(settings: Settings) -> None:
    """Progress of the followed job, refreshed every second; when it ends the cached tables are dropped."""
    job_id = st.session_state.get(state.EVAL_JOB)
    if not job_id:
        return
    try:
        status = jobs.status(settings, job_id)
    except PetSegError:
        st.session_state.pop(state.EVAL_JOB, None)
        return
    argv = status.job.argv
    split = argv[argv.index("--split") + 1] if "--split" in argv else "test"
    if status.active:
        progress = read_progress(eval_dir(settings, status.job.run, split)) if status.job.run else None
        done, total = (progress or {}).get("done", 0), (progress or {}).get("total", 0)
        fraction = min(done / total, 1.0) if total else 0.0
        st.progress(fraction, text=f"Evaluating {status.job.run} on {split}: {done} of {total or '?'} images")
        if st.button("Cancel evaluation", key="evaluate_cancel"):
            jobs.cancel(settings, job_id)
        with st.expander("Log"):
            st.code(jobs.log_tail(settings, job_id, 3000) or "(starting…)", language=None)
        return
    st.session_state.pop(state.EVAL_JOB, None)
    tables.clear()
    if status.state == "succeeded":
        st.toast(f"Evaluation of {escape(status.job.run, code=True)} on {split} finished")
    else:
        st.session_state[state.EVAL_JOB_FAILED] = jobs.log_tail(settings, job_id, 2000)
    st.rerun(scope="app")


def last_failure() -> str | None:
    """The log tail of a followed job that failed (shown once)."""
    return st.session_state.pop(state.EVAL_JOB_FAILED, None)
