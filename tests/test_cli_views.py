"""``python -m core review`` and ``python -m core compare`` on real tiny runs, checked against their tables."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from core.cli import main
from core.config import Settings
from core.corrections import save
from core.dataset import load_trimap, open_dataset
from core.runs import eval_dir, load_eval
from tests.conftest import SECOND_RUN, TRAINED_RUN


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def paths(env) -> list[str]:
    return ["--data", str(env.data), "--workspace", str(env.workspace)]


def test_review_lists_the_worst_images_first(trained, capsys):
    table = load_eval(trained.settings, trained.run, "test")
    scored = table[table["has_gt"] & table["iou_pet"].notna()]
    worst = scored.assign(iou=scored["iou_pet"].astype(float)).sort_values(["iou", "image_id"])
    code, out, _ = run_cli(capsys, "review", *paths(trained), "--run", trained.run, "--limit", 5, "--json")
    assert code == 0
    result = json.loads(out)
    assert result["total"] == len(scored) and result["order"] == "worst"
    assert [r["image_id"] for r in result["images"]] == list(worst.index[:5])
    assert result["images"][0]["iou_pet"] == pytest.approx(float(worst["iou"].iloc[0]))

    code, out, _ = run_cli(capsys, "review", *paths(trained), "--run", trained.run, "--limit", 3)
    lines = out.splitlines()
    assert code == 0 and f"{len(scored)} images to review, worst iou_pet first (first 3)" in lines[0]
    assert [line.split()[1] for line in lines[2:]] == list(worst.index[:3])


def test_review_of_suspected_errors_puts_the_lowest_label_quality_first(trained, capsys):
    table = load_eval(trained.settings, trained.run, "trainval")
    quality = table["label_quality"].astype(float).dropna()
    expected = pd.DataFrame({"q": quality, "id": quality.index}).sort_values(["q", "id"])
    code, out, _ = run_cli(capsys, "review", *paths(trained), "--run", trained.run, "--split", "trainval",
                           "--order", "tension", "--limit", 4, "--json")
    assert code == 0
    images = json.loads(out)["images"]
    assert [r["image_id"] for r in images] == list(expected["id"][:4])
    assert images[0]["label_quality"] == pytest.approx(float(expected["q"].iloc[0]))
    assert images[0]["label_quality_source"] == "in-sample"


def test_review_by_tension_puts_confident_disagreement_first(trained_copy, capsys):
    """A table without label quality (evaluated before it existed) falls back to the tension heuristic."""
    trained = trained_copy
    folder = eval_dir(trained.settings, trained.run, "trainval")
    old = load_eval(trained.settings, trained.run, "trainval").drop(columns=["label_quality"])
    old.to_parquet(folder / "metrics.parquet", index=False)
    table = load_eval(trained.settings, trained.run, "trainval")
    numbers = table[["mean_confidence", "uncertain_fraction", "iou_pet"]].astype(float)
    tension = (numbers["mean_confidence"] * (1 - numbers["uncertain_fraction"]) * (1 - numbers["iou_pet"])).dropna()
    expected = pd.DataFrame({"t": tension, "id": tension.index}).sort_values(["t", "id"], ascending=[False, True])
    code, out, _ = run_cli(capsys, "review", *paths(trained), "--run", trained.run, "--split", "trainval",
                           "--order", "tension", "--limit", 4, "--json")
    assert code == 0
    images = json.loads(out)["images"]
    assert [r["image_id"] for r in images] == list(expected["id"][:4])
    assert images[0]["tension"] == pytest.approx(float(expected["t"].iloc[0]))


@pytest.mark.parametrize(("argv", "message"), [
    (["--run", "nope"], "run 'nope' does not exist"),
    (["--run", "../../etc"], "is not allowed"),
])
def test_review_errors_are_one_line_and_exit_2(trained, capsys, argv, message):
    code, out, err = run_cli(capsys, "review", *paths(trained), *argv)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


def test_review_of_an_unevaluated_split_says_how_to_evaluate(two_runs, capsys):
    code, _, err = run_cli(capsys, "review", *paths(two_runs), "--run", SECOND_RUN, "--split", "trainval")
    assert code == 2 and f"python -m core evaluate --run {SECOND_RUN} --split trainval" in err


def expected_headline(settings, a: str, b: str, ids=None) -> tuple[int, float, float, int, int]:
    ta, tb = load_eval(settings, a, "test"), load_eval(settings, b, "test")
    shared = sorted(set(ta.index[ta["has_gt"]]) & set(tb.index[tb["has_gt"]]))
    if ids is not None:
        shared = [i for i in shared if i in ids]
    va, vb = ta.loc[shared, "iou_pet"].astype(float), tb.loc[shared, "iou_pet"].astype(float)
    delta = vb - va
    return len(shared), float(va.mean()), float(vb.mean()), int((delta > 1e-6).sum()), int((delta < -1e-6).sum())


def test_compare_reports_both_means_the_delta_and_the_moves(two_runs, capsys):
    images, mean_a, mean_b, improved, worsened = expected_headline(two_runs.settings, two_runs.first, SECOND_RUN)
    assert improved + worsened > 0  # two different models: the comparison has something to say
    code, out, _ = run_cli(capsys, "compare", two_runs.first, SECOND_RUN, *paths(two_runs), "--json")
    assert code == 0
    result = json.loads(out)
    overall = result["all"]
    assert (overall["images"], overall["improved"], overall["worsened"]) == (images, improved, worsened)
    assert overall["mean_a"] == pytest.approx(mean_a) and overall["mean_b"] == pytest.approx(mean_b)
    assert overall["delta"] == pytest.approx(mean_b - mean_a)
    assert result["corrected"]["images"] == 0 and result["corrected"]["delta"] is None
    assert all(r["delta"] > 0 for r in result["most_improved"])

    code, out, _ = run_cli(capsys, "compare", two_runs.first, SECOND_RUN, *paths(two_runs))
    assert code == 0
    assert f"all images ({images}): A {mean_a:.4f}  B {mean_b:.4f}  delta {mean_b - mean_a:+.4f}" in out
    assert "corrected images: none scored by both runs" in out
    # Swapping the runs flips the sign.
    _, out, _ = run_cli(capsys, "compare", SECOND_RUN, two_runs.first, *paths(two_runs), "--json")
    assert json.loads(out)["all"]["delta"] == pytest.approx(mean_a - mean_b)


def test_compare_summarises_the_corrected_images_on_their_own(two_runs, tmp_path, capsys):
    workspace = tmp_path / "ws"
    shutil.copytree(two_runs.workspace, workspace)
    settings = Settings.resolve(data=two_runs.data, workspace=workspace)
    ds = open_dataset(settings.data, settings.workspace)
    corrected = ds.ids("test")[:3]
    for image_id in corrected:
        mask = load_trimap(ds, image_id)
        save(settings, ds, image_id, np.where(mask == 3, 1, mask).astype(np.uint8), base_version=None, source="gt")
    images, mean_a, mean_b, _, _ = expected_headline(settings, two_runs.first, SECOND_RUN, set(corrected))
    code, out, _ = run_cli(capsys, "compare", two_runs.first, SECOND_RUN, "--data", two_runs.data,
                           "--workspace", workspace, "--json")
    assert code == 0
    # Against the corrections: a separate figure.
    part = json.loads(out)["corrected_against_corrections"]
    assert part["images"] == images == 3
    assert part["mean_a"] == pytest.approx(mean_a) and part["mean_b"] == pytest.approx(mean_b)
    # The headline of the corrected images stays against the official trimaps (what it was before correcting).
    official = expected_headline(two_runs.settings, two_runs.first, SECOND_RUN, set(corrected))
    headline = json.loads(out)["corrected"]
    assert headline["images"] == official[0] == 3
    assert headline["mean_a"] == pytest.approx(official[1]) and headline["mean_b"] == pytest.approx(official[2])
    assert (headline["mean_a"], headline["mean_b"]) != pytest.approx((mean_a, mean_b))


@pytest.mark.parametrize(("argv", "message"), [
    ([TRAINED_RUN, TRAINED_RUN], "compare two different runs"),
    ([TRAINED_RUN, "missing"], "run 'missing' does not exist"),
    ([TRAINED_RUN, SECOND_RUN, "--split", "trainval"], f"run '{SECOND_RUN}' has no evaluation of 'trainval'"),
])
def test_compare_errors_are_one_line_and_exit_2(two_runs, capsys, argv, message):
    code, out, err = run_cli(capsys, "compare", *argv, *paths(two_runs))
    assert code == 2 and out == ""
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1
