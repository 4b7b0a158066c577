"""The mask vocabulary: class values, validation, encode/decode of label PNGs, resizing, the border band, and the
editor's clean-up tools.

    >>> import numpy as np
    >>> from core.masks import PET, binary_to_trimap, decode_label_png, encode_png, resize_mask, validate_trimap
    >>> pet = np.zeros((120, 160), bool); pet[30:90, 40:120] = True
    >>> trimap = binary_to_trimap(pet)                  # 1 pet, 2 background, 3 a border band around the outline
    >>> validate_trimap(trimap, (120, 160)) is trimap
    True
    >>> (decode_label_png(encode_png(trimap)) == trimap).all(), resize_mask(trimap, 64).shape
    (True, (64, 64))

Every other module takes these names from here: no second copy of the class values, no second PNG decoder, no
second border band. Everything here is pure numpy/OpenCV/Pillow on bytes and arrays: no files, no database, no
UI. Pet IoU lives in :mod:`core.metrics`. A "trimap" is a ``(H, W)`` uint8 array
with values in {1, 2, 3} (pet, background, border) at the image's original size; a "binary" mask is a
``(H, W)`` uint8 array of 0/255 (255 = pet) or a boolean array, and is named as such.

The border band: the dataset's trimaps mark a band centred on the pet outline as "border" (3). Measured on
the real sample it is 15-22 px wide on ~500 px photos, about half inside and half outside the outline, and
it never runs along the image edge. :func:`border_band` rebuilds such a band: every pixel within
``half_width`` px of the outline, on either side, with ``half_width`` defaulting to 1.8 % of the image's
longer side (9 px on a 500 px photo, so an 18 px band).
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings

import cv2
import numpy as np
from PIL import Image

from core.errors import ImageUnreadable, PetSegError

PET, BACKGROUND, BORDER = 1, 2, 3
CLASS_NAMES = ("pet", "background", "border")  # class index c <-> trimap value c + 1 (the model's channel order)
TRIMAP_VALUES = frozenset({PET, BACKGROUND, BORDER})
BINARY_VALUES = frozenset({0, 255})

# Decoding budget for label PNGs: no photo in the dataset is anywhere near this.
MAX_MASK_PIXELS = 40_000_000
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def validate_trimap(mask: object, shape: tuple[int, int] | None = None, *, what: str = "mask") -> np.ndarray:
    """Return ``mask`` unchanged if it is a trimap of ``shape`` (height, width); else raise a ``PetSegError``."""
    if not isinstance(mask, np.ndarray):
        raise PetSegError(f"{what} must be a numpy array, got {type(mask).__name__}")
    if mask.ndim != 2:
        raise PetSegError(f"{what} must be a single-channel (height, width) array, got shape {mask.shape}")
    if shape is not None and tuple(mask.shape) != tuple(shape):
        raise PetSegError(
            f"{what} is {mask.shape[1]}x{mask.shape[0]} (width x height) but the image is "
            f"{shape[1]}x{shape[0]}: masks are stored at the image's original size"
        )
    if mask.dtype != np.uint8:
        raise PetSegError(f"{what} has dtype {mask.dtype}; trimaps are uint8 with 1 pet, 2 background, 3 border")
    bad = _values(mask) - TRIMAP_VALUES
    if bad:
        raise PetSegError(
            f"{what} has values {_fmt_values(bad)} outside 1 pet / 2 background / 3 border"
        )
    return mask


def to_trimap(mask: np.ndarray, *, what: str = "mask", half_width: int | None = None) -> tuple[np.ndarray, str]:
    """Interpret a decoded mask as a trimap: ``(trimap, kind)`` with kind ``"trimap"`` or ``"binary"``.

    Values within {1, 2, 3} are taken as a trimap as they are. Values within {0, 255} are a binary pet mask:
    255 becomes pet, 0 background, and a border band is regenerated around the outline (see
    :func:`border_band`), so that an imported binary mask looks like the dataset's own trimaps.
    Anything else is refused.
    """
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise PetSegError(f"{what} must be a single-channel 8-bit mask, got shape {mask.shape} dtype {mask.dtype}")
    values = _values(mask)
    if values <= TRIMAP_VALUES:
        return mask, "trimap"
    if values <= BINARY_VALUES:
        return binary_to_trimap(mask == 255, half_width=half_width), "binary"
    raise PetSegError(
        f"{what} has values {_fmt_values(values)}: expected a trimap (1 pet, 2 background, 3 border) "
        "or a binary mask (0 background, 255 pet)"
    )


def trimap_to_binary(trimap: np.ndarray) -> np.ndarray:
    """0/255 uint8 pet mask with the border counted as pet (the smp / binary-segmentation convention)."""
    return np.where(trimap == BACKGROUND, 0, 255).astype(np.uint8)


def default_half_width(shape: tuple[int, ...]) -> int:
    """Border half-width matching the dataset's trimaps at this image size (see the module docstring)."""
    return max(2, round(0.018 * max(shape[:2])))


