"""AppTest of the Train page: the form, real background jobs started from it, busy lock, cancel, failure."""

import shutil
import sys
import time

import pytest
from streamlit.testing.v1 import AppTest

from core import jobs
from core.runs import load_eval, read_metrics_csv
from core.train import TrainConfig
from tests.conftest import APP

SLEEPER = [sys.executable, "-c", "import time\nprint('pretending to train', flush=True)\ntime.sleep(60)"]


def train_page(monkeypatch, env) -> AppTest:
    monkeypatch.setenv("PETSEG_DATA", str(env.data))
    monkeypatch.setenv("PETSEG_HOME", str(env.workspace))
    return AppTest.from_file(APP, default_timeout=60).switch_page("app_pages/train.py").run()


def wait_until_done(settings, job_id: str, timeout: float = 120.0) -> jobs.JobStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = jobs.status(settings, job_id)
        if not status.active:
            return status
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still running after {timeout} s:\n{jobs.log_tail(settings, job_id)}")


def tiny_form(at: AppTest, run: str | None = None) -> AppTest:
    at.select_slider(key="train_size_quick").set_value(64)
    at.number_input(key="train_epochs_quick").set_value(1)
    at.checkbox(key="train_pretrained").uncheck()
    if run is not None:
        at.text_input(key="train_run").set_value(run)
    return at.run()


def texts(elements) -> str:
    return "\n".join(e.value for e in elements)


def test_form_defaults_and_the_corrections_promise(monkeypatch, trained_copy):
    at = train_page(monkeypatch, trained_copy)
    assert not at.exception
    assert at.selectbox(key="train_preset").value == "quick"
    assert at.selectbox(key="train_encoder_quick").value == "resnet18"
    assert at.select_slider(key="train_size_quick").value == 128
    assert at.text_input(key="train_run").value == "quick-1"
    assert "used for evaluation only, never for training" in texts(at.caption)
    assert not at.button(key="train_start").disabled
    # The fixture's run is done and has no job: the panel says there was none, the evaluate form offers it.
    assert "No train job has run" in texts(at.caption)
    assert at.selectbox(key="evaluate_run").value == trained_copy.run


@pytest.mark.parametrize(("name", "message"), [("../escape", "not allowed"), ("tiny", "already exists"),
                                                ("<b>x</b>", "not allowed")])
def test_bad_or_taken_run_names_are_refused_before_starting(monkeypatch, trained_copy, name, message):
    at = train_page(monkeypatch, trained_copy)
    at.text_input(key="train_run").set_value(name).run()
    assert not at.exception
    assert message in at.error[0].value
    assert at.button(key="train_start").disabled


def test_start_train_then_evaluate_from_the_page(monkeypatch, trained_copy):
    settings = trained_copy.settings
    at = tiny_form(train_page(monkeypatch, trained_copy))  # the suggested name, quick-1
    at.checkbox(key="train_use_corrections").check().run()
    at.button(key="train_start").click().run()
    assert not at.exception
    job = jobs.list_jobs(settings, "train")[0]
    assert job.job.run == "quick-1"
    # The form's choices as a structured config, for this dataset and workspace.
    assert job.job.data == str(settings.data)
    assert job.job.config == TrainConfig(run="quick-1", preset="quick", encoder="resnet18", image_size=64, epochs=1,
                                         encoder_weights=None, use_corrections=True).to_dict()
    command = job.job.command  # its CLI twin
    assert command[command.index("--workspace") + 1] == str(settings.workspace)
    assert command[command.index("--image-size") + 1] == "64" and "--use-corrections" in command
    # The next suggestion skips the name just started, though its folder may not exist yet.
    assert at.text_input(key="train_run").value == "quick-2"

    final = wait_until_done(settings, job.job.id)
    assert final.state == "succeeded", jobs.log_tail(settings, job.job.id)
    at.run()
    assert not at.exception
    assert "Training `quick-1` finished: best validation pet IoU" in texts(at.success)
    assert "Encoder: random init." in texts(at.success)  # what it started from, not only what was asked
    run_picker = at.sidebar.selectbox(key="run")
    assert any(o.startswith("quick-1 · resnet18 64px · random init") for o in run_picker.options)
    assert len(read_metrics_csv(settings.run_dir("quick-1"))) == 1
    assert at.get("plotly_chart"), "the loss / validation IoU curve is shown"

    at.button(key=f"evaluate_after_{job.job.id}").click().run()
    evaluation = jobs.list_jobs(settings, "evaluate")[0]
    assert evaluation.job.run == "quick-1"
    assert evaluation.job.config == {"run": "quick-1", "split": "test", "checkpoint": "best",
                                     "corrections": "accepted"}
    assert wait_until_done(settings, evaluation.job.id).state == "succeeded"
    at.run()
    table = load_eval(settings, "quick-1", "test")
    mean = table.loc[table["has_gt"], "iou_pet"].mean()
    assert f"Evaluation of `quick-1` on test finished: mean per-image pet IoU {mean:.3f}" in texts(at.success)


