"""AppTest of the Runs page: two real tiny runs evaluated on the same splits, compared image by image."""

import shutil
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.config import Settings
from core.corrections import save
from core.dataset import load_trimap, open_dataset
from core.runs import load_eval
from tests.conftest import APP, SECOND_RUN


def copy_of(two_runs, tmp_path) -> SimpleNamespace:
    workspace = tmp_path / "ws"
    shutil.copytree(two_runs.workspace, workspace)
    return SimpleNamespace(settings=Settings.resolve(data=two_runs.data, workspace=workspace), data=two_runs.data,
                           workspace=workspace, first=two_runs.first)


def runs_page(monkeypatch, env, **params) -> AppTest:
    monkeypatch.setenv("PETSEG_DATA", str(env.data))
    monkeypatch.setenv("PETSEG_HOME", str(env.workspace))
    at = AppTest.from_file(APP, default_timeout=60)
    for key, value in params.items():
        at.query_params[key] = value
    return at.switch_page("app_pages/runs.py").run()


def expected_means(settings, a: str, b: str, split: str) -> tuple[float, float]:
    ta, tb = load_eval(settings, a, split), load_eval(settings, b, split)
    ids = sorted(set(ta.index[ta["has_gt"]]) & set(tb.index[tb["has_gt"]]))
    return float(ta.loc[ids, "iou_pet"].astype(float).mean()), float(tb.loc[ids, "iou_pet"].astype(float).mean())


def test_headline_shows_each_runs_mean_iou_and_the_difference(monkeypatch, two_runs):
    at = runs_page(monkeypatch, two_runs, a=two_runs.first, b=SECOND_RUN, split="test")
    assert not at.exception
    mean_a, mean_b = expected_means(two_runs.settings, two_runs.first, SECOND_RUN, "test")
    values = {m.label: m.value for m in at.metric}
    assert values[f"A · {two_runs.first}"] == f"{mean_a:.4f}"
    assert values[f"B · {SECOND_RUN}"] == f"{mean_b:.4f}"
    assert values["B − A"] == f"{mean_b - mean_a:+.4f}"
    assert len(at.get("plotly_chart")) == 2  # scatter + histogram (no corrected images yet)
    assert "Corrected images (0)" in [h.value for h in at.subheader]


def test_biggest_changes_link_to_compare_for_both_runs(monkeypatch, two_runs):
    at = runs_page(monkeypatch, two_runs, a=two_runs.first, b=SECOND_RUN, split="test")
    tables = [df.value for df in at.dataframe]
    assert tables, "expected at least one table of changed images"
    for table in tables:
        for _, row in table.iterrows():
            assert row["open A"] == f"/compare?image={row['image']}&run={two_runs.first}"
            assert row["open B"] == f"/compare?image={row['image']}&run={SECOND_RUN}"
    deltas = pd.concat(tables)["delta"]
    assert (deltas != 0).all()


def test_query_params_choose_runs_and_split_and_swapping_flips_the_sign(monkeypatch, two_runs):
    at = runs_page(monkeypatch, two_runs, a=SECOND_RUN, b=two_runs.first)
    assert not at.exception
    assert at.selectbox(key="runs_a").value == SECOND_RUN
    assert at.selectbox(key="runs_b").value == two_runs.first
    assert at.selectbox(key="runs_split").value == "test"  # the only split both evaluated
    mean_first, mean_second = expected_means(two_runs.settings, SECOND_RUN, two_runs.first, "test")
    values = {m.label: m.value for m in at.metric}
    assert values["B − A"] == f"{mean_second - mean_first:+.4f}"


def test_choosing_run_b_in_the_page_updates_the_url(monkeypatch, two_runs):
    at = runs_page(monkeypatch, two_runs)
    assert at.selectbox(key="runs_b").value == SECOND_RUN  # newest run is B by default
    at.selectbox(key="runs_b").set_value(two_runs.first).run()
    assert at.query_params["b"] in (two_runs.first, [two_runs.first])
    assert any("Pick two different runs" in i.value for i in at.info)


@pytest.mark.parametrize("hostile", ["../../etc/passwd", "<script>alert(1)</script>", "x" * 5000])
def test_hostile_run_names_in_the_url_give_a_plain_message(monkeypatch, two_runs, hostile):
    at = runs_page(monkeypatch, two_runs, a=hostile, split=hostile)
    assert not at.exception
    assert any("not available here" in w.value for w in at.warning)
    assert all(hostile not in w.value for w in at.warning)
    assert at.metric  # still compares the default runs


