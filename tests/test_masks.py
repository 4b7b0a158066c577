"""core.masks: validation, conversions, border band, PNG coding, IoU, clean-up tools."""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from core.errors import PetSegError
from core.masks import (
    BACKGROUND,
    BORDER,
    PET,
    binary_to_trimap,
    border_band,
    changed_pixels,
    decode_label_png,
    default_half_width,
    encode_png,
    fill_holes,
    grabcut,
    pet_outline_mask,
    regenerate_border,
    remove_specks,
    to_trimap,
    trimap_to_binary,
    validate_trimap,
)
from core.metrics import pet_iou


def _disc(shape=(60, 80), center=(30, 40), radius=18) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def _real_trimaps(sample_root: Path) -> list[np.ndarray]:
    paths = sorted((sample_root / "annotations" / "trimaps").glob("*.png"))
    return [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in paths]


def test_validate_trimap_accepts_a_trimap_and_refuses_everything_else():
    mask = binary_to_trimap(_disc())
    assert validate_trimap(mask, (60, 80)) is mask
    with pytest.raises(PetSegError, match="80x60 .* but the image is 81x60"):
        validate_trimap(mask, (60, 81))
    with pytest.raises(PetSegError, match="dtype int64"):
        validate_trimap(mask.astype(np.int64))
    with pytest.raises(PetSegError, match=r"values \{0, 255\}"):
        validate_trimap(np.where(_disc(), 255, 0).astype(np.uint8))
    with pytest.raises(PetSegError, match="single-channel"):
        validate_trimap(np.stack([mask] * 3, axis=-1))
    with pytest.raises(PetSegError, match="numpy array"):
        validate_trimap([[1, 2], [2, 1]])


def test_binary_to_trimap_draws_a_band_centred_on_the_outline():
    pet = _disc()
    trimap = binary_to_trimap(pet, half_width=3)
    assert set(np.unique(trimap)) == {PET, BACKGROUND, BORDER}
    band = trimap == BORDER
    assert (band & pet).any() and (band & ~pet).any()  # both sides of the outline
    assert not (trimap[pet & ~band] != PET).any() and not (trimap[~pet & ~band] != BACKGROUND).any()
    # a pet touching the frame gets no band along the frame, like the dataset's trimaps
    edge_pet = np.zeros((40, 40), bool)
    edge_pet[:, :20] = True
    edge = binary_to_trimap(edge_pet, half_width=2)
    assert (edge[:, 0] == PET).all()
    assert (edge[:, 18:22] == BORDER).all()
    assert not border_band(np.zeros((10, 10), bool)).any() and not border_band(np.ones((10, 10), bool)).any()


def test_regenerated_border_matches_the_real_trimaps(sample_root: Path):
    ratios = []
    for trimap in _real_trimaps(sample_root):
        regenerated = regenerate_border(trimap)
        outside_bands = (trimap != BORDER) & (regenerated != BORDER)
        assert (trimap == regenerated)[outside_bands].all()
        assert pet_iou(regenerated, trimap) > 0.8
        # the dataset's bands are ~15-22 px on these ~500 px photos; ours is 2 * half-width
        assert 14 <= 2 * default_half_width(trimap.shape) <= 24
        ratios.append((regenerated == BORDER).sum() / (trimap == BORDER).sum())
    assert 0.7 < float(np.median(ratios)) < 1.4


def test_pet_outline_splits_the_band_between_pet_and_background():
    pet = _disc(radius=20)
    trimap = binary_to_trimap(pet, half_width=4)
    recovered = pet_outline_mask(trimap)
    assert np.count_nonzero(recovered ^ pet) <= 0.05 * np.count_nonzero(pet)
    only_border = np.full((8, 8), BORDER, np.uint8)
    assert pet_outline_mask(only_border).all()


