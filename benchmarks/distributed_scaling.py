"""Training images/s and final validation IoU: one process against torchrun ranks (CPU), and 1..N GPUs (CUDA).

    $ .venv/bin/python benchmarks/distributed_scaling.py                       # generated set, 128 px, 3 epochs
    $ .venv/bin/python benchmarks/distributed_scaling.py --data DIR --epochs 5 --max-images 600

Each configuration is a real ``core train`` run (the quick preset's model, random init) launched as a user
launches it: ``python -m core train`` for one process, ``torchrun --standalone --nproc_per_node=N -m -- core
train`` for N. Images/s is the training loop's own figure in metrics.csv (epochs after the first; validation and
checkpoints excluded), IoU the last epoch's validation pet IoU.

- CPU: 1 process with every core, then 2 processes with half the cores each (``PETSEG_THREADS``). The global
  batch is the same in both (``--batch-size`` is global), so the runs train the same recipe: equal accuracy is
  expected, and the speed-up can only come from two processes using the same cores better than one (it is
  usually below 1: DDP's gradient all-reduce and the smaller per-process batches cost more than they gain).
- CUDA (when present): 1..N GPUs with the per-GPU batch held constant (global batch ``--batch-size`` x n); the
  scaling efficiency is images/s(n) / (n x images/s(1)). Skipped, with a line saying so, without CUDA.

Other processes on the same cores skew every CPU number: the script prints how many cores were busy elsewhere
before each run, and ``--repeats N`` alternates the CPU runs (1, 2, 2, 1, 1, 2, ...) and prints medians, so that
a burst of load elsewhere does not land on one configuration only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from core.config import Settings  # noqa: E402
from core.device import available_cores, busy_cores_elsewhere  # noqa: E402
from core.distributed import launch_command  # noqa: E402
from core.runs import read_metrics_csv  # noqa: E402
from core.synth import generate  # noqa: E402


def run_training(settings: Settings, run: str, processes: int, threads: int, device: str, batch_size: int,
                 args: argparse.Namespace) -> dict:
    flags = ["train", "--data", str(settings.data), "--workspace", str(settings.workspace), "--run", run,
             "--preset", "quick", "--encoder-weights", "none", "--epochs", str(args.epochs),
             "--image-size", str(args.image_size), "--batch-size", str(batch_size), "--device", device]
    if args.max_images:
        flags += ["--max-images", str(args.max_images)]
    if processes == 1:
        command = [sys.executable, "-m", "core", *flags]
    else:
        command = launch_command(processes, ["core", *flags], python=sys.executable)
    env = {**os.environ, "PETSEG_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    busy = busy_cores_elsewhere()
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{run} failed:\n{proc.stderr[-3000:]}")
    history = read_metrics_csv(settings.run_dir(run))
    timed = history[history["epoch"] > 1] if len(history) > 1 else history
    return {"run": run, "processes": processes, "threads": threads, "busy_elsewhere": busy,
            "images_per_second": float(timed["images_per_second"].mean()),
            "val_iou_pet": float(history["val_iou_pet"].iloc[-1]), "wall_s": wall}


def show(result: dict, base: dict | None, per_device: bool) -> None:
    line = (f"  {result['processes']} process(es) x {result['threads']} thread(s): "
            f"{result['images_per_second']:7.2f} img/s, val pet IoU {result['val_iou_pet']:.4f}, "
            f"wall {result['wall_s']:.0f} s, cores busy elsewhere before: {result['busy_elsewhere']}")
    if base is not None:
        ratio = result["images_per_second"] / base["images_per_second"]
        line += f", speed-up {ratio:.2f}x"
        if per_device:
            line += f", scaling efficiency {ratio / result['processes']:.2f}"
        line += f", IoU delta {result['val_iou_pet'] - base['val_iou_pet']:+.4f}"
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="dataset (default: generate --count images into a temp folder)")
    parser.add_argument("--count", type=int, default=400, help="generated images (half of them trainval)")
    parser.add_argument("--max-images", type=int, help="train on at most this many trainval images")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8, help="global batch on the CPU; per GPU on CUDA")
    parser.add_argument("--cpu-processes", type=int, default=2, help="the multi-process CPU run (default 2)")
    parser.add_argument("--skip-cpu", action="store_true")
    parser.add_argument("--repeats", type=int, default=1, help="CPU runs per configuration, alternated (medians)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="petseg-ddp-bench-"))
    try:
        data = Path(args.data) if args.data else generate(tmp / "data", count=args.count, seed=0, progress=False)
        settings = Settings.resolve(data=data, workspace=tmp / "workspace")
        cores = available_cores()
        print(f"torch {torch.__version__}, {cores} cores, {args.image_size} px, batch {args.batch_size}, "
              f"{args.epochs} epochs, dataset {data}", flush=True)
        # The array cache is built once, before any timed run.
        run_training(settings, "warm-cache", 1, cores, "cpu", args.batch_size,
                     argparse.Namespace(**{**vars(args), "epochs": 1}))

        if args.skip_cpu:
            print("CPU: skipped (--skip-cpu)")
        else:
            n = args.cpu_processes
            print(f"CPU (gloo), global batch {args.batch_size} split over the processes:", flush=True)
            if cores < n:
                print(f"  {n} processes: skipped, this machine has {cores} core(s)")
            counts = [1] if cores < n else [1, n]
            results: dict[int, list[dict]] = {c: [] for c in counts}
            for repeat in range(args.repeats):
                for c in counts if repeat % 2 == 0 else counts[::-1]:
                    result = run_training(settings, f"cpu-{c}-{repeat}", c, max(1, cores // c), "cpu",
                                          args.batch_size, args)
                    results[c].append(result)
                    show(result, results[1][-1] if c != 1 and results[1] else None, False)
            if args.repeats > 1:
                print("  medians:")
                medians = {c: {**rs[0], **{k: statistics.median(r[k] for r in rs)
                                           for k in ("images_per_second", "val_iou_pet", "wall_s", "busy_elsewhere")}}
                           for c, rs in results.items()}
                for c in counts:
                    show(medians[c], medians[1] if c != 1 else None, False)

        if not torch.cuda.is_available():
            print("CUDA: skipped, no CUDA device on this machine")
            return
        gpus = torch.cuda.device_count()
        print(f"CUDA (NCCL), {gpus} GPU(s), {args.batch_size} images per GPU:", flush=True)
        base = None
        for n in range(1, gpus + 1):
            result = run_training(settings, f"gpu-{n}", n, max(1, cores // n), "cuda", args.batch_size * n, args)
            show(result, base, True)
            base = base or result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
