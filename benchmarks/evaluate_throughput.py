"""Evaluation images/s: PetSeg's ``evaluate`` against a plain fp32 loop and against its forward-only bound.

    $ .venv/bin/python benchmarks/evaluate_throughput.py                       # resnet34 at 256 px, 96 generated images
    $ .venv/bin/python benchmarks/evaluate_throughput.py --workspace ws --run quick10 --data /tmp/synth2000
    $ .venv/bin/python benchmarks/evaluate_throughput.py --repeat 3                  # medians of 3 rounds

Each variant does the whole job for every image of the set: predict at the original resolution, per-image
metrics against the trimap, the prediction PNG.

- (a) plain: fp32, one image at a time (decode, resize, forward, upsample, softmax, argmax, metrics, PNG).
- (c) PetSeg: ``core.evaluate.evaluate`` (batched at the input size, bf16 + channels_last where the CPU has
  native bf16, one worker thread per core doing decode, forward, original-size softmax, metrics and PNG encoding
  for its batch, PNG writing in a writer thread); its prediction-loop images/s, model loading excluded.
- (b) forward-only bound: the same model, precision and batch size on input tensors already in memory, one
  forward pass at a time on all cores. (c) splits the cores between workers instead, so it can exceed (b).

Bars: c/a >= 2.0, c/b >= 0.9, and PetSeg's masks agree with the fp32 masks of (a) on >= 99.5 % of pixels
(meaningful for a trained model: pass ``--run``). Without ``--run`` a model with random weights is used and
the agreement is reported for information only. Other processes on the same cores skew every number: the
load average is printed before and after, and ``--repeat`` runs several rounds and reports the medians.
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

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from core.config import Settings  # noqa: E402
from core.dataset import load_image, load_trimap, open_dataset  # noqa: E402
from core.device import THREADS_ENV, busy_cores_elsewhere, configure_cpu_threads, select_runtime  # noqa: E402
from core.evaluate import evaluate  # noqa: E402
from core.masks import resize_image  # noqa: E402
from core.metrics import image_metrics, prediction_metrics  # noqa: E402
from core.model import build_model, load_checkpoint, save_checkpoint, to_input  # noqa: E402
from core.synth import generate  # noqa: E402


def plain_loop(model: torch.nn.Module, cfg, ds, ids: list[str], out: Path) -> tuple[float, dict[str, np.ndarray]]:
    """(a): what a straightforward script does, one image at a time in fp32."""
    model = model.float().to(memory_format=torch.contiguous_format).eval()
    out.mkdir(parents=True, exist_ok=True)
    masks = {}
    started = time.perf_counter()
    for image_id in ids:
        image = load_image(ds, image_id)
        x = to_input(torch.from_numpy(resize_image(image, cfg.image_size))[None], cfg)
        with torch.inference_mode():
            logits = model(x)
            up = F.interpolate(logits, size=image.shape[:2], mode="bilinear", align_corners=False)[0]
            probs = torch.softmax(up, dim=0)
            confidence, index = probs.max(dim=0)
        mask = (index + 1).to(torch.uint8).numpy()
        gt = load_trimap(ds, image_id)
        if gt is not None:
            image_metrics(mask, gt)
        prediction_metrics(mask, confidence.numpy())
        cv2.imwrite(str(out / f"{image_id}.png"), mask)
        masks[image_id] = mask
    return len(ids) / (time.perf_counter() - started), masks


def forward_bound(model: torch.nn.Module, cfg, runtime, ds, ids: list[str], batch_size: int, repeats: int) -> float:
    """(b): PetSeg's forward passes alone, on resized inputs already in memory."""
    model = runtime.prepare_model(model).eval()
    resized = np.stack([resize_image(load_image(ds, i), cfg.image_size) for i in ids])
    batches = [runtime.prepare(to_input(torch.from_numpy(resized[i : i + batch_size]), cfg))
               for i in range(0, len(ids), batch_size)]
    with torch.inference_mode(), runtime.autocast():
        model(batches[0])
        started = time.perf_counter()
        for _ in range(repeats):
            for batch in batches:
                model(batch).float()
    return repeats * len(ids) / (time.perf_counter() - started)


