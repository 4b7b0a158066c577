"""Training images/s: PetSeg's pipeline against the smp Oxford-pet example's loop and against its compute bound.

    $ .venv/bin/python benchmarks/train_throughput.py                        # 128 and 256 px, resnet34
    $ .venv/bin/python benchmarks/train_throughput.py --sizes 128 --images 96 --iou-epochs 0   # throughput only

For each input size, with smp's Unet-resnet34 (random init, 3 classes, Dice + cross-entropy, Adam):

- (a) anchor: a plain fp32 loop fed by a ``DataLoader`` whose ``__getitem__`` decodes the JPEG and PNG and
  resizes them (PIL, as smp's ``SimpleOxfordPetDataset``), ``num_workers = os.cpu_count()`` as in smp's example.
- (b) PetSeg: ``core.train.train`` itself (array cache, batched tensor augmentation, bf16 autocast +
  channels_last where the CPU has native bf16). Its second epoch is timed; the one-time cache build is shown
  separately.
- (c) PetSeg's compute-only bound: the same model, precision and batch size on batches already in memory
  (forward, loss, backward, optimiser step).

Bars on the 2-core CPU: b/a >= 2.0 and b/c >= 0.95. Then both (a) and (b) train for ``--iou-epochs`` epochs from
the same initial weights on the same train/validation split and print their validation pet IoU (mean over
images, at the input size): PetSeg's must not be worse by more than 0.01. The anchor does not augment, so that
comparison runs PetSeg without augmentation too; PetSeg with its augmentation is printed beside it (in a few
epochs augmentation usually costs IoU; it pays off in longer runs). Other processes on the same cores skew
every number, and a few epochs on a small validation set leave a few hundredths of run-to-run noise.
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

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from core.config import Settings  # noqa: E402
from core.data import split_trainval, trainable_ids  # noqa: E402
from core.dataset import open_dataset  # noqa: E402
from core.device import busy_cores_elsewhere, configure_cpu_threads, select_runtime  # noqa: E402
from core.metrics import batch_metrics  # noqa: E402
from core.model import SegLoss, build_model, to_input  # noqa: E402
from core.runs import read_metrics_csv  # noqa: E402
from core.synth import generate  # noqa: E402
from core.train import TrainConfig, train  # noqa: E402

ENCODER = "resnet34"


class AnchorDataset(torch.utils.data.Dataset):
    """smp's SimpleOxfordPetDataset, at any size and with the 3-class target: decode + resize per item."""

    def __init__(self, root: Path, ids: list[str], size: int):
        self.root, self.ids, self.size = root, ids, size

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        image_id = self.ids[index]
        image = Image.open(self.root / "images" / f"{image_id}.jpg").convert("RGB")
        trimap = Image.open(self.root / "annotations" / "trimaps" / f"{image_id}.png")
        image = np.array(image.resize((self.size, self.size), Image.BILINEAR))
        trimap = np.array(trimap.resize((self.size, self.size), Image.NEAREST))
        return {"image": np.moveaxis(image, -1, 0), "trimap": trimap}


def anchor_loader(root: Path, ids: list[str], size: int, batch_size: int, shuffle: bool) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(AnchorDataset(root, ids, size), batch_size=batch_size, shuffle=shuffle,
                                       num_workers=os.cpu_count() or 1, drop_last=shuffle)


