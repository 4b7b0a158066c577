from pathlib import Path

import pytest

from core.config import Settings, check_run_name
from core.errors import PetSegError


def test_flag_beats_environment_beats_default(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert Settings.resolve().data == tmp_path / "data" / "oxford-iiit-pet"
    assert Settings.resolve().workspace == tmp_path / "workspace"

    monkeypatch.setenv("PETSEG_DATA", str(tmp_path / "env-data"))
    monkeypatch.setenv("PETSEG_HOME", str(tmp_path / "env-ws"))
    assert Settings.resolve().data == tmp_path / "env-data"
    assert Settings.resolve().workspace == tmp_path / "env-ws"

    flagged = Settings.resolve(data=tmp_path / "flag-data", workspace="flag-ws")
    assert flagged.data == tmp_path / "flag-data"
    assert flagged.workspace == tmp_path / "flag-ws"


def test_workspace_layout(tmp_path):
    s = Settings.resolve(data=tmp_path / "d", workspace=tmp_path / "ws")
    assert s.runs_dir == tmp_path / "ws" / "runs"
    assert s.run_dir("quick-1") == tmp_path / "ws" / "runs" / "quick-1"
    assert s.db_path == tmp_path / "ws" / "petseg.sqlite"
    assert s.masks_dir.parent == s.exports_dir.parent == Path(tmp_path / "ws")


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "x" * 65, "<b>run</b>"])
def test_run_names_that_could_escape_are_refused(name):
    with pytest.raises(PetSegError):
        check_run_name(name)


def test_roots_flag_beats_environment_beats_data_parent_and_workspace(monkeypatch, tmp_path):
    default = Settings.resolve(data=tmp_path / "d" / "oxford", workspace=tmp_path / "ws")
    assert default.roots == (tmp_path / "d", tmp_path / "ws")
    monkeypatch.setenv("PETSEG_ROOTS", f"{tmp_path / 'a'}:{tmp_path / 'b'}")
    assert Settings.resolve(data=tmp_path / "d" / "oxford").roots == (tmp_path / "a", tmp_path / "b")
    assert Settings.resolve(roots=[tmp_path / "c"]).roots == (tmp_path / "c",)


def test_inside_roots_resolves_dots_and_symlinks(tmp_path):
    s = Settings.resolve(data=tmp_path / "d" / "oxford", workspace=tmp_path / "ws")
    assert s.inside_roots(tmp_path / "d" / "other") == tmp_path / "d" / "other"
    assert s.inside_roots(tmp_path / "ws" / "x" / ".." / "y") == tmp_path / "ws" / "y"
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "out").symlink_to(tmp_path, target_is_directory=True)
    for outside in (tmp_path, tmp_path / "d" / ".." / "e", tmp_path / "d" / "out" / "e", "/etc"):
        with pytest.raises(PetSegError, match="outside the folders"):
            s.inside_roots(outside)