def _load() -> str:
    """The 1, 5 and 15 minute load averages (what ``uptime`` shows), "n/a" where the OS has none."""
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="dataset (default: generate --count images into a temp folder)")
    parser.add_argument("--count", type=int, default=96)
    parser.add_argument("--split", default="all", choices=["test", "trainval", "all"])
    parser.add_argument("--workspace", help="workspace holding --run (a trained model)")
    parser.add_argument("--run", help="evaluate this trained run's best.pt (default: a randomly initialised model)")
    parser.add_argument("--encoder", default="resnet34")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-images", type=int, default=96, help="evaluate at most this many images")
    parser.add_argument("--threads", type=int, help="CPU threads (default: one per core)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of (a), (c), (b); the ratios are medians")
    args = parser.parse_args()

    busy = busy_cores_elsewhere()
    threads = configure_cpu_threads(args.threads or os.cpu_count())
    runtime = select_runtime("auto", "auto")
    configure_cpu_threads(threads)  # select_runtime adapts to load; a benchmark keeps one thread count throughout
    os.environ[THREADS_ENV] = str(threads)  # also in evaluate's own select_runtime
    scratch = Path(tempfile.mkdtemp(prefix="petseg-eval-bench-"))
    try:
        data = Path(args.data) if args.data else generate(scratch / "data", args.count, seed=1, progress=False)
        bench_ws = scratch / "workspace"
        settings = Settings.resolve(data=data, workspace=bench_ws)
        if args.run:
            source = Settings.resolve(data=data, workspace=args.workspace).run_dir(args.run) / "best.pt"
            model, cfg, _ = load_checkpoint(source)
        else:
            torch.manual_seed(0)
            model, cfg = build_model(args.encoder, args.image_size, encoder_weights=None)
        save_checkpoint(settings.run_dir("bench") / "best.pt", model, cfg, meta={"epoch": 0})

        ds = open_dataset(settings.data, settings.workspace)
        ids = [i for i in ds.ids(None if args.split == "all" else args.split) if ds.table.loc[i, "readable"]]
        ids = ids[: args.max_images]

        print(f"{len(ids)} images from {data} ({'trained run ' + args.run if args.run else 'random weights'}), "
              f"{cfg.encoder} at {cfg.image_size} px, batch {args.batch_size}, {runtime.precision}"
              f"{' + channels_last' if runtime.channels_last else ''}, {threads} threads "
              f"({busy} cores busy elsewhere at start, load average {_load()})", flush=True)

        rounds = []
        for round_ in range(args.repeat):
            if args.repeat > 1:
                print(f"round {round_ + 1}/{args.repeat}, load average {_load()}", flush=True)
            a, fp32_masks = plain_loop(load_checkpoint(settings.run_dir("bench") / "best.pt")[0], cfg, ds, ids,
                                       scratch / "plain")
            print(f"(a) plain fp32 loop, one image at a time : {a:7.2f} img/s", flush=True)
            shutil.rmtree(settings.run_dir("bench") / "eval", ignore_errors=True)  # predict again, reuse nothing
            summary = evaluate(settings, "bench", args.split, batch_size=args.batch_size, progress=False,
                               image_ids=ids)
            c = summary["images_per_second"]
            print(f"(c) PetSeg evaluate                       : {c:7.2f} img/s", flush=True)
            b = forward_bound(load_checkpoint(settings.run_dir("bench") / "best.pt")[0], cfg, runtime, ds, ids,
                              args.batch_size, repeats=2)
            print(f"(b) PetSeg forward-only bound             : {b:7.2f} img/s", flush=True)
            rounds.append((c / a, c / b))

        agree = total = 0
        for image_id, mask in fp32_masks.items():
            pred = cv2.imread(str(Path(summary["predictions_dir"]) / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
            agree += int(np.sum(pred == mask))
            total += mask.size
        agreement = agree / total
        c_a, c_b = (statistics.median(r[k] for r in rounds) for k in (0, 1))
        print(f"c/a = {c_a:.2f} (bar >= 2.0)   c/b = {c_b:.2f} (bar >= 0.9)   "
              f"agreement with fp32 = {100 * agreement:.2f} % (bar >= 99.5 %"
              f"{'' if args.run else ', untrained model: informational'})"
              f"{f'   medians of {args.repeat} rounds' if args.repeat > 1 else ''}   load average {_load()}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
