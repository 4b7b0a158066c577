"""Colour-coded label PNGs (CVAT's class masks): decode to an (H, W, 3) RGB array with the size checked first.

    >>> from core.interop.colour import decode_colour_png, encode_colour_png
    >>> rgb = decode_colour_png(encode_colour_png(rgb_array), expected_size=(400, 600))
"""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np
from PIL import Image

from core.errors import PetSegError
from core.masks import MAX_MASK_PIXELS


def encode_colour_png(rgb: np.ndarray) -> bytes:
    """Lossless RGB PNG of an (H, W, 3) uint8 array."""
    # Run-length matching: label colours come in long runs (half the bytes of the default, as fast).
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    ok, data = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]), params)
    if not ok:
        raise PetSegError("could not encode the colour mask as PNG")
    return data.tobytes()


def decode_colour_png(data: bytes, *, expected_size: tuple[int, int]) -> tuple[np.ndarray, str]:
    """``(pixels, mode)``: RGB (H, W, 3) for colour and palette PNGs, (H, W) indices for 1-channel ones."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > MAX_MASK_PIXELS:
                raise PetSegError(f"claims a size far larger than any photo ({width}x{height}): refused")
            if (height, width) != tuple(expected_size):
                raise PetSegError(f"is {width}x{height} (width x height) but the image is "
                                  f"{expected_size[1]}x{expected_size[0]}: masks must be at the image's size")
            if image.format != "PNG":
                raise PetSegError(f"is a {image.format} file, not a PNG (lossy formats blur label colours)")
            image.load()
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise PetSegError("claims a size far larger than any photo: refused") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise PetSegError(f"is not a readable PNG ({exc.__class__.__name__}: {exc})") from None
    if image.mode in ("L", "I", "I;16", "1"):
        values = np.asarray(image)
        if values.size and int(values.max()) > 255:
            raise PetSegError("has 16-bit values above 255; not a label mask")
        return values.astype(np.uint8), "index"
    return np.asarray(image.convert("RGB"), dtype=np.uint8), "rgb"


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) int32 keys r << 16 | g << 8 | b (one number per colour, for lookups)."""
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
