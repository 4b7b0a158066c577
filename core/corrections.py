"""Changing corrections: save, revert, delete and import, each rescoring the stored evaluations in the same call.

    >>> from core import corrections, groundtruth
    >>> mask, version = groundtruth.current(settings, ds, "Abyssinian_1")   # latest correction, else the trimap
    >>> mask[40:60, 100:140] = 1                                             # the ear is pet, not background
    >>> saved = corrections.save(settings, ds, "Abyssinian_1", mask, base_version=version, source="gt", note="ear")
    >>> saved.version, round(saved.iou_gt, 3), saved.rescored               # rows of metrics.parquet rescored
    (1, 0.981, 2)

These are the only functions that change what :mod:`core.groundtruth` answers. Each one stores through
:mod:`core.ledger` (versioned, crash-safe; see there) and then rescores every stored evaluation of the images it
changed (:func:`core.scoring.rescore_everywhere`), so a caller — the dashboard, the CLI or a Python script —
never sees a stale score and never has to remember to refresh one.

Concurrency is optimistic: a save names the version it started from (``base_version``; ``None`` = no
correction yet). If the latest is another one, nothing is written and :class:`core.ledger.ConflictError` says
which version landed meanwhile; the caller reloads it or saves again on top (``base_version=err.current_version``).

Review. ``python -m core workflow --review required|off`` (:func:`set_review_mode`) is a store-wide setting, off
by default: every save is accepted at once, as in a solo workspace. With review required each saved, reverted or
imported version starts ``submitted``; a reviewer accepts it (:func:`accept`; never their own) or rejects it
with a reason (:func:`reject`), and which state counts as ground truth is :mod:`core.groundtruth`'s policy.
Accepting and rejecting rescore like a save does. Every function here takes the acting identity (``author`` /
``actor``; None = the OS user) and checks its role first (:func:`core.users.require`).

Imports (:func:`import_folder`) take ``<image_id>.png`` files coded as trimaps (1 pet, 2 background,
3 border) or as binary masks (0 background, 255 pet). A binary mask becomes pet = 1 / background = 2 with
the border band regenerated around its outline the way the dataset's trimaps have it
(:func:`core.masks.border_band`), so imported and official masks look alike to training and evaluation.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from core import audit, ledger, store, users
from core.config import Settings
from core.dataset import Dataset, load_trimap, open_dataset
from core.errors import ImageUnreadable, PetSegError
from core.ledger import Correction
from core.masks import decode_label_png, encode_png, sha256_hex, to_trimap, validate_trimap
from core.metrics import pet_iou
from core.scoring import rescore_everywhere
from core.store.schema import store_settings

MAX_NOTE = 2000
MAX_REASON = 500
REVIEW_MODES = ("required", "off")
MAX_IMPORT_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class ImportResult:
    """What happened to one file of an import folder."""

    name: str
    ok: bool
    message: str
    image_id: str | None = None
    version: int | None = None
    new_version: bool = False  # False for refused files and for masks identical to the current one

    def line(self) -> str:
        return f"{_display_name(self.name)}: {self.message if self.ok else 'refused: ' + self.message}"


@dataclass(frozen=True)
class ImportReport:
    results: list[ImportResult]
    rescored: int  # stored evaluation rows rescored against the imported masks

    @property
    def imported(self) -> list[str]:
        return [r.image_id for r in self.results if r.new_version and r.image_id]

    @property
    def refused(self) -> int:
        return sum(1 for r in self.results if not r.ok)


def save(
    settings: Settings,
    ds: Dataset,
    image_id: str,
    mask: np.ndarray,
    *,
    base_version: int | None,
    source: str,
    author: str | None = None,
    note: str = "",
) -> Correction:
    """Store ``mask`` as the next version of ``image_id`` and rescore; ``ConflictError`` if the latest is not
    ``base_version``. ``source`` says what the edit started from: gt, prediction, correction, import or revert.
    """
    if base_version is not None and (
        not isinstance(base_version, int) or isinstance(base_version, bool) or base_version < 1
    ):
        raise PetSegError(f"base version must be a version number >= 1 or None, got {base_version!r}")
    author = _actor(settings, author, "annotate")
    saved = _store(settings, ds, image_id, mask, base_version=base_version, parent=base_version, source=source,
                   author=author, note=note, state=_new_state(settings))
    return _rescored(settings, ds, saved)


def revert(
    settings: Settings, ds: Dataset, image_id: str, version: int, author: str | None = None, note: str = ""
) -> Correction:
    """A new version whose content equals ``version`` (which may be soft-deleted), on top of the latest."""
    author = _actor(settings, author, "annotate")
    image_id = ds.require(image_id)
    old = ledger.get_version(settings, image_id, version)
    mask = ledger.load_mask(settings, old)
    saved = _store(settings, ds, image_id, mask, base_version=ledger.ANY, parent=old.version, source="revert",
                   author=author, note=note or f"revert to v{old.version}", state=_new_state(settings))
    return _rescored(settings, ds, saved)


def soft_delete(settings: Settings, ds: Dataset, image_id: str, version: int, actor: str | None = None
                ) -> Correction:
    """Hide one version from history and from the ground truth (its row and file stay), then rescore."""
    _actor(settings, actor, "delete")
    image_id = ds.require(image_id)
    return _rescored(settings, ds, ledger.mark_deleted(settings, image_id, version, author=actor))


def accept(settings: Settings, ds: Dataset, image_id: str, version: int | None = None, *, actor: str | None = None,
           reason: str = "") -> Correction:
    """Accept a submitted version (default: the newest) as ground truth, then rescore; never one's own."""
    return _review(settings, ds, image_id, version, actor, "accepted", reason)


