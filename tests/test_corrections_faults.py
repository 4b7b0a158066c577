"""Crash safety and multi-process concurrency of the corrections store (SIGKILL at random moments, racing saves)."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from benchmarks.corrections_faults import EXIT_CONFLICT, EXIT_SAVED, audit, random_mask, run_trials
from core import corrections, db, groundtruth, ledger
from core.config import Settings
from core.dataset import load_trimap
from core.ledger import INCOMING, collect_garbage, history, latest, load_mask
from core.masks import encode_png, sha256_hex

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the fault tests fork processes")

ID = "Abyssinian_1"




def _incoming(settings: Settings) -> list[str]:
    folder = settings.masks_dir / INCOMING
    return os.listdir(folder) if folder.is_dir() else []


def _fork(body) -> int:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = body()
        finally:
            os._exit(code)
    return pid


def _wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the child")
        time.sleep(0.001)


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status)


# --- SIGKILL at random moments -------------------------------------------------------------------------


def test_sigkill_at_random_moments_leaves_the_old_or_the_new_state(settings: Settings, ds):
    counts = run_trials(settings, ds, trials=220, seed=7)
    assert counts.violations == []
    assert counts.trials == 220
    assert counts.completed + counts.killed_old_state + counts.killed_new_state == 220
    assert counts.killed_old_state > 0 and counts.completed > 0  # kills landed before and after the save
    assert _incoming(settings) == []
    # every row's file is there and hashes to its name; the ledger has one row per finished save
    assert audit(settings) == []
    check = ledger.check_store(settings)
    assert check.ok and check.orphans == [] and check.rows == counts.final_rows
    assert counts.final_rows >= counts.completed + counts.killed_new_state


# --- SIGKILL at chosen moments (deterministic) ---------------------------------------------------------


def test_a_temporary_left_by_a_kill_is_removed_by_the_next_open_and_never_a_version(settings: Settings, ds,
                                                                                      monkeypatch):
    old = corrections.save(settings, ds, ID, random_mask(load_trimap(ds, ID), np.random.default_rng(1)),
                           base_version=None, source="gt")
    new_mask = random_mask(load_trimap(ds, ID), np.random.default_rng(2))

    def stuck_after_writing_the_temporary() -> int:
        monkeypatch.setattr(ledger.os, "replace", lambda *a: time.sleep(60))
        corrections.save(settings, ds, ID, new_mask, base_version=1, source="correction")
        return 0

    pid = _fork(stuck_after_writing_the_temporary)
    _wait_until(lambda: _incoming(settings))
    _kill(pid)
    leftovers = _incoming(settings)
    assert len(leftovers) == 1
    # the temporary is complete (it was fsynced) but nothing refers to it
    assert latest(settings, ID) == old
    assert _incoming(settings) == []
    assert [c.version for c in history(settings, ID, include_deleted=True)] == [1]
    assert np.array_equal(groundtruth.current(settings, ds, ID)[0], load_mask(settings, old))


def test_a_kill_between_file_and_row_leaves_a_harmless_orphan_file(settings: Settings, ds, monkeypatch):
    mask = random_mask(load_trimap(ds, ID), np.random.default_rng(3))
    assert latest(settings, ID) is None  # creates the database, so the child only blocks at the row

    def stuck_before_the_row() -> int:
        monkeypatch.setattr(ledger.db, "transaction", lambda conn: time.sleep(60))
        corrections.save(settings, ds, ID, mask, base_version=None, source="gt")
        return 0

    pid = _fork(stuck_before_the_row)
    _wait_until(lambda: ledger.check_store(settings).orphans)
    _kill(pid)
    assert latest(settings, ID) is None  # the old state: no correction
    assert groundtruth.current(settings, ds, ID)[1] is None
    assert collect_garbage(settings) == 1
    assert ledger.check_store(settings).orphans == []
    saved = corrections.save(settings, ds, ID, mask, base_version=None, source="gt")  # nothing blocks a retry
    assert saved.version == 1 and np.array_equal(load_mask(settings, saved), mask)


def test_cleanup_leaves_the_temporary_of_a_save_in_flight_alone(settings: Settings, ds, monkeypatch):
    mask = random_mask(load_trimap(ds, ID), np.random.default_rng(4))
    release = settings.workspace / "release"

    def slow_replace(src, dst) -> None:
        _wait_until(release.exists, timeout=30)
        os.rename(src, dst)

    def slow_save() -> int:
        monkeypatch.setattr(ledger.os, "replace", slow_replace)
        corrections.save(settings, ds, ID, mask, base_version=None, source="gt")
        return EXIT_SAVED

    pid = _fork(slow_save)
    _wait_until(lambda: _incoming(settings))
    assert ledger.cleanup_temporaries(settings) == 0  # the writer holds the store lock
    assert latest(settings, ID) is None and len(_incoming(settings)) == 1
    release.touch()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == EXIT_SAVED
    assert np.array_equal(load_mask(settings, latest(settings, ID)), mask)
    assert _incoming(settings) == []


# --- two processes at once -----------------------------------------------------------------------------


def _race(settings: Settings, ds, masks: list[np.ndarray], base: int | None, retry: bool) -> list[int]:
    """Fork one saver per mask, release them together; return their exit codes."""
    read_end, write_end = os.pipe()

    def saver(mask: np.ndarray):
        def body() -> int:
            os.close(write_end)
            os.read(read_end, 1)  # wait for the start signal
            start_from = base
            for _ in range(50):
                try:
                    corrections.save(settings, ds, ID, mask, base_version=start_from, source="correction")
                    return EXIT_SAVED
                except ledger.ConflictError as exc:
                    if not retry:
                        return EXIT_CONFLICT
                    start_from = exc.current_version  # "save on top"
            return 1
        return body

    pids = [_fork(saver(mask)) for mask in masks]
    os.close(read_end)
    os.write(write_end, b"go" * len(masks))
    os.close(write_end)
    codes = []
    for pid in pids:
        _, status = os.waitpid(pid, 0)
        codes.append(os.waitstatus_to_exitcode(status))
    return codes


def test_two_processes_saving_from_the_same_base_give_one_version_and_one_conflict(settings: Settings, ds):
    rng = np.random.default_rng(5)
    base_mask = load_trimap(ds, ID)
    for round_number in range(15):
        current = latest(settings, ID)
        base = current.version if current else None
        masks = [random_mask(base_mask, rng), random_mask(base_mask, rng)]
        codes = _race(settings, ds, masks, base, retry=False)
        assert sorted(codes) == [EXIT_SAVED, EXIT_CONFLICT], f"round {round_number}: {codes}"
        rows = history(settings, ID)
        assert len(rows) == round_number + 1  # exactly one new version per round
        winner = masks[codes.index(EXIT_SAVED)]
        assert np.array_equal(load_mask(settings, rows[-1]), winner)
    assert audit(settings) == []


def test_racing_saves_that_save_on_top_after_a_conflict_lose_nothing(settings: Settings, ds):
    rng = np.random.default_rng(6)
    base_mask = load_trimap(ds, ID)
    expected: list[str] = []
    for _ in range(8):
        current = latest(settings, ID)
        masks = [random_mask(base_mask, rng) for _ in range(3)]
        codes = _race(settings, ds, masks, current.version if current else None, retry=True)
        assert codes == [EXIT_SAVED] * 3
        expected += [sha256_hex(encode_png(m)) for m in masks]
    rows = history(settings, ID)
    assert [c.version for c in rows] == list(range(1, 25))
    assert sorted(c.sha256 for c in rows) == sorted(expected)  # every save is a version: none lost
    assert all(c.parent_version == c.version - 1 for c in rows[1:])
    with db.session(settings) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
