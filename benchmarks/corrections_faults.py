"""Fault benchmark for the corrections store: SIGKILL a process in the middle of a save, then audit the store.

    $ .venv/bin/python benchmarks/corrections_faults.py               # 1,000 trials on a copy of the real sample
    $ .venv/bin/python benchmarks/corrections_faults.py --trials 200 --seed 3 --db postgresql

``--db``: ``sqlite`` (the workspace file, default), ``postgresql`` (a throwaway local cluster) or a database URL.

Each trial forks a child that saves one new version of a random image, and kills it with SIGKILL after a
random delay drawn from [0, 1.1 x the time a whole save takes] (re-measured every 100 trials, as the
machine is shared), so kills land everywhere: while connecting, inside the transaction (mask row and ledger
row inserted, not committed), inside the commit, after it. After each kill the harness opens the store and
checks that:

- the latest version is the old one or exactly the new one (version + 1 with the new content);
- at most one new row exists, and its mask is in the store and matches its sha256 (never a row without it).

It ends with a full audit (every row's mask re-hashed, SQLite ``integrity_check``) and prints the counts and the
median in-process save latency. ``run_trials`` is also what ``tests/test_corrections_faults.py`` runs (with
fewer, smaller trials).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make `core` importable from the project root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402

from benchmarks.pg_cluster import PostgresCluster, postgres_bin  # noqa: E402
from core import corrections, ledger, store  # noqa: E402
from core.config import Settings  # noqa: E402
from core.dataset import Dataset, load_trimap, open_dataset  # noqa: E402
from core.errors import PetSegError  # noqa: E402
from core.masks import BACKGROUND, PET, encode_png, sha256_hex  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "oxford-pet-sample"
EXIT_SAVED, EXIT_CONFLICT, EXIT_ERROR = 0, 3, 4
RECALIBRATE_EVERY = 100


@dataclass
class FaultCounts:
    trials: int = 0
    completed: int = 0  # the save finished before the kill arrived
    killed_old_state: int = 0  # killed before the commit: the image still shows its previous version
    killed_new_state: int = 0  # killed after the commit: the new version is there, complete
    violations: list[str] = field(default_factory=list)  # anything here is a bug
    kill_window_s: float = 0.0
    final_rows: int = 0

    def lines(self) -> list[str]:
        return [
            f"trials                      {self.trials}",
            f"  save completed before kill {self.completed}",
            f"  killed, old state kept     {self.killed_old_state}",
            f"  killed, new state complete {self.killed_new_state}",
            f"rows in the ledger          {self.final_rows}",
            f"violations                  {len(self.violations)}",
            f"kill window (median)        {self.kill_window_s * 1000:.1f} ms",
        ]


def random_mask(base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A plausible edit of ``base``: one random rectangle repainted pet or background."""
    mask = base.copy()
    height, width = mask.shape
    y0, x0 = int(rng.integers(0, height)), int(rng.integers(0, width))
    y1, x1 = int(rng.integers(y0 + 1, height + 1)), int(rng.integers(x0 + 1, width + 1))
    mask[y0:y1, x0:x1] = PET if rng.random() < 0.5 else BACKGROUND
    return mask


def _child_save(settings: Settings, ds: Dataset, image_id: str, mask: np.ndarray, base: int | None) -> None:
    """Body of a forked child: one save, then ``os._exit`` (never return into the parent's code)."""
    code = EXIT_ERROR
    try:
        corrections.save(settings, ds, image_id, mask, base_version=base, source="correction", author="fault")
        code = EXIT_SAVED
    except ledger.ConflictError:
        code = EXIT_CONFLICT
    except BaseException as exc:  # noqa: BLE001 - reported through the exit code and stderr
        print(f"child error: {exc!r}", file=sys.stderr)
    finally:
        os._exit(code)


def fork_save(settings: Settings, ds: Dataset, image_id: str, mask: np.ndarray, base: int | None) -> int:
    pid = os.fork()
    if pid == 0:
        _child_save(settings, ds, image_id, mask, base)
    return pid