def border_band(pet: np.ndarray, half_width: int | None = None) -> np.ndarray:
    """Boolean band of pixels within ``half_width`` px of the outline of the boolean ``pet`` mask."""
    pet = np.asarray(pet, dtype=bool)
    radius = default_half_width(pet.shape) if half_width is None else int(half_width)
    if radius <= 0 or pet.all() or not pet.any():
        return np.zeros(pet.shape, dtype=bool)
    pet_u8 = pet.astype(np.uint8)
    # Distance of each pixel to the nearest pixel of the other side; the image edge counts as far away,
    # so (like the dataset's trimaps) no band is drawn along the frame.
    inside = cv2.distanceTransform(pet_u8, cv2.DIST_L2, 5)
    outside = cv2.distanceTransform(1 - pet_u8, cv2.DIST_L2, 5)
    return (pet & (inside <= radius)) | (~pet & (outside <= radius))


def binary_to_trimap(pet: np.ndarray, half_width: int | None = None) -> np.ndarray:
    """Trimap from a boolean (or 0/255) pet mask: pet 1, background 2, a regenerated border band 3."""
    pet = np.asarray(pet) > 0
    trimap = np.where(pet, PET, BACKGROUND).astype(np.uint8)
    trimap[border_band(pet, half_width)] = BORDER
    return trimap


def pet_outline_mask(trimap: np.ndarray) -> np.ndarray:
    """Boolean pet region implied by a trimap: pet pixels plus the border pixels nearer to pet than to background.

    The border band straddles the outline, so splitting it by distance recovers the outline the annotator drew.
    """
    pet = trimap == PET
    border = trimap == BORDER
    if not border.any():
        return pet
    background = trimap == BACKGROUND
    if not pet.any() or not background.any():
        # A band with only one neighbour: it belongs to that neighbour's side (or is all pet if alone).
        return pet | border if not background.any() else pet
    to_pet = cv2.distanceTransform((~pet).astype(np.uint8), cv2.DIST_L2, 5)
    to_background = cv2.distanceTransform((~background).astype(np.uint8), cv2.DIST_L2, 5)
    return pet | (border & (to_pet <= to_background))


def regenerate_border(trimap: np.ndarray, half_width: int | None = None) -> np.ndarray:
    """Redraw the border band around the current pet outline (the editor's "regenerate border" tool)."""
    return binary_to_trimap(pet_outline_mask(trimap), half_width)


def fill_holes(trimap: np.ndarray, max_area: int | None = None) -> np.ndarray:
    """Turn background regions enclosed by the pet (not touching the image edge) into pet.

    ``max_area`` limits the fill to holes of at most that many pixels (``None``: every hole).
    """
    background = (trimap == BACKGROUND).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(background, connectivity=4)
    out = trimap.copy()
    height, width = trimap.shape
    for label in range(1, count):
        x, y, w, h, area = stats[label]
        touches_edge = x == 0 or y == 0 or x + w == width or y + h == height
        if touches_edge or (max_area is not None and area > max_area):
            continue
        out[labels == label] = PET
    return out


