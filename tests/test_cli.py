"""The command line's boundary: file-system errors a user can fix become one ``error:`` line and exit 2, real
bugs keep their traceback; ``gc`` removes leftovers of crashes and save conflicts, and nothing else."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import numpy as np
import pytest
from _tiny_dataset import copy_sample

from core import cli
from core.config import Settings
from core.corrections import save
from core.dataset import load_trimap, open_dataset
from core.ledger import check_store
from core.masks import PET, encode_png, sha256_hex


@pytest.fixture
def sample(tmp_path: Path, sample_root: Path, workspace: Path):
    root = copy_sample(sample_root, tmp_path / "sample")
    return Settings.resolve(data=root, workspace=workspace)


# --- OS errors at the boundary ------------------------------------------------------------------------------------


def test_an_overlong_workspace_path_is_an_error_line_and_exit_2(sample, tmp_path, capsys):
    long_workspace = tmp_path / ("w" * 300)  # one component over NAME_MAX (255)
    code = cli.main(["export", "--data", str(sample.data), "--workspace", str(long_workspace)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "w" * 300 in err and "File name too long" in err and "choose a shorter path" in err


def test_a_workspace_under_a_file_is_an_error_line_and_exit_2(sample, tmp_path, capsys):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file")
    code = cli.main(["export", "--data", str(sample.data), "--workspace", str(blocker / "ws")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and str(blocker) in err and "Traceback" not in err


def test_an_unwritable_output_is_an_error_line(sample, tmp_path, capsys, monkeypatch):
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path / "exports"))

    monkeypatch.setattr("core.atomic.tempfile.mkstemp", read_only)
    code = cli.main(["export", "--data", str(sample.data), "--workspace", str(sample.workspace)])
    err = capsys.readouterr().err
    assert code == 2 and "Read-only file system" in err and "choose a writable folder" in err


def test_os_errors_that_mean_a_bug_keep_their_traceback(sample, monkeypatch):
    def buggy(*args, **kwargs):
        raise OSError(errno.EBADF, "Bad file descriptor")

    monkeypatch.setattr("core.export.export_archive", buggy)
    with pytest.raises(OSError, match="Bad file descriptor"):
        cli.main(["export", "--data", str(sample.data), "--workspace", str(sample.workspace)])


# --- gc -----------------------------------------------------------------------------------------------------------


def _leftover(path: Path, age: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"half written")
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def _old_mask_file(settings: Settings, mask) -> str:
    """A PNG of the mask folder PetSeg kept before mask bytes moved into the database."""
    data = encode_png(mask)
    digest = sha256_hex(data)
    rel_path = f"masks/{digest[:2]}/{digest}.png"
    (settings.workspace / rel_path).parent.mkdir(parents=True, exist_ok=True)
    (settings.workspace / rel_path).write_bytes(data)
    return rel_path


def test_gc_lists_then_removes_stale_temporaries_and_old_mask_files_only(sample, capsys):
    ws = sample.workspace
    ds = open_dataset(sample.data, ws)
    image_id = ds.ids()[0]
    save(sample, ds, image_id, load_trimap(ds, image_id), base_version=None, source="gt", author="Ana")
    orphan = _old_mask_file(sample, load_trimap(ds, image_id))  # the database holds these bytes
    other = load_trimap(ds, image_id).copy()
    other[:25] = PET
    unknown = _old_mask_file(sample, other)  # it does not hold these: kept
    stale = _leftover(ws / "runs" / "r1" / ".best.pt.a1b2c3d4.tmp", age=3 * 3600)
    fresh = _leftover(ws / "runs" / "r1" / ".last.pt.e5f6g7h8.tmp", age=60)
    checkpoint = _leftover(ws / "runs" / "r1" / "best.pt", age=3 * 3600)

    assert cli.main(["gc", "--workspace", str(ws), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would remove runs/r1/{stale.name}" in out and f"would remove {orphan}" in out
    assert "2 files would be removed (dry run)" in out and fresh.name not in out
    assert stale.exists() and (ws / orphan).exists()

    assert cli.main(["gc", "--workspace", str(ws)]) == 0
    out = capsys.readouterr().out
    assert f"removed runs/r1/{stale.name}" in out and f"removed {orphan}" in out and "2 files removed" in out
    assert not stale.exists() and not (ws / orphan).exists()
    assert fresh.exists() and checkpoint.exists() and (ws / unknown).exists()
    store = check_store(sample)
    assert store.ok and store.orphans == [] and store.rows == 1


def test_gc_without_a_ledger_leaves_mask_files_alone(tmp_path, capsys):
    ws = tmp_path / "ws"
    mask_file = ws / "masks" / "ab" / ("ab" * 32 + ".png")
    mask_file.parent.mkdir(parents=True)
    mask_file.write_bytes(encode_png(np.full((4, 4), 2, np.uint8)))
    assert cli.main(["gc", "--workspace", str(ws)]) == 0
    out = capsys.readouterr().out
    assert mask_file.exists() and "no corrections database" in out and "0 files removed" in out
    assert not (ws / "petseg.sqlite").exists()


def test_export_sweeps_stale_temporaries_first(sample, capsys):
    ws = sample.workspace
    stale = _leftover(ws / "runs" / "r1" / ".last.pt.a1b2c3d4.tmp", age=2 * 3600)
    crashed_export = _leftover(ws / "exports" / ".trimap-20250101-120000.zip.q1w2e3r4.tmp", age=2 * 3600)
    fresh = _leftover(ws / "runs" / "r1" / ".best.pt.e5f6g7h8.tmp", age=5)
    assert cli.main(["export", "--data", str(sample.data), "--workspace", str(ws)]) == 0
    assert not stale.exists() and not crashed_export.exists() and fresh.exists()