def _max_version(settings: Settings, image_id: str) -> int:
    rows = ledger.history(settings, image_id, include_deleted=True)
    return rows[-1].version if rows else 0


def calibrate(settings: Settings, ds: Dataset, ids: list[str], bases: dict[str, np.ndarray],
              rng: np.random.Generator, runs: int = 5) -> float:
    """Median wall time of an uninterrupted fork + save + exit."""
    times = []
    for _ in range(runs):
        image_id = ids[int(rng.integers(len(ids)))]
        current = ledger.latest(settings, image_id)
        start = time.perf_counter()
        pid = fork_save(settings, ds, image_id, random_mask(bases[image_id], rng), current.version if current else None)
        _, status = os.waitpid(pid, 0)
        times.append(time.perf_counter() - start)
        if os.waitstatus_to_exitcode(status) != EXIT_SAVED:
            raise RuntimeError(f"calibration save failed with status {status}")
    return statistics.median(times)


def run_trials(
    settings: Settings, ds: Dataset, trials: int, seed: int = 0, ids: list[str] | None = None
) -> FaultCounts:
    rng = np.random.default_rng(seed)
    ids = ids or ds.ids()
    bases = {i: load_trimap(ds, i) for i in ids}
    counts = FaultCounts()
    windows = []
    recent: list[tuple[str, np.ndarray]] = []

    for trial in range(trials):
        if trial % RECALIBRATE_EVERY == 0:  # the machine is shared: follow its current speed
            windows.append(1.1 * calibrate(settings, ds, ids, bases, rng))
            counts.kill_window_s = statistics.median(windows)
            window = windows[-1]
        image_id = ids[int(rng.integers(len(ids)))]
        before = ledger.latest(settings, image_id)
        before_max = _max_version(settings, image_id)
        if recent and rng.random() < 0.1:  # sometimes content the store already has (shared file)
            image_id, mask = recent[int(rng.integers(len(recent)))]
            before = ledger.latest(settings, image_id)
            before_max = _max_version(settings, image_id)
        else:
            mask = random_mask(bases[image_id], rng)
        new_sha = sha256_hex(encode_png(mask))

        pid = fork_save(settings, ds, image_id, mask, before.version if before else None)
        time.sleep(float(rng.uniform(0.0, window)))
        os.kill(pid, signal.SIGKILL)  # a child that already exited is a zombie: the kill is a no-op
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status)
        counts.trials += 1

        new_rows = _rows_after(settings, image_id, before_max)
        after = ledger.latest(settings, image_id)
        problems = _check_trial(settings, image_id, before, before_max, after, new_rows, new_sha, killed, status)
        if problems:
            counts.violations.extend(f"trial {trial}: {p}" for p in problems)
        elif not killed:
            counts.completed += 1
        elif after is not None and (before is None or after.version != before.version):
            counts.killed_new_state += 1
        else:
            counts.killed_old_state += 1
        recent = (recent + [(image_id, mask)])[-20:]

    counts.violations.extend(audit(settings))
    counts.final_rows = ledger.check_store(settings).rows
    return counts


def _rows_after(settings: Settings, image_id: str, version: int) -> list[ledger.Correction]:
    return [c for c in ledger.history(settings, image_id, include_deleted=True) if c.version > version]


def _check_trial(settings, image_id, before, before_max, after, new_rows, new_sha, killed, status) -> list[str]:
    problems = []
    if not killed and os.waitstatus_to_exitcode(status) != EXIT_SAVED:
        problems.append(f"child exited with {os.waitstatus_to_exitcode(status)} instead of saving")
    if len(new_rows) > 1:
        problems.append(f"{len(new_rows)} rows for one save")
    for row in new_rows:
        if row.version != before_max + 1 or row.sha256 != new_sha:
            problems.append(f"unexpected new row v{row.version} sha {row.sha256[:8]}")
        try:
            ledger.load_mask(settings, row)
        except PetSegError as exc:
            problems.append(f"row v{row.version} without its complete mask: {exc}")
    old_state = after == before
    new_state = after is not None and after.version == before_max + 1 and after.sha256 == new_sha
    if not (old_state or new_state):
        problems.append(f"latest is {after} instead of the old or the new version")
    if not killed and not new_state:
        problems.append("a completed save is not the latest version")
    return problems