def test_a_running_job_blocks_a_second_one_and_can_be_cancelled(monkeypatch, trained_copy):
    settings = trained_copy.settings
    job = jobs.spawn(settings, "train", SLEEPER, run="sleepy")
    try:
        at = train_page(monkeypatch, trained_copy)
        assert not at.exception
        assert "Training of run `sleepy` is running in this workspace" in texts(at.info)
        assert at.button(key="train_start").disabled
        assert "pretending to train" in at.code[0].value  # the log view
        at.button(key=f"cancel_{job.id}").click().run()
        assert not at.exception
        assert jobs.status(settings, job.id).state == "cancelled"
        assert "was cancelled" in texts(at.warning)
        assert not at.button(key="train_start").disabled
    finally:
        jobs.cancel(settings, job.id)


def test_a_job_started_in_another_tab_meanwhile_gives_a_clear_busy_message(monkeypatch, trained_copy):
    settings = trained_copy.settings
    at = tiny_form(train_page(monkeypatch, trained_copy), "late")
    job = jobs.spawn(settings, "train", SLEEPER, run="elsewhere")  # e.g. another browser tab won the race
    try:
        at.button(key="train_start").click().run()
        assert not at.exception
        # The click lands on a rerun that already sees the other job: a plain message, no second job.
        shown = texts(at.error) + texts(at.info)
        assert "already running (elsewhere" in shown or "Training of run `elsewhere` is running" in shown
        assert [j.job.run for j in jobs.list_jobs(settings, "train")] == ["elsewhere"]
    finally:
        jobs.cancel(settings, job.id)


def test_a_failed_job_shows_its_log_and_can_be_started_again(monkeypatch, trained_copy):
    settings = trained_copy.settings
    config = TrainConfig(run="broken", preset="quick", image_size=64, epochs=1, encoder_weights=None).to_dict()
    failed = jobs.start(settings, "train", {**config, "resume": True})  # nothing to resume: exits 2
    assert wait_until_done(settings, failed.id).state == "failed"
    at = train_page(monkeypatch, trained_copy)
    assert not at.exception
    assert "Training of `broken` failed (exit code 2)" in texts(at.error)
    assert "error: nothing to resume" in at.code[0].value
    button = at.button(key=f"resume_{failed.id}")
    assert button.label == "Start again"  # no epoch finished: same command without --resume
    button.click().run()
    again = jobs.list_jobs(settings, "train")[0]
    try:
        assert again.job.id != failed.id and again.active
        assert again.job.config == config  # the same config, without resume
    finally:
        jobs.cancel(settings, again.job.id)  # the real resume path is exercised in test_train_corrections.py


def test_overview_follows_and_starts_evaluations_with_the_same_job_panel(monkeypatch, trained_copy):
    settings, run = trained_copy.settings, trained_copy.run
    shutil.rmtree(settings.run_dir(run) / "eval")
    monkeypatch.setenv("PETSEG_DATA", str(trained_copy.data))
    monkeypatch.setenv("PETSEG_HOME", str(trained_copy.workspace))
    overview = AppTest.from_file(APP, default_timeout=60).switch_page("app_pages/overview.py")
    at = overview.run()
    assert not at.exception
    curves = [c for c in at.get("plotly_chart") if f"{run}: per epoch" in c.proto.spec]
    assert len(curves) == 1, "the training curves are the Train page's figure"
    assert at.button(key="evaluate_test").label == "Evaluate now"

    # An evaluation of this run running (from another tab): its progress and Cancel, nothing else.
    other = jobs.spawn(settings, "evaluate", SLEEPER, run=run)
    try:
        at.run()
        assert not at.exception
        assert at.button(key=f"cancel_{other.id}")
        assert not any(m.label == "Images scored" for m in at.metric)
    finally:
        jobs.cancel(settings, other.id)

    at.run()
    assert f"Evaluation of `{run}` was cancelled" in texts(at.warning)
    at.button(key="evaluate_test").click().run()
    assert not at.exception
    evaluation = jobs.list_jobs(settings, "evaluate")[0]
    assert evaluation.job.id != other.id
    assert evaluation.job.config == {"run": run, "split": "test", "checkpoint": "best",
                                     "corrections": "accepted"}
    assert wait_until_done(settings, evaluation.job.id).state == "succeeded", jobs.log_tail(settings, evaluation.job.id)
    at.run()  # the tab watched it end: the cached "not evaluated" answer is dropped
    assert not at.exception
    table = load_eval(settings, run, "test")
    values = {m.label: m.value for m in at.metric}
    assert values["Images scored"] == str(int(table["has_gt"].sum()))
