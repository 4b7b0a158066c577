"""The edit in progress on the Annotate page: what it started from, the working mask, tool previews, saves.

    >>> session = open_session(settings, ds, "Abyssinian_1", start="gt", run="tiny", split="test")
    >>> handle(settings, ds, session, EditorEvent("fill_holes", mask, strokes))   # the working mask changes
    >>> handle(settings, ds, session, EditorEvent("save", session.work), author="ana", note="ear")
    >>> session.base_version, session.status
    (1, 'Saved v1 of Abyssinian_1 · IoU vs original GT 0.981')

Everything here is plain Python over ``core`` (the page keeps the session in ``st.session_state``); the only
mask write path is :func:`core.corrections.save`. ``base_version`` is the latest correction when the edit
was opened, whatever it started from, so a save lands as a conflict if someone else saved meanwhile.
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from core import assignments, corrections, leases, ledger, masks, store
from core.config import Settings
from core.dataset import Dataset, load_image, load_trimap
from core.errors import PetSegError
from core.metrics import pet_iou
from core.runs import EVAL_SPLITS, eval_dir, read_prediction
from dashboard.editor import EditorEvent
from dashboard.filters import current_order

START_LABELS = {
    "correction": "latest correction",
    "gt": "original GT trimap",
    "prediction": "prediction of the selected run",
    "empty": "empty (all background)",
}
# What the ledger records as the edit's origin; a mask drawn from nothing is a hand correction.
_SOURCE = {"correction": "correction", "gt": "gt", "prediction": "prediction", "empty": "correction"}
TOOLS = ("grabcut", "fill_holes", "remove_specks", "regenerate_border")
TOOL_LABELS = {"grabcut": "GrabCut", "fill_holes": "Fill holes", "remove_specks": "Remove specks",
               "regenerate_border": "Regenerate border"}

# The lease is renewed on the page runs (editor events) of the one editing, at most this often; it lasts
# leases.LEASE_SECONDS, so an editor who stops for two minutes (or closes the tab) frees the image.
RENEW_EVERY_S = 30.0

UNREACHABLE = ("Not saved: the database cannot be reached right now; your edit stays in the editor, "
               "save again once it is back.")


@dataclass
class Conflict:
    mask: np.ndarray
    current_version: int | None
    message: str


@dataclass
class EditSession:
    image_id: str
    start: str
    source: str
    base_version: int | None
    shape: tuple[int, int]
    start_mask: np.ndarray
    work: np.ndarray
    clean: np.ndarray  # the mask as last loaded or saved: "unsaved changes" means work differs from it
    gt: np.ndarray | None  # the official trimap, for the IoU readout (None when missing or of another size)
    revision: int = 0
    preview: np.ndarray | None = None
    preview_tool: str = ""
    conflict: Conflict | None = None
    saved: int = 0  # successful saves in this session (the browser marks its edits clean on a new count)
    sequence: int = 0  # handled events
    status: str = ""
    status_kind: str = ""
    lease_holder: str = ""  # who held the image's lease at the last claim ("" = unknown / released)
    lease_left: float = 0.0  # seconds that lease had left then
    lease_at: float = -math.inf  # time.monotonic() of that claim

    @property
    def dirty(self) -> bool:
        return not np.array_equal(self.work, self.clean)

    def readout(self) -> dict[str, float | int | None]:
        """IoU against the original GT and changed pixels, by the same functions the ledger uses."""
        return {
            "iou_gt": None if self.gt is None else pet_iou(self.work, self.gt),
            "changed": masks.changed_pixels(self.work, self.start_mask),
            "changed_from_gt": None if self.gt is None else masks.changed_pixels(self.work, self.gt),
        }


def available_starts(settings: Settings, ds: Dataset, image_id: str, run: str | None, split: str) -> list[str]:
    """The starting points this image has, default first (latest correction, else GT, else prediction)."""
    starts = []
    if ledger.latest(settings, image_id) is not None:
        starts.append("correction")
    if ds.table.at[image_id, "has_trimap"]:
        starts.append("gt")
    if run and prediction(settings, ds, image_id, run, split) is not None:
        starts.append("prediction")
    return [*starts, "empty"]


def prediction(settings: Settings, ds: Dataset, image_id: str, run: str, split: str) -> np.ndarray | None:
    """The run's stored prediction: from the selected split's evaluation, else any split that has it."""
    for name in dict.fromkeys((split, *EVAL_SPLITS)):
        try:
            pred = read_prediction(eval_dir(settings, run, name), image_id)
        except PetSegError:
            continue
        if pred is not None:
            return pred
    return None


def _official(ds: Dataset, image_id: str, shape: tuple[int, int]) -> np.ndarray | None:
    """The official trimap when it is usable; load_trimap already refuses wrong sizes and values."""
    try:
        gt = load_trimap(ds, image_id)
    except PetSegError:
        return None
    return gt if gt is not None and gt.shape == shape else None


def _start_mask(settings: Settings, ds: Dataset, image_id: str, start: str, shape: tuple[int, int],
                run: str | None, split: str) -> tuple[np.ndarray, int | None]:
    latest = ledger.latest(settings, image_id)
    base = latest.version if latest else None
    if start == "correction" and latest is not None:
        mask = ledger.load_mask(settings, latest)
    elif start == "gt":
        mask = _official(ds, image_id, shape)
    elif start == "prediction" and run:
        mask = prediction(settings, ds, image_id, run, split)
    else:
        mask = np.full(shape, masks.BACKGROUND, np.uint8)
    if mask is None or mask.shape != shape:
        raise PetSegError(f"{image_id} has no usable {START_LABELS[start]}; start from another mask")
    return mask.copy(), base


def open_session(settings: Settings, ds: Dataset, image_id: str, start: str, run: str | None, split: str
                 ) -> EditSession:
    """A fresh edit of ``image_id`` from ``start`` (one of :data:`START_LABELS`)."""
    image = load_image(ds, image_id)
    shape = image.shape[:2]
    mask, base = _start_mask(settings, ds, image_id, start, shape, run, split)
    return EditSession(image_id=image_id, start=start, source=_SOURCE[start], base_version=base, shape=shape,
                       start_mask=mask, work=mask.copy(), clean=mask.copy(), gt=_official(ds, image_id, shape))


def handle(settings: Settings, ds: Dataset, session: EditSession, event: EditorEvent, *, author: str,
           note: str = "") -> None:
    """Apply one editor event (not prev/next: the page moves) to the session; errors become its status."""
    session.sequence += 1
    if event.mask is not None:
        session.work = event.mask
    session.preview = None
    try:
        if event.action == "save":
            save(settings, ds, session, base_version=session.base_version, author=author, note=note)
        elif event.action == "apply":
            _say(session, "Applied: the readout below is for the mask as painted.", "info")
        elif event.action in TOOLS:
            _run_tool(ds, session, event)
    except PetSegError as exc:
        _say(session, str(exc), "error")


def _run_tool(ds: Dataset, session: EditSession, event: EditorEvent) -> None:
    work = session.work
    if event.action == "grabcut":
        strokes = event.strokes if event.strokes is not None else np.zeros(work.shape, np.uint8)
        session.preview = masks.grabcut(load_image(ds, session.image_id), work, sure_pet=strokes == 1,
                                        sure_background=strokes == 2)
        session.preview_tool = "grabcut"
        changed = masks.changed_pixels(session.preview, work)
        _say(session, f"GrabCut preview ready ({changed:,} px differ from your mask): accept or reject it.", "info")
        return
    result = {"fill_holes": masks.fill_holes, "remove_specks": masks.remove_specks,
              "regenerate_border": masks.regenerate_border}[event.action](work)
    changed = masks.changed_pixels(result, work)
    replace_work(session, result)
    _say(session, f"{TOOL_LABELS[event.action]}: {changed:,} px changed (undo in the editor to take it back).",
         "success" if changed else "info")


def replace_work(session: EditSession, mask: np.ndarray) -> None:
    """The page changed the mask (a tool, an accepted preview, a reload): the browser takes it on next render."""
    session.work = mask
    session.revision += 1


def accept_preview(session: EditSession) -> None:
    if session.preview is not None:
        replace_work(session, session.preview)
        _say(session, f"{TOOL_LABELS.get(session.preview_tool, 'Preview')} accepted (undo in the editor to take "
             "it back); save to keep it.", "success")
    session.preview = None


def reject_preview(session: EditSession) -> None:
    session.preview = None
    _say(session, "Preview rejected: your mask is unchanged.", "info")


def save(settings: Settings, ds: Dataset, session: EditSession, *, base_version: int | None, author: str,
         note: str) -> ledger.Correction | None:
    """Save the working mask as a new version; a conflict is kept on the session for the user to resolve."""
    mask = session.work
    try:
        saved = corrections.save(settings, ds, session.image_id, mask, base_version=base_version,
                                 source=session.source, author=author, note=note)
    except ledger.ConflictError as exc:
        session.conflict = Conflict(mask=mask.copy(), current_version=exc.current_version, message=str(exc))
        _say(session, "Not saved: someone else saved this image meanwhile. Choose below.", "warning")
        return None
    except store.StoreUnavailable:
        _say(session, UNREACHABLE, "error")  # session.work keeps the edit: the next save retries it
        return None
    session.conflict = None
    release_lease(settings, session, author)  # saved: the image is free until this editor's next event
    session.base_version = saved.version
    session.source = "correction"
    session.clean = mask.copy()
    session.saved += 1
    iou = "" if saved.iou_gt is None else f" · IoU vs original GT {saved.iou_gt:.3f}"
    rows = f" · {saved.rescored} stored evaluation row{'s' if saved.rescored != 1 else ''} rescored"
    review = " · submitted for review" if saved.state == "submitted" else ""
    _say(session, f"Saved v{saved.version} of {session.image_id}{iou}{rows}{review}", "success")
    return saved


def save_on_top(settings: Settings, ds: Dataset, session: EditSession, *, author: str, note: str) -> None:
    """Resolve a conflict by keeping this mask as a new version on top of the one that landed meanwhile."""
    conflict = session.conflict
    if conflict is None:
        return
    session.work = conflict.mask
    save(settings, ds, session, base_version=conflict.current_version, author=author, note=note)


def _say(session: EditSession, text: str, kind: str) -> None:
    session.status, session.status_kind = text, kind


def neighbours(ids: list[str], image_id: str, skip: Collection[str] = ()) -> tuple[str | None, str | None]:
    """``(previous, next)`` of ``image_id`` in ``ids``, passing over the ids in ``skip`` (images others are editing);
    an image outside the queue has the first id as next."""
    walkable = [i for i in ids if i not in skip or i == image_id]
    if image_id not in walkable:
        return None, (walkable[0] if walkable else None)
    at = walkable.index(image_id)
    return (walkable[at - 1] if at > 0 else None), (walkable[at + 1] if at + 1 < len(walkable) else None)


def queue(settings: Settings, ds: Dataset, user: str | None = None) -> list[str]:
    """The ids prev/next walk through: ``user``'s open assignment first, then Browse's current filter and sort,
    else the dataset's id order."""
    usual = current_order(settings, ds) or ds.ids()
    if user is None:
        return usual
    return assignments.walk([i for i in assignments.open_items(settings, user) if i in ds], usual)


def hold_lease(settings: Settings, session: EditSession, user: str) -> None:
    """Claim or renew ``user``'s lease on the session's image (throttled); records who holds it on the session.

    Leases are advice: with the database unreachable the edit goes on and the version check guards the save.
    """
    now = time.monotonic()
    if session.lease_holder == user and now - session.lease_at < RENEW_EVERY_S:
        return
    try:
        lease = leases.claim(settings, session.image_id, user)
    except store.StoreUnavailable:
        return
    session.lease_holder, session.lease_left, session.lease_at = lease.holder, lease.seconds_left, now


def release_lease(settings: Settings, session: EditSession, user: str) -> None:
    """Give the session's image back (saved, or moving on); the next event of this editor claims it again."""
    if session.lease_holder == user:
        try:
            leases.release(settings, session.image_id, user)
        except store.StoreUnavailable:
            pass  # it lapses by itself
    session.lease_holder, session.lease_at = "", -math.inf


def others_editing(settings: Settings, user: str) -> dict[str, str]:
    """``{image_id: holder}`` of the images other people are editing now (Next passes over them)."""
    try:
        return leases.held_by_others(settings, user)
    except store.StoreUnavailable:
        return {}
