"""core.crossval and its uses: out-of-fold predictions, resume, rescoring after a correction, Review, the job."""

from __future__ import annotations

import json
import math
import shutil
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core import cli, groundtruth, jobs
from core.config import Settings
from core.corrections import save
from core.crossval import STATE_FILE, assign_folds, crossval, fold_run
from core.dataset import open_dataset
from core.errors import PetSegError
from core.masks import BACKGROUND, PET, binary_to_trimap
from core.quality import IN_SAMPLE, OUT_OF_FOLD, ProbabilityStore, disk_bytes, label_quality
from core.runs import eval_dir, list_runs, load_eval, read_config
from core.train import TrainConfig
from core.views import Filters, apply_filters, load_view, review_queue, sort_table, suspect_order
from tests.conftest import APP
from tests.test_pages_train import train_page, wait_until_done

RECIPE = {"preset": "quick", "epochs": 1, "image_size": 64, "encoder_weights": None, "progress": False}
RUN = "cv"


@pytest.fixture(scope="module")
def cv(trained, tmp_path_factory):
    """A 2-fold cross-validation of the trained fixture's dataset, in a workspace of its own (with the run)."""
    workspace = tmp_path_factory.mktemp("crossval") / "workspace"
    shutil.copytree(trained.workspace, workspace)
    settings = Settings.resolve(data=trained.data, workspace=workspace)
    summary = crossval(settings, TrainConfig(run=RUN, **RECIPE), folds=2)
    return SimpleNamespace(settings=settings, summary=summary, data=trained.data, workspace=workspace)


@pytest.fixture
def cv_copy(cv, tmp_path):
    workspace = tmp_path / "workspace"
    shutil.copytree(cv.workspace, workspace)
    return Settings.resolve(data=cv.data, workspace=workspace)


def test_every_trainval_image_gets_the_prediction_of_the_fold_model_that_never_saw_it(cv) -> None:
    settings = cv.settings
    ds = open_dataset(settings.data, settings.workspace)
    trainval = sorted(ds.table.index[(ds.table["split"] == "trainval") & ds.table["has_trimap"]])
    table = load_eval(settings, RUN, "trainval")
    assert sorted(table.index) == trainval
    assert set(table["label_quality_source"]) == {OUT_OF_FOLD}
    assert table["label_quality"].between(0, 1).all()
    state = json.loads((settings.run_dir(RUN) / STATE_FILE).read_text())
    assert state["done"] == [1, 2]
    for fold in (1, 2):
        config = read_config(settings.run_dir(fold_run(RUN, fold)))
        held_out = {i for i, k in state["fold_of"].items() if k == fold}
        # the fold trained on the other fold and validated on its own (train(split=...))
        assert config["dataset"]["val_images"] == len(held_out)
        assert config["dataset"]["train_images"] == len(state["fold_of"]) - len(held_out)
        assert (table.loc[sorted(held_out), "checkpoint"] == f"{RUN}-fold{fold}/last").all()
    folder = eval_dir(settings, RUN, "trainval")
    assert all((folder / "pred" / f"{i}.png").is_file() for i in trainval)
    store = ProbabilityStore.open(folder)
    assert store is not None and sorted(store.ids) == trainval and store.size == 64
    assert cv.summary["probabilities_bytes"] == disk_bytes(len(trainval), 64)
    assert (folder / "probs.npy").stat().st_size < disk_bytes(len(trainval), 64) + 256
    # the stored score is the one the stored probabilities give against the current mask
    truth = groundtruth.snapshot(settings, ds, trainval)
    image_id = trainval[3]
    assert label_quality(store.probabilities(image_id), truth.mask(image_id))["label_quality"] == pytest.approx(
        table.loc[image_id, "label_quality"])
    # the fold runs are ordinary runs that every run picker lists
    assert {fold_run(RUN, 1), fold_run(RUN, 2)} <= {r.name for r in list_runs(settings)}


def test_folds_are_fixed_and_balanced() -> None:
    ids = [f"Breed_{n}" for n in range(23)]
    folds = assign_folds(ids, 4)
    assert folds == assign_folds(list(reversed(ids)), 4)
    assert sorted(np.bincount(list(folds.values()))[1:]) == [5, 6, 6, 6]


