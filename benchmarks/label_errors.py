"""Planted label errors: how well does each ranking put the damaged masks first?

    $ .venv/bin/python benchmarks/label_errors.py --count 120 --epochs 2 --folds 2 --image-size 64   # smoke run
    $ .venv/bin/python benchmarks/label_errors.py --count 1000 --epochs 10 --folds 4                   # the real one

A generated dataset (:mod:`core.synth`, half trainval) has ``--damage`` (10 %) of its trainval trimaps damaged in
eight recorded ways: ``cut`` (a part at one end of the pet cut off: ear, tail, leg), ``blob`` (a background blob
labelled pet), ``dilate`` / ``erode`` (outline moved out / in by 5 % of the short side, 13-30 px: more than the
trimap's own border half-band, which hides smaller moves), ``shift`` (moved by 12 % of the short side),
``mirror`` (flipped left-right), ``swap`` (another image's mask) and ``empty`` (no pet at all). The border band is
regenerated around each damaged outline, as an annotator's tool would draw it.

Then, with the quick preset (random init: no network) at ``--image-size``:

- in-sample: one model trained on all trainval images (damaged ones included), evaluated on trainval;
- out-of-fold: ``core.crossval`` with ``--folds`` folds of the same recipe;

and these rankings of the trainval images (most suspect first) are scored against the planted set:

1. ``heuristic``: today's Review order, ``tension = mean_confidence * (1 - uncertain_fraction) * (1 - iou_pet)``;
2. ``in-sample``: PetSeg's label quality (softmin self-confidence, border band left out) from the in-sample model;
3. ``out-of-fold``: the same from the out-of-fold probabilities (what Review ranks by after cross-validation);
4. ``oof 1-iou``: 1 - pet IoU of the out-of-fold prediction (a simpler out-of-fold reference);
5. ``cleanlab softmin``: ``cleanlab.segmentation.rank.get_label_quality_scores`` on the same out-of-fold
   probabilities and all pixels (border band counted);
6. ``cleanlab find_label_issues``: confident learning (``cleanlab.segmentation.filter.find_label_issues``,
   ``--downsample``), images ranked by their share of issue pixels.

Per ranking: average precision (AP), precision at k = number planted, recall in the top 5 % of the queue (at most
``0.05 / damage`` when more than 5 % are damaged: 0.5 at 10 %), recall in the top k per damage kind, and the
ranking's own wall time and peak traced memory (numpy allocations, tracemalloc). The model phases print their
wall time and the process's peak RSS. Chance AP is the damaged share.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from core import groundtruth  # noqa: E402
from core.config import Settings  # noqa: E402
from core.crossval import crossval  # noqa: E402
from core.dataset import ANNOTATIONS_DIR, TRAINVAL_FILE, TRIMAPS_DIR, open_dataset  # noqa: E402
from core.evaluate import evaluate  # noqa: E402
from core.masks import BACKGROUND, binary_to_trimap, decode_label_png, pet_outline_mask, resize_mask  # noqa: E402
from core.quality import ProbabilityStore  # noqa: E402
from core.runs import eval_dir, load_eval  # noqa: E402
from core.synth import generate  # noqa: E402
from core.train import TrainConfig, train  # noqa: E402
from core.views import tension_score  # noqa: E402

KINDS = ("cut", "blob", "dilate", "erode", "shift", "mirror", "swap", "empty")


# --- planting the errors ------------------------------------------------------------------------------------------


def damage(pet: np.ndarray, kind: str, rng: np.random.Generator, other: np.ndarray) -> np.ndarray:
    """A damaged copy of the boolean pet mask ``pet``."""
    height, width = pet.shape
    short = min(height, width)
    if kind == "empty":
        return np.zeros_like(pet)
    if kind == "mirror":
        return pet[:, ::-1].copy()
    if kind == "swap":
        return cv2.resize(other.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)
    if kind in ("dilate", "erode"):
        radius = max(3, round(0.05 * short))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        op = cv2.dilate if kind == "dilate" else cv2.erode
        return op(pet.astype(np.uint8), kernel).astype(bool)
    if kind == "shift":
        step = max(4, round(0.12 * short))
        dy, dx = [(0, step), (0, -step), (step, 0), (-step, 0)][int(rng.integers(4))]
        out = np.zeros_like(pet)
        src = pet[max(0, -dy): height - max(0, dy), max(0, -dx): width - max(0, dx)]
        out[max(0, dy): max(0, dy) + src.shape[0], max(0, dx): max(0, dx) + src.shape[1]] = src
        return out
    if kind == "cut":
        ys, xs = np.nonzero(pet)
        if len(ys) == 0:
            return pet.copy()
        axis, end = int(rng.integers(2)), int(rng.integers(2))
        coords = (ys, xs)[axis]
        lo, hi = int(coords.min()), int(coords.max())
        share = rng.uniform(0.25, 0.35)
        out = pet.copy()
        grid = np.arange(pet.shape[axis])
        cut = grid > hi - share * (hi - lo) if end else grid < lo + share * (hi - lo)
        if axis == 0:
            out[cut, :] = False
        else:
            out[:, cut] = False
        return out
    if kind == "blob":
        out = pet.copy()
        for _ in range(50):
            a, b = rng.uniform(0.08, 0.14, size=2) * short
            cy, cx = rng.uniform(a, height - a), rng.uniform(b, width - b)
            blob = np.zeros((height, width), np.uint8)
            cv2.ellipse(blob, (int(cx), int(cy)), (int(b), int(a)), float(rng.uniform(0, 180)), 0, 360, 1, -1)
            blob = blob.astype(bool)
            if (blob & pet).sum() < 0.1 * blob.sum():
                return out | blob
        return out | blob
    raise ValueError(kind)


def plant(root: Path, share: float, seed: int, write: bool = True) -> dict[str, str]:
    """Damage ``share`` of the trainval trimaps in place (``write=False``: only say which, for a resumed run);
    returns ``{image_id: kind}``."""
    rng = np.random.default_rng(seed)
    lines = (root / ANNOTATIONS_DIR / TRAINVAL_FILE).read_text().splitlines()
    trainval = [line.split()[0] for line in lines if line.strip()]
    chosen = rng.choice(len(trainval), size=max(len(KINDS), round(share * len(trainval))), replace=False)
    if not write:
        return {trainval[at]: KINDS[n % len(KINDS)] for n, at in enumerate(sorted(chosen))}
    planted = {}
    trimaps = root / TRIMAPS_DIR
    for n, at in enumerate(sorted(chosen)):
        image_id, kind = trainval[at], KINDS[n % len(KINDS)]
        path = trimaps / f"{image_id}.png"
        pet = pet_outline_mask(decode_label_png(path.read_bytes()))
        donor = trainval[(at + 1 + int(rng.integers(len(trainval) - 1))) % len(trainval)]
        other = pet_outline_mask(decode_label_png((trimaps / f"{donor}.png").read_bytes()))
        damaged = damage(pet, kind, rng, other)
        trimap = binary_to_trimap(damaged) if damaged.any() else np.full(pet.shape, BACKGROUND, np.uint8)
        cv2.imwrite(str(path), trimap)
        planted[image_id] = kind
    return planted


# --- scoring a ranking --------------------------------------------------------------------------------------------


def average_precision(order: list[str], positives: set[str]) -> float:
    hits, total = 0, 0.0
    for rank, image_id in enumerate(order, start=1):
        if image_id in positives:
            hits += 1
            total += hits / rank
    return total / len(positives) if positives else math.nan


def report(name: str, order: list[str], planted: dict[str, str], seconds: float, peak: int) -> dict:
    positives = set(planted)
    k = len(positives)
    top5 = set(order[: math.ceil(0.05 * len(order))])
    topk = set(order[:k])
    row = {"ranking": name, "AP": average_precision(order, positives), "P@k": len(topk & positives) / k,
           "R@5%": len(top5 & positives) / k, "seconds": seconds, "peak_MB": peak / 1e6}
    for kind in KINDS:
        members = {i for i, v in planted.items() if v == kind}
        row[f"{kind} R@5%"] = len(top5 & members) / len(members) if members else math.nan
        row[f"{kind} R@k"] = len(topk & members) / len(members) if members else math.nan
    return row


def timed(fn: Callable[[], list[str]]) -> tuple[list[str], float, int]:
    tracemalloc.start()
    started = time.perf_counter()
    order = fn()
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return order, seconds, peak


def ascending(values: pd.Series) -> list[str]:
    """Ids, lowest value first, missing values last."""
    return list(pd.to_numeric(values, errors="coerce").sort_values(kind="stable", na_position="last").index)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- main ------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="generated images (half trainval)")
    parser.add_argument("--damage", type=float, default=0.10, help="share of trainval trimaps damaged")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--downsample", type=int, default=4, help="cleanlab find_label_issues downsampling")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--resume", action="store_true", help="continue a stopped run in --keep (same flags): "
                        "reuses its data, in-sample model and finished folds (times then cover this part only)")
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="petseg-label-errors-"))
    try:
        started = time.perf_counter()
        resume = args.resume and (work / "data").is_dir()
        data = work / "data" if resume else generate(work / "data", count=args.count, seed=args.seed, progress=False)
        planted = plant(data, args.damage, args.seed, write=not resume)
        settings = Settings.resolve(data=data, workspace=work / "workspace")
        print(f"{args.count} images, {len(planted)} damaged trimaps ({', '.join(KINDS)}), "
              f"generated in {time.perf_counter() - started:.0f} s", flush=True)
        recipe = {"preset": "quick", "epochs": args.epochs, "image_size": args.image_size, "encoder_weights": None,
                  "progress": False}

        started = time.perf_counter()
        if not (resume and load_eval(settings, "in-sample", "trainval") is not None):
            train(settings, TrainConfig(run="in-sample", val_fraction=0.0, **recipe))
            evaluate(settings, "in-sample", "trainval", progress=False)
        in_sample_s = time.perf_counter() - started
        print(f"in-sample model: trained and evaluated in {in_sample_s:.0f} s, peak RSS {rss_mb():.0f} MB", flush=True)

        started = time.perf_counter()
        resume_cv = resume and (settings.run_dir("cv") / "crossval.json").is_file()
        summary = crossval(settings, TrainConfig(run="cv", resume=resume_cv, **recipe), folds=args.folds)
        crossval_s = time.perf_counter() - started
        print(f"cross-validation ({args.folds} folds): {crossval_s:.0f} s, peak RSS {rss_mb():.0f} MB; "
              f"probabilities {summary['probabilities_bytes'] / 1e6:.1f} MB for {summary['images']} images", flush=True)

        ins = load_eval(settings, "in-sample", "trainval")
        oof = load_eval(settings, "cv", "trainval")
        ids = sorted(set(ins.index) & set(oof.index))
        ins, oof = ins.loc[ids], oof.loc[ids]
        planted = {i: k for i, k in planted.items() if i in set(ids)}
        store = ProbabilityStore.open(eval_dir(settings, "cv", "trainval"))
        ds = open_dataset(settings.data, settings.workspace)

        def arrays() -> tuple[np.ndarray, np.ndarray]:
            truth = groundtruth.snapshot(settings, ds, ids)
            labels = np.stack([resize_mask(truth.mask(i), store.size) for i in ids]).astype(np.int64) - 1
            probs = np.stack([store.array[store.row[i]] for i in ids]).astype(np.float32) / 255.0
            return labels, np.ascontiguousarray(probs.transpose(0, 3, 1, 2))

        def cleanlab_softmin() -> list[str]:
            from cleanlab.segmentation.rank import get_label_quality_scores

            labels, probs = arrays()
            scores, _ = get_label_quality_scores(labels, probs, verbose=False)
            return ascending(pd.Series(scores, index=ids))

        def cleanlab_issues() -> list[str]:
            from cleanlab.segmentation.filter import find_label_issues

            labels, probs = arrays()
            issues = find_label_issues(labels, probs, downsample=args.downsample, n_jobs=1, verbose=False)
            return ascending(pd.Series(-issues.reshape(len(ids), -1).mean(axis=1), index=ids))

        rankings = {
            "heuristic (tension, in-sample)": lambda: ascending(-tension_score(ins)),
            "in-sample label quality": lambda: ascending(ins["label_quality"]),
            "out-of-fold label quality": lambda: ascending(oof["label_quality"]),
            "out-of-fold 1 - pet IoU": lambda: ascending(oof["iou_pet"]),
            "cleanlab softmin (oof, border counted)": cleanlab_softmin,
            f"cleanlab find_label_issues (oof, /{args.downsample})": cleanlab_issues,
        }
        rows = []
        for name, fn in rankings.items():
            order, seconds, peak = timed(fn)
            rows.append(report(name, order, planted, seconds, peak))
        table = pd.DataFrame(rows).set_index("ranking")
        pd.set_option("display.width", 250)
        pd.set_option("display.max_columns", 40)
        print(f"\n{len(ids)} trainval images, {len(planted)} damaged (chance AP {len(planted) / len(ids):.3f}); "
              f"R@5% is at most {min(1.0, 0.05 * len(ids) / len(planted)):.2f}")
        print(table[["AP", "P@k", "R@5%", "seconds", "peak_MB"]].round(3).to_string())
        print("\nrecall per damage kind, top 5% / top k:")
        kinds = pd.DataFrame({kind: [f"{r[f'{kind} R@5%']:.2f}/{r[f'{kind} R@k']:.2f}" for r in rows]
                              for kind in KINDS}, index=table.index)
        print(kinds.to_string())
        print(f"\nmodel time: in-sample {in_sample_s:.0f} s, cross-validation {crossval_s:.0f} s; "
              f"probabilities for 7,390 images at {args.image_size} px: {7390 * args.image_size ** 2 * 3 / 1e6:.0f} MB")
        if args.json:
            flags = {k: str(v) for k, v in vars(args).items()}
            args.json.write_text(json.dumps({"rows": rows, "planted": planted, "in_sample_s": in_sample_s,
                                             "crossval_s": crossval_s, "args": flags}))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
