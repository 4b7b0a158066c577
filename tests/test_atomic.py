import os
import time

import pytest

from core.atomic import atomic_create, atomic_open, atomic_write_bytes, is_temporary, sweep_temporaries


def test_atomic_write_replaces_content(tmp_path):
    target = tmp_path / "sub" / "file.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert os.listdir(target.parent) == ["file.bin"]


def test_failed_write_keeps_old_content_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "file.bin"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError):
        with atomic_open(target) as handle:
            handle.write(b"half")
            raise RuntimeError("crash mid-write")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["file.bin"]


def test_atomic_create_never_replaces_and_lands_under_the_first_free_name(tmp_path):
    taken = tmp_path / "a.zip"
    taken.write_bytes(b"someone else's")
    with atomic_create([taken, tmp_path / "a-2.zip", tmp_path / "a-3.zip"]) as new:
        new.handle.write(b"mine")
    assert new.path == tmp_path / "a-2.zip"
    assert taken.read_bytes() == b"someone else's" and new.path.read_bytes() == b"mine"
    assert sorted(os.listdir(tmp_path)) == ["a-2.zip", "a.zip"]  # no temporary left


def test_atomic_create_when_every_name_is_taken_keeps_them_all(tmp_path):
    (tmp_path / "a.zip").write_bytes(b"x")
    with pytest.raises(FileExistsError):
        with atomic_create([tmp_path / "a.zip"]) as new:
            new.handle.write(b"y")
    assert os.listdir(tmp_path) == ["a.zip"] and (tmp_path / "a.zip").read_bytes() == b"x"


def _leftover(folder, name, age):
    path = folder / f".{name}.abc123xy.tmp"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"half a checkpoint")
    os.utime(path, (time.time() - age, time.time() - age))
    return path


def test_sweep_removes_stale_leftovers_only(tmp_path):
    stale = _leftover(tmp_path / "runs" / "r1", "best.pt", age=2 * 3600)
    fresh = _leftover(tmp_path / "runs" / "r1", "last.pt", age=60)
    other = tmp_path / "runs" / "r1" / "metrics.csv"
    other.write_text("epoch\n")
    os.utime(other, (0, 0))
    in_masks = _leftover(tmp_path / "masks", "x.png", age=2 * 3600)

    assert sweep_temporaries(tmp_path, dry_run=True, skip=["masks"]) == [stale]
    assert stale.exists()
    assert sweep_temporaries(tmp_path, skip=["masks"]) == [stale]
    assert not stale.exists() and fresh.exists() and other.exists() and in_masks.exists()


def test_sweep_never_touches_a_temporary_that_is_still_being_written(tmp_path):
    target = tmp_path / "best.pt"
    with atomic_open(target) as handle:
        handle.write(b"slow write")
        (tmp,) = [p for p in tmp_path.iterdir() if is_temporary(p.name)]
        os.utime(tmp, (0, 0))  # looks ancient, but its writer is alive and holds the lock
        assert sweep_temporaries(tmp_path) == []
        assert tmp.exists()
    assert target.read_bytes() == b"slow write"
