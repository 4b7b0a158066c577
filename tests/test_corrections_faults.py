"""Crash safety and multi-process concurrency of the corrections store (SIGKILL at random moments, racing saves),
on both engines (conftest ``engine``: SQLite and PostgreSQL)."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import numpy as np
import pytest

from benchmarks.corrections_faults import EXIT_CONFLICT, EXIT_SAVED, audit, random_mask, run_trials
from core import corrections, groundtruth, ledger, store
from core.config import Settings
from core.dataset import load_trimap
from core.ledger import history, latest, load_mask
from core.masks import encode_png, sha256_hex

pytestmark = [pytest.mark.skipif(not hasattr(os, "fork"), reason="the fault tests fork processes"),
              pytest.mark.usefixtures("engine")]

ID = "Abyssinian_1"


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
    # every row's mask is there and hashes to its name; the ledger has one row per finished save
    assert audit(settings) == []
    check = ledger.check_store(settings)
    assert check.ok and check.orphans == [] and check.rows == counts.final_rows
    assert counts.final_rows >= counts.completed + counts.killed_new_state


# --- SIGKILL at chosen moments (deterministic) ---------------------------------------------------------


def test_a_kill_inside_the_save_transaction_leaves_the_old_state_and_blocks_no_one(settings: Settings, ds,
                                                                                     monkeypatch):
    old = corrections.save(settings, ds, ID, random_mask(load_trimap(ds, ID), np.random.default_rng(1)),
                           base_version=None, source="gt")
    new_mask = random_mask(load_trimap(ds, ID), np.random.default_rng(2))
    inside = settings.workspace / "inside"
    real_writing = store.writing

    @contextlib.contextmanager
    def stuck_before_commit(write_settings):
        with real_writing(write_settings) as conn:
            yield conn
            inside.touch()  # both rows are inserted, the transaction is open
            time.sleep(60)

    def save_and_hang() -> int:
        monkeypatch.setattr(store, "writing", stuck_before_commit)
        corrections.save(settings, ds, ID, new_mask, base_version=1, source="correction")
        return 0

    pid = _fork(save_and_hang)
    _wait_until(inside.exists, timeout=60)
    assert latest(settings, ID) == old  # readers do not wait for a writer, and never see its rows
    _kill(pid)
    assert latest(settings, ID) == old
    assert [c.version for c in history(settings, ID, include_deleted=True)] == [1]
    assert np.array_equal(groundtruth.current(settings, ds, ID)[0], load_mask(settings, old))
    check = ledger.check_store(settings)
    assert check.ok and check.orphans == [] and check.rows == 1  # the mask row went with the transaction
    # the dead writer's transaction holds nothing: the same save goes through at once
    saved = corrections.save(settings, ds, ID, new_mask, base_version=1, source="correction")
    assert saved.version == 2 and np.array_equal(load_mask(settings, saved), new_mask)


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
    assert audit(settings) == []
    if settings.db_url.startswith("sqlite"):
        with store.reading(settings) as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
