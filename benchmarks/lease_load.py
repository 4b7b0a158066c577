"""Leases and the audit trail under load, on SQLite and PostgreSQL: what claiming, renewing and Next cost.

    python benchmarks/lease_load.py [--annotators 8] [--rounds 200]

Per engine it prints: the latency of one claim (an upsert) uncontended, one renew, one ``held_by_others`` read
with N live leases (what Annotate does per run), the contended race (N threads claiming one image at once:
exactly one must win, every round), and one save with its audit row against one without (``audit.record``
patched out) to show what the trail adds to a save.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks.pg_cluster import PostgresCluster, postgres_bin  # noqa: E402
from core import audit, corrections, groundtruth, leases, store  # noqa: E402
from core.config import Settings  # noqa: E402
from core.dataset import open_dataset  # noqa: E402
from core.synth import generate  # noqa: E402


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    return (f"p50 {statistics.median(ordered) * 1000:.2f} ms, "
            f"p95 {ordered[int(0.95 * (len(ordered) - 1))] * 1000:.2f} ms")


def _timed(function, rounds: int) -> list[float]:
    out = []
    for i in range(rounds):
        start = time.perf_counter()
        function(i)
        out.append(time.perf_counter() - start)
    return out


def run(settings: Settings, ds, name: str, annotators: int, rounds: int) -> None:
    ids = ds.ids()
    store.engine(settings)
    print(f"== {name}")
    print(f"claim (uncontended)      {_ms(_timed(lambda i: leases.claim(settings, ids[i % len(ids)], 'a'), rounds))}")
    print(f"renew                    {_ms(_timed(lambda i: leases.renew(settings, ids[i % len(ids)], 'a'), rounds))}")
    for k in range(annotators):
        leases.claim(settings, ids[-1 - k], f"other{k}")
    print(f"held_by_others ({annotators} live) "
          f"{_ms(_timed(lambda i: leases.held_by_others(settings, 'a'), rounds))}")
    wins, racing = [], []
    for r in range(rounds // 10):
        image_id = ids[r % len(ids)]
        with store.writing(settings) as conn:
            conn.execute(leases.leases.delete())
        barrier = threading.Barrier(annotators)
        results: dict[str, str] = {}

        def claim(who: str, image_id: str = image_id, barrier=barrier, results=results) -> None:
            barrier.wait()
            start = time.perf_counter()
            results[who] = leases.claim(settings, image_id, who).holder
            racing.append(time.perf_counter() - start)

        threads = [threading.Thread(target=claim, args=(f"r{k}",)) for k in range(annotators)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wins.append(sum(1 for who, holder in results.items() if who == holder))
    print(f"race of {annotators} claimers x {len(wins)} rounds: winners per round {sorted(set(wins))} "
          f"(must be [1]); claim under contention {_ms(racing)}")

    def save(i: int) -> None:
        image_id = ids[i % len(ids)]
        mask, version = groundtruth.current(settings, ds, image_id)
        mask = np.array(mask)
        mask[i % mask.shape[0], :] = 1 + (i % 2)
        corrections.save(settings, ds, image_id, mask, base_version=version, source="gt", author="bench")

    with_audit = _timed(save, rounds // 4)
    real = audit.record
    audit.record = lambda *a, **k: None
    try:
        without = _timed(save, rounds // 4)
    finally:
        audit.record = real
    print(f"save with its audit row  {_ms(with_audit)}\nsave without (patched)   {_ms(without)}")
    store.dispose_all()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--annotators", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="petseg-lease-bench-"))
    data = generate(root / "data", count=40, seed=1, progress=False)
    ds = open_dataset(data, root / "ws")
    run(Settings.resolve(data=data, workspace=root / "ws"), ds, "sqlite", args.annotators, args.rounds)
    bindir = postgres_bin()
    if bindir is None:
        print("PostgreSQL not installed: its half is skipped")
        return
    cluster = PostgresCluster(bindir)
    try:
        cluster.admin("CREATE DATABASE bench")
        run(Settings.resolve(data=data, workspace=root / "ws-pg", db=cluster.url("bench")), ds, "postgresql",
            args.annotators, args.rounds)
    finally:
        store.dispose_all()
        cluster.remove()


if __name__ == "__main__":
    main()