def reject(settings: Settings, ds: Dataset, image_id: str, version: int | None = None, *, actor: str | None = None,
           reason: str) -> Correction:
    """Reject a submitted version (default: the newest) with a reason the author will read, then rescore."""
    return _review(settings, ds, image_id, version, actor, "rejected", reason)


@dataclass(frozen=True)
class Change:
    """What one version changed (the review queue's before/after): ``before`` is the version it was made from, else
    the official trimap (None when there is none); ``iou`` is the pet IoU of ``after`` against ``before``."""

    row: Correction
    before: np.ndarray | None
    before_label: str
    after: np.ndarray
    iou: float | None


def change_of(settings: Settings, ds: Dataset, row: Correction) -> Change:
    """The before/after of ``row`` (masks verified as they are read)."""
    after = ledger.load_mask(settings, row)
    before, label = None, "the official trimap"
    if row.parent_version is not None:
        parent = ledger.get_version(settings, row.image_id, row.parent_version)
        before, label = ledger.load_mask(settings, parent), f"v{parent.version}"
    else:
        with contextlib.suppress(ImageUnreadable):
            before = load_trimap(ds, row.image_id)
    if before is not None and before.shape != after.shape:
        before = None
    return Change(row, before, label, after, None if before is None else pet_iou(after, before))


def review_mode(settings: Settings) -> str:
    """``required`` or ``off`` (the default; also for a store not created yet)."""
    if not store.exists(settings):
        return "off"
    with store.reading(settings) as conn:
        value = conn.execute(sa.select(store_settings.c.value).where(store_settings.c.key == "review")).scalar()
    return value if value in REVIEW_MODES else "off"


def set_review_mode(settings: Settings, mode: str, actor: str | None = None) -> str:
    """Turn review on (``required``) or off for the whole store (an admin's action). Turning it off accepts
    nothing by itself: versions submitted before stay submitted until reviewed."""
    actor = _actor(settings, actor, "workflow")
    if mode not in REVIEW_MODES:
        raise PetSegError(f"review mode {str(mode)[:40]!r} is not one of {', '.join(REVIEW_MODES)}")
    with store.writing(settings) as conn:
        store.insert_ignore(conn, store_settings, {"key": "review", "value": mode, "updated_by": actor,
                                                   "updated_at": store.utc_now()},
                            overwrite=("value", "updated_by", "updated_at"))
        audit.record(conn, actor, "workflow", review=mode)
    return mode


