"""``python -m core <command>``: argument parsing only; each command calls one core function.

Identity: every command acts as ``--as EMAIL`` (given before the command), or as the OS user; its role in the
store decides what it may do (:mod:`core.users`), exactly as in the app.

User errors (``PetSegError``) and the file-system errors a user can fix (a path that is too long,
unwritable, read-only, missing, or a full disk) print one line and exit 2; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

from core.config import Settings
from core.errors import PetSegError
from core.interop import EXPORT_FORMATS, IMPORT_FORMATS, PREDICTION_ENCODINGS
from core.runs import EVAL_SPLITS
from core.store.schema import ROLES


def _add_paths(parser: argparse.ArgumentParser, data: bool = True) -> None:
    if data:
        parser.add_argument(
            "--data", help="dataset root in the official layout (default: $PETSEG_DATA or ./data/oxford-iiit-pet)"
        )
    parser.add_argument(
        "--workspace", help="where runs, caches, corrections and exports go (default: $PETSEG_HOME or ./workspace)"
    )
    _add_db(parser, default=argparse.SUPPRESS)  # also accepted after the command; the one before it is the default


def _add_db(parser: argparse.ArgumentParser, default: object = None) -> None:
    parser.add_argument("--db", metavar="URL", default=default,
                        help="the store: sqlite:///file or postgresql://user@host:port/dbname "
                             "(default: $PETSEG_DB or the SQLite file in the workspace)")


def _add_policy(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    parser.add_argument("--corrections", choices=["accepted", "latest"], default=default,
                        help="which correction version is the ground truth: accepted (default: the latest accepted) "
                             "or latest (the latest not rejected)")


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.resolve(data=getattr(args, "data", None), workspace=getattr(args, "workspace", None),
                            db=getattr(args, "db", None))


def _actor(args: argparse.Namespace) -> str | None:
    """``--as``, or None: the OS user (core resolves it)."""
    return getattr(args, "actor", None)


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


# --- commands ---------------------------------------------------------------


def _add_training_flags(p: argparse.ArgumentParser) -> None:
    """The recipe flags of ``train`` (and of every fold of ``crossval``)."""
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
        help="train on the corrections of trainval images (see --corrections) instead of their official trimaps",
    )
    _add_policy(p)


def cmd_info(args: argparse.Namespace) -> int:
    from core.dataset import format_summary, open_dataset, summarize

    settings = _settings(args)
    summary = summarize(open_dataset(settings.data, settings.workspace))
    print(json.dumps(summary) if args.json else format_summary(summary))
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from core.download import download, parse_md5_options

    settings = _settings(args)
    download(settings.data, base_url=args.base_url, md5s=parse_md5_options(args.md5 or []))
    print(f"dataset ready at {settings.data}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    from core.synth import generate

    out = generate(Path(args.out), count=args.count, seed=args.seed)
    print(f"synthetic dataset written to {out}")
    return 0


def _recorded(settings: Settings, actor: str | None, action: str, **detail: object) -> None:
    """Audit a job-like command as it starts, once its role is checked (under torchrun only rank 0 records)."""
    import os

    from core import audit, users

    users.require(settings, actor, action)
    if os.environ.get("RANK", "0") == "0":
        audit.record_now(settings, actor, action, **detail)


def cmd_train(args: argparse.Namespace) -> int:
    from core.train import config_from_args, train

    settings, config = _settings(args), config_from_args(args)
    _recorded(settings, _actor(args), "train", run=config.run, via="cli")
    train(settings, config, actor=_actor(args))
    return 0


def cmd_crossval(args: argparse.Namespace) -> int:
    from core.crossval import crossval
    from core.train import config_from_args

    summary = crossval(_settings(args), config_from_args(args), folds=args.folds, actor=_actor(args))
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{summary['run']}: {summary['folds_done']}/{summary['folds']} folds, {summary['images']} out-of-fold "
              f"predictions, probabilities {summary['probabilities_bytes'] / 1e6:.1f} MB\n"
              f"metrics: {summary['metrics_path']}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from core import users
    from core.distributed import current
    from core.evaluate import CHECKPOINTS, evaluate

    settings = _settings(args)
    users.require(settings, _actor(args), "evaluate")  # before a checkpoint from outside becomes a run
    checkpoint = args.checkpoint
    if checkpoint not in CHECKPOINTS:  # a file or folder from outside: becomes the run's best.pt first
        if current().active:
            raise PetSegError("an outside checkpoint is imported in one process: run `python -m core evaluate` with "
                              "it once, then evaluate the run under torchrun with --checkpoint best")
        from core.interop.runs import import_checkpoint
        from core.model import ExternalSpec

        low, _, high = args.input_range.partition("-")
        spec = ExternalSpec(arch=args.arch, encoder=args.encoder, classes=args.classes, image_size=args.image_size,
                            input_range=(float(low), float(high)))
        cfg = import_checkpoint(settings, args.run, Path(checkpoint), spec, actor=_actor(args))
        print(f"{checkpoint} imported as run {args.run}: {cfg.describe()}"
              + (" (1-class: evaluated as pet vs background)" if cfg.binary else ""), file=sys.stderr)
        checkpoint = "best"
    _recorded(settings, _actor(args), "evaluate", run=args.run, split=args.split, checkpoint=args.checkpoint,
              via="cli")
    summary = evaluate(settings, run=args.run, split=args.split, checkpoint=checkpoint,
                       corrections=args.corrections, actor=_actor(args))
    if not current().is_main:
        return 0  # under torchrun every rank has the summary: rank 0 prints it
    if args.json:
        print(json.dumps(summary))
    else:
        def fmt(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.4f}"

        print(
            f"{summary['run']} / {summary['split']}: {summary['images']} images, "
            f"per-image pet IoU {fmt(summary['per_image_iou'])}, dataset pet IoU {fmt(summary['dataset_iou'])} "
            "(official trimaps)\n"
            + (f"with your corrections ({summary['corrected_images']} corrected images): per-image pet IoU "
               f"{fmt(summary['per_image_iou_corrected'])}\n" if summary["corrected_images"] else "")
            + f"metrics: {summary['metrics_path']}\npredictions: {summary['predictions_dir']}"
        )
    return 0


def cmd_corrections_import(args: argparse.Namespace) -> int:
    from core.corrections import import_folder, import_masks
    from core.interop import read_masks

    settings = _settings(args)
    if args.author and _actor(args) and args.author != _actor(args):
        raise PetSegError("--author and --as name different people; the author of an import is the one acting: "
                          "use --as alone")
    author = _actor(args) or args.author
    if args.format:
        report = import_masks(settings, read_masks(args.format, Path(args.source)), author=author, note=args.note)
    else:
        report = import_folder(settings, Path(args.source), author=author, note=args.note)
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
    _recorded(settings, _actor(args), "export", format=args.format, only_corrected=args.only_corrected, run=args.run,
              via="cli")
    report = export_archive(settings, fmt=args.format, out=out, only_corrected=args.only_corrected, run=args.run,
                            split=args.split, corrections=args.corrections, actor=_actor(args))
    print(report.path)
    print(report.summary(), file=sys.stderr)
    return 0


def cmd_predictions_import(args: argparse.Namespace) -> int:
    from core.interop.runs import import_predictions

    settings = _settings(args)
    report = import_predictions(settings, args.run, Path(args.source), args.encoding, resize=args.resize,
                                split=args.split, actor=_actor(args))
    if args.json:
        print(json.dumps({"run": report.run, "split": report.split, "imported": report.imported,
                          "per_image_iou": report.per_image_iou, "refused": report.refused,
                          "unknown": report.unknown, "missing": report.missing, "resized": report.resized}))
    else:
        for line in report.refused:
            print(f"refused: {line}")
        print(report.summary())
    return 0


def cmd_corrections_review(args: argparse.Namespace) -> int:
    from core import corrections
    from core.dataset import open_dataset

    settings = _settings(args)
    ds = open_dataset(settings.data, settings.workspace)
    decide = corrections.accept if args.corrections_command == "accept" else corrections.reject
    row = decide(settings, ds, args.image, args.version, actor=_actor(args), reason=args.reason or "")
    print(f"{row.image_id} v{row.version} {row.state} by {row.reviewer}"
          + (f": {row.reason}" if row.reason else "")
          + f"; {row.rescored} stored evaluation rows rescored")
    return 0


def cmd_users(args: argparse.Namespace) -> int:
    from core import users

    settings = _settings(args)
    if args.users_command == "add":
        user = users.add_user(settings, _actor(args), args.email, args.role)
        print(f"{user.email} is now {user.role}")
    elif args.users_command == "set-role":
        user = users.set_role(settings, _actor(args), args.email, args.role)
        print(f"{user.email} is now {user.role}")
    else:
        listed = users.list_users(settings)
        if not listed:
            print(f"no users: this store is single-user (whoever runs PetSeg is its admin); "
                  f"add the first admin with `users add EMAIL --role admin` or set {users.ADMIN_ENV}")
        for user in listed:
            origin = f"configured by {users.ADMIN_ENV}" if user.configured else f"set by {user.updated_by}"
            print(f"{user.email:<40} {user.role:<10} ({origin}{' at ' + user.updated_at if user.updated_at else ''})")
    return 0


def cmd_workflow(args: argparse.Namespace) -> int:
    from core.corrections import review_mode, set_review_mode

    settings = _settings(args)
    if args.review is not None:
        set_review_mode(settings, args.review, actor=_actor(args))
    mode = review_mode(settings)
    print(f"review {mode}: " + ("every new correction version is submitted and counts as ground truth (under "
                                 "--corrections accepted) once a reviewer accepts it" if mode == "required" else
                                 "every saved correction is accepted at once"))
    return 0


# --- team: assignment and activity (core.assignments, core.audit) ------------


def cmd_assign(args: argparse.Namespace) -> int:
    from core import assignments
    from core.dataset import open_dataset
    from core.views import Filters, load_view, review_queue

    settings = _settings(args)
    filters = Filters.from_dict({"species": args.species or [], "breeds": args.breed or [],
                                 "corrected": {"yes": "corrected", "no": "not corrected"}.get(args.corrected, "any"),
                                 "tags": args.tag or []})
    picked = list(review_queue(load_view(settings, args.run, args.split), filters, args.metric, args.order)
                  .index[: args.limit])
    ds = open_dataset(settings.data, settings.workspace)
    count = assignments.assign(settings, ds, args.assignee, picked, actor=_actor(args))
    what = "suspected label errors first" if args.order == "tension" else f"worst {args.metric} first"
    print(f"assigned {count} images of {args.run} / {args.split} to {args.assignee} ({what})")
    return 0


def cmd_activity(args: argparse.Namespace) -> int:
    from core import audit

    settings = _settings(args)
    if args.image:
        trail = audit.rows(settings, image_id=args.image, person=args.person)
        if args.json:
            print(json.dumps({"image_id": args.image, "trail": _records(trail)}))
            return 0
        print(f"{args.image}: {len(trail)} recorded actions" + (f" by {args.person}" if args.person else ""))
        for row in trail.itertuples(index=False):
            print(f"{row.at}  {_clean(row.actor):<32} {row.action:<9} {_clean(_detail_text(row.detail))}")
        return 0
    per_day = audit.daily(settings, args.person)
    if args.json:
        print(json.dumps({"person": args.person, "days": _records(per_day)}))
        return 0
    if per_day.empty:
        print("no corrections recorded yet" + (f" for {args.person}" if args.person else ""))
        return 0
    print(f"{'day':<10}  {'person':<32} {'submitted':>9} {'accepted':>8} {'rejected':>8} {'accept rate':>11}")
    for row in per_day.itertuples(index=False):
        print(f"{row.day:<10}  {_clean(row.person):<32} {row.submitted:>9} {row.accepted:>8} {row.rejected:>8} "
              f"{_fmt(row.acceptance_rate):>11}")
    return 0


def _records(frame) -> list[dict]:
    return [{k: (_json_number(v) if isinstance(v, float) else v) for k, v in row.items()}
            for row in frame.to_dict(orient="records")]


def _detail_text(detail: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in detail.items())


def _clean(text: object, limit: int = 200) -> str:
    # Stored free text: one printable line, never terminal control characters.
    value = "".join(ch if ch.isprintable() else "?" for ch in str(text))
    return value if len(value) <= limit else value[: limit - 3] + "..."


# --- views: the review queue and run against run (core.views) ----------------


def cmd_review(args: argparse.Namespace) -> int:
    from core.views import Filters, load_view, review_queue, tag_label, weak_run_warning

    settings = _settings(args)
    view = load_view(settings, args.run, args.split)
    queue = review_queue(view, Filters(), args.metric, args.order)
    shown = queue.head(args.limit)
    weak = weak_run_warning(view[view["evaluated"]]) if args.order == "tension" else None
    if weak:
        print(f"warning: {weak}", file=sys.stderr)
    if args.json:
        rows = [{"image_id": str(i), "breed": r["breed"], "species": r["species"],
                 args.metric: _json_number(r[args.metric]), "tension": _json_number(r["tension"]),
                 "label_quality": _json_number(r.get("label_quality")),
                 "label_quality_source": r.get("label_quality_source") or None,
                 "tag": r["tag"], "correction_version": _json_number(r["correction_version"])}
                for i, r in shown.iterrows()]
        print(json.dumps({"run": args.run, "split": args.split, "order": args.order, "metric": args.metric,
                          "total": len(queue), "images": rows}))
        return 0
    what = "suspected label errors first" if args.order == "tension" else f"worst {args.metric} first"
    print(f"{args.run} / {args.split}: {len(queue)} images to review, {what}"
          + (f" (first {len(shown)})" if len(shown) < len(queue) else ""))
    if len(shown):
        print(f"{'#':>4}  {'image':<32} {'breed':<28} {args.metric:>10} {'tension':>8}  tag")
    for rank, (image_id, row) in enumerate(shown.iterrows(), start=1):
        corrected = "" if not row["corrected"] else f" (corrected v{int(row['correction_version'])})"
        print(f"{rank:>4}  {image_id:<32} {row['breed']:<28} {_fmt(row[args.metric]):>10} {_fmt(row['tension']):>8}"
              f"  {tag_label(row['tag'])}{corrected}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from core.views import compare_runs, top_changes

    settings = _settings(args)
    comparison = compare_runs(settings, args.run_a, args.run_b, args.split, args.metric)
    if args.json:
        print(json.dumps(comparison.to_dict(top=args.top)))
        return 0
    against = "the official trimaps" if args.metric == "iou_pet" else "the ground truth in use"
    print(f"{args.metric} per image on {args.split} against {against}: B {args.run_b} against A {args.run_a} "
          "(delta = B - A)")
    for label, h in (("all images", comparison.overall), ("corrected images", comparison.corrected),
                     ("corrected images, against the corrections", comparison.corrected_in_use)):
        if not h.images:
            print(f"{label}: none scored by both runs")
            continue
        print(f"{label} ({h.images}): A {h.mean_a:.4f}  B {h.mean_b:.4f}  delta {h.delta:+.4f}  "
              f"improved {h.improved}  worsened {h.worsened}  unchanged {h.unchanged}")
    if comparison.mismatched:
        print(f"{comparison.mismatched} image(s) were scored against different ground-truth versions by the two "
              "runs (a correction landed between the evaluations)")
    improved, worsened = top_changes(comparison.joined, args.top)
    for label, rows in (("most improved", improved), ("most worsened", worsened)):
        if len(rows):
            print(f"{label}: " + ", ".join(f"{i} {r.delta:+.3f}" for i, r in rows.iterrows()))
    return 0


def _fmt(value: object) -> str:
    number = _json_number(value)
    return "n/a" if number is None else f"{number:.4f}"


def _json_number(value: object) -> float | None:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):  # None, pd.NA
        return None
    return None if math.isnan(number) else number  # NaN is not JSON


def cmd_db_migrate(args: argparse.Namespace) -> int:
    from core import store
    from core.store.migrate import current_revision

    settings = _settings(args)
    revision = current_revision(store.engine(settings))  # opening the store upgrades it
    print(f"{store.shown(settings.db_url)} is at schema revision {revision}")
    return 0


def cmd_db_copy(args: argparse.Namespace) -> int:
    from core.store.copy import copy_store

    settings = _settings(args)
    print(copy_store(settings.workspace, args.source or settings.db_url, args.target).text())
    return 0


def cmd_db_check(args: argparse.Namespace) -> int:
    from core.ledger import check_store

    check = check_store(_settings(args))
    print(f"{check.rows} corrections; {len(check.missing)} with their mask missing, {len(check.corrupt)} damaged, "
          f"{len(check.orphans)} masks no correction references")
    for label in check.missing:
        print(f"missing: {label}")
    for label in check.corrupt:
        print(f"damaged: {label}")
    return 0 if check.ok else 1


def cmd_gc(args: argparse.Namespace) -> int:
    from core.cleanup import collect

    print(collect(_settings(args), dry_run=args.dry_run).text())
    return 0


# --- parser -----------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m core", description="PetSeg: U-Net segmentation on Oxford-IIIT Pet."
    )
    _add_db(parser)
    parser.add_argument("--as", dest="actor", metavar="EMAIL",
                        help="act as this user: their role decides what the command may do (default: the OS user)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")

    p = sub.add_parser("info", help="index the dataset and report what was found")
    _add_paths(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("download", help="download and verify the official images and annotations archives")
    _add_paths(p)
    p.add_argument("--base-url", help="fetch the archives from this URL prefix instead of the official mirror")
    p.add_argument(
        "--md5", action="append", metavar="NAME=HEX",
        help="with --base-url: expect this md5 for archive NAME (images.tar.gz or annotations.tar.gz) instead of "
             "the official one, for a private mirror of a modified archive; repeat for both",
    )
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("synth", help="generate a synthetic dataset in the official layout")
    p.add_argument("--out", required=True, help="folder to create")
    p.add_argument("--count", type=_positive_int, default=400, help="number of images (default 400)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same dataset)")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("train", help="train a U-Net on the trimaps")
    _add_paths(p)
    p.add_argument("--run", required=True, help="run name (folder under <workspace>/runs)")
    _add_training_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("crossval", help="train K fold models and store every trainval image's out-of-fold "
                                        "prediction and label quality")
    _add_paths(p)
    p.add_argument("--run", required=True, help="parent run name; the folds are <run>-fold1 .. <run>-foldK")
    p.add_argument("--folds", type=_positive_int, default=5, help="number of folds (2-20, default 5)")
    _add_training_flags(p)
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    p.set_defaults(func=cmd_crossval)

    p = sub.add_parser("evaluate", help="predict every image of a split and store per-image metrics")
    _add_paths(p)
    p.add_argument("--run", required=True)
    p.add_argument("--split", choices=EVAL_SPLITS, default="test")
    p.add_argument(
        "--checkpoint", default="best", metavar="best|last|PATH",
        help="the run's best or last checkpoint, or a checkpoint from outside to import as --run: a PetSeg .pt, an "
             "smp save_pretrained folder, a Lightning .ckpt of smp's Oxford-pet example, or a state_dict "
             "(.pt/.safetensors; give --arch and --encoder)",
    )
    p.add_argument("--arch", default="unet", help="with a plain state_dict: the smp architecture (default unet)")
    p.add_argument("--encoder", default="resnet34", help="with a plain state_dict: the smp encoder (default resnet34)")
    p.add_argument("--classes", type=int, choices=[1, 3],
                   help="with a plain state_dict: 3 (pet, background, border) or 1 (pet); read from the weights")
    p.add_argument("--image-size", type=_positive_int, default=256,
                   help="input size of an outside model (default 256, smp's Oxford-pet example)")
    p.add_argument("--input-range", choices=["0-1", "0-255"], default="0-1",
                   help="pixel range an outside model was trained on before mean/std (Lightning example: 0-255)")
    p.add_argument("--json", action="store_true", help="print a JSON summary as the last line")
    _add_policy(p, default="accepted")
    p.set_defaults(func=cmd_evaluate)


    p = sub.add_parser("predictions", help="predictions made elsewhere")
    psub = p.add_subparsers(dest="predictions_command", required=True, metavar="<subcommand>")
    pp = psub.add_parser("import", help="register a folder of predicted masks (<image_id>.png) as a run")
    _add_paths(pp)
    pp.add_argument("--from", dest="source", required=True, help="folder of <image_id>.png (or .npy) predictions")
    pp.add_argument("--run", required=True, help="name of the new run")
    pp.add_argument("--encoding", choices=PREDICTION_ENCODINGS, default="trimap",
                    help="trimap 1/2/3; index 0/1/2; binary 0/255 or 0/1; probability 8/16-bit PNG or .npy")
    pp.add_argument("--resize", action="store_true",
                    help="resize predictions of another size to the photo's (nearest neighbour; recorded)")
    pp.add_argument("--split", choices=EVAL_SPLITS, help="default: the split the files cover")
    pp.add_argument("--json", action="store_true", help="print one JSON object")
    pp.set_defaults(func=cmd_predictions_import)

    p = sub.add_parser("corrections", help="manage mask corrections")
    csub = p.add_subparsers(dest="corrections_command", required=True, metavar="<subcommand>")
    pi = csub.add_parser("import", help="import masks fixed elsewhere (<image_id>.png, trimap 1/2/3 or binary 0/255)")
    _add_paths(pi)
    pi.add_argument("--from", dest="source", required=True,
                    help="folder of <image_id>.png masks; with --format, that tool's zip or unpacked folder")
    pi.add_argument("--format", choices=IMPORT_FORMATS,
                    help="read another tool's export: CVAT Segmentation mask 1.1, Label Studio JSON, FiftyOne "
                         "ImageSegmentationDirectory, or PetSeg's trimap/binary zips")
    pi.add_argument("--author", help="the same as --as for this import (kept for older scripts)")
    pi.add_argument("--note", default="", help="note recorded with every imported version")
    pi.set_defaults(func=cmd_corrections_import)
    for name, what in (("accept", "accept a submitted correction as ground truth (a reviewer's action; not your own)"),
                       ("reject", "reject a submitted correction with a reason (a reviewer's action)")):
        pr = csub.add_parser(name, help=what)
        _add_paths(pr)
        pr.add_argument("image", metavar="IMAGE", help="image id, e.g. Abyssinian_1")
        pr.add_argument("--version", type=_positive_int, help="the version to review (default: the newest)")
        pr.add_argument("--reason", required=name == "reject", help="why (shown in History)")
        pr.set_defaults(func=cmd_corrections_review)

    p = sub.add_parser("users", help="who may do what: annotator < reviewer < admin")
    usub = p.add_subparsers(dest="users_command", required=True, metavar="<subcommand>")
    for name, what in (("add", "give a user a role"), ("set-role", "change a user's role")):
        pu = usub.add_parser(name, help=what)
        _add_paths(pu, data=False)
        pu.add_argument("email", metavar="EMAIL")
        if name == "add":
            pu.add_argument("--role", required=True, choices=ROLES)
        else:
            pu.add_argument("role", metavar="ROLE", choices=ROLES)
        pu.set_defaults(func=cmd_users)
    pu = usub.add_parser("list", help="list users and their roles")
    _add_paths(pu, data=False)
    pu.set_defaults(func=cmd_users)

    p = sub.add_parser("workflow", help="show or set the store's review workflow")
    _add_paths(p, data=False)
    p.add_argument("--review", choices=["required", "off"],
                   help="required: new corrections wait for a reviewer; off: saves are accepted at once")
    p.set_defaults(func=cmd_workflow)

    p = sub.add_parser("export", help="export the latest masks as a zip")
    _add_paths(p)
    p.add_argument("--format", choices=EXPORT_FORMATS, default="trimap")
    p.add_argument("--out", help="zip file to write (default: <workspace>/exports/<format>-<time>.zip)")
    p.add_argument("--only-corrected", action="store_true", help="only images with a correction")
    p.add_argument("--run", help="export this run's stored predictions (of --split) instead of the corrections")
    p.add_argument("--split", choices=EVAL_SPLITS, default="test", help="with --run: the evaluated split")
    _add_policy(p, default="accepted")
    p.set_defaults(func=cmd_export)

    # views (core.views): the review queue and run against run
    from core.views import COMPARABLE_METRICS, REVIEW_ORDERS, TAG_CHOICES

    p = sub.add_parser("review", help="list the images to review: worst first, or suspected label errors first")
    _add_paths(p)
    p.add_argument("--run", required=True, help="an evaluated run")
    p.add_argument("--split", choices=EVAL_SPLITS, default="test")
    p.add_argument("--order", choices=list(REVIEW_ORDERS), default="worst",
                   help="worst: lowest metric first; tension: confident disagreement (likely wrong trimaps) first")
    p.add_argument("--metric", choices=COMPARABLE_METRICS, default="iou_pet")
    p.add_argument("--limit", type=_positive_int, default=20, help="print at most this many images (default 20)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_review)

    p = sub.add_parser("compare", help="compare two runs image by image on a split both evaluated (B against A)")
    _add_paths(p)
    p.add_argument("run_a", metavar="RUN_A", help="the run before (A)")
    p.add_argument("run_b", metavar="RUN_B", help="the run after (B)")
    p.add_argument("--split", choices=EVAL_SPLITS, default="test")
    p.add_argument("--metric", choices=COMPARABLE_METRICS, default="iou_pet")
    p.add_argument("--top", type=_positive_int, default=10, help="list this many most improved / worsened images")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("assign", help="assign images to an annotator: a run's review queue, filtered, first N")
    _add_paths(p)
    p.add_argument("assignee", metavar="EMAIL", help="who gets the work (their Annotate Next walks it first)")
    p.add_argument("--run", required=True, help="an evaluated run (its metrics order the images)")
    p.add_argument("--split", choices=EVAL_SPLITS, default="test")
    p.add_argument("--order", choices=list(REVIEW_ORDERS), default="worst",
                   help="worst: lowest metric first; tension: suspected label errors first")
    p.add_argument("--metric", choices=COMPARABLE_METRICS, default="iou_pet")
    p.add_argument("--species", action="append", choices=["cat", "dog"], help="only this species (repeatable)")
    p.add_argument("--breed", action="append", help="only this breed (repeatable)")
    p.add_argument("--corrected", choices=["any", "yes", "no"], default="any",
                   help="only images with (yes) or without (no) a correction")
    p.add_argument("--tag", action="append", choices=TAG_CHOICES, help="only images with this review tag (repeatable)")
    p.add_argument("--limit", type=_positive_int, default=200, help="assign at most this many (default 200)")
    p.set_defaults(func=cmd_assign)

    p = sub.add_parser("activity", help="who did what: corrections per person and day, or one image's full trail")
    _add_paths(p)
    p.add_argument("--person", metavar="EMAIL", help="only this person")
    p.add_argument("--image", metavar="ID", help="the full trail of this image instead of the per-day table")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_activity)

    p = sub.add_parser(
        "gc", help="remove leftovers of crashes: stale temporaries, mask files the database holds since the upgrade"
    )
    _add_paths(p, data=False)
    p.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    p.set_defaults(func=cmd_gc)

    p = sub.add_parser("db", help="the store: upgrade its schema, copy it into another database, check it")
    db_sub = p.add_subparsers(dest="db_command", required=True, metavar="<db command>")
    q = db_sub.add_parser("migrate", help="upgrade the store's schema in place (opening it does the same)")
    _add_paths(q, data=False)
    q.set_defaults(func=cmd_db_migrate)
    q = db_sub.add_parser("copy", help="copy every correction, mask and review into another database "
                                       "(idempotent, resumable, verified by counts and SHA-256 at the end)")
    _add_paths(q, data=False)
    q.add_argument("--from", dest="source", metavar="URL", help="the store to copy (default: --db)")
    q.add_argument("--to", dest="target", metavar="URL", required=True, help="the database to copy into")
    q.set_defaults(func=cmd_db_copy)
    q = db_sub.add_parser("check", help="verify every correction's mask against its SHA-256 (exit 1 if any is bad)")
    _add_paths(q, data=False)
    q.set_defaults(func=cmd_db_check)

    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(lambda: args.func(args))


def run_command(command: Callable[[], int]) -> int:
    """Run a command as the CLI ends one: user errors as one ``error:`` line and exit 2, Ctrl-C as 130 (also
    used by background jobs, which call the core functions without parsing arguments)."""
    try:
        return command()
    except PetSegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in _USER_FIXABLE:
            raise  # EBADF, EINVAL, ...: a bug, keep the traceback
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


# What the user can fix by choosing another path or freeing space, with the advice to give.
_USER_FIXABLE = {
    errno.ENAMETOOLONG: "choose a shorter path",
    errno.ENOSPC: "free some disk space or choose a folder on another disk",
    errno.EDQUOT: "free some space within your quota or choose a folder on another disk",
    errno.EROFS: "the file system is read-only: choose a writable folder",
    errno.EACCES: "choose a folder you may write to, or fix its permissions",
    errno.EPERM: "choose a folder you may write to, or fix its permissions",
    errno.ENOENT: "check that the path exists",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EISDIR: "the path is a folder where a file was expected: choose another path",
    errno.EEXIST: "the path exists already: choose another one",
    errno.ELOOP: "the path has a symlink loop: choose another path",
}


def describe_os_error(exc: OSError) -> str:
    """``exc`` as one line naming the path and what to do, e.g. for ``--workspace`` on a read-only disk."""
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    where = " -> ".join(paths) if paths else "a file in the workspace or output folder"
    reason = exc.strerror or type(exc).__name__
    return f"{where}: {reason}; {_USER_FIXABLE.get(exc.errno, 'check the path')}"
