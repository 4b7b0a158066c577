"""Team load on one store: N annotator processes loop open -> edit -> save for a fixed time, with faults.

    $ .venv/bin/python benchmarks/team_load.py --db postgresql --annotators 20 --duration 30
    $ .venv/bin/python benchmarks/team_load.py --db sqlite --annotators 20 --duration 30
    $ .venv/bin/python benchmarks/team_load.py --db postgresql --duration 40 --kills 200 --restart   # faults

``--db``: ``postgresql`` (a throwaway local cluster, fsync on), ``sqlite`` (the workspace file) or a URL.

Each annotator is a forked process that repeats what the Annotate page does: read the image's latest version and
mask (``groundtruth.current``), repaint a random rectangle, ``corrections.save`` on top of the version it read.
A quarter of the opens go to a few shared "hot" images so that saves collide (conflicts are expected and
counted); the rest go to the annotator's own images. Every annotator journals each attempt before the save
and its outcome after it (acknowledged with its version, conflict, or database unavailable), flushed line by line.

Faults: ``--kills N`` SIGKILLs a random annotator N times spread over the run (a new one takes its place);
``--restart`` runs ``pg_ctl restart -m fast`` halfway (throwaway cluster only). Annotators that see the database
go away retry after a short pause, as a person would press save again.

At the end every journal is replayed against the final ledger: each acknowledged save must be there with its
version, content hash and note (lost = 0); no attempt may appear twice (duplicated = 0); an attempt whose
outcome was never acknowledged (killed mid-save, or cut off by the restart) is either there completely (row and
mask verified) or absent; and ``check_store`` re-hashes every mask. Prints saves/s and save latency percentiles
(acknowledged saves, wall time of ``corrections.save``).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make `core` importable from the project root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.corrections_faults import SAMPLE, database, random_mask  # noqa: E402
from core import corrections, groundtruth, ledger, store  # noqa: E402
from core.config import Settings  # noqa: E402
from core.dataset import Dataset, open_dataset  # noqa: E402
from core.masks import encode_png, sha256_hex  # noqa: E402

HOT_IMAGES = 3
HOT_SHARE = 0.25


def annotator(settings: Settings, ds: Dataset, worker: str, own: list[str], hot: list[str], journal: Path,
              seed: int, think: float = 0.0) -> None:
    """Body of a forked annotator: loop until killed or told to stop (SIGTERM)."""
    rng = np.random.default_rng(seed)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    with open(journal, "a", buffering=1) as log:  # line-buffered: a line is written when it is complete
        n = 0
        while not stop:
            pool = hot if rng.random() < HOT_SHARE else own
            image_id = pool[int(rng.integers(len(pool)))]
            try:
                mask, version = groundtruth.current(settings, ds, image_id)
            except store.StoreUnavailable:
                time.sleep(0.2)
                continue
            if think:
                time.sleep(float(rng.uniform(0.5, 1.5)) * think)  # the person painting
            edited = random_mask(mask, rng)
            n += 1
            note = f"{worker}-{n}"
            log.write(f"attempt {note} {image_id} {version or 0} {sha256_hex(encode_png(edited))}\n")
            started = time.perf_counter()
            try:
                saved = corrections.save(settings, ds, image_id, edited, base_version=version, source="correction",
                                         author=worker, note=note)
            except ledger.ConflictError:
                log.write(f"conflict {note}\n")
                continue
            except store.StoreUnavailable:
                log.write(f"unavailable {note}\n")
                time.sleep(0.2)
                continue
            log.write(f"ack {note} {saved.version} {(time.perf_counter() - started) * 1000:.2f}\n")


def replay(settings: Settings, journals: list[Path]) -> dict:
    """Check every journaled attempt against the final ledger (see the module docstring)."""
    attempts, outcomes = {}, {}
    for path in journals:
        if not path.exists():  # killed before it opened its journal
            continue
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 5 and parts[0] == "attempt":
                attempts[parts[1]] = (parts[2], int(parts[3]), parts[4])
            elif (len(parts) == 4 and parts[0] == "ack") or (len(parts) == 2 and parts[0] in ("conflict",
                                                                                              "unavailable")):
                outcomes[parts[1]] = parts
    rows = {}
    notes = Counter()
    for image_id in {a[0] for a in attempts.values()}:
        for row in ledger.history(settings, image_id, include_deleted=True):
            notes[row.note] += 1
            rows[row.note] = row
    latencies, lost, wrong, unacked_present, unacked_absent, conflicted_present = [], [], [], 0, 0, []
    for note, (image_id, _base, sha) in attempts.items():
        outcome = outcomes.get(note)
        row = rows.get(note)
        if outcome and outcome[0] == "ack":
            latencies.append(float(outcome[3]))
            if row is None:
                lost.append(note)
            elif (row.image_id, row.version, row.sha256) != (image_id, int(outcome[2]), sha):
                wrong.append(note)
        elif outcome and outcome[0] == "conflict":
            if row is not None:
                conflicted_present.append(note)  # a refused save must leave nothing
        elif row is None:
            unacked_absent += 1
        elif row.sha256 == sha and row.image_id == image_id:
            unacked_present += 1
        else:
            wrong.append(note)
    check = ledger.check_store(settings)
    kinds = Counter(o[0] for o in outcomes.values())
    return {
        "attempts": len(attempts), "acknowledged": kinds["ack"], "conflicts": kinds["conflict"],
        "unavailable": kinds["unavailable"], "latencies": latencies, "lost": lost, "wrong": wrong,
        "duplicated": [n for n, c in notes.items() if c > 1 and n in attempts],
        "conflicted_present": conflicted_present, "unacked_present": unacked_present,
        "unacked_absent": unacked_absent, "store_ok": check.ok, "rows": check.rows,
    }


def run(settings: Settings, ds: Dataset, *, annotators: int, duration: float, kills: int, restart, folder: Path,
        seed: int, think: float = 0.0) -> tuple[dict, dict]:
    ids = ds.ids()
    hot, rest = ids[:HOT_IMAGES], ids[HOT_IMAGES:]
    store.engine(settings)  # create and migrate before the fork
    store.dispose_all()
    rng = random.Random(seed)
    workers: dict[int, int] = {}
    journals: list[Path] = []
    spawned = 0

    def spawn(index: int) -> None:
        nonlocal spawned
        spawned += 1
        journal = folder / f"annotator-{index}-{spawned}.log"
        journals.append(journal)
        own = [rest[(index + k * annotators) % len(rest)] for k in range(max(1, len(rest) // annotators))]
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                annotator(settings, ds, f"a{index}.{spawned}", own, hot, journal, seed * 1000 + spawned, think)
                code = 0
            finally:
                os._exit(code)
        workers[index] = pid

    try:
        return _drive(spawn, workers, journals, settings, annotators, duration, kills, restart, rng)
    finally:
        for pid in workers.values():  # whatever happened, leave no annotator behind
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass


def _drive(spawn, workers, journals, settings, annotators, duration, kills, restart, rng) -> tuple[dict, dict]:
    for index in range(annotators):
        spawn(index)
    start = time.monotonic()
    events = {"kills": 0, "killed_mid_save": 0, "restarts": 0, "restart_s": 0.0}
    kill_every = duration / kills if kills else None
    next_kill = start + (kill_every or duration)
    restart_at = start + duration / 2 if restart else None
    while time.monotonic() < start + duration:
        now = time.monotonic()
        if restart_at and now >= restart_at:
            began = time.monotonic()
            restart()
            events["restarts"] += 1
            events["restart_s"] = time.monotonic() - began
            restart_at = None
        while kill_every and now >= next_kill and events["kills"] < kills:  # catch up when the machine is slow
            index = rng.randrange(annotators)
            pid = workers[index]
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            events["kills"] += 1
            journal = journals_of(journals, index)[-1]
            last = journal.read_text().splitlines() if journal.exists() else []
            if last and last[-1].startswith("attempt"):
                events["killed_mid_save"] += 1
            spawn(index)
            next_kill += kill_every
        time.sleep(0.005)
    elapsed = time.monotonic() - start
    for pid in workers.values():
        os.kill(pid, signal.SIGTERM)
    for pid in list(workers.values()):
        os.waitpid(pid, 0)
    workers.clear()
    events["elapsed"] = elapsed
    return replay(settings, journals), events


def journals_of(journals: list[Path], index: int) -> list[Path]:
    return [p for p in journals if p.name.startswith(f"annotator-{index}-")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="postgresql", help="postgresql (throwaway cluster), sqlite, or a URL")
    parser.add_argument("--annotators", type=int, default=20)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds")
    parser.add_argument("--kills", type=int, default=0, help="SIGKILL this many annotators during the run")
    parser.add_argument("--restart", action="store_true", help="pg_ctl restart -m fast halfway (throwaway cluster)")
    parser.add_argument("--think", type=float, default=0.0,
                        help="mean seconds an annotator paints between opening and saving (default 0: back to back)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=SAMPLE, help="dataset to copy (default: the real sample)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="petseg-team-") as tmp, \
            database(args.db, Path(tmp) / "workspace") as (url, cluster):
        root = Path(tmp) / "data"
        shutil.copytree(args.data, root)
        settings = Settings.resolve(data=root, workspace=Path(tmp) / "workspace", db=url)
        ds = open_dataset(settings.data, settings.workspace)
        if args.restart and cluster is None:
            raise SystemExit("--restart needs --db postgresql (the benchmark's own cluster)")
        (Path(tmp) / "journals").mkdir()
        print(f"store {store.shown(url)}; {args.annotators} annotators for {args.duration:.0f} s on {len(ds)} "
              f"images ({HOT_IMAGES} shared hot images); think {args.think} s; kills {args.kills}; "
              f"restart {args.restart}")
        result, events = run(settings, ds, annotators=args.annotators, duration=args.duration, kills=args.kills,
                             restart=cluster.restart if cluster and args.restart else None,
                             folder=Path(tmp) / "journals", seed=args.seed, think=args.think)
    lat = np.array(result["latencies"]) if result["latencies"] else np.array([np.nan])
    print(f"saves acknowledged     {result['acknowledged']} ({result['acknowledged'] / events['elapsed']:.1f}/s)")
    print(f"save latency           p50 {np.percentile(lat, 50):.1f} ms, p95 {np.percentile(lat, 95):.1f} ms, "
          f"p99 {np.percentile(lat, 99):.1f} ms")
    print(f"conflicts detected     {result['conflicts']}")
    print(f"database unavailable   {result['unavailable']} saves refused (retried)")
    print(f"kills                  {events['kills']} ({events['killed_mid_save']} mid-save)")
    if events["restarts"]:
        print(f"server restarts        {events['restarts']} (pg_ctl restart -m fast took {events['restart_s']:.1f} s)")
    print(f"unacknowledged saves   {result['unacked_present']} fully present, {result['unacked_absent']} absent")
    print(f"lost                   {len(result['lost'])}")
    print(f"duplicated             {len(result['duplicated'])}")
    print(f"wrong or torn          {len(result['wrong']) + len(result['conflicted_present'])}")
    print(f"store check            {'ok' if result['store_ok'] else 'FAILED'} ({result['rows']} rows)")
    bad = result["lost"] or result["duplicated"] or result["wrong"] or result["conflicted_present"]
    return 1 if bad or not result["store_ok"] else 0


if __name__ == "__main__":
    sys.exit(main())
