"""Do corrections pay? Damage a share of the training trimaps, train, restore them through the corrections store,
retrain with corrections, and compare the test per-image pet IoU.

    $ .venv/bin/python benchmarks/corrections_loop.py                       # 500 images, 64 px, 12 epochs
    $ .venv/bin/python benchmarks/corrections_loop.py --count 300 --epochs 6 --keep /tmp/loop

Steps, all through PetSeg's own API:

1. ``core.synth.generate`` a clean dataset, then copy it: the COPY is the dataset PetSeg sees. In the copy,
   ``--damage`` (20 %) of the trainval trimaps are overwritten with a damaged version, in turn: shifted by a
   fifth of the image, eroded to a shrunken pet, or with pet and background labels swapped. The test trimaps
   stay clean, so the test score measures against the truth.
2. Train run ``damaged`` on the copy (official = damaged trimaps) and evaluate it on test.
3. Restore: the clean trimaps of the damaged images go into a folder of ``<image_id>.png`` files that
   ``core.corrections.import_folder`` imports, as a user would with ``python -m core corrections import``.
4. Train run ``corrected`` with ``use_corrections`` (same seed and settings) and evaluate it on test.
5. Optionally (``--reference``) a run on the clean dataset: the ceiling a perfect labelling would give.

Printed: the mean test per-image pet IoU of each run and the difference. Few epochs from random weights on a
small generated set leave a few hundredths of noise; the gap from flipped labels is usually well above that.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from core.config import Settings  # noqa: E402
from core.corrections import import_folder  # noqa: E402
from core.data import trainable_ids  # noqa: E402
from core.dataset import load_trimap, open_dataset  # noqa: E402
from core.evaluate import evaluate  # noqa: E402
from core.masks import BACKGROUND, PET, binary_to_trimap, encode_png, pet_outline_mask  # noqa: E402
from core.metrics import pet_iou  # noqa: E402
from core.synth import generate  # noqa: E402
from core.train import TrainConfig, train  # noqa: E402

DAMAGES = ("shift", "erode", "flip")


def damage(trimap: np.ndarray, kind: str) -> np.ndarray:
    """A plausibly wrong trimap: the outline moved, the pet shrunk, or pet and background swapped."""
    height, width = trimap.shape
    if kind == "flip":
        out = trimap.copy()
        out[trimap == PET] = BACKGROUND
        out[trimap == BACKGROUND] = PET
        return out
    pet = pet_outline_mask(trimap)
    if kind == "shift":
        dy, dx = height // 5, width // 5
        moved = np.zeros_like(pet)
        moved[dy:, dx:] = pet[: height - dy, : width - dx]
        return binary_to_trimap(moved)
    if kind == "erode":
        radius = max(2, min(height, width) // 12)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        return binary_to_trimap(cv2.erode(pet.astype(np.uint8), kernel) > 0)
    raise ValueError(f"unknown damage {kind!r}")


def damage_dataset(clean: Path, out: Path, share: float, seed: int, workspace: Path) -> dict[str, str]:
    """Copy ``clean`` to ``out`` and damage ``share`` of its trainval trimaps there; ``{image_id: damage}``."""
    shutil.copytree(clean, out)
    ds = open_dataset(clean, workspace)
    usable, _ = trainable_ids(ds)
    rng = np.random.default_rng(seed)
    victims = sorted(rng.choice(usable, size=round(len(usable) * share), replace=False).tolist())
    damaged = {}
    for index, image_id in enumerate(victims):
        kind = DAMAGES[index % len(DAMAGES)]
        wrong = damage(load_trimap(ds, image_id), kind)
        (out / "annotations" / "trimaps" / f"{image_id}.png").write_bytes(encode_png(wrong))
        damaged[image_id] = kind
    return damaged


def run(settings: Settings, name: str, args: argparse.Namespace, use_corrections: bool) -> tuple[float, float]:
    """Train and evaluate one run; (mean test per-image pet IoU, seconds)."""
    started = time.perf_counter()
    train(settings, TrainConfig(run=name, preset="quick", epochs=args.epochs, image_size=args.size,
                                encoder_weights=None, seed=args.seed, use_corrections=use_corrections,
                                progress=False))
    summary = evaluate(settings, run=name, split="test", progress=False)
    return float(summary["per_image_iou"]), time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=500, help="generated images (half trainval, half test)")
    parser.add_argument("--size", type=int, default=64, help="input size (multiple of 32)")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--damage", type=float, default=0.2, help="share of the trainval trimaps to damage")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reference", action="store_true", help="also train on the clean dataset (the ceiling)")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()

    base = args.keep or Path(tempfile.mkdtemp(prefix="petseg-loop-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        clean = generate(base / "clean", count=args.count, seed=args.seed, progress=False)
        workspace = base / "workspace"
        damaged = damage_dataset(clean, base / "damaged", args.damage, args.seed, base / "clean-workspace")
        settings = Settings.resolve(data=base / "damaged", workspace=workspace)
        ds = open_dataset(settings.data, settings.workspace)
        clean_ds = open_dataset(clean, base / "clean-workspace")
        label_iou = np.mean([pet_iou(load_trimap(ds, i), load_trimap(clean_ds, i)) for i in damaged])
        kinds = {k: sum(1 for v in damaged.values() if v == k) for k in DAMAGES}
        print(f"dataset: {len(ds)} images ({len(ds.ids('trainval'))} trainval / {len(ds.ids('test'))} test), "
              f"generated in {time.perf_counter() - t0:.0f} s")
        print(f"damaged {len(damaged)} trainval trimaps ({args.damage:.0%}): {kinds}; "
              f"their pet IoU against the truth: {label_iou:.3f}")
        print(f"training: quick preset (resnet18, random init), {args.size} px, {args.epochs} epochs, seed {args.seed}")

        before, seconds = run(settings, "damaged", args, use_corrections=False)
        print(f"  damaged labels      test per-image pet IoU {before:.4f}   ({seconds:.0f} s)")

        fixes = base / "fixes"
        fixes.mkdir()
        for image_id in damaged:
            (fixes / f"{image_id}.png").write_bytes(encode_png(load_trimap(clean_ds, image_id)))
        results = import_folder(settings, fixes, author="benchmark", note="restore damaged trimap", ds=ds).results
        imported = sum(1 for r in results if r.new_version)
        if imported != len(damaged):
            print(f"error: only {imported} of {len(damaged)} corrections imported", file=sys.stderr)
            return 1
        after, seconds = run(settings, "corrected", args, use_corrections=True)
        print(f"  with corrections    test per-image pet IoU {after:.4f}   ({seconds:.0f} s)")
        if args.reference:
            reference_settings = Settings.resolve(data=clean, workspace=base / "clean-workspace")
            ceiling, seconds = run(reference_settings, "clean", args, use_corrections=False)
            print(f"  clean labels (ref.) test per-image pet IoU {ceiling:.4f}   ({seconds:.0f} s)")
        print(f"corrections changed the test per-image pet IoU by {after - before:+.4f} "
              f"({imported} corrections imported); total {time.perf_counter() - t0:.0f} s")
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