def test_corrected_images_get_their_own_comparison(monkeypatch, two_runs, tmp_path):
    env = copy_of(two_runs, tmp_path)
    ds = open_dataset(env.settings.data, env.settings.workspace)
    test_ids = ds.ids("test")[:2]
    for image_id in test_ids:
        mask = load_trimap(ds, image_id)
        save(env.settings, ds, image_id, np.where(mask == 3, 1, mask).astype(np.uint8), base_version=None,
             source="gt")
    at = runs_page(monkeypatch, env, a=env.first, b=SECOND_RUN)
    assert not at.exception
    assert "Corrected images (2)" in [h.value for h in at.subheader]
    assert len(at.get("plotly_chart")) == 4
    labels = [m.label for m in at.metric]
    assert labels.count(f"A · {env.first}") == 2


def test_runs_without_a_common_split_offer_to_evaluate(monkeypatch, two_runs, tmp_path):
    env = copy_of(two_runs, tmp_path)
    shutil.rmtree(env.settings.run_dir(env.first) / "eval" / "test")  # first: trainval only; second: test only
    at = runs_page(monkeypatch, env, a=env.first, b=SECOND_RUN)
    assert not at.exception
    assert any("no evaluated split in common" in i.value for i in at.info)
    # (the import form's buttons sit above the comparison on every visit)
    assert [b.label for b in at.button if not b.key.startswith("runs_import_")] == [f"Evaluate {env.first} on test"]


def test_with_a_single_run_the_page_explains_what_to_do(monkeypatch, trained_copy):
    at = runs_page(monkeypatch, trained_copy)
    assert not at.exception
    assert "needs two runs" in at.info[0].value


def test_test_set_corrections_leave_the_headline_on_the_official_trimaps(monkeypatch, two_runs, tmp_path):
    env = copy_of(two_runs, tmp_path)
    before = runs_page(monkeypatch, two_runs, a=two_runs.first, b=SECOND_RUN)
    headline = {m.label: m.value for m in before.metric}
    ds = open_dataset(env.settings.data, env.settings.workspace)
    image_id = ds.ids("test")[0]
    mask = load_trimap(ds, image_id)
    save(env.settings, ds, image_id, np.where(mask == 2, 1, mask).astype(np.uint8), base_version=None, source="gt")
    at = runs_page(monkeypatch, env, a=env.first, b=SECOND_RUN)
    assert not at.exception
    # The all-images headline (the first four metrics) does not move when a test mask is corrected.
    assert {m.label: m.value for m in at.metric[:4]} == {k: headline[k] for k in list(headline)[:4]}
    captions = " ".join(c.value for c in at.caption)
    assert "evaluation-only" in captions and "against the official trimaps" in captions
    assert "Against your corrections instead of the official trimaps, on the same 1 image(s)" in captions


def test_run_pickers_say_when_imagenet_was_asked_for_but_random_init_was_used(monkeypatch, two_runs, tmp_path):
    import json

    env = copy_of(two_runs, tmp_path)
    path = env.settings.run_dir(SECOND_RUN) / "config.json"
    config = json.loads(path.read_text())
    config["train"].update(encoder_weights="imagenet", pretrained=False)  # asked for, not loaded (offline)
    path.write_text(json.dumps(config))
    at = runs_page(monkeypatch, env, a=env.first, b=SECOND_RUN)
    assert not at.exception
    assert any(f"{SECOND_RUN} · " in o and "random init" in o for o in at.selectbox(key="runs_b").options)
    assert any("random init" in o for o in at.sidebar.selectbox(key="run").options)


def test_the_two_configs_are_side_by_side_and_other_differences_are_named(monkeypatch, two_runs):
    at = runs_page(monkeypatch, two_runs, a=two_runs.first, b=SECOND_RUN)
    assert not at.exception
    # The fixture's runs differ in epochs (2 vs 1) and seed (0 vs 7), not only in corrections.
    warning = " ".join(w.value for w in at.warning)
    assert "differ in more than the corrections (epochs, seed)" in warning
    table = at.table[0].value
    assert table.loc["epochs"].tolist()[:2] == ["2", "1"] and table.loc["epochs"].iloc[2] == "differs"
    assert table.loc["encoder"].iloc[2] == "" and table.loc["encoder weights"].iloc[0].endswith("random init")