def test_resume_skips_finished_folds_and_a_restart_or_other_settings_are_refused(cv_copy) -> None:
    settings = cv_copy
    metrics_before = (settings.run_dir(fold_run(RUN, 1)) / "metrics.csv").stat().st_mtime_ns
    with pytest.raises(PetSegError, match="already exists: add --resume"):
        crossval(settings, TrainConfig(run=RUN, **RECIPE), folds=2)
    with pytest.raises(PetSegError, match="other settings"):
        crossval(settings, TrainConfig(run=RUN, resume=True, **RECIPE), folds=3)
    with pytest.raises(PetSegError, match="--folds must be"):
        crossval(settings, TrainConfig(run=RUN, **RECIPE), folds=1)
    with pytest.raises(PetSegError, match="nothing to resume"):
        crossval(settings, TrainConfig(run="cv-new", resume=True, **RECIPE), folds=2)
    summary = crossval(settings, TrainConfig(run=RUN, resume=True, **RECIPE), folds=2)
    assert summary["folds_done"] == 2
    assert (settings.run_dir(fold_run(RUN, 1)) / "metrics.csv").stat().st_mtime_ns == metrics_before


def test_an_interrupted_fold_is_predicted_again_on_resume(cv_copy) -> None:
    settings = cv_copy
    state_path = settings.run_dir(RUN) / STATE_FILE
    state = json.loads(state_path.read_text())
    state["done"] = [1]
    state_path.write_text(json.dumps(state))
    store = ProbabilityStore.open(eval_dir(settings, RUN, "trainval"), writable=True)
    fold2 = sorted(i for i, k in state["fold_of"].items() if k == 2)
    before = store.array[store.row[fold2[0]]].copy()
    store.array[store.row[fold2[0]]] = 0  # a torn write of the fold that did not finish
    store.flush()
    crossval(settings, TrainConfig(run=RUN, resume=True, **RECIPE), folds=2)
    again = ProbabilityStore.open(eval_dir(settings, RUN, "trainval"))
    assert np.array_equal(again.array[again.row[fold2[0]]], before)
    assert json.loads(state_path.read_text())["done"] == [1, 2]


def test_a_correction_rescores_the_out_of_fold_label_quality_against_the_new_mask(cv_copy) -> None:
    settings = cv_copy
    ds = open_dataset(settings.data, settings.workspace)
    table = load_eval(settings, RUN, "trainval")
    image_id = table.index[0]
    gt, version = groundtruth.current(settings, ds, image_id)
    inverted = binary_to_trimap(gt == BACKGROUND)  # a wrong mask: pet where the model sees background
    result = save(settings, ds, image_id, inverted, base_version=version, source="gt", author="test")
    assert result.rescored >= 1
    after = load_eval(settings, RUN, "trainval").loc[image_id]
    store = ProbabilityStore.open(eval_dir(settings, RUN, "trainval"))
    expected = label_quality(store.probabilities(image_id), inverted)
    assert after["label_quality"] == pytest.approx(expected["label_quality"])
    assert after["label_quality"] != pytest.approx(table.loc[image_id, "label_quality"])
    assert after["label_quality_source"] == OUT_OF_FOLD and int(after["gt_version"]) == result.version


def test_in_sample_scores_are_labelled_and_emptied_when_the_mask_changes(trained_copy) -> None:
    settings = trained_copy.settings
    table = load_eval(settings, trained_copy.run, "trainval")
    assert set(table["label_quality_source"]) == {IN_SAMPLE} and table["label_quality"].notna().all()
    ds = open_dataset(settings.data, settings.workspace)
    image_id = table.index[0]
    gt, version = groundtruth.current(settings, ds, image_id)
    save(settings, ds, image_id, binary_to_trimap(gt == PET, 1), base_version=version, source="gt", author="t")
    row = load_eval(settings, trained_copy.run, "trainval").loc[image_id]
    # the model that scored it cannot judge a mask it never produced probabilities for: empty, not stale
    assert math.isnan(row["label_quality"]) and row["label_quality_source"] == ""


def test_review_ranks_suspected_label_errors_by_out_of_fold_label_quality(cv) -> None:
    view = load_view(cv.settings, RUN, "trainval")
    assert suspect_order(view) == ("label_quality", True)
    queue = review_queue(view, Filters(), "iou_pet", "tension")
    assert list(queue["label_quality"]) == sorted(queue["label_quality"])
    assert len(queue) == int(view["evaluated"].sum())
    worst = float(queue["label_quality"].iloc[0])
    narrowed = apply_filters(view, Filters(quality_max=worst), "iou_pet")
    assert list(narrowed.index) == [queue.index[0]]
    by_sort = sort_table(apply_filters(view, Filters(), "iou_pet"), "quality_asc", "iou_pet")
    assert list(by_sort.index[: len(queue)]) == list(queue.index)