def anchor_train(root: Path, train_ids: list[str], val_ids: list[str], size: int, batch_size: int, epochs: int,
                 lr: float, time_epoch: int | None = None, seed: int = 0) -> tuple[float | None, float | None]:
    """(a): returns (images/s of epoch ``time_epoch``, validation pet IoU after the last epoch)."""
    torch.manual_seed(seed)
    model, cfg = build_model(ENCODER, size, encoder_weights=None)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    steps = max(1, len(train_ids) // batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps, eta_min=1e-5)
    loss_fn = SegLoss()
    loader = anchor_loader(root, train_ids, size, batch_size, shuffle=True)
    rate = None
    for epoch in range(1, epochs + 1):
        model.train()
        started, seen = time.perf_counter(), 0
        for batch in loader:
            x = to_input(batch["image"].permute(0, 2, 3, 1), cfg)
            target = batch["trimap"].long() - 1
            loss = loss_fn(model(x), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            seen += len(x)
        if epoch == time_epoch:
            rate = seen / (time.perf_counter() - started)
    iou = None
    if val_ids:
        model.eval()
        scores = []
        with torch.inference_mode():
            for batch in anchor_loader(root, val_ids, size, batch_size, shuffle=False):
                logits = model(to_input(batch["image"].permute(0, 2, 3, 1), cfg))
                pred = (logits.argmax(1) + 1).to(torch.uint8)
                scores.append(batch_metrics(pred, batch["trimap"])["iou_pet"])
        iou = float(np.concatenate(scores).mean())
    return rate, iou


def petseg_train(settings: Settings, run: str, size: int, batch_size: int, epochs: int, lr: float,
                 max_images: int, augment: bool = True, seed: int = 0) -> tuple[list[float], float | None, float]:
    """(b): ``core.train.train``; returns (images/s per epoch, final validation pet IoU, cache build seconds)."""
    started = time.perf_counter()
    result = train(settings, TrainConfig(run=run, epochs=epochs, image_size=size, batch_size=batch_size,
                                         encoder=ENCODER, encoder_weights=None, lr=lr, max_images=max_images,
                                         augment=augment, seed=seed, progress=False))
    total = time.perf_counter() - started
    metrics = read_metrics_csv(settings.run_dir(run))
    epoch_seconds = float(metrics["seconds"].sum())
    return metrics["images_per_second"].tolist(), result.history[-1]["val_iou_pet"], total - epoch_seconds


def compute_bound(size: int, batch_size: int, steps: int = 8) -> float:
    """(c): PetSeg's model, precision and step on one batch already in memory."""
    runtime = select_runtime("auto", "auto")
    torch.manual_seed(0)
    model, cfg = build_model(ENCODER, size, encoder_weights=None)
    model = runtime.prepare_model(model).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    loss_fn = SegLoss()
    images = torch.randint(0, 256, (batch_size, size, size, 3), dtype=torch.uint8)
    target = torch.randint(0, 3, (batch_size, size, size))
    x = runtime.prepare(to_input(images, cfg))

    def step() -> None:
        with runtime.autocast():
            logits = model(x)
        loss = loss_fn(logits, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="dataset (default: generate --count images into a temp folder)")
    parser.add_argument("--count", type=int, default=1200, help="generated images (half of them trainval)")
    parser.add_argument("--sizes", type=int, nargs="*", default=[128, 256], help="throughput sizes (none: skip)")
    parser.add_argument("--images", type=int, default=120, help="trainval images in the throughput runs")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--iou-epochs", type=int, default=4, help="epochs of the IoU comparison (0: skip it)")
    parser.add_argument("--iou-size", type=int, default=128)
    parser.add_argument("--iou-images", type=int, default=600, help="trainval images in the IoU comparison")
    parser.add_argument("--seeds", type=int, default=1,
                        help="repeat the IoU comparison with this many seeds and average (one seed is noisy: +-0.02)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--threads", type=int, help="CPU threads (default: one per core)")
    args = parser.parse_args()

    busy = busy_cores_elsewhere()
    scratch = Path(tempfile.mkdtemp(prefix="petseg-train-bench-"))
    try:
        data = Path(args.data) if args.data else generate(scratch / "data", args.count, seed=2, progress=False)
        os.environ["PETSEG_THREADS"] = str(args.threads or os.cpu_count())  # one thread count for all variants
        threads = configure_cpu_threads()
        runtime = select_runtime("auto", "auto")
        print(f"{ENCODER}, batch {args.batch_size}, PetSeg precision {runtime.precision}"
              f"{' + channels_last' if runtime.channels_last else ''}, {threads} threads, "
              f"{busy} cores busy elsewhere at start; data {data}", flush=True)
        settings = Settings.resolve(data=data, workspace=scratch / "workspace")
        ds = open_dataset(settings.data, settings.workspace)
        usable = trainable_ids(ds)[0]

        for size in args.sizes:
            train_ids, _ = split_trainval(usable, 0.1, args.images)
            a, _ = anchor_train(data, train_ids, [], size, args.batch_size, epochs=2, lr=args.lr, time_epoch=2)
            rates, _, cache_s = petseg_train(settings, f"tp{size}", size, args.batch_size, 2, args.lr, args.images)
            b = rates[-1]
            c = compute_bound(size, args.batch_size)
            print(f"{size} px: (a) anchor {a:6.2f} img/s   (b) PetSeg {b:6.2f} img/s   (c) bound {c:6.2f} img/s   "
                  f"b/a = {b / a:.2f} (bar >= 2.0)   b/c = {b / c:.2f} (bar >= 0.95)   "
                  f"[PetSeg one-time cache build + setup: {cache_s:.1f} s]", flush=True)

        if args.iou_epochs > 0:
            train_ids, val_ids = split_trainval(usable, 0.1, args.iou_images)
            scores: dict[str, list[float]] = {"anchor": [], "petseg": [], "augmented": []}
            for seed in range(args.seeds):
                scores["anchor"].append(anchor_train(data, train_ids, val_ids, args.iou_size, args.batch_size,
                                                     args.iou_epochs, args.lr, seed=seed)[1])
                # Like for like first: the anchor does not augment, so neither does this PetSeg run; what differs
                # is the pipeline (array cache, cv2 resizing, bf16 + channels_last).
                scores["petseg"].append(petseg_train(settings, f"iou-{seed}", args.iou_size, args.batch_size,
                                                     args.iou_epochs, args.lr, args.iou_images, augment=False,
                                                     seed=seed)[1])
                scores["augmented"].append(petseg_train(settings, f"iou-aug-{seed}", args.iou_size, args.batch_size,
                                                        args.iou_epochs, args.lr, args.iou_images, augment=True,
                                                        seed=seed)[1])
                print(f"  seed {seed}: anchor {scores['anchor'][-1]:.4f}, PetSeg {scores['petseg'][-1]:.4f}, "
                      f"PetSeg augmented {scores['augmented'][-1]:.4f}", flush=True)
            anchor_iou, petseg_iou, augmented_iou = (float(np.mean(v)) for v in scores.values())
            print(f"validation pet IoU after {args.iou_epochs} epochs at {args.iou_size} px, {len(train_ids)} train / "
                  f"{len(val_ids)} val images, mean of {args.seeds} seed(s): anchor {anchor_iou:.4f}, "
                  f"PetSeg {petseg_iou:.4f} (PetSeg - anchor = {petseg_iou - anchor_iou:+.4f}; bar: >= -0.01); "
                  f"PetSeg with its augmentation on: {augmented_iou:.4f}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
