"""The mask editor: a Streamlit component (vanilla JS canvas) that paints trimaps at the photo's original size.

    >>> from dashboard import editor
    >>> editor.mask_editor(key="annotate_editor", ds=ds, image_id="Abyssinian_1", mask=work, start=start, gt=gt,
    ...                    revision=0)
    >>> event = editor.pop_event()          # {"action": "save", "mask": [...runs...], ...} or None
    >>> parse_event(event, "Abyssinian_1", work.shape).mask.shape == work.shape
    True

Why a component of our own rather than ``streamlit-drawable-canvas``: that one draws vector shapes
(Fabric.js) over a background picture and hands back an RGBA rendering of the strokes, so a trimap would
have to be reconstructed from antialiased colours, the current mask could not be edited in place, and
every stroke is a round trip. This editor keeps the label array in the browser (brush, eraser, polygon
fill, undo/redo, zoom, opacity, a live IoU/changed-pixel readout) and sends the whole mask, run-length
coded, only when the user saves, applies, runs a tool or moves on. It is a components-v2 module
(``editor.js`` + ``editor.css`` next to this file, inline, no build step) mounted in the page itself.

Events reach the page through ``st.session_state[state.ANNOTATE_EVENT]`` (the component's callback puts
them there), which is also how tests drive the page where they cannot draw.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import streamlit as st

from core.dataset import Dataset, load_image
from core.errors import PetSegError
from core.masks import TRIMAP_VALUES
from dashboard import state

ACTIONS = frozenset({"save", "apply", "grabcut", "fill_holes", "remove_specks", "regenerate_border", "prev", "next"})
MASK_ACTIONS = ACTIONS - {"prev", "next"}
RESEND_REQUEST = "resend"  # a newly mounted editor lacks what earlier runs sent: send everything again
STROKE_VALUES = frozenset({0, 1, 2})  # none, sure pet, sure background

_HERE = Path(__file__).parent
_COMPONENT = st.components.v2.component(
    "petseg_mask_editor",
    js=(_HERE / "editor.js").read_text(encoding="utf-8"),
    css=(_HERE / "editor.css").read_text(encoding="utf-8"),
)


@dataclass(frozen=True)
class EditorEvent:
    """What the user asked for, with the mask as it was in the browser (``None`` for prev/next)."""

    action: str
    mask: np.ndarray | None = None
    strokes: np.ndarray | None = None  # 0 none, 1 painted as pet, 2 painted as background (GrabCut hints)


def rle_encode(mask: np.ndarray) -> list[int]:
    """Row-major runs ``[value, count, value, count, ...]`` of a 2-D uint8 array."""
    flat = np.ascontiguousarray(mask).ravel()
    if flat.size == 0:
        return []
    starts = np.flatnonzero(np.concatenate(([True], flat[1:] != flat[:-1])))
    counts = np.diff(np.append(starts, flat.size))
    return np.column_stack((flat[starts], counts)).ravel().tolist()


def _malformed(what: str) -> PetSegError:
    return PetSegError(f"the editor sent a malformed {what}; reload the page and try again")


def _is_int(value: object) -> bool:
    """A plain Python int as JSON gives it: not a bool, a float, a string or a numpy scalar."""
    return type(value) is int


def rle_decode(runs: object, shape: tuple[int, int], allowed: frozenset[int], *, what: str = "mask") -> np.ndarray:
    """Inverse of :func:`rle_encode`; ``PetSegError`` unless the runs cover ``shape`` exactly with allowed values.

    ``runs`` comes from the browser, so everything is checked as plain Python ints before numpy sees it: a count
    is an int in ``1..H*W`` and the counts are summed with Python's unbounded ints (an int64 sum wraps, and
    ``np.repeat`` then writes past its buffer).
    """
    if not (isinstance(shape, tuple) and len(shape) == 2 and all(_is_int(n) and n > 0 for n in shape)):
        raise ValueError(f"shape must be two positive ints, not {shape!r}")
    total = shape[0] * shape[1]
    # Every run covers at least one pixel: more than 2*H*W numbers cannot be a mask of this size.
    if type(runs) is not list or not runs or len(runs) % 2 or len(runs) > 2 * total:
        raise _malformed(what)
    if not all(_is_int(n) for n in runs):
        raise _malformed(what)
    values, counts = runs[0::2], runs[1::2]
    if min(counts) < 1 or max(counts) > total or sum(counts) != total:
        raise PetSegError(f"the editor sent a {what} of the wrong size; reload the page and try again")
    if not set(values) <= allowed:
        raise PetSegError(f"the editor sent a {what} with values outside {sorted(allowed)}; reload the page")
    return np.repeat(np.asarray(values, dtype=np.uint8), np.asarray(counts, dtype=np.int64)).reshape(shape)


def parse_event(payload: object, image_id: str, shape: tuple[int, int]) -> EditorEvent | None:
    """Validate an event for ``image_id``; ``None`` for an event about another image (a stale click).

    Anything else than the documented shape of an event is a ``PetSegError`` with a message for the user.
    """
    action = payload.get("action") if isinstance(payload, dict) else None
    if type(action) is not str or action not in ACTIONS:
        raise PetSegError("the editor sent an unknown request; reload the page and try again")
    image = payload.get("image")
    if type(image) is not str:
        raise PetSegError("the editor sent a request without an image; reload the page and try again")
    if image != image_id:
        return None
    if action not in MASK_ACTIONS:
        return EditorEvent(action)
    sent_shape = payload.get("shape")
    if type(sent_shape) is not list or len(sent_shape) != 2 or not all(_is_int(n) for n in sent_shape) \
            or tuple(sent_shape) != tuple(shape):
        raise PetSegError("the editor's mask does not match this image's size; reload the page and try again")
    mask = rle_decode(payload.get("mask"), shape, TRIMAP_VALUES)
    strokes = payload.get("strokes")
    strokes = rle_decode(strokes, shape, STROKE_VALUES, what="stroke map") if strokes is not None else None
    return EditorEvent(action, mask, strokes)


def pop_event() -> dict[str, Any] | None:
    """The editor event waiting to be handled by this run of the page, if any (handled once)."""
    return st.session_state.pop(state.ANNOTATE_EVENT, None)


@st.cache_data(max_entries=64, show_spinner=False)
def _photo_url(path: str, stamp: tuple[float, int], _ds: Dataset, image_id: str) -> str:
    image = load_image(_ds, image_id)
    # Quality 85: a third smaller than 92 and indistinguishable under a mask overlay; every byte is on the
    # path from click to drawn image.
    ok, jpeg = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise PetSegError(f"could not encode {image_id} for the browser")
    return "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode("ascii")


def photo_data_url(ds: Dataset, image_id: str) -> str:
    """The photo as decoded by ``core`` (so exactly the mask's size), re-encoded as a JPEG data URL."""
    path = ds.image_path(image_id)
    stat = path.stat()
    return _photo_url(str(path), (stat.st_mtime, stat.st_size), ds, image_id)


def forget_sent() -> None:
    """Make the next :func:`mask_editor` send everything: this run may mount a new editor in the browser."""
    st.session_state.pop(state.EDITOR_SENT, None)


def _signature(mask: np.ndarray | None) -> str | None:
    return None if mask is None else f"{mask.shape}:{hashlib.sha1(np.ascontiguousarray(mask)).hexdigest()}"


def mask_editor(
    *,
    key: str,
    ds: Dataset,
    image_id: str,
    mask: np.ndarray,
    start: np.ndarray,
    gt: np.ndarray | None,
    revision: int,
    preview: np.ndarray | None = None,
    preview_label: str = "",
    dirty: bool = False,
    saved: int = 0,
    version: int | None = None,
    status: str = "",
    status_kind: str = "",
    position: str = "",
    has_prev: bool = False,
    has_next: bool = False,
    sequence: int = 0,
) -> None:
    """Mount the editor. The browser replaces its mask only when ``revision`` changes (undo keeps the old one).

    ``sequence`` changes after every handled event, so the browser hears back even when nothing else did.
    The photo, the mask and the reference masks (``start``, ``gt``) are sent only when the editor does not hold them
    yet: they are most of the bytes, and every byte is on the path from a click to the confirmation. An editor
    mounted anew asks for them with a :data:`RESEND_REQUEST` event; the page answers with :func:`forget_sent`.
    """
    height, width = mask.shape
    sent = st.session_state.get(state.EDITOR_SENT) or {}
    fresh = sent.get("image") != image_id
    data: dict[str, Any] = {
        "image": image_id, "width": width, "height": height, "revision": revision,
        "preview": None if preview is None else rle_encode(preview), "preview_label": preview_label,
        "dirty": dirty, "saved": saved, "version": version, "status": status, "status_kind": status_kind,
        "position": position, "has_prev": has_prev, "has_next": has_next, "sequence": sequence,
    }
    if fresh:
        data["photo"] = photo_data_url(ds, image_id)
    now: dict[str, Any] = {"image": image_id, "revision": revision}
    if fresh or sent.get("revision") != revision:  # the browser takes a mask only with a new revision
        data["mask"] = rle_encode(mask)
    for name, reference in (("start", start), ("gt", gt)):
        now[name] = _signature(reference)
        if fresh or sent.get(name) != now[name]:
            data[name] = None if reference is None else rle_encode(reference)

    def stash() -> None:
        value = st.session_state.get(key)
        payload = value.get("event") if isinstance(value, dict) else None
        if payload is not None:
            st.session_state[state.ANNOTATE_EVENT] = payload

    _COMPONENT(key=key, data=data, on_event_change=stash)
    st.session_state[state.EDITOR_SENT] = now
