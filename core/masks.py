"""Trimap masks as numpy arrays: validation, conversions, PNG coding, IoU and the editor's clean-up tools.

    >>> import numpy as np
    >>> from core.masks import binary_to_trimap, iou_pet, trimap_to_binary, validate_trimap
    >>> pet = np.zeros((120, 160), bool); pet[30:90, 40:120] = True
    >>> trimap = binary_to_trimap(pet)                  # 1 pet, 2 background, 3 a border band around the outline
    >>> validate_trimap(trimap, (120, 160)) is trimap
    True
    >>> trimap_to_binary(trimap).max(), iou_pet(trimap, trimap)
    (255, 1.0)

Everything here is pure numpy/OpenCV: no files, no database, no UI. A "trimap" is a ``(H, W)`` uint8 array
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
import warnings

import cv2
import numpy as np
from PIL import Image

from core.errors import ImageUnreadable, PetSegError

PET, BACKGROUND, BORDER = 1, 2, 3
TRIMAP_VALUES = frozenset({PET, BACKGROUND, BORDER})
BINARY_VALUES = frozenset({0, 255})

# Decoding budget for masks from outside PetSeg: no photo in the dataset is anywhere near this.
MAX_MASK_PIXELS = 40_000_000


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


def iou_pet(mask: np.ndarray, reference: np.ndarray) -> float:
    """Pet IoU of ``mask`` against ``reference`` (both trimaps), ignoring the reference's border pixels.

    This is the one definition used for "IoU against the original GT" (ledger, history, manifest, editor
    readout). Border in ``mask`` counts as not-pet. Two masks without any pet score 1.0.
    """
    if mask.shape != reference.shape:
        raise PetSegError(f"cannot compare masks of shapes {mask.shape} and {reference.shape}")
    valid = reference != BORDER
    a = (mask == PET) & valid
    b = (reference == PET) & valid
    union = int(np.count_nonzero(a | b))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(a & b)) / union


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


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode_png(data: bytes, *, what: str = "mask") -> np.ndarray:
    """Decode a PNG written by :func:`encode_png` (fast path for the store's own files)."""
    array = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None or array.ndim != 2 or array.dtype != np.uint8:
        raise ImageUnreadable(f"{what} is not an 8-bit single-channel PNG")
    return array


def read_mask_file(data: bytes, *, what: str, expected_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode a mask made outside PetSeg into a (H, W) uint8 array, checking its size before decoding pixels.

    Accepts 8-bit grayscale, palette (indices are the values, as in the dataset's PNGs), 1-bit, and
    RGB/RGBA whose colour channels are equal. ``expected_size`` is (height, width).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format != "PNG":
                raise PetSegError(f"{what} is a {image.format or 'unknown'} file, not a PNG")
            width, height = image.size
            if width * height > MAX_MASK_PIXELS:
                raise PetSegError(f"{what} claims a size far larger than any photo ({width}x{height}): refused")
            if expected_size is not None and (height, width) != tuple(expected_size):
                raise PetSegError(
                    f"{what} is {width}x{height} (width x height) but the image is "
                    f"{expected_size[1]}x{expected_size[0]}: masks must be at the image's original size"
                )
            image.load()
    except PetSegError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise PetSegError(f"{what} claims a size far larger than any photo: refused") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise PetSegError(f"{what} is not a readable PNG ({exc.__class__.__name__}: {exc})") from None

    mode = image.mode
    if mode in ("L", "P"):
        array = np.asarray(image, dtype=np.uint8)
    elif mode == "1":
        array = np.where(np.asarray(image), 255, 0).astype(np.uint8)
    elif mode == "LA":
        array = np.asarray(image, dtype=np.uint8)[..., 0]
    elif mode in ("RGB", "RGBA"):
        rgb = np.asarray(image, dtype=np.uint8)[..., :3]
        if not ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()):
            raise PetSegError(f"{what} is a colour image; save the mask as 8-bit grayscale (1/2/3 or 0/255)")
        array = rgb[..., 0]
    else:
        raise PetSegError(f"{what} has PNG mode {mode}; save the mask as 8-bit grayscale (1/2/3 or 0/255)")
    return np.ascontiguousarray(array)


def _values(mask: np.ndarray) -> set[int]:
    # bincount is much faster than np.unique on uint8 images.
    counts = np.bincount(mask.ravel(), minlength=256) if mask.size else np.zeros(256, dtype=np.int64)
    return {int(v) for v in np.flatnonzero(counts)}


def _fmt_values(values: set[int], limit: int = 8) -> str:
    shown = sorted(values)[:limit]
    more = f" (+{len(values) - limit} more)" if len(values) > limit else ""
    return "{" + ", ".join(str(v) for v in shown) + "}" + more
