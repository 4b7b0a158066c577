"""core.evaluate and core.runs on the real sample: the table, the PNGs, independent metric checks, increments."""

from __future__ import annotations

import json
import math
import shutil
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import core.evaluate as evaluation
from core import groundtruth
from core.cli import main
from core.config import Settings
from core.dataset import load_image, load_trimap, open_dataset
from core.errors import ImageUnreadable, PetSegError
from core.evaluate import evaluate, load_predictor
from core.masks import encode_png_fast, resize_image
from core.metrics import prediction_metrics
from core.quality import IN_SAMPLE, Probabilities
from core.runs import EVAL_COLUMNS as COLUMNS
from core.runs import eval_dir, evaluated_splits, list_runs, load_eval, read_metrics_csv, read_prediction
from core.scoring import rescore, score
from core.train import TrainConfig, train

REQUIRED = ("image_id", "split", "breed", "species", "iou_pet", "iou_pet_border_as_pet", "miou_3class",
            "pixel_accuracy", "dice_pet", "gt_pet_fraction", "pred_pet_fraction", "mean_confidence",
            "uncertain_fraction")
RUN = "sample"


@pytest.fixture(scope="module")
def settings(sample_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A workspace with a tiny model trained for two epochs on the real sample (quality is not the point)."""
    settings = Settings.resolve(data=sample_root, workspace=tmp_path_factory.mktemp("eval") / "workspace")
    train(settings, TrainConfig(run=RUN, epochs=2, image_size=64, batch_size=8, encoder="resnet18",
                                encoder_weights=None, encoder_depth=3, decoder_channels=(32, 16, 8),
                                lr=1e-3, progress=False))
    return settings


@pytest.fixture(scope="module")
def evaluated(settings: Settings) -> dict:
    return evaluate(settings, RUN, "test", progress=False)


def _no_model(*_args, **_kwargs):
    raise AssertionError("the model was used")


def _numpy_scores(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """Independent of core.metrics: plain set counting on the saved PNG and the official trimap."""
    p = (pred == 1) & (gt != 3)
    g = gt == 1
    union = np.sum(p | g)
    pb, gb = pred != 2, gt != 2
    return {
        "iou_pet": np.sum(p & g) / union if union else 1.0,
        "iou_pet_border_as_pet": np.sum(pb & gb) / np.sum(pb | gb) if np.sum(pb | gb) else 1.0,
        "pixel_accuracy": float(np.mean(pred == gt)),
        "gt_pet_fraction": float(np.mean(gt == 1)),
        "pred_pet_fraction": float(np.mean(pred == 1)),
        "inter": int(np.sum(p & g)),
        "union": int(union),
    }


def test_every_test_image_gets_a_row_and_a_trimap_coded_png(settings: Settings, evaluated: dict) -> None:
    ds = open_dataset(settings.data, settings.workspace)
    table = load_eval(settings, RUN, "test")
    assert sorted(table.index) == sorted(ds.ids("test")) and evaluated["images"] == 5
    assert set(REQUIRED) <= set(table.columns) and list(table.columns) == list(COLUMNS)
    assert (table["split"] == "test").all() and table["has_gt"].all()
    for image_id, row in table.iterrows():
        pred = cv2.imread(str(Path(evaluated["predictions_dir"]) / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
        assert pred.dtype == np.uint8 and pred.shape == load_image(ds, image_id).shape[:2]
        assert set(np.unique(pred)) <= {1, 2, 3}
        assert (row["width"], row["height"]) == (pred.shape[1], pred.shape[0])
        assert row["breed"] == ds.table.loc[image_id, "breed"] and row["species"] == ds.table.loc[image_id, "species"]
        assert 1 / 3 <= row["mean_confidence"] <= 1 and 0 <= row["uncertain_fraction"] <= 1


def test_stored_metrics_match_the_pngs_and_trimaps(settings: Settings, evaluated: dict) -> None:
    ds = open_dataset(settings.data, settings.workspace)
    table = load_eval(settings, RUN, "test")
    inter = union = 0
    for image_id, row in table.iterrows():
        pred = cv2.imread(str(Path(evaluated["predictions_dir"]) / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
        want = _numpy_scores(pred, load_trimap(ds, image_id))
        for key in ("iou_pet", "iou_pet_border_as_pet", "pixel_accuracy", "gt_pet_fraction", "pred_pet_fraction"):
            assert row[key] == pytest.approx(want[key], abs=1e-6), (image_id, key)
        inter += want["inter"]
        union += want["union"]
    assert evaluated["per_image_iou"] == pytest.approx(table["iou_pet"].mean())
    assert evaluated["dataset_iou"] == pytest.approx(inter / union, abs=1e-6)


def test_rerun_reuses_every_row_without_touching_the_model(settings, evaluated, monkeypatch) -> None:
    before = load_eval(settings, RUN, "test")
    monkeypatch.setattr(evaluation, "load_predictor", _no_model)
    monkeypatch.setattr(evaluation, "_logits_batch", _no_model)
    again = evaluate(settings, RUN, "test", progress=False)
    assert again["predicted"] == 0 and again["reused"] == 5 and again["rescored"] == 0
    assert again["per_image_iou"] == evaluated["per_image_iou"]
    assert load_eval(settings, RUN, "test")["evaluated_at"].tolist() == before["evaluated_at"].tolist()


def test_rescore_after_a_ground_truth_change_uses_the_stored_prediction(settings, evaluated, tmp_path,
                                                                      monkeypatch) -> None:
    from core import ledger

    # A ledger changed behind the evaluation's back (rows written without core.corrections' rescoring).
    copy = Settings.resolve(data=settings.data, workspace=tmp_path / "workspace")
    shutil.copytree(settings.workspace, copy.workspace)
    ds = open_dataset(copy.data, copy.workspace)
    table = load_eval(copy, RUN, "test")
    image_id = table.index[0]
    corrected = load_trimap(ds, image_id).copy()
    corrected[:, : corrected.shape[1] // 2] = 1  # someone marked the left half as pet
    ledger.add_version(copy, image_id, corrected, base_version=None, parent=None, source="gt", author="a", note="",
                       iou_gt=None)
    monkeypatch.setattr(evaluation, "load_predictor", _no_model)
    started = time.perf_counter()
    rows = rescore(copy, ds, RUN, "test", [image_id])
    assert time.perf_counter() - started < 1.0
    pred = cv2.imread(str(Path(evaluated["predictions_dir"]) / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
    assert rows.loc[image_id, "iou_pet"] == pytest.approx(_numpy_scores(pred, corrected)["iou_pet"], abs=1e-6)
    assert rows.loc[image_id, "gt_version"] == 1
    after = load_eval(copy, RUN, "test")
    assert after.loc[image_id, "mean_confidence"] == table.loc[image_id, "mean_confidence"]
    others = [i for i in table.index if i != image_id]
    assert after.loc[others, "iou_pet"].tolist() == table.loc[others, "iou_pet"].tolist()
    # Back to the official trimap: the next evaluate notices the version change and rescores, still model-free.
    ledger.mark_deleted(copy, image_id, 1)
    summary = evaluate(copy, RUN, "test", progress=False)
    assert summary["rescored"] == 1 and summary["predicted"] == 0
    assert load_eval(copy, RUN, "test").loc[image_id, "iou_pet"] == pytest.approx(table.loc[image_id, "iou_pet"])


def test_a_saved_correction_is_the_ground_truth_and_the_official_score_stays_visible(settings, evaluated, tmp_path):
    from core.corrections import save

    copy = Settings.resolve(data=settings.data, workspace=tmp_path / "workspace")
    shutil.copytree(settings.workspace, copy.workspace)
    ds = open_dataset(copy.data, copy.workspace)
    table = load_eval(copy, RUN, "test")
    image_id = table.index[0]
    official = load_trimap(ds, image_id)
    corrected = official.copy()
    corrected[: corrected.shape[0] // 2] = 1  # the top half is pet now
    saved = save(copy, ds, image_id, corrected, base_version=None, source="gt")

    # The save rescored the stored evaluation itself: no caller has to remember.
    assert saved.rescored == 1
    rows = load_eval(copy, RUN, "test").loc[[image_id]]
    pred = cv2.imread(str(Path(evaluated["predictions_dir"]) / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
    assert rows.loc[image_id, "gt_version"] == 1
    assert rows.loc[image_id, "iou_pet"] == pytest.approx(_numpy_scores(pred, corrected)["iou_pet"], abs=1e-6)
    assert rows.loc[image_id, "iou_pet_official"] == pytest.approx(_numpy_scores(pred, official)["iou_pet"], abs=1e-6)
    assert rows.loc[image_id, "iou_pet"] != pytest.approx(rows.loc[image_id, "iou_pet_official"])
    after = load_eval(copy, RUN, "test")
    others = after.drop(index=image_id)
    assert (others["iou_pet_official"] == others["iou_pet"]).all() and others["gt_version"].isna().all()
    # A fresh evaluation (no stored rows) scores against the correction too.
    shutil.rmtree(copy.run_dir(RUN) / "eval")
    evaluate(copy, RUN, "test", progress=False)
    fresh = load_eval(copy, RUN, "test")
    assert fresh.loc[image_id, "gt_version"] == 1
    assert fresh.loc[image_id, "iou_pet"] == pytest.approx(rows.loc[image_id, "iou_pet"], abs=1e-6)


def test_cli_import_rescores_the_stored_evaluations(settings, evaluated, tmp_path, capsys):
    copy = Settings.resolve(data=settings.data, workspace=tmp_path / "workspace")
    shutil.copytree(settings.workspace, copy.workspace)
    ds = open_dataset(copy.data, copy.workspace)
    image_id = load_eval(copy, RUN, "test").index[1]
    fixed = np.where(load_trimap(ds, image_id) == 3, 1, load_trimap(ds, image_id)).astype(np.uint8)  # border -> pet
    folder = tmp_path / "fixed"
    folder.mkdir()
    cv2.imwrite(str(folder / f"{image_id}.png"), fixed)
    assert main(["corrections", "import", "--data", str(copy.data), "--workspace", str(copy.workspace),
                 "--from", str(folder)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "1 stored evaluation rows rescored against the imported masks"
    row = load_eval(copy, RUN, "test").loc[image_id]
    pred = cv2.imread(str(Path(evaluated["predictions_dir"]) / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
    assert row["gt_version"] == 1
    assert row["iou_pet"] == pytest.approx(_numpy_scores(pred, fixed)["iou_pet"], abs=1e-6)


def test_unreadable_images_are_skipped_and_images_without_trimap_get_nan_rows(settings, sample_root, tmp_path):
    other = _broken_sample(sample_root, tmp_path, settings)
    summary = evaluate(other, RUN, "all", checkpoint="last", progress=False)
    assert summary["skipped_unreadable"] == 1 and summary["without_gt"] == 1 and summary["images"] == 19
    table = load_eval(other, RUN, "all")
    assert "Bombay_182" not in table.index
    row = table.loc["Maine_Coon_205"]
    assert not row["has_gt"] and math.isnan(row["iou_pet"]) and not math.isnan(row["mean_confidence"])
    assert (Path(summary["predictions_dir"]) / "Maine_Coon_205.png").is_file()
    scored = table[table["has_gt"]]
    assert summary["per_image_iou"] == pytest.approx(scored["iou_pet"].mean())
    assert set(table["split"]) == {"trainval", "test"}


def test_cli_json_summary_is_the_last_line(settings, evaluated, capsys) -> None:
    code = main(["evaluate", "--data", str(settings.data), "--workspace", str(settings.workspace), "--run", RUN,
                 "--split", "test", "--json"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"run", "split", "images", "per_image_iou", "dataset_iou", "metrics_path", "predictions_dir"} <= set(summary)
    assert summary["images"] == 5 and summary["per_image_iou"] == pytest.approx(evaluated["per_image_iou"])


def test_unknown_run_is_a_one_line_error(settings, capsys) -> None:
    assert main(["evaluate", "--data", str(settings.data), "--workspace", str(settings.workspace),
                 "--run", "nope"]) == 2
    assert "no run named nope" in capsys.readouterr().err
    with pytest.raises(PetSegError):
        evaluate(settings, "nope", "test")


def test_predict_one_image_at_its_original_size(settings, evaluated) -> None:
    ds = open_dataset(settings.data, settings.workspace)
    predictor = load_predictor(settings, RUN)
    image_id = ds.ids("test")[0]
    image = load_image(ds, image_id)
    prediction = predictor.predict(image)
    assert prediction.mask.shape == image.shape[:2]
    assert prediction.probabilities.shape == (*image.shape[:2], 3)
    assert np.allclose(prediction.probabilities.sum(axis=2), 1.0, atol=1e-4)
    assert np.array_equal(prediction.mask, prediction.probabilities.argmax(axis=2) + 1)
    stored = cv2.imread(str(Path(evaluated["predictions_dir"]) / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
    assert np.mean(stored == prediction.mask) > 0.995  # batched vs single inference: same model, same answer


def test_runs_listing_reads_what_training_and_evaluation_wrote(settings, evaluated) -> None:
    [info] = list_runs(settings)
    assert (info.name, info.encoder, info.image_size) == (RUN, "resnet18", 64)
    assert (info.epochs_done, info.epochs_planned) == (2, 2)
    assert info.status == "done" and info.has_best and "test" in info.evaluated_splits
    assert info.created is not None and info.modified is not None
    metrics = read_metrics_csv(settings.run_dir(RUN))
    assert metrics["epoch"].tolist() == [1, 2]
    assert "test" in evaluated_splits(settings, RUN)
    assert load_eval(settings, RUN, "trainval") is None


# --- the prediction loop: original-size post-processing and the pipeline ------------------------------------------


def _reference_at_original_size(logits: torch.Tensor, height: int, width: int):
    """The plain definition: planar bilinear resize, torch.softmax, torch.argmax (first maximum wins)."""
    up = F.interpolate(logits.unsqueeze(0).contiguous(), size=(height, width), mode="bilinear",
                       align_corners=False)[0]
    probs = torch.softmax(up, dim=0)
    return (up.argmax(dim=0) + 1).to(torch.uint8), probs.max(dim=0).values, probs.permute(1, 2, 0).numpy()


@pytest.mark.parametrize("layout", ["planar", "channels_last"])
def test_at_original_size_is_bilinear_resize_then_softmax_and_first_max_argmax(layout: str) -> None:
    generator = torch.Generator().manual_seed(0)
    cases = []
    for size, height, width in [(64, 37, 53), (64, 300, 211), (256, 500, 375), (256, 129, 700), (32, 32, 32)]:
        smooth = torch.randn(3, size, size, generator=generator) * 4
        # small integers: whole regions where two or three classes tie exactly, before and after the resize
        ties = torch.randint(-1, 2, (3, size, size), generator=generator).float()
        cases += [(smooth, height, width), (ties, height, width)]
    cases.append((torch.zeros(3, 64, 64), 90, 120))  # all three classes tie everywhere: pet wins
    for logits, height, width in cases:
        if layout == "channels_last":  # what a channels-last model's batch row looks like
            logits = logits.unsqueeze(0).contiguous(memory_format=torch.channels_last)[0]
        mask, confidence, probs = evaluation.at_original_size(logits, height, width, probabilities=True)
        want_mask, want_confidence, want_probs = _reference_at_original_size(logits, height, width)
        assert mask.dtype == torch.uint8 and mask.shape == (height, width)
        assert torch.equal(mask, want_mask), (height, width)
        assert torch.allclose(confidence, want_confidence, rtol=0, atol=1e-6)
        assert probs.shape == (height, width, 3) and np.allclose(probs, want_probs, rtol=0, atol=1e-6)
    assert (evaluation.at_original_size(torch.zeros(3, 64, 64), 90, 120)[0] == 1).all()


def test_at_original_size_matches_the_definition_on_real_logits(settings: Settings) -> None:
    ds = open_dataset(settings.data, settings.workspace)
    predictor = load_predictor(settings, RUN)
    for image_id in ds.ids("test"):
        image = load_image(ds, image_id)
        small = resize_image(image, predictor.cfg.image_size)[None]
        [logits] = evaluation._logits_batch(predictor.model, predictor.cfg, predictor.runtime, small)
        mask, confidence, _ = evaluation.at_original_size(logits, *image.shape[:2])
        want_mask, want_confidence, _ = _reference_at_original_size(logits, *image.shape[:2])
        assert torch.equal(mask, want_mask), image_id
        assert torch.allclose(confidence, want_confidence, rtol=0, atol=1e-6), image_id


def _one_image_at_a_time(settings: Settings, folder: Path) -> tuple[dict[str, dict], dict[str, bytes]]:
    """What the evaluation computes, written straightforwardly: one image after the other, no threads, no batches."""
    ds = open_dataset(settings.data, settings.workspace)
    predictor = load_predictor(settings, RUN)
    ids = [i for i in ds.ids(None) if ds.table.loc[i, "readable"]]
    truth = groundtruth.snapshot(settings, ds, ids)
    rows, pngs = {}, {}
    threads = torch.get_num_threads()
    # The evaluation's workers each run the model on one thread here (PETSEG_THREADS=2: two workers); bf16
    # kernels split over another number of threads may differ in the last bits, so the reference runs on one too.
    torch.set_num_threads(1)
    try:
        for image_id in ids:
            try:
                image = load_image(ds, image_id)
            except ImageUnreadable:
                continue
            small = resize_image(image, predictor.cfg.image_size)[None]
            [logits] = evaluation._logits_batch(predictor.model, predictor.cfg, predictor.runtime, small)
            mask, confidence, _ = evaluation.at_original_size(logits, *image.shape[:2])
            probabilities = Probabilities.from_logits(logits, IN_SAMPLE)
            rows[image_id] = {**prediction_metrics(mask, confidence),
                              **score(truth, image_id, mask.numpy(), probabilities)}
            pngs[image_id] = encode_png_fast(mask.numpy())
    finally:
        torch.set_num_threads(threads)
    return rows, pngs


def _broken_sample(sample_root: Path, tmp_path: Path, settings: Settings) -> Settings:
    """The real sample with an undecodable image and a missing trimap, and the trained run (no evaluation)."""
    data = tmp_path / "data"
    shutil.copytree(sample_root, data)
    for path in data.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    (data / "images" / "Bombay_182.jpg").write_bytes(b"not a jpeg at all")
    (data / "annotations" / "trimaps" / "Maine_Coon_205.png").unlink()
    other = Settings.resolve(data=data, workspace=tmp_path / "ws")
    shutil.copytree(settings.run_dir(RUN), other.run_dir(RUN), ignore=shutil.ignore_patterns("eval"))
    return other


def _per_image_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run the model image by image inside each batch: a batch of 3 and 3 batches of 1 may differ in the last bits
    (the CPU kernels depend on the batch size), and this test is about the loop around the model, not the model."""
    batched = evaluation._logits_batch

    def per_image(model, cfg, runtime, resized):
        return torch.cat([batched(model, cfg, runtime, resized[i : i + 1]) for i in range(len(resized))])

    monkeypatch.setattr(evaluation, "_logits_batch", per_image)


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_pipelined_evaluation_equals_a_one_image_at_a_time_reference(settings, sample_root, tmp_path, monkeypatch,
                                                                     batch_size) -> None:
    monkeypatch.setenv("PETSEG_THREADS", "2")  # the same workers whatever else runs on the machine
    other = _broken_sample(sample_root, tmp_path, settings)
    want_rows, want_pngs = _one_image_at_a_time(other, eval_dir(other, RUN, "all"))
    _per_image_forward(monkeypatch)
    progress = []
    summary = evaluate(other, RUN, "all", batch_size=batch_size, progress=False,
                       on_progress=lambda done, total: progress.append((done, total)))
    started_later = []
    thread = threading.Thread(target=lambda: started_later.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    # The workers' share of the intra-op threads does not leak into threads started later.
    assert started_later == [torch.get_num_threads()]

    assert summary["predicted"] == 19 and summary["skipped_unreadable"] == 1
    assert progress == [(done, 19) for done in range(1, 20)]
    table = load_eval(other, RUN, "all")
    assert sorted(table.index) == sorted(want_rows)
    for image_id, want in want_rows.items():
        row = table.loc[image_id]
        for key, value in want.items():
            if key == "scored_at":
                continue
            if value is None or (isinstance(value, float) and math.isnan(value)):
                assert pd.isna(row[key]), (image_id, key)
            else:
                assert row[key] == value, (image_id, key, row[key], value)
        png = (Path(summary["predictions_dir"]) / f"{image_id}.png").read_bytes()
        assert png == want_pngs[image_id], image_id
    assert not table.loc["Maine_Coon_205", "has_gt"] and table.drop(index="Maine_Coon_205")["has_gt"].all()


def test_a_failure_mid_loop_keeps_every_finished_image_with_its_png(settings, sample_root, tmp_path,
                                                                   monkeypatch) -> None:
    other = _broken_sample(sample_root, tmp_path, settings)
    ds = open_dataset(other.data, other.workspace)
    ordered = [i for i in ds.ids(None) if ds.table.loc[i, "readable"]]
    real_score = evaluation.score

    def failing_score(truth, image_id, pred, *args, **kwargs):
        if image_id == ordered[9]:
            raise RuntimeError("disk on fire")
        return real_score(truth, image_id, pred, *args, **kwargs)

    monkeypatch.setattr(evaluation, "score", failing_score)
    with pytest.raises(RuntimeError, match="disk on fire"):
        evaluate(other, RUN, "all", batch_size=3, progress=False)
    folder = eval_dir(other, RUN, "all")
    kept = load_eval(other, RUN, "all")
    # Images come out in order, so what was kept is a run of images from the start that stops before the failure.
    assert 0 < len(kept) <= 9 and set(kept.index) == set(ordered[: len(kept)])
    for image_id in kept.index:
        assert read_prediction(folder, image_id) is not None, image_id
    assert json.loads((folder / "progress.json").read_text())["status"] == "failed"
    monkeypatch.setattr(evaluation, "score", real_score)
    again = evaluate(other, RUN, "all", batch_size=3, progress=False)
    assert again["reused"] == len(kept) and again["predicted"] == 19 - len(kept) and again["images"] == 19


def test_a_correction_saved_while_the_split_is_evaluated_is_not_lost(settings, evaluated, tmp_path):
    from core.corrections import save

    copy = Settings.resolve(data=settings.data, workspace=tmp_path / "workspace")
    shutil.copytree(settings.workspace, copy.workspace)
    shutil.rmtree(copy.run_dir(RUN) / "eval")
    ds = open_dataset(copy.data, copy.workspace)
    corrected: dict[str, np.ndarray] = {}

    def save_during_the_evaluation(done: int, _total: int) -> None:
        # The first image is predicted (its PNG on disk) but not in the stored table yet: the save's own rescore
        # cannot reach its row, so the evaluation's write must score it against the correction.
        if done == 1:
            image_id = ds.ids("test")[0]
            mask = load_trimap(ds, image_id).copy()
            mask[: mask.shape[0] // 2] = 1
            save(copy, ds, image_id, mask, base_version=None, source="gt")
            corrected[image_id] = mask

    evaluate(copy, RUN, "test", progress=False, batch_size=1, on_progress=save_during_the_evaluation)
    (image_id, mask), = corrected.items()
    row = load_eval(copy, RUN, "test").loc[image_id]
    pred = cv2.imread(str(copy.run_dir(RUN) / "eval" / "test" / "pred" / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
    assert row["gt_version"] == 1
    assert row["iou_pet"] == pytest.approx(_numpy_scores(pred, mask)["iou_pet"], abs=1e-6)
    assert row["iou_pet_official"] == pytest.approx(_numpy_scores(pred, load_trimap(ds, image_id))["iou_pet"],
                                                    abs=1e-6)


def test_the_json_headline_is_against_the_official_trimaps_and_corrections_are_a_separate_figure(
        settings, evaluated, tmp_path, capsys):
    from core.corrections import save
    from core.metrics import dataset_iou

    copy = Settings.resolve(data=settings.data, workspace=tmp_path / "workspace")
    shutil.copytree(settings.workspace, copy.workspace)
    ds = open_dataset(copy.data, copy.workspace)
    table = load_eval(copy, RUN, "test")
    image_id = table.index[table["has_gt"]][0]
    official = load_trimap(ds, image_id)
    save(copy, ds, image_id, np.where(official == 2, 1, official).astype(np.uint8), base_version=None, source="gt")

    assert main(["evaluate", "--data", str(copy.data), "--workspace", str(copy.workspace), "--run", RUN,
                 "--split", "test", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    scored = table[table["has_gt"]]  # the table before the correction: every row against the official trimap
    assert summary["per_image_iou"] == pytest.approx(evaluated["per_image_iou"])
    assert summary["per_image_iou"] == pytest.approx(float(scored["iou_pet"].mean()), abs=1e-6)
    assert summary["dataset_iou"] == pytest.approx(dataset_iou(scored), abs=1e-6)
    assert summary["corrected_images"] == 1
    now = load_eval(copy, RUN, "test")
    assert summary["per_image_iou_corrected"] == pytest.approx(float(now[now["has_gt"]]["iou_pet"].mean()), abs=1e-6)
    assert summary["per_image_iou_corrected"] != pytest.approx(summary["per_image_iou"])