def remove_specks(trimap: np.ndarray, min_area: int = 64) -> np.ndarray:
    """Turn pet blobs smaller than ``min_area`` pixels (counting their border pixels) into background."""
    blobs = (trimap != BACKGROUND).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(blobs, connectivity=8)
    out = trimap.copy()
    for label in range(1, count):
        if stats[label, cv2.CC_STAT_AREA] < min_area:
            out[labels == label] = BACKGROUND
    return out


def grabcut(
    image: np.ndarray,
    trimap: np.ndarray,
    *,
    sure_pet: np.ndarray | None = None,
    sure_background: np.ndarray | None = None,
    iterations: int = 3,
    half_width: int | None = None,
) -> np.ndarray:
    """Refine ``trimap`` with OpenCV GrabCut on the RGB ``image``; returns a new trimap (border regenerated).

    The current mask is GrabCut's "probably pet / probably background" starting point; the boolean stroke
    masks ``sure_pet`` / ``sure_background`` (the user's strokes) are hard constraints.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise PetSegError(f"GrabCut needs an (H, W, 3) uint8 RGB image, got shape {image.shape} dtype {image.dtype}")
    validate_trimap(trimap, image.shape[:2], what="mask")
    state = np.where(pet_outline_mask(trimap), cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    for strokes, value in ((sure_background, cv2.GC_BGD), (sure_pet, cv2.GC_FGD)):
        if strokes is not None:
            if strokes.shape != trimap.shape:
                raise PetSegError(f"stroke mask has shape {strokes.shape}, the image {trimap.shape}")
            state[np.asarray(strokes, dtype=bool)] = value
    pet_like = np.isin(state, (cv2.GC_FGD, cv2.GC_PR_FGD))
    if pet_like.all() or not pet_like.any():
        raise PetSegError("GrabCut needs some pet and some background: paint a little of each first")
    background_model = np.zeros((1, 65), np.float64)
    foreground_model = np.zeros((1, 65), np.float64)
    bgr = np.ascontiguousarray(image[..., ::-1])
    cv2.grabCut(bgr, state, None, background_model, foreground_model, int(iterations), cv2.GC_INIT_WITH_MASK)
    return binary_to_trimap(np.isin(state, (cv2.GC_FGD, cv2.GC_PR_FGD)), half_width)


def changed_pixels(mask: np.ndarray, reference: np.ndarray) -> int:
    """Number of pixels whose class differs between two masks of the same shape."""
    if mask.shape != reference.shape:
        raise PetSegError(f"cannot compare masks of shapes {mask.shape} and {reference.shape}")
    return int(np.count_nonzero(mask != reference))


# --- PNG ------------------------------------------------------------------------------------------------


def encode_png(mask: np.ndarray) -> bytes:
    """Lossless 8-bit grayscale PNG; the same array always gives the same bytes (so the same sha256)."""
    ok, buffer = cv2.imencode(".png", np.ascontiguousarray(mask), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise PetSegError("could not encode the mask as PNG")
    return buffer.tobytes()


def encode_png_fast(mask: np.ndarray) -> bytes:
    """Lossless 8-bit grayscale PNG tuned for speed (predictions): not byte-stable across OpenCV versions.

    Label maps are long runs of one value: run-length matching with the "up" row filter compresses them best
    (about 3 KB a mask) and is 5x faster than OpenCV's default adaptive filtering. The corrections store keeps
    :func:`encode_png`, whose bytes (and so file names, which are content hashes) never change.
    """
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV >= 4.11
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
    ok, data = cv2.imencode(".png", np.ascontiguousarray(mask), params)
    if not ok:
        raise PetSegError("could not encode the mask as PNG")
    return data.tobytes()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_label_png(
    data: bytes, *, what: str = "mask", expected_size: tuple[int, int] | None = None
) -> np.ndarray:
    """Decode a label PNG (a trimap, a prediction, a stored or imported mask) into a (H, W) uint8 array.

    The one decoder for label maps, wherever they come from. The size is read from the PNG header and checked
    (against ``MAX_MASK_PIXELS`` and ``expected_size`` = (height, width)) before any pixel is decoded.
    8-bit grayscale, the dataset's own encoding, takes OpenCV's fast path; palette PNGs (indices are the
    values), 1-bit, 16-bit grayscale with values up to 255 and RGB/RGBA/LA whose colour channels are equal are
    accepted too. Anything else raises :class:`ImageUnreadable` with the reason.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) < 26 or data[:8] != _PNG_SIGNATURE:
        kind = _sniff(data)
        raise ImageUnreadable(f"{what} is a {kind} file, not a PNG" if kind else f"{what} is not a readable PNG")
    width, height = struct.unpack(">II", bytes(data[16:24]))
    if width * height > MAX_MASK_PIXELS:
        raise ImageUnreadable(f"{what} claims a size far larger than any photo ({width}x{height}): refused")
    if expected_size is not None and (height, width) != tuple(expected_size):
        raise ImageUnreadable(
            f"{what} is {width}x{height} (width x height) but the image is "
            f"{expected_size[1]}x{expected_size[0]}: masks must be at the image's original size"
        )
    if data[24:26] == b"\x08\x00":  # bit depth 8, colour type 0: 8-bit grayscale
        decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
        if decoded is not None and decoded.ndim == 2 and decoded.dtype == np.uint8:
            return decoded
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.load()
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ImageUnreadable(f"{what} claims a size far larger than any photo: refused") from None
    except (OSError, ValueError, SyntaxError, struct.error) as exc:
        raise ImageUnreadable(f"{what} is not a readable PNG ({exc.__class__.__name__}: {exc})") from None
    mode = image.mode
    if mode in ("L", "P"):
        array = np.asarray(image, dtype=np.uint8)
    elif mode == "1":
        array = np.where(np.asarray(image), 255, 0).astype(np.uint8)
    elif mode.startswith("I"):
        values = np.asarray(image)
        if values.size and int(values.max()) > 255:
            raise ImageUnreadable(
                f"{what} has PNG mode {mode} with values above 255; save the mask as 8-bit grayscale (1/2/3 or 0/255)"
            )
        array = values.astype(np.uint8)
    elif mode in ("LA", "RGB", "RGBA"):
        values = np.asarray(image, dtype=np.uint8)
        colour = values[..., :1] if mode == "LA" else values[..., :3]
        if not (colour == colour[..., :1]).all():
            raise ImageUnreadable(f"{what} is a colour image; save the mask as 8-bit grayscale (1/2/3 or 0/255)")
        array = colour[..., 0]
    else:
        raise ImageUnreadable(f"{what} has PNG mode {mode}; save the mask as 8-bit grayscale (1/2/3 or 0/255)")
    return np.ascontiguousarray(array)


def _sniff(data: object) -> str | None:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        return None
    head = bytes(data[:12])
    for magic, name in ((b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"),
                        (b"MM\x00*", "TIFF")):
        if head.startswith(magic):
            return name
    return "WEBP" if head[:4] == b"RIFF" and head[8:12] == b"WEBP" else None


# --- resizing -------------------------------------------------------------------------------------------------


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Squash an RGB image to size x size (as smp's Oxford-pet example does; INTER_AREA when shrinking)."""
    shrink = image.shape[0] > size or image.shape[1] > size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Squash a label map to size x size (nearest neighbour: labels are never blended)."""
    return cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)


def _values(mask: np.ndarray) -> set[int]:
    # bincount is much faster than np.unique on uint8 images.
    counts = np.bincount(mask.ravel(), minlength=256) if mask.size else np.zeros(256, dtype=np.int64)
    return {int(v) for v in np.flatnonzero(counts)}


def _fmt_values(values: set[int], limit: int = 8) -> str:
    shown = sorted(values)[:limit]
    more = f" (+{len(values) - limit} more)" if len(values) > limit else ""
    return "{" + ", ".join(str(v) for v in shown) + "}" + more
