"""Overlays, error maps, zoom crops, feature-map heat tiles and the on-disk thumbnail cache.

    >>> from dashboard.images import error_codes, overlay, error_overlay, thumbnail
    >>> codes = error_codes(pred, gt)                  # 0 agree, 1 false pet, 2 missed pet, 3 GT border
    >>> shown = error_overlay(image, pred, gt, opacity=0.6)
    >>> jpeg = thumbnail(settings, ds, "Abyssinian_1", kind="gt", gt_version=2)   # bytes, cached on disk
    >>> strip = montage([heat(feature_map), heat(other_map)])   # viridis tiles side by side, one square per position

Error map, with pet/not-pet counted the way ``iou_pet`` counts it: a predicted border pixel is "not pet", and
pixels whose ground truth is border are shown apart (grey) because the metric leaves them out.

Thumbnails live in ``<workspace>/cache/thumbs/<id>.<key>.jpg`` where the key hashes the image file's size and
mtime, the overlay kind and the mask it used (correction version or trimap/prediction file stamp), so a new
correction or evaluation makes a new thumbnail and paging stays a file read.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from core.config import Settings
from core.dataset import Dataset, load_image, open_photo
from core.errors import ImageUnreadable
from core.masks import BACKGROUND, BORDER, PET
from core.runs import PRED_DIR, read_prediction
from dashboard import palette

Colour = tuple[int, int, int]

CORRECT, FALSE_PET, MISSED_PET, GT_BORDER = 0, 1, 2, 3
ERROR_COLOURS: dict[int, Colour] = {FALSE_PET: palette.ERROR_RGB["false_pet"],
                                    MISSED_PET: palette.ERROR_RGB["missed_pet"],
                                    GT_BORDER: palette.ERROR_RGB["gt_border"]}
# One colour per class (dashboard.palette): ground truth and prediction alike.
GT_COLOURS: dict[int, Colour] = dict(palette.MASK_RGB)
PRED_COLOURS: dict[int, Colour] = dict(palette.MASK_RGB)
THUMB_SIZE = 160
THUMB_OPACITY = 0.45
_THUMB_VERSION = "2"  # bump when the thumbnail drawing changes
TILE = 144  # display side of a feature-map tile (maps larger than this are shown at their own size)
TILE_GAP = 6


def error_codes(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-pixel agreement of two trimaps: CORRECT, FALSE_PET, MISSED_PET or GT_BORDER (uint8)."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in size")
    pred_pet = pred == PET
    gt_pet = gt == PET
    codes = np.zeros(gt.shape, dtype=np.uint8)
    codes[pred_pet & (gt == BACKGROUND)] = FALSE_PET
    codes[~pred_pet & gt_pet] = MISSED_PET
    codes[gt == BORDER] = GT_BORDER
    return codes


def blend(image: np.ndarray, labels: np.ndarray, colours: dict[int, Colour], opacity: float) -> np.ndarray:
    """``image`` with each pixel whose label has a colour mixed towards that colour (others untouched)."""
    if image.shape[:2] != labels.shape:
        raise ValueError(f"image {image.shape[:2]} and mask {labels.shape} differ in size")
    opacity = float(min(max(opacity, 0.0), 1.0))
    out = image.astype(np.float32)
    for label, colour in colours.items():
        where = labels == label
        if where.any():
            out[where] = out[where] * (1.0 - opacity) + np.asarray(colour, np.float32) * opacity
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def overlay(image: np.ndarray, trimap: np.ndarray, opacity: float = 0.5, colours: dict[int, Colour] | None = None
            ) -> np.ndarray:
    """A trimap drawn over the photo (pet and border coloured, background left as it is)."""
    return blend(image, trimap, GT_COLOURS if colours is None else colours, opacity)


def error_overlay(image: np.ndarray, pred: np.ndarray, gt: np.ndarray, opacity: float = 0.6) -> np.ndarray:
    return blend(image, error_codes(pred, gt), ERROR_COLOURS, opacity)


def outline(image: np.ndarray, trimap: np.ndarray, colour: Colour = palette.CLASS_RGB[PET]) -> np.ndarray:
    """``image`` with the outline of the trimap's pet drawn over it (how ground truth is shown on a prediction)."""
    pet = (trimap == PET).astype(np.uint8)
    width = max(1, round(max(pet.shape) / 250))
    edge = cv2.morphologyEx(pet, cv2.MORPH_GRADIENT, np.ones((2 * width + 1, 2 * width + 1), np.uint8)) > 0
    out = image.copy()
    out[edge] = colour
    return out


def colour_mask(labels: np.ndarray, colours: dict[int, Colour], background: Colour = (0, 0, 0)) -> np.ndarray:
    """The labels as a flat RGB picture (for side-by-side panels)."""
    out = np.empty((*labels.shape, 3), dtype=np.uint8)
    out[:] = background
    for label, colour in colours.items():
        out[labels == label] = colour
    return out


def crop(array: np.ndarray, zoom: float, centre: tuple[float, float]) -> np.ndarray:
    """The part of ``array`` seen at ``zoom`` around ``centre`` (x, y in 0..1), clamped inside the picture."""
    if zoom <= 1.0:
        return array
    height, width = array.shape[:2]
    crop_w, crop_h = max(1, round(width / zoom)), max(1, round(height / zoom))
    x0 = round(min(max(centre[0] * width - crop_w / 2, 0), width - crop_w))
    y0 = round(min(max(centre[1] * height - crop_h / 2, 0), height - crop_h))
    return array[y0:y0 + crop_h, x0:x0 + crop_w]


