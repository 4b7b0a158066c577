"""AppTest of the entry page: onboarding without a dataset, statistics with one."""

import pytest
from streamlit.testing.v1 import AppTest

from core.synth import generate
from tests.conftest import APP, open_app, plain


def app(monkeypatch, data, workspace) -> AppTest:
    return open_app(monkeypatch, data, workspace, run=False)


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


# --- Home's folders stay inside the configured roots (no sign-in yet: whoever reaches the app types these) ---------


def _home_without_data(monkeypatch, tmp_path) -> AppTest:
    """No dataset yet: data would be <tmp>/inside/oxford, so the roots are <tmp>/inside and the workspace."""
    (tmp_path / "inside").mkdir(exist_ok=True)
    return app(monkeypatch, tmp_path / "inside" / "oxford", tmp_path / "ws").run()


def test_a_dataset_folder_outside_the_roots_is_refused(monkeypatch, tmp_path, sample_root):
    at = _home_without_data(monkeypatch, tmp_path)
    at.text_input(key="folder_choice").set_value(str(sample_root)).run()  # a real dataset, but outside
    at.button(key="folder_use").click().run()
    assert not at.exception
    assert any("outside the folders this server may use" in e.value for e in at.error), [e.value for e in at.error]
    assert "PETSEG_ROOTS" in plain(at.error[0].value) and str(sample_root) in plain(at.error[0].value)
    assert not at.metric  # still no dataset in use
    assert not (tmp_path / "ws" / "dashboard.json").exists()


def test_a_symlink_inside_the_roots_that_leads_outside_is_refused(monkeypatch, tmp_path, sample_root):
    (tmp_path / "inside").mkdir()
    (tmp_path / "inside" / "link").symlink_to(sample_root, target_is_directory=True)
    at = app(monkeypatch, tmp_path / "inside" / "oxford", tmp_path / "ws").run()
    at.text_input(key="folder_choice").set_value(str(tmp_path / "inside" / "link")).run()
    at.button(key="folder_use").click().run()
    assert any("outside the folders" in e.value for e in at.error)
    assert not at.metric


@pytest.mark.parametrize("target", ["{outside}/demo", "{inside}/../../escape", "/etc/petseg-demo"])
def test_generating_outside_the_roots_is_refused_and_writes_nothing(monkeypatch, tmp_path, target):
    at = _home_without_data(monkeypatch, tmp_path)
    path = target.format(outside=tmp_path / "outside", inside=tmp_path / "inside")
    at.number_input(key="demo_count").set_value(20)
    at.text_input(key="demo_target").set_value(path).run()
    at.button(key="demo_start").click().run()
    assert not at.exception
    assert any("outside the folders" in e.value for e in at.error)
    assert not (tmp_path / "outside").exists() and not (tmp_path.parent / "escape").exists()
    assert not at.metric


def test_downloading_outside_the_roots_is_refused_before_any_network(monkeypatch, tmp_path):
    import core.download

    def no_network(*args, **kwargs):
        raise AssertionError("download started for a folder outside the roots")

    monkeypatch.setattr(core.download, "download", no_network)
    at = _home_without_data(monkeypatch, tmp_path)
    at.text_input(key="download_target").set_value(str(tmp_path / "elsewhere")).run()
    at.button(key="download_start").click().run()
    assert not at.exception
    assert any("outside the folders" in e.value for e in at.error)


def test_petseg_roots_widens_and_replaces_the_default_roots(monkeypatch, tmp_path, sample_root):
    monkeypatch.setenv("PETSEG_ROOTS", str(sample_root.parent))
    at = _home_without_data(monkeypatch, tmp_path)
    at.text_input(key="folder_choice").set_value(str(sample_root)).run()
    at.button(key="folder_use").click().run()
    assert not at.exception and not at.error
    assert {m.label: m.value for m in at.metric}["Images"] == "20"
    # The configured roots replace the defaults: generating next to the (default) data folder is now refused.
    at.text_input(key="demo_target").set_value(str(tmp_path / "inside" / "demo")).run()
    at.button(key="demo_start").click().run()
    assert any("outside the folders" in e.value for e in at.error)


def test_picking_a_folder_does_not_widen_the_roots(monkeypatch, tmp_path):
    # Roots come from the configuration, never from the folder picked in the app: no climbing out step by step.
    inside = generate(tmp_path / "inside" / "deep" / "set", count=20, seed=1, progress=False)
    at = _home_without_data(monkeypatch, tmp_path)
    at.text_input(key="folder_choice").set_value(str(inside)).run()
    at.button(key="folder_use").click().run()
    assert {m.label: m.value for m in at.metric}["Images"] == "20"
    at.text_input(key="demo_target").set_value(str(tmp_path / "sibling")).run()
    at.button(key="demo_start").click().run()
    assert any("outside the folders" in e.value for e in at.error)
    assert not (tmp_path / "sibling").exists()


def test_a_remembered_existing_dataset_wins_over_a_missing_petseg_data_and_home_says_why(monkeypatch, tmp_path):
    demo = generate(tmp_path / "demo", count=20, seed=0, progress=False)
    at = app(monkeypatch, tmp_path / "nothing-here", tmp_path / "ws").run()
    # "Use a folder" pointed at the images/ folder suggests the dataset around it.
    at.text_input(key="folder_choice").set_value(str(demo / "images"))
    at.button(key="folder_use").click().run()
    assert not at.exception
    assert any("folder *inside* a dataset" in w.value and str(demo) in plain(w.value) for w in at.warning)
    at.button(key="folder_use_parent").click().run()
    assert at.metric[0].value == "20"
    # A restart with $PETSEG_DATA still pointing at a folder that does not exist opens the remembered dataset.
    again = AppTest.from_file(APP, default_timeout=60).run()
    assert not again.exception
    assert again.metric[0].value == "20"
    why = " ".join(plain(c.value) for c in again.caption)
    assert str(demo) in why and "picked last time on Home" in why and "which does not exist" in why
