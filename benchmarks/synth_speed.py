"""How long ``core.synth.generate`` takes for a full-size set (7,390 images, like the real release).

    $ .venv/bin/python benchmarks/synth_speed.py                  # into a temporary folder, deleted afterwards
    $ .venv/bin/python benchmarks/synth_speed.py --count 1000 --workers 1
    $ .venv/bin/python benchmarks/synth_speed.py --out /tmp/petseg-7390   # keep the set (e.g. for index_speed.py)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.synth import generate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=7390)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None, help="default: the CPU count")
    parser.add_argument("--out", help="keep the generated set here (must not exist)")
    args = parser.parse_args()

    scratch = None if args.out else Path(tempfile.mkdtemp(prefix="petseg-synth-bench-"))
    out = Path(args.out) if args.out else scratch / "data"
    try:
        start = time.perf_counter()
        generate(out, count=args.count, seed=args.seed, progress=False, workers=args.workers)
        seconds = time.perf_counter() - start
        size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
        workers = args.workers or os.cpu_count()
        print(f"synth: {args.count} images in {seconds:.1f} s ({args.count / seconds:.0f} images/s, "
              f"{workers} workers, {os.cpu_count()} CPUs), {size / 1e6:.0f} MB")
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
