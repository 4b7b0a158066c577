"""Cold and warm indexing time of ``core.dataset.open_dataset`` on a 7,390-image set.

    $ .venv/bin/python benchmarks/index_speed.py                    # generates a synthetic set in a temp folder
    $ .venv/bin/python benchmarks/index_speed.py --data /tmp/petseg-7390   # an existing set (real or generated)

Cold: an empty workspace, so every image header is read and every trimap decoded. Warm: the same folder
again, so the index comes from the parquet cache after one ``os.scandir`` pass (median of several runs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.dataset import open_dataset  # noqa: E402
from core.synth import generate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="dataset to index (default: generate --count images into a temp folder)")
    parser.add_argument("--count", type=int, default=7390)
    parser.add_argument("--warm-runs", type=int, default=5)
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="petseg-index-bench-"))
    try:
        if args.data:
            root = Path(args.data)
        else:
            root = scratch / "data"
            start = time.perf_counter()
            generate(root, count=args.count, seed=0, progress=False)
            print(f"generated {args.count} images in {time.perf_counter() - start:.1f} s")
        workspace = scratch / "workspace"

        start = time.perf_counter()
        ds = open_dataset(root, workspace)
        cold = time.perf_counter() - start
        warm_times = []
        for _ in range(args.warm_runs):
            start = time.perf_counter()
            open_dataset(root, workspace)
            warm_times.append(time.perf_counter() - start)
        warm = statistics.median(warm_times)
        print(f"index: {len(ds)} images, {len(ds.problems)} problems, {os.cpu_count()} CPUs")
        print(f"cold {cold:.2f} s ({len(ds) / cold:.0f} images/s), "
              f"warm {warm * 1000:.0f} ms (median of {len(warm_times)})")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