def import_folder(
    settings: Settings, folder: Path, author: str | None = None, note: str = "", *, ds: Dataset | None = None
) -> ImportReport:
    """Import every ``<image_id>.png`` of ``folder`` (not recursive) as a new version, then rescore them all."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PetSegError(f"import folder {folder} does not exist or is not a folder")
    entries = sorted(os.scandir(folder), key=lambda e: e.name)
    if not entries:
        raise PetSegError(f"import folder {folder} is empty; put <image_id>.png masks in it")
    ds = ds if ds is not None else open_dataset(settings.data, settings.workspace)
    author = _actor(settings, author, "annotate")
    note = _clean_note(note)
    state = _new_state(settings)
    results = [_import_one(settings, ds, entry, author, note, state) for entry in entries]
    imported = [r.image_id for r in results if r.new_version and r.image_id]
    return ImportReport(results, rescore_everywhere(settings, ds, imported) if imported else 0)


def import_masks(
    settings: Settings, masks: Iterable, author: str | None = None, note: str = "", *, ds: Dataset | None = None
) -> ImportReport:
    """Import masks read from another tool's format (:class:`core.interop.MaskFile` items: name, image id and a
    loader), with the same checks and per-file report as :func:`import_folder`, then rescore them all."""
    ds = ds if ds is not None else open_dataset(settings.data, settings.workspace)
    author = _actor(settings, author, "annotate")
    note = _clean_note(note)
    state = _new_state(settings)
    results = [_import_mask(settings, ds, m.name, m.stem, m.load, author, note, state) for m in masks]
    if not results:
        raise PetSegError("no mask was found in the import; check the format and the path")
    imported = [r.image_id for r in results if r.new_version and r.image_id]
    return ImportReport(results, rescore_everywhere(settings, ds, imported) if imported else 0)


# --- internals -------------------------------------------------------------------------------------------


def _actor(settings: Settings, actor: str | None, action: str) -> str:
    """The recorded identity of ``actor`` (None = the OS user), once its role allows ``action``."""
    actor = store.clean_author(actor)
    users.require(settings, actor, action)
    return actor


def _new_state(settings: Settings) -> str:
    return "submitted" if review_mode(settings) == "required" else "accepted"


def _review(settings: Settings, ds: Dataset, image_id: str, version: int | None, actor: str | None, state: str,
            reason: str) -> Correction:
    actor = _actor(settings, actor, "accept" if state == "accepted" else "reject")
    image_id = ds.require(image_id)
    reason = store.clean_text(reason, "reason", MAX_REASON)
    if state == "rejected" and not reason:
        raise PetSegError("say why the correction is rejected (--reason): its author reads it in History")
    if version is None:
        newest = ledger.latest(settings, image_id)
        if newest is None:
            raise PetSegError(f"{image_id} has no correction to review")
        version = newest.version
    elif isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise PetSegError(f"version must be a version number >= 1, got {version!r}")
    row = ledger.get_version(settings, image_id, version)
    if state == "accepted" and users.normalize(row.author) == users.normalize(actor):
        raise users.PermissionDenied(f"{image_id} v{version} is your own correction: another reviewer must accept "
                                     "it")
    reviewed = ledger.set_state(settings, image_id, version, state, reviewer=actor, reason=reason)
    return _rescored(settings, ds, reviewed)


def _rescored(settings: Settings, ds: Dataset, row: Correction) -> Correction:
    return replace(row, rescored=rescore_everywhere(settings, ds, [row.image_id]))


def _store(
    settings: Settings,
    ds: Dataset,
    image_id: str,
    mask: np.ndarray,
    *,
    base_version: object,
    parent: int | None,
    source: str,
    author: str | None,
    note: str,
    state: str,
) -> Correction:
    image_id = ds.require(image_id)
    size = _known_size(ds, image_id)
    if size is None:
        raise ImageUnreadable(f"the photo of {image_id} is unreadable, so its size is unknown: fix the file first")
    validate_trimap(mask, size, what=f"mask for {image_id}")
    return ledger.add_version(
        settings, image_id, mask, base_version=base_version, parent=parent, source=source,
        author=store.clean_author(author), note=_clean_note(note), iou_gt=_iou_against_official(ds, image_id, mask),
        state=state,
    )


def _known_size(ds: Dataset, image_id: str) -> tuple[int, int] | None:
    row = ds.table.loc[image_id]
    height, width = int(row["height"]), int(row["width"])
    return (height, width) if height > 0 and width > 0 else None


def _iou_against_official(ds: Dataset, image_id: str, mask: np.ndarray) -> float | None:
    try:
        reference = load_trimap(ds, image_id)
    except ImageUnreadable:
        return None  # a broken official trimap is what corrections are for; the IoU is just unknown
    if reference is None or reference.shape != mask.shape:
        return None
    return pet_iou(mask, reference)


def _import_one(settings: Settings, ds: Dataset, entry: os.DirEntry, author: str, note: str, state: str
                ) -> ImportResult:
    name = entry.name
    stem, dot, suffix = name.rpartition(".")
    if entry.is_symlink():
        return ImportResult(name, False, "is a symbolic link; copy the mask file itself into the folder")
    if entry.is_dir():
        return ImportResult(name, False, "is a folder; put <image_id>.png files directly in the import folder")
    if not entry.is_file():
        return ImportResult(name, False, "is not a regular file")
    if not dot or suffix.lower() != "png":
        return ImportResult(name, False, "is not a .png file; masks are named <image_id>.png")
    return _import_mask(settings, ds, name, stem, lambda size: _decode(entry.path, size), author, note, state)


def _decode(path: str, size: tuple[int, int]) -> tuple[np.ndarray, str]:
    trimap, kind = to_trimap(decode_label_png(_read_limited(path), what="mask", expected_size=size))
    return trimap, "trimap" if kind == "trimap" else "binary 0/255, border band regenerated"


def _import_mask(settings: Settings, ds: Dataset, name: str, stem: str,
                 load: Callable[[tuple[int, int]], tuple[np.ndarray, str]], author: str, note: str, state: str
                 ) -> ImportResult:
    try:
        image_id = ds.require(stem)
    except PetSegError as exc:
        return ImportResult(name, False, str(exc))
    try:
        size = _known_size(ds, image_id)
        if size is None:
            raise PetSegError(f"the photo of {image_id} is unreadable, so the mask size cannot be checked")
        trimap, how = load(size)
        digest = sha256_hex(encode_png(trimap))
        current = ledger.latest(settings, image_id)
        if current is not None and current.sha256 == digest:
            return ImportResult(name, True, f"unchanged: identical to v{current.version}", image_id, current.version)
        if current is None:
            with contextlib.suppress(ImageUnreadable):
                official = load_trimap(ds, image_id)
                if official is not None and np.array_equal(official, trimap):
                    return ImportResult(name, True, "unchanged: identical to the official trimap", image_id)
        saved = _store(settings, ds, image_id, trimap, base_version=current.version if current else None,
                       parent=current.version if current else None, source="import", author=author, note=note,
                       state=state)
    except PetSegError as exc:
        return ImportResult(name, False, str(exc), image_id)
    return ImportResult(name, True, f"imported as v{saved.version} ({how})", image_id, saved.version, new_version=True)


def _read_limited(path: str) -> bytes:
    # O_NOFOLLOW: the file checked above cannot be swapped for a symlink before it is read.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(MAX_IMPORT_BYTES + 1)
    if len(data) > MAX_IMPORT_BYTES:
        raise PetSegError(f"file is larger than {MAX_IMPORT_BYTES // (1024 * 1024)} MB; no mask is that big")
    return data


def _clean_note(note: str | None) -> str:
    return store.clean_text(note, "note", MAX_NOTE)


def _display_name(name: str, limit: int = 80) -> str:
    # File names are user input: never print control characters (or a whole screen of them).
    clean = "".join(ch if ch.isprintable() else "?" for ch in name)
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."
