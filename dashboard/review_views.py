"""The review workflow in the app: the ground-truth policy choice and the review queue's before/after pictures.

    >>> from dashboard import review_views
    >>> policy = review_views.policy_choice(state.EXPORT_POLICY)        # "accepted" | "latest", a radio
    >>> before, after, diff = review_views.pictures(settings, ds, change)  # JPEGs; change = corrections.change_of()

The pictures of one version are cached by the photo's file stamp and the two masks' sha256 (a version never changes
content), so going back to an item is a cache read and the next item costs one decode and three small overlays.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
import streamlit as st
from PIL import Image

from core.corrections import Change
from core.dataset import Dataset, load_image
from core.groundtruth import DEFAULT_POLICY, POLICIES
from core.masks import sha256_hex
from dashboard import images

WIDTH = 420  # display width of each of the three pictures
POLICY_LABELS = {"accepted": "Accepted corrections", "latest": "Latest corrections (also those under review)"}
DIFF_LEGEND = "red: pet added · blue: pet removed · grey: border band of the version before"


def policy_choice(key: str, *, disabled: bool = False) -> str:
    """Which correction version counts as ground truth (core.groundtruth policy), as a horizontal radio."""
    return st.radio("Ground truth", POLICIES, index=POLICIES.index(DEFAULT_POLICY), key=key, horizontal=True,
                    format_func=POLICY_LABELS.get, disabled=disabled,
                    help="accepted: the latest accepted version of each image (with review off every save is "
                         "accepted); latest: the latest version that is not rejected")


def pictures(ds: Dataset, change: Change) -> tuple[bytes | None, bytes, bytes | None]:
    """JPEGs of before (None without one), after, and the difference drawn over the photo."""
    before_key = "none" if change.before is None else sha256_hex(np.ascontiguousarray(change.before).tobytes())
    key = "|".join((change.row.image_id, images.file_key(ds.image_path(change.row.image_id)), before_key,
                    change.row.sha256))
    return _pictures(key, ds, change)


@st.cache_data(max_entries=256, show_spinner=False)
def _pictures(_key: str, _ds: Dataset, _change: Change) -> tuple[bytes | None, bytes, bytes | None]:
    photo = _shrink(load_image(_ds, _change.row.image_id))
    after = _shrink(_change.after, nearest=True)
    before = None if _change.before is None else _shrink(_change.before, nearest=True)
    return (None if before is None else _jpeg(images.overlay(photo, before, 0.5)),
            _jpeg(images.overlay(photo, after, 0.5)),
            None if before is None else _jpeg(images.error_overlay(photo, after, before, 0.7)))


def _shrink(array: np.ndarray, nearest: bool = False) -> np.ndarray:
    height, width = array.shape[:2]
    if width <= WIDTH:
        return array
    size = (WIDTH, max(1, round(height * WIDTH / width)))
    return cv2.resize(array, size, interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)


def _jpeg(picture: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()
