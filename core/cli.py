"""``python -m core <command>``: argument parsing only; each command calls one core function.

User errors (``PetSegError``) print one line and exit 2; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.config import Settings
from core.errors import PetSegError


def _add_paths(parser: argparse.ArgumentParser, data: bool = True) -> None:
    if data:
        parser.add_argument(
            "--data", help="dataset root in the official layout (default: $PETSEG_DATA or ./data/oxford-iiit-pet)"
        )
    parser.add_argument(
        "--workspace", help="where runs, caches, corrections and exports go (default: $PETSEG_HOME or ./workspace)"
    )


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.resolve(data=getattr(args, "data", None), workspace=getattr(args, "workspace", None))


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


# --- commands ---------------------------------------------------------------


def cmd_info(args: argparse.Namespace) -> int:
    from core.dataset import format_summary, open_dataset, summarize

    settings = _settings(args)
    summary = summarize(open_dataset(settings.data, settings.workspace))
    print(json.dumps(summary) if args.json else format_summary(summary))
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from core.download import download

    settings = _settings(args)
    download(settings.data, base_url=args.base_url)
    print(f"dataset ready at {settings.data}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from core.synth import generate

    out = generate(Path(args.out), count=args.count, seed=args.seed)
    print(f"synthetic dataset written to {out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from core.train import config_from_args, train

    settings = _settings(args)
    train(settings, config_from_args(args))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from core.evaluate import evaluate

    settings = _settings(args)
    summary = evaluate(settings, run=args.run, split=args.split, checkpoint=args.checkpoint)
    if args.json:
        print(json.dumps(summary))
    else:
        def fmt(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.4f}"

        print(
            f"{summary['run']} / {summary['split']}: {summary['images']} images, "
            f"per-image pet IoU {fmt(summary['per_image_iou'])}, dataset pet IoU {fmt(summary['dataset_iou'])}\n"
            f"metrics: {summary['metrics_path']}\npredictions: {summary['predictions_dir']}"
        )
    return 0


def cmd_corrections_import(args: argparse.Namespace) -> int:
    from core.corrections import import_folder

    settings = _settings(args)
    report = import_folder(settings, Path(args.source), author=args.author, note=args.note)
    for result in report.results:
        print(result.line())
    total, refused, imported = len(report.results), report.refused, len(report.imported)
    print(f"{imported} imported, {total - refused - imported} unchanged, {refused} refused")
    print(f"{report.rescored} stored evaluation rows rescored against the imported masks")
    return 1 if refused and refused == total else 0


def cmd_export(args: argparse.Namespace) -> int:
    from core.export import export_archive

    settings = _settings(args)
    out = Path(args.out) if args.out else None
    report = export_archive(settings, fmt=args.format, out=out, only_corrected=args.only_corrected)
    print(report.path)
    print(report.summary(), file=sys.stderr)
    return 0


# --- parser -----------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m core", description="PetSeg: U-Net segmentation on Oxford-IIIT Pet."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")

    p = sub.add_parser("info", help="index the dataset and report what was found")
    _add_paths(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("download", help="download and verify the official images and annotations archives")
    _add_paths(p)
    p.add_argument("--base-url", help="fetch the archives from this URL prefix instead of the official mirror")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("synth", help="generate a synthetic dataset in the official layout")
    p.add_argument("--out", required=True, help="folder to create")
    p.add_argument("--count", type=_positive_int, default=400, help="number of images (default 400)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same dataset)")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("train", help="train a U-Net on the trimaps")
    _add_paths(p)
    p.add_argument("--run", required=True, help="run name (folder under <workspace>/runs)")
    p.add_argument(
        "--preset", choices=["quick", "full"], help="quick: small CPU model in minutes; full: resnet34 at 256 px"
    )
    p.add_argument("--epochs", type=_positive_int)
    p.add_argument("--image-size", type=_positive_int, help="input size, a multiple of 32")
    p.add_argument("--batch-size", type=_positive_int)
    p.add_argument("--encoder", help="smp encoder name (default resnet34)")
    p.add_argument("--encoder-weights", help="'imagenet' or 'none'")
    p.add_argument("--lr", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"])
    p.add_argument("--device", help="cpu, cuda, mps or auto")
    p.add_argument("--max-images", type=_positive_int, help="train on at most this many trainval images")
    p.add_argument("--resume", action="store_true", help="continue from the run's last.pt")
    p.add_argument(
        "--use-corrections", action="store_true",
        help="train on the latest corrections of trainval images instead of their official trimaps",
    )
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="predict every image of a split and store per-image metrics")
    _add_paths(p)
    p.add_argument("--run", required=True)
    p.add_argument("--split", choices=["test", "trainval", "all"], default="test")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("corrections", help="manage mask corrections")
    csub = p.add_subparsers(dest="corrections_command", required=True, metavar="<subcommand>")
    pi = csub.add_parser("import", help="import masks fixed elsewhere (<image_id>.png, trimap 1/2/3 or binary 0/255)")
    _add_paths(pi)
    pi.add_argument("--from", dest="source", required=True, help="folder of <image_id>.png masks")
    pi.add_argument("--author", help="recorded author (default: the OS user)")
    pi.add_argument("--note", default="", help="note recorded with every imported version")
    pi.set_defaults(func=cmd_corrections_import)

    p = sub.add_parser("export", help="export the latest masks as a zip")
    _add_paths(p)
    p.add_argument("--format", choices=["trimap", "binary", "coco"], default="trimap")
    p.add_argument("--out", help="zip file to write (default: <workspace>/exports/<format>-<time>.zip)")
    p.add_argument("--only-corrected", action="store_true", help="only images with a correction")
    p.set_defaults(func=cmd_export)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PetSegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