def test_to_trimap_takes_trimaps_as_is_and_converts_binary_masks():
    trimap = binary_to_trimap(_disc())
    same, kind = to_trimap(trimap)
    assert kind == "trimap" and same is trimap
    binary = np.where(_disc(), 255, 0).astype(np.uint8)
    converted, kind = to_trimap(binary)
    assert kind == "binary"
    assert np.array_equal(converted, binary_to_trimap(_disc()))
    with pytest.raises(PetSegError, match=r"values \{0, 1\}"):
        to_trimap(np.array([[0, 1]], np.uint8))
    with pytest.raises(PetSegError, match=r"values \{1, 2, 7\}"):
        to_trimap(np.array([[1, 2, 7]], np.uint8))


def test_trimap_to_binary_counts_the_border_as_pet():
    trimap = np.array([[PET, BACKGROUND, BORDER]], np.uint8)
    assert trimap_to_binary(trimap).tolist() == [[255, 0, 255]]


def test_png_round_trip_is_exact_and_deterministic():
    rng = np.random.default_rng(0)
    mask = rng.integers(1, 4, size=(37, 53), dtype=np.uint8)
    data = encode_png(mask)
    assert data == encode_png(mask.copy())
    assert np.array_equal(decode_label_png(data), mask)
    assert np.array_equal(decode_label_png(data, what="m", expected_size=(37, 53)), mask)


def test_decode_label_png_accepts_common_encodings():
    mask = binary_to_trimap(_disc())
    palette = Image.fromarray(mask, mode="P")  # indices are the values, as in some tools' exports
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255, 255, 255, 0])
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG")
    assert np.array_equal(decode_label_png(buffer.getvalue(), what="m"), mask)
    rgb = np.stack([mask] * 3, axis=-1)
    assert np.array_equal(decode_label_png(_png(rgb), what="m"), mask)
    one_bit = Image.fromarray(_disc()).convert("1")
    buffer = io.BytesIO()
    one_bit.save(buffer, format="PNG")
    assert set(np.unique(decode_label_png(buffer.getvalue(), what="m"))) == {0, 255}


def test_decode_label_png_refuses_hostile_or_wrong_files():
    mask = binary_to_trimap(_disc())
    with pytest.raises(PetSegError, match="80x60 .* but the image is 80x61"):
        decode_label_png(_png(mask), what="mask", expected_size=(61, 80))
    with pytest.raises(PetSegError, match="not a readable PNG"):
        decode_label_png(b"\x89PNG\r\n\x1a\n garbage", what="mask")
    with pytest.raises(PetSegError, match="not a readable PNG"):
        decode_label_png(b"", what="mask")
    jpeg = io.BytesIO()
    Image.fromarray(mask).save(jpeg, format="JPEG")
    with pytest.raises(PetSegError, match="JPEG file, not a PNG"):
        decode_label_png(jpeg.getvalue(), what="mask")
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[..., 0] = 255
    with pytest.raises(PetSegError, match="colour image"):
        decode_label_png(_png(colour), what="mask")
    with pytest.raises(PetSegError, match="mode I;16"):
        decode_label_png(_png(np.ones((4, 4), np.uint16) * 300), what="mask")
    # a tiny file that claims to be 100k x 100k pixels is refused from its header, before decoding
    header = Image.new("L", (1, 1))
    buffer = io.BytesIO()
    header.save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = (100_000).to_bytes(4, "big") * 2  # IHDR width and height
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # keep the header chunk valid
    with pytest.raises(PetSegError, match="far larger than any photo"):
        decode_label_png(bytes(data), what="mask")
    data[16:24] = (7_000).to_bytes(4, "big") * 2  # under PIL's bomb limit, over ours
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    with pytest.raises(PetSegError, match=r"far larger than any photo \(7000x7000\)"):
        decode_label_png(bytes(data), what="mask")