def audit(settings: Settings) -> list[str]:
    """Every row's mask is in the store and matches its sha256; a SQLite file also passes ``integrity_check``."""
    problems = []
    if settings.db_url.startswith("sqlite"):
        with store.reading(settings) as conn:
            integrity = conn.exec_driver_sql("PRAGMA integrity_check").scalar()
        if integrity != "ok":
            problems.append(f"sqlite integrity_check: {integrity}")
    check = ledger.check_store(settings)
    problems.extend(f"check_store: missing {m}" for m in check.missing)
    problems.extend(f"check_store: corrupt {m}" for m in check.corrupt)
    return problems


@contextlib.contextmanager
def database(choice: str, workspace: Path):
    """``(URL, cluster or None)`` to benchmark against: the workspace's SQLite file, a throwaway PostgreSQL
    cluster, or the URL ``choice``."""
    if choice == "sqlite":
        yield f"sqlite:///{workspace / 'petseg.sqlite'}", None
    elif choice == "postgresql":
        bindir = postgres_bin()
        if bindir is None:
            raise SystemExit("PostgreSQL is not installed (apt-get install postgresql)")
        cluster = PostgresCluster(bindir)
        try:
            cluster.admin("CREATE DATABASE petseg_bench")
            yield cluster.url("petseg_bench"), cluster
        finally:
            store.dispose_all()
            cluster.remove()
    else:
        yield choice, None


def save_latency(settings: Settings, ds: Dataset, saves: int, seed: int = 1) -> list[float]:
    """Wall time of in-process ``save`` calls (the editor's save button), in seconds."""
    rng = np.random.default_rng(seed)
    ids = ds.ids()
    times = []
    for _ in range(saves):
        image_id = ids[int(rng.integers(len(ids)))]
        current = ledger.latest(settings, image_id)
        mask = random_mask(load_trimap(ds, image_id), rng)
        start = time.perf_counter()
        corrections.save(settings, ds, image_id, mask, base_version=current.version if current else None,
                         source="correction")
        times.append(time.perf_counter() - start)
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latency-saves", type=int, default=100)
    parser.add_argument("--data", type=Path, default=SAMPLE, help="dataset to copy (default: the real sample)")
    parser.add_argument("--db", default="sqlite", help="sqlite (default), postgresql (throwaway cluster) or a URL")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="petseg-faults-") as tmp, \
            database(args.db, Path(tmp) / "workspace") as (url, _cluster):
        root = Path(tmp) / "data"
        shutil.copytree(args.data, root)
        settings = Settings.resolve(data=root, workspace=Path(tmp) / "workspace", db=url)
        ds = open_dataset(settings.data, settings.workspace)
        print(f"dataset: {len(ds)} images from {args.data}; store {store.shown(url)}")

        start = time.perf_counter()
        counts = run_trials(settings, ds, args.trials, seed=args.seed)
        elapsed = time.perf_counter() - start
        print(*counts.lines(), sep="\n")
        print(f"elapsed                     {elapsed:.1f} s")
        for violation in counts.violations[:20]:
            print(f"VIOLATION: {violation}")

        latency = save_latency(settings, ds, args.latency_saves)
        shape = ds.table[["height", "width"]].median()
        print(
            f"save latency (in-process, {len(latency)} saves, ~{int(shape.width)}x{int(shape.height)} masks): "
            f"median {statistics.median(latency) * 1000:.1f} ms, "
            f"p90 {np.percentile(latency, 90) * 1000:.1f} ms"
        )
    return 1 if counts.violations else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except sa.exc.SQLAlchemyError as exc:  # pragma: no cover - surfaced as a failure, never swallowed
        print(f"database error: {exc}", file=sys.stderr)
        sys.exit(2)
