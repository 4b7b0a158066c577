"""AppTest of the entry page: onboarding without a dataset, statistics with one."""

import pytest
from streamlit.testing.v1 import AppTest

from core.synth import generate
from tests.conftest import APP


def app(monkeypatch, data, workspace) -> AppTest:
    monkeypatch.setenv("PETSEG_DATA", str(data))
    monkeypatch.setenv("PETSEG_HOME", str(workspace))
    return AppTest.from_file(APP, default_timeout=60)


def test_without_a_dataset_home_offers_download_folder_and_demo(monkeypatch, tmp_path):
    at = app(monkeypatch, tmp_path / "nothing-here", tmp_path / "ws").run()
    assert not at.exception
    assert "no dataset" in at.info[0].value.lower()
    assert [t.label for t in at.tabs] == ["Download the official dataset", "Use a folder", "Generate a demo set"]
    assert {b.label for b in at.button} >= {"Download", "Use this folder", "Generate"}


def test_generating_a_demo_set_from_home_shows_its_statistics(monkeypatch, tmp_path):
    at = app(monkeypatch, tmp_path / "nothing-here", tmp_path / "ws").run()
    at.number_input(key="demo_count").set_value(40)
    at.text_input(key="demo_target").set_value(str(tmp_path / "demo"))
    at.button(key="demo_start").click().run()
    assert not at.exception
    assert (tmp_path / "demo" / "annotations" / "list.txt").exists()
    assert at.metric[0].value == "40"
    assert any("synthetic" in w.value for w in at.warning)
    # The choice is remembered in the workspace: a new session opens the same dataset.
    monkeypatch.delenv("PETSEG_DATA")
    again = AppTest.from_file(APP, default_timeout=60).run()
    assert again.metric[0].value == "40"


def test_pointing_at_a_folder_that_is_not_a_dataset_says_so(monkeypatch, tmp_path):
    (tmp_path / "empty").mkdir()
    at = app(monkeypatch, tmp_path / "nothing-here", tmp_path / "ws").run()
    at.text_input(key="folder_choice").set_value(str(tmp_path / "empty"))
    at.button(key="folder_use").click().run()
    assert not at.exception
    assert "no `images/` folder" in at.error[0].value


def test_real_sample_statistics_and_sidebar(monkeypatch, tmp_path, sample_root):
    at = app(monkeypatch, sample_root, tmp_path / "ws").run()
    assert not at.exception
    values = {m.label: m.value for m in at.metric}
    assert values["Images"] == "20"
    assert values["Trainval / test"] == "15 / 5"
    assert values["Problems"] == "0"
    assert any("20 images" in md.value for md in at.sidebar.markdown)


@pytest.mark.parametrize("count", [1])
def test_a_dataset_with_problems_lists_them(monkeypatch, tmp_path, count):
    root = generate(tmp_path / "d", count=20, seed=1, progress=False)
    victim = sorted((root / "annotations" / "trimaps").iterdir())[0]
    victim.unlink()
    at = app(monkeypatch, root, tmp_path / "ws").run()
    assert not at.exception
    values = {m.label: m.value for m in at.metric}
    assert values["Problems"] == str(count)
    assert victim.stem in at.dataframe[-1].value.to_string()