def test_pet_iou_ignores_the_reference_border():
    reference = np.array([[PET, PET, BORDER, BACKGROUND]], np.uint8)
    assert pet_iou(reference, reference) == 1.0
    assert pet_iou(np.array([[PET, PET, PET, BACKGROUND]], np.uint8), reference) == 1.0  # border pixel ignored
    assert pet_iou(np.array([[PET, BACKGROUND, BORDER, PET]], np.uint8), reference) == pytest.approx(1 / 3)
    empty = np.full((2, 2), BACKGROUND, np.uint8)
    assert pet_iou(empty, empty) == 1.0
    assert changed_pixels(empty, reference[:, :2].repeat(2, axis=0)) == 4
    with pytest.raises(PetSegError, match="shapes"):
        pet_iou(empty, reference)


def test_fill_holes_and_remove_specks():
    trimap = binary_to_trimap(_disc(radius=20), half_width=1)
    holed = trimap.copy()
    holed[28:32, 38:42] = BACKGROUND  # a hole inside the pet
    holed[0:3, 0:3] = PET  # a speck in a corner
    filled = fill_holes(holed)
    assert (filled[28:32, 38:42] == PET).all()
    assert fill_holes(holed, max_area=10)[30, 40] == BACKGROUND  # the 16-pixel hole is above the limit
    assert (filled[-1, :] == BACKGROUND).all()  # background touching the frame is not a hole
    cleaned = remove_specks(holed, min_area=20)
    assert (cleaned[0:3, 0:3] == BACKGROUND).all()
    assert np.array_equal(cleaned[10:50, 20:60], holed[10:50, 20:60])  # the pet itself is kept


def test_the_border_band_is_centred_on_the_outline():
    mask = np.zeros((200, 200), dtype=bool)
    cv2.circle(mask.view(np.uint8), (100, 100), 60, 1, -1)
    trimap = binary_to_trimap(mask, half_width=8)
    assert trimap[100, 100] == PET and trimap[0, 0] == BACKGROUND
    row = trimap[100]
    assert (row[100 - 60 - 8: 100 - 60 + 8] == BORDER).all()  # 8 px outside to 8 px inside the edge
    assert row[100 - 60 + 9] == PET and row[100 - 60 - 10] == BACKGROUND


def test_decoding_a_16_bit_label_map_with_small_values_gives_the_labels():
    mask = binary_to_trimap(_disc())
    assert np.array_equal(decode_label_png(_png(mask.astype(np.uint16))), mask)


def test_grabcut_pulls_a_rough_mask_towards_the_pet_and_obeys_strokes(sample_root: Path):
    image_id = "Bombay_182"  # a dark cat on a light background: GrabCut's good case (IoU 0.65 -> 0.94)
    photo = cv2.cvtColor(cv2.imread(str(sample_root / "images" / f"{image_id}.jpg")), cv2.COLOR_BGR2RGB)
    truth = cv2.imread(str(sample_root / "annotations" / "trimaps" / f"{image_id}.png"), cv2.IMREAD_UNCHANGED)
    rough = binary_to_trimap(cv2.dilate(pet_outline_mask(truth).astype(np.uint8), np.ones((41, 41), np.uint8)) > 0)
    sure_background = np.zeros(truth.shape, bool)
    sure_background[:5] = True
    sure_pet = cv2.erode((truth == PET).astype(np.uint8), np.ones((15, 15), np.uint8)) > 0
    refined = grabcut(photo, rough, sure_pet=sure_pet, sure_background=sure_background)
    validate_trimap(refined, truth.shape)
    assert pet_iou(refined, truth) > pet_iou(rough, truth) + 0.1
    assert (refined[sure_background] != PET).all() and (refined[sure_pet] != BACKGROUND).all()
    with pytest.raises(PetSegError, match="some pet and some background"):
        grabcut(photo, np.full(truth.shape, BACKGROUND, np.uint8))
    with pytest.raises(PetSegError, match="RGB image"):
        grabcut(photo[..., 0], rough)