def test_without_label_quality_review_falls_back_to_tension() -> None:
    view = pd.DataFrame({"tension": [0.1, 0.9, 0.5], "label_quality": [np.nan] * 3, "evaluated": True,
                         "split": "test", "species": "cat", "breed": "x", "corrected": False, "tag": None,
                         "iou_pet": [0.5, 0.2, 0.3]}, index=["a_1", "b_1", "c_1"])
    assert suspect_order(view) == ("tension", False)
    assert list(review_queue(view, Filters(), "iou_pet", "tension").index) == ["b_1", "c_1", "a_1"]
    assert Filters.from_dict({"quality_max": 7}).quality_max == 1.0


def test_cli_crossval_refuses_bad_folds_with_a_clear_message(cv, capsys) -> None:
    code = cli.main(["crossval", "--data", str(cv.data), "--workspace", str(cv.workspace), "--run", "cv2",
                     "--folds", "40", "--preset", "quick"])
    assert code != 0
    assert "--folds must be 2-20" in capsys.readouterr().err


def test_crossval_job_config_is_checked_and_has_a_cli_twin() -> None:
    check, flags = jobs.KINDS["crossval"].check, jobs.KINDS["crossval"].flags
    config = check({"run": "cv-a", "preset": "quick", "epochs": 1, "folds": 3})
    assert config["folds"] == 3 and config["run"] == "cv-a"
    args, _ = flags(config)
    assert args[:2] == ["--run", "cv-a"] and args[-2:] == ["--folds", "3"] and "--epochs" in args
    for bad in ({"run": "cv-a", "folds": 1}, {"run": "cv-a", "folds": "3"}, {"run": "cv-a", "folds": True},
                {"run": "x" * 60, "folds": 3}, {"run": "cv-a", "folds": 2, "nonsense": 1}):
        with pytest.raises(PetSegError):
            check(bad)


def test_cross_validation_runs_from_the_train_page_and_leads_to_review(monkeypatch, trained_copy) -> None:
    settings = trained_copy.settings
    at = train_page(monkeypatch, trained_copy)
    at.select_slider(key="train_size_quick").set_value(64)
    at.number_input(key="train_epochs_quick").set_value(1)
    at.checkbox(key="train_pretrained").uncheck()
    at.number_input(key="crossval_folds").set_value(2)
    at.text_input(key="crossval_run").set_value("cv-page").run()
    at.button(key="crossval_start").click().run()
    assert not at.exception
    job = jobs.list_jobs(settings, "crossval")[0]
    assert job.job.run == "cv-page" and job.job.config["folds"] == 2 and job.job.config["image_size"] == 64
    assert "--folds" in job.job.command
    final = wait_until_done(settings, job.job.id, timeout=300)
    assert final.state == "succeeded", jobs.log_tail(settings, job.job.id)
    at.run()
    assert not at.exception
    assert any("Cross-validation `cv-page` finished" in s.value for s in at.success)
    assert load_eval(settings, "cv-page", "trainval")["label_quality"].notna().all()
    # a second cross-validation under the same name is refused before it starts
    at.text_input(key="crossval_run").set_value("cv-page").run()
    assert at.button(key="crossval_start").disabled


def test_compare_says_why_an_image_is_suspected(monkeypatch, cv) -> None:
    table = load_eval(cv.settings, RUN, "trainval")
    image_id = table["label_quality"].idxmin()
    monkeypatch.setenv("PETSEG_DATA", str(cv.data))
    monkeypatch.setenv("PETSEG_HOME", str(cv.workspace))
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update({"image": image_id, "run": RUN, "split": "trainval"})
    at.switch_page("app_pages/compare.py").run()
    assert not at.exception
    info = "\n".join(i.value for i in at.info)
    assert "to a model that never saw this mask" in info


def test_the_cross_validation_is_a_finished_run_in_the_run_list(cv) -> None:
    parent = {r.name: r for r in list_runs(cv.settings)}[RUN]
    assert parent.status == "done" and parent.evaluated_splits == ("trainval",)


def test_annotate_starts_its_queue_from_the_suspected_label_errors(monkeypatch, cv) -> None:
    table = load_eval(cv.settings, RUN, "trainval")
    worst = table.sort_values(["label_quality", "image_id"]).index[0]
    monkeypatch.setenv("PETSEG_DATA", str(cv.data))
    monkeypatch.setenv("PETSEG_HOME", str(cv.workspace))
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update({"run": RUN, "split": "trainval"})
    at.switch_page("app_pages/annotate.py").run()
    assert not at.exception
    at.button(key="annotate_suspects").click().run()
    assert not at.exception
    assert at.query_params["image"] == [worst] or at.query_params["image"] == worst
    assert any("to a model that never saw this mask" in i.value for i in at.info)
