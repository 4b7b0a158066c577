"""Pictures for the History page: one thumbnail per mask version, drawn over the photo.

    >>> from dashboard.annotate_views import version_thumbnail, official_thumbnail
    >>> jpeg = version_thumbnail(settings, ds, ledger.get_version(settings, "Abyssinian_1", 2))
    >>> official = official_thumbnail(ds, "Abyssinian_1")      # None without a usable trimap

Thumbnails are cached by the photo file's stamp and the mask's sha256 (a version never changes content), so
reopening a long history is a cache read.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
import streamlit as st
from PIL import Image

from core import ledger
from core.config import Settings
from core.dataset import Dataset, load_image, load_trimap
from core.errors import PetSegError
from dashboard import images

THUMB_WIDTH = 220


def _jpeg(image: np.ndarray, mask: np.ndarray) -> bytes:
    picture = images.overlay(image, mask, 0.5)
    height, width = picture.shape[:2]
    if width > THUMB_WIDTH:
        size = (THUMB_WIDTH, max(1, round(height * THUMB_WIDTH / width)))
        picture = cv2.resize(picture, size, interpolation=cv2.INTER_AREA)
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


@st.cache_data(max_entries=512, show_spinner=False)
def _version_thumb(photo_key: str, sha256: str, _settings: Settings, _ds: Dataset,
                   _correction: ledger.Correction) -> bytes:
    return _jpeg(load_image(_ds, _correction.image_id), ledger.load_mask(_settings, _correction))


def version_thumbnail(settings: Settings, ds: Dataset, correction: ledger.Correction) -> bytes:
    """JPEG of one version over the photo; ``PetSegError`` if the photo or the version's file is unreadable."""
    photo_key = images.file_key(ds.image_path(correction.image_id))
    return _version_thumb(f"{correction.image_id}|{photo_key}", correction.sha256, settings, ds, correction)


@st.cache_data(max_entries=128, show_spinner=False)
def _official_thumb(key: str, _ds: Dataset, image_id: str) -> bytes | None:
    try:
        trimap = load_trimap(_ds, image_id)
        image = load_image(_ds, image_id)
    except PetSegError:
        return None
    if trimap is None or trimap.shape != image.shape[:2]:
        return None
    return _jpeg(image, trimap)


def official_thumbnail(ds: Dataset, image_id: str) -> bytes | None:
    """JPEG of the official trimap over the photo, or ``None`` when there is no usable one."""
    key = "|".join((image_id, images.file_key(ds.image_path(image_id)), images.file_key(ds.trimap_path(image_id))))
    return _official_thumb(key, ds, image_id)