# --- feature maps -------------------------------------------------------------------------------------------------


def heat(values: np.ndarray, lo: float | None = None, hi: float | None = None, side: int = TILE,
         exact: bool = False) -> np.ndarray:
    """A (h, w) map as viridis RGB, enlarged by a whole factor (nearest) so each map position stays a square;
    ``exact``: resized to exactly ``side`` px (for rows of maps of different resolutions compared side by side).
    """
    lo = float(values.min()) if lo is None else lo
    hi = float(values.max()) if hi is None else hi
    scaled = np.zeros(values.shape, np.uint8) if hi <= lo else np.clip((values - lo) / (hi - lo) * 255, 0, 255)
    rgb = cv2.cvtColor(cv2.applyColorMap(scaled.astype(np.uint8), cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB)
    if exact:
        shrink = max(values.shape) > side
        return cv2.resize(rgb, (side, side), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_NEAREST)
    factor = max(1, side // max(values.shape))
    return cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST) if factor > 1 else rgb


def montage(tiles: list[np.ndarray]) -> np.ndarray:
    """RGB tiles in one row on white, top-aligned, :data:`TILE_GAP` px apart."""
    height = max(t.shape[0] for t in tiles)
    parts = []
    for tile in tiles:
        pad = np.full((height, tile.shape[1] + TILE_GAP, 3), 255, np.uint8)
        pad[: tile.shape[0], : tile.shape[1]] = tile
        parts.append(pad)
    return np.concatenate(parts, axis=1)[:, :-TILE_GAP]


# --- thumbnails ------------------------------------------------------------------------------------------------


def thumbs_dir(settings: Settings) -> Path:
    return settings.cache_dir / "thumbs"


def file_key(path: Path) -> str:
    try:
        info = os.stat(path)
    except OSError:
        return "missing"
    return f"{info.st_size}:{info.st_mtime_ns}"


def thumbnail_path(
    settings: Settings, ds: Dataset, image_id: str, kind: str = "none", *, gt_version: int | None = None,
    pred_folder: Path | None = None,
) -> Path:
    """Where the thumbnail of this image, overlay kind and mask state is (or will be) cached."""
    image_id = ds.require(image_id)
    parts = [_THUMB_VERSION, str(THUMB_SIZE), file_key(ds.image_path(image_id)), kind]
    if kind in ("gt", "errors"):
        parts.append(f"v{gt_version}" if gt_version is not None else file_key(ds.trimap_path(image_id)))
    if kind in ("pred", "errors"):
        parts.append(file_key(pred_folder / PRED_DIR / f"{image_id}.png") if pred_folder else "none")
    digest = hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]
    return thumbs_dir(settings) / f"{image_id}.{digest}.jpg"


def thumbnail(
    settings: Settings, ds: Dataset, image_id: str, kind: str = "none", *, gt_version: int | None = None,
    pred_folder: Path | None = None,
) -> bytes:
    """JPEG bytes of a ~160 px thumbnail, optionally with a mask drawn over it; built once, then read from disk.

    ``gt_version`` is the image's latest correction version (None: official trimap) and ``pred_folder`` the
    evaluation folder holding ``pred/<id>.png``; both only name the cache entry, the masks are read through
    ``core``. An unreadable image gives a grey placeholder (not cached).
    """
    path = thumbnail_path(settings, ds, image_id, kind, gt_version=gt_version, pred_folder=pred_folder)
    try:
        return path.read_bytes()
    except OSError:
        pass
    try:
        picture = _small_picture(ds, image_id, kind, settings, pred_folder)
    except ImageUnreadable:
        return _placeholder()
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="JPEG", quality=82)
    data = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)  # a cache file: a torn write is impossible to read as a thumbnail, os.replace is enough
    os.replace(tmp, path)
    return data


def _small_picture(ds: Dataset, image_id: str, kind: str, settings: Settings, pred_folder: Path | None) -> np.ndarray:
    if kind == "none":
        with open_photo(ds, image_id) as im:
            im.draft("RGB", (THUMB_SIZE, THUMB_SIZE))  # JPEG decodes at 1/2..1/8 scale: most of the speed
            im = im.convert("RGB")
            im.thumbnail((THUMB_SIZE, THUMB_SIZE), Image.Resampling.BILINEAR)
            return np.asarray(im)
    image = load_image(ds, image_id)
    height, width = image.shape[:2]
    scale = THUMB_SIZE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    gt = pred = None
    if kind in ("gt", "errors"):
        from core import groundtruth

        gt, _ = groundtruth.current(settings, ds, image_id)
    if kind in ("pred", "errors") and pred_folder is not None:
            pred = read_prediction(pred_folder, image_id)

    def shrink(mask: np.ndarray | None) -> np.ndarray | None:
        if mask is None or mask.shape != (height, width):
            return None
        return cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)

    gt, pred = shrink(gt), shrink(pred)
    if kind == "gt" and gt is not None:
        return overlay(small, gt, THUMB_OPACITY)
    if kind == "pred" and pred is not None:
        return overlay(small, pred, THUMB_OPACITY, PRED_COLOURS)
    if kind == "errors" and gt is not None and pred is not None:
        return error_overlay(small, pred, gt, 0.7)
    return small


def _placeholder() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (THUMB_SIZE, THUMB_SIZE * 3 // 4), (120, 120, 120)).save(buffer, format="JPEG")
    return buffer.getvalue()


def png_bytes(picture: np.ndarray) -> bytes:
    """RGB array as PNG bytes (crisp mask edges for the Compare view)."""
    ok, data = cv2.imencode(".png", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return data.tobytes()
