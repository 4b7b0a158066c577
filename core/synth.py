"""A generated Oxford-IIIT-Pet-shaped dataset for offline demos, tests and scale benchmarks.

    >>> from core.synth import generate
    >>> root = generate(Path("data/petseg-demo"), count=300, seed=0)   # a few seconds on 2 cores
    >>> sorted(p.name for p in root.iterdir())
    ['annotations', 'images', 'petseg-synthetic.json']

The output is exactly the official layout (``images/<Name>_<n>.jpg``, ``annotations/trimaps/<Name>_<n>.png``,
``annotations/list.txt`` with the official header, ``trainval.txt`` / ``test.txt`` split half and half,
the 37 official breed names, class ids, species and breed ids), plus ``petseg-synthetic.json`` so every
reader can label it synthetic.

Each image is a cartoon pet (textured body, head, ears, legs, tail; standing, sitting, lying or a close-up
portrait) on a cluttered textured background, in varied colours, scales, positions and angles; some are
partly occluded (fences, objects, the frame edge) and some have fur close to the background colour. A
breed keeps its look (colours, coat pattern, ear shape, build) across images and seeds, so the breed is
learnable too. Trimaps mark the pet 1, background 2 and a border band 3 centred on the outline; the
band's width (about 12-24 px at 500 px) matches the real trimaps.

Image ``i`` depends only on ``(seed, i)``: the output is byte-identical for a seed, whatever the worker count.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from core.dataset import (
    ANNOTATIONS_DIR,
    BREEDS,
    IMAGES_DIR,
    LIST_FILE,
    SPECIES,
    SYNTHETIC_MARKER,
    TEST_FILE,
    TRAINVAL_FILE,
    TRIMAPS_DIR,
    breed_number,
    species_of,
)
from core.errors import PetSegError
from core.masks import binary_to_trimap

GENERATOR_VERSION = 2  # 2: the border band is core.masks.border_band
MAX_COUNT = 100_000
_SERIAL_BELOW = 96  # fewer images than this: starting worker processes costs more than it saves

# The header of the official list.txt, typos included.
LIST_HEADER = (
    "#Image CLASS-ID SPECIES BREED ID\n"
    "#ID: 1:37 Class ids\n"
    "#SPECIES: 1:Cat 2:Dog\n"
    "#BREED ID: 1-25:Cat 1:12:Dog\n"
    "#All images with 1st letter as captial are cat images\n"
    "#images with small first letter are dog images\n"
)

Progress = bool | Callable[[int, int], None]


@dataclass(frozen=True)
class Item:
    """One planned image: its id and labels. ``index`` is its position in the plan (and its seed)."""

    index: int
    image_id: str
    breed_index: int
    split: str

    @property
    def list_line(self) -> str:
        breed = BREEDS[self.breed_index]
        species = SPECIES.index(species_of(breed)) + 1
        return f"{self.image_id} {self.breed_index + 1} {species} {breed_number(breed)}\n"


def plan(count: int) -> list[Item]:
    """Ids and splits for ``count`` images: breeds round-robin (``Abyssinian_1``, ``american_bulldog_1``, ...),
    splits alternating, so every breed and both splits are about equally represented at any count."""
    return [
        Item(i, f"{BREEDS[i % len(BREEDS)]}_{i // len(BREEDS) + 1}", i % len(BREEDS), ("trainval", "test")[i % 2])
        for i in range(count)
    ]


def generate(out: Path, count: int, seed: int = 0, progress: Progress = True, workers: int | None = None) -> Path:
    """Write ``count`` generated images in the official layout into the new folder ``out`` and return it.

    ``progress``: True for a bar on stderr, False for none, or a callable ``(done, total)``. ``workers``
    defaults to the CPU count. The folder appears complete or not at all: everything is written into a
    hidden sibling folder that is renamed into place at the end.
    """
    out = Path(out).expanduser().absolute()
    if not 1 <= count <= MAX_COUNT:
        raise PetSegError(f"count must be between 1 and {MAX_COUNT}, got {count}")
    if seed < 0:
        raise PetSegError(f"seed must be zero or positive, got {seed}")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PetSegError(f"{out} already exists and is not empty: choose a new folder for --out or delete it first")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    except OSError as exc:
        raise PetSegError(f"cannot create {out}: {exc.strerror or exc}; choose a writable folder") from exc
    try:
        _write_dataset(staging, count, seed, progress, workers)
        if out.exists():
            out.rmdir()  # empty: checked above
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _write_dataset(root: Path, count: int, seed: int, progress: Progress, workers: int | None) -> None:
    (root / IMAGES_DIR).mkdir()
    (root / TRIMAPS_DIR).mkdir(parents=True)
    items = plan(count)
    report = _reporter(progress, count)
    workers = max(1, min(workers or os.cpu_count() or 1, count))
    jobs = [(str(root), seed, item) for item in items]
    try:
        if workers == 1 or count < _SERIAL_BELOW:
            for job in jobs:
                _write_item(job)
                report(1)
        else:
            # forkserver: no fork of a possibly multi-threaded parent (Streamlit, torch), no re-run of __main__.
            context = multiprocessing.get_context("forkserver")
            with context.Pool(workers, initializer=_worker_init) as pool:
                for _ in pool.imap_unordered(_write_item, jobs, chunksize=8):
                    report(1)
    finally:
        report(0, close=True)
    annotations = root / ANNOTATIONS_DIR
    ordered = sorted(items, key=lambda it: (it.breed_index, it.index))  # the official files are sorted by name
    (annotations / LIST_FILE).write_text(LIST_HEADER + "".join(it.list_line for it in ordered))
    for name, split in ((TRAINVAL_FILE, "trainval"), (TEST_FILE, "test")):
        (annotations / name).write_text("".join(it.list_line for it in ordered if it.split == split))
    marker = {"generator": "petseg.synth", "version": GENERATOR_VERSION, "seed": seed, "count": count}
    (root / SYNTHETIC_MARKER).write_text(json.dumps(marker, indent=2) + "\n")


def _reporter(progress: Progress, total: int) -> Callable[..., None]:
    if callable(progress):
        done = 0

        def call(step: int, close: bool = False) -> None:
            nonlocal done
            done += step
            if step:
                progress(done, total)

        return call
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="img", desc="generating")

        def tick(step: int, close: bool = False) -> None:
            bar.update(step)
            if close:
                bar.close()

        return tick
    return lambda step, close=False: None


def _worker_init() -> None:
    cv2.setNumThreads(1)  # one process per core already; OpenCV's own threads would only fight them


def _write_item(job: tuple[str, int, Item]) -> None:
    root, seed, item = job
    jpeg, png = render(seed, item.index)
    Path(root, IMAGES_DIR, f"{item.image_id}.jpg").write_bytes(jpeg)
    Path(root, TRIMAPS_DIR, f"{item.image_id}.png").write_bytes(png)


# --- drawing ----------------------------------------------------------------------------------------------------

# Coat colours (RGB) a breed picks from; backgrounds sometimes use them too, so colour alone is no shortcut.
_FUR = np.array(
    [
        (28, 26, 26), (66, 44, 30), (118, 78, 48), (186, 146, 98), (228, 212, 182), (238, 236, 230),
        (128, 128, 132), (104, 114, 130), (206, 126, 58), (198, 158, 82), (88, 60, 46), (160, 110, 70),
    ],
    dtype=np.float32,
)
_PATTERNS = ("solid", "stripes", "spots", "patches", "points", "saddle")
_POSES = ("side", "side", "sitting", "lying", "portrait", "portrait")


@dataclass(frozen=True)
class _Look:
    """What stays the same for every image of a breed."""

    base: np.ndarray
    second: np.ndarray
    pattern: str
    floppy_ears: bool
    snout: bool
    body_aspect: float  # body height / body length
    head: float  # head radius / body length
    legs: float  # leg length / body length
    tail: float  # tail length / body length
    fur: float  # fur noise amplitude


def _breed_look(breed_index: int) -> _Look:
    rng = np.random.default_rng([7919, breed_index])  # fixed: a breed looks the same under every seed
    cat = species_of(BREEDS[breed_index]) == "cat"
    base, second = rng.choice(len(_FUR), size=2, replace=False)
    return _Look(
        base=_FUR[base],
        second=_FUR[second],
        pattern=_PATTERNS[rng.integers(len(_PATTERNS))],
        floppy_ears=not cat and rng.random() < 0.6,
        snout=not cat,
        body_aspect=float(rng.uniform(0.3, 0.42) if cat else rng.uniform(0.32, 0.5)),
        head=float(rng.uniform(0.15, 0.19) if cat else rng.uniform(0.16, 0.23)),
        legs=float(rng.uniform(0.2, 0.3) if cat else rng.uniform(0.22, 0.45)),
        tail=float(rng.uniform(0.45, 0.7) if cat else rng.uniform(0.15, 0.45)),
        fur=float(rng.uniform(6, 18)),
    )


_LOOKS = tuple(_breed_look(i) for i in range(len(BREEDS)))


def render(seed: int, index: int) -> tuple[bytes, bytes]:
    """Image ``index`` of the set generated with ``seed``: (JPEG bytes, trimap PNG bytes)."""
    rng = np.random.default_rng([seed, index])
    look = _LOOKS[index % len(BREEDS)]
    height, width = _image_size(rng)
    image = _background(rng, height, width)

    figure = _Figure.random(rng, look, height, width)
    alpha = figure.alpha(height, width)
    hard = rng.random() < 0.15  # low contrast: fur close to what is behind it
    _paint_pet(rng, image, alpha, figure, look, hard)

    occluder = _occlude(rng, image, alpha, figure) if rng.random() < 0.3 else None
    pet = alpha >= 128
    if occluder is not None:
        pet &= occluder < 128

    image = _finish(rng, image)
    trimap = binary_to_trimap(pet, half_width=_band_width(rng, height, width) // 2)
    quality = int(rng.integers(72, 96))
    ok_jpeg, jpeg = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    ok_png, png = cv2.imencode(".png", trimap, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not (ok_jpeg and ok_png):
        raise RuntimeError(f"OpenCV failed to encode image {index}")
    return jpeg.tobytes(), png.tobytes()


def _image_size(rng: np.random.Generator) -> tuple[int, int]:
    long_side = int(rng.integers(260, 601))
    short_side = max(200, int(long_side * rng.uniform(0.62, 1.0)))
    return (short_side, long_side) if rng.random() < 0.65 else (long_side, short_side)


def _band_width(rng: np.random.Generator, height: int, width: int) -> int:
    # Real trimaps: a band of ~15 px (some annotators ~22 px) on ~500 px images.
    return max(5, round(rng.uniform(12, 24) * max(height, width) / 500))


def _low_noise(rng: np.random.Generator, height: int, width: int, cells: float, channels: int = 1) -> np.ndarray:
    """Smooth noise in [0, 1] with about ``cells`` blobs across the longer side."""
    gh = max(2, round(cells * height / max(height, width)))
    gw = max(2, round(cells * width / max(height, width)))
    grid = rng.random((gh, gw, channels), dtype=np.float32)
    smooth = cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC)
    return smooth.reshape(height, width, channels) if channels > 1 else smooth.reshape(height, width)


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.35:
        return _FUR[rng.integers(len(_FUR))] + rng.normal(0, 12, 3).astype(np.float32)
    hsv = np.array([[[rng.integers(0, 180), rng.integers(20, 200), rng.integers(50, 240)]]], dtype=np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A room-like scene: two-colour gradient, a floor or sofa band, blotchy texture and clutter."""
    c0, c1 = _random_colour(rng), _random_colour(rng)
    angle = rng.uniform(0, 2 * math.pi)
    ys = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    xs = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    ramp = np.clip(0.5 + (xs - 0.5) * math.cos(angle) + (ys - 0.5) * math.sin(angle), 0, 1)
    image = c0 + (c1 - c0) * ramp[:, :, None]
    if rng.random() < 0.6:  # a floor, bed or sofa under the pet
        top = int(height * rng.uniform(0.45, 0.8))
        floor = _random_colour(rng)
        image[top:] = image[top:] * 0.3 + floor * 0.7
        if rng.random() < 0.5:  # a carpet or wood-grain pattern on it
            period = rng.uniform(6, 30)
            rows = np.arange(height - top, dtype=np.float32)[:, None]
            cols = np.arange(width, dtype=np.float32)[None, :]
            waves = np.sin((cols * rng.uniform(-1, 1) + rows) * (2 * math.pi / period))
            image[top:] += (waves * rng.uniform(8, 30))[:, :, None]
    image += (_low_noise(rng, height, width, rng.uniform(3, 12), channels=3) - 0.5) * rng.uniform(20, 80)
    _clutter(rng, image, int(rng.integers(4, 16)))
    return image


def _clutter(rng: np.random.Generator, image: np.ndarray, count: int) -> None:
    """Furniture, toys and frames: random filled and outlined shapes in random colours."""
    height, width = image.shape[:2]
    scale = max(height, width)
    for _ in range(count):
        colour = tuple(float(v) for v in _random_colour(rng))
        kind = rng.integers(5)
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(scale * rng.uniform(0.03, 0.3))
        thickness = -1 if rng.random() < 0.6 else int(rng.integers(2, 9))
        if kind == 0:
            cv2.rectangle(image, (x, y), (x + size, y + int(size * rng.uniform(0.3, 2))), colour, thickness)
        elif kind == 1:
            cv2.circle(image, (x, y), max(2, size // 2), colour, thickness, cv2.LINE_AA)
        elif kind == 2:
            axes = (max(2, size // 2), max(2, int(size * rng.uniform(0.1, 0.5))))
            cv2.ellipse(image, (x, y), axes, float(rng.uniform(0, 180)), 0, 360, colour, thickness, cv2.LINE_AA)
        elif kind == 3:
            end = (x + int(rng.normal(0, scale * 0.3)), y + int(rng.normal(0, scale * 0.3)))
            cv2.line(image, (x, y), end, colour, int(rng.integers(2, 14)), cv2.LINE_AA)
        else:
            points = (np.array([[x, y]]) + rng.normal(0, size / 2, (int(rng.integers(3, 7)), 2))).astype(np.int32)
            cv2.fillPoly(image, [points], colour, cv2.LINE_AA)


@dataclass
class _Figure:
    """A pet's shape in local units (body length 1, x towards the head, y down), placed by a similarity transform."""

    polygons: list[np.ndarray]
    strokes: list[tuple[np.ndarray, float]]  # centre lines with a thickness
    eyes: list[tuple[np.ndarray, float]]
    nose: tuple[np.ndarray, float]
    inner_ears: list[np.ndarray]
    centre: np.ndarray  # pixels
    scale: float  # pixels per unit
    angle: float
    flip: float

    @classmethod
    def random(cls, rng: np.random.Generator, look: _Look, height: int, width: int) -> _Figure:
        pose = _POSES[rng.integers(len(_POSES))]
        parts = _portrait(rng, look) if pose == "portrait" else _body(rng, look, pose)
        short = min(height, width)
        if pose == "portrait":
            scale = short * rng.uniform(0.45, 0.85)
            centre = np.array([width * rng.uniform(0.35, 0.65), height * rng.uniform(0.35, 0.6)])
            angle = rng.normal(0, 0.2)
        else:
            scale = short * rng.uniform(0.4, 0.78) * (0.8 if pose == "sitting" else 1.0)
            centre = np.array([width * rng.uniform(0.3, 0.7), height * rng.uniform(0.35, 0.65)])
            angle = rng.normal(0, 0.25)
        return cls(*parts, centre=centre, scale=float(scale), angle=float(angle), flip=float(rng.choice([-1.0, 1.0])))

    def to_pixels(self, points: np.ndarray) -> np.ndarray:
        c, s = math.cos(self.angle), math.sin(self.angle)
        local = points * np.array([self.flip, 1.0])
        rotated = local @ np.array([[c, s], [-s, c]])
        return rotated * self.scale + self.centre

    def alpha(self, height: int, width: int) -> np.ndarray:
        """Anti-aliased coverage (0..255) of the pet, before any occlusion."""
        alpha = np.zeros((height, width), dtype=np.uint8)
        for polygon in self.polygons:
            cv2.fillPoly(alpha, [_int_points(self.to_pixels(polygon))], 255, cv2.LINE_AA, shift=4)
        for line, thickness in self.strokes:
            width_px = max(2, round(thickness * self.scale))
            cv2.polylines(alpha, [_int_points(self.to_pixels(line))], False, 255, width_px, cv2.LINE_AA, shift=4)
        return alpha

    def local_coords(self, ys: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Local (u, v) of pixel grids, so coat patterns follow the body when it turns."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        dx, dy = (xs - self.centre[0]) / self.scale, (ys - self.centre[1]) / self.scale
        return (dx * c + dy * s) * self.flip, -dx * s + dy * c


def _int_points(points: np.ndarray) -> np.ndarray:
    return np.round(points * 16).astype(np.int32)  # 4 fractional bits (shift=4) for smooth outlines


def _ellipse(cx: float, cy: float, a: float, b: float, angle: float = 0.0, n: int = 40) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    x, y = a * np.cos(t), b * np.sin(t)
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([cx + x * c - y * s, cy + x * s + y * c], axis=1)


def _head(rng: np.random.Generator, look: _Look, hx: float, hy: float, r: float, facing: float) -> tuple:
    """Head polygons, eyes, nose and inner ears; ``facing`` 0 = looking at the camera, 1 = in profile."""
    polygons = [_ellipse(hx, hy, r, r * rng.uniform(0.88, 1.0))]
    snout_x = hx + r * 0.75 * facing
    if look.snout:
        polygons.append(_ellipse(snout_x, hy + r * 0.35, r * (0.45 + 0.35 * facing), r * 0.42))
    inner_ears = []
    for side in (-1.0, 1.0):
        ex = hx + side * r * (0.55 - 0.4 * facing) - r * 0.15 * facing
        if look.floppy_ears:
            polygons.append(_ellipse(ex + side * r * 0.25, hy + r * 0.25, r * 0.32, r * 0.75, side * 0.35))
        else:
            tip = np.array([ex + side * r * 0.2, hy - r * rng.uniform(1.45, 1.75)])
            ear = np.array([[ex - r * 0.38, hy - r * 0.55], [ex + r * 0.38, hy - r * 0.55], tip])
            polygons.append(ear)
            inner_ears.append(ear * 0.55 + ear.mean(axis=0) * 0.45)
    eye_r = r * rng.uniform(0.11, 0.16)
    eye_y = hy - r * 0.12
    if facing > 0.5:
        eyes = [(np.array([hx + r * 0.45, eye_y]), eye_r)]
    else:
        eyes = [(np.array([hx + side * r * 0.38, eye_y]), eye_r) for side in (-1.0, 1.0)]
    nose = (np.array([snout_x + r * 0.25 * facing, hy + r * 0.32]), r * 0.13)
    return polygons, eyes, nose, inner_ears


def _body(rng: np.random.Generator, look: _Look, pose: str) -> tuple:
    aspect = look.body_aspect * rng.uniform(0.9, 1.1)
    r = look.head * rng.uniform(0.9, 1.1)
    strokes: list[tuple[np.ndarray, float]] = []
    leg = 0.07 * rng.uniform(0.85, 1.2)
    if pose == "sitting":
        polygons = [_ellipse(0.0, 0.0, aspect * 0.75, 0.42, 0.15)]
        hx, hy = 0.08, -0.42 - r * 0.6
        for x in (0.05, 0.2):
            strokes.append((np.array([[x, 0.05], [x + 0.02, 0.42]]), leg))
        tail = _tail_points(rng, np.array([-aspect * 0.6, 0.35]), look.tail, direction=0.0)
    elif pose == "lying":
        polygons = [_ellipse(0.0, 0.0, 0.55, aspect * 0.42)]
        hx, hy = 0.55, -aspect * 0.35
        for y in (0.1, 0.16):
            strokes.append((np.array([[0.3, y * aspect * 2], [0.8, y * aspect * 2 + 0.03]]), leg))
        tail = _tail_points(rng, np.array([-0.55, 0.0]), look.tail, direction=math.pi)
    else:  # standing, side view
        polygons = [_ellipse(0.0, 0.0, 0.5, aspect / 2)]
        hx, hy = 0.5 + r * 0.3, -aspect / 2 - r * 0.55
        polygons.append(_ellipse(0.4, -aspect / 4, 0.14, aspect / 2.4, -0.7))  # neck
        stride = rng.uniform(-0.08, 0.08)
        for x in (-0.36, -0.24, 0.24, 0.36):
            top = np.array([x, aspect * 0.2])
            foot = np.array([x + stride * np.sign(x), aspect / 2 + look.legs])
            strokes.append((np.stack([top, foot]), leg))
        tail = _tail_points(rng, np.array([-0.48, -aspect * 0.15]), look.tail, direction=math.pi * 1.15)
    strokes.append((tail, 0.05 * rng.uniform(0.7, 1.2)))
    facing = rng.uniform(0.55, 1.0) if pose != "sitting" else rng.uniform(0.0, 0.5)
    head_polygons, eyes, nose, inner_ears = _head(rng, look, hx, hy, r, facing)
    return polygons + head_polygons, strokes, eyes, nose, inner_ears


def _portrait(rng: np.random.Generator, look: _Look) -> tuple:
    """A close-up: a big head over shoulders that leave the frame, the commonest shot in the real set."""
    r = 0.3
    polygons = [_ellipse(0.0, 0.75, 0.55, 0.45)]  # shoulders
    head_polygons, eyes, nose, inner_ears = _head(rng, look, 0.0, 0.0, r, facing=rng.uniform(0.0, 0.35))
    return polygons + head_polygons, [], eyes, nose, inner_ears


def _tail_points(rng: np.random.Generator, start: np.ndarray, length: float, direction: float) -> np.ndarray:
    curl = rng.uniform(-2.5, 2.5)
    t = np.linspace(0, 1, 8)[:, None]
    heading = direction + curl * t * 0.8
    steps = np.concatenate([np.cos(heading), np.sin(heading) - 0.4 * t], axis=1) * (length / 8)
    return start + np.cumsum(steps, axis=0)


def _paint_pet(
    rng: np.random.Generator, image: np.ndarray, alpha: np.ndarray, figure: _Figure, look: _Look, hard: bool
) -> None:
    """Texture the pet (coat pattern, shading, fur, eyes, nose) and blend it into ``image`` inside its box."""
    rows, cols = np.nonzero(alpha[:: 4, :: 4])
    if rows.size == 0:
        return
    height, width = alpha.shape
    y0, y1 = max(0, rows.min() * 4 - 4), min(height, rows.max() * 4 + 8)
    x0, x1 = max(0, cols.min() * 4 - 4), min(width, cols.max() * 4 + 8)
    box_h, box_w = y1 - y0, x1 - x0
    ys = np.arange(y0, y1, dtype=np.float32)[:, None]
    xs = np.arange(x0, x1, dtype=np.float32)[None, :]
    u, v = figure.local_coords(ys, xs)

    base = look.base + rng.normal(0, 10, 3).astype(np.float32)
    second = look.second + rng.normal(0, 10, 3).astype(np.float32)
    behind = image[y0:y1, x0:x1]
    if hard:
        base = behind.reshape(-1, 3).mean(axis=0) + rng.normal(0, 10, 3).astype(np.float32)
        second = base + rng.normal(0, 14, 3).astype(np.float32)

    pattern = look.pattern
    warp = _low_noise(rng, box_h, box_w, 4) * 3.0
    if pattern == "stripes":
        mix = np.clip(np.sin(u * rng.uniform(25, 45) + warp) * 2.0, 0, 1)
    elif pattern == "spots":
        mix = np.clip((_low_noise(rng, box_h, box_w, max(4.0, figure.scale / 14)) - 0.66) * 8, 0, 1)
    elif pattern == "patches":
        mix = np.clip((_low_noise(rng, box_h, box_w, 4) - 0.5) * 6, 0, 1)
    elif pattern == "points":  # darker face, ears, legs and tail, like a Siamese
        mix = np.clip((np.sqrt(u * u + v * v) - 0.35) * 3.0, 0, 1)
    elif pattern == "saddle":
        mix = np.clip((-v - 0.02) * 12, 0, 1) * np.clip((0.42 - np.abs(u)) * 8, 0, 1)
    else:
        mix = warp * 0.08
    coat = base + (second - base) * mix[:, :, None]

    coverage = alpha[y0:y1, x0:x1].astype(np.float32) / 255.0
    depth = cv2.GaussianBlur(coverage, (0, 0), max(1.0, figure.scale * 0.05))
    light = 0.62 + 0.5 * depth - 0.12 * np.clip(v, -1, 1)  # rounded body, lit from above
    fur = rng.standard_normal((box_h, box_w), dtype=np.float32)
    fur = cv2.GaussianBlur(fur, (0, 0), 0.8) * (look.fur * (0.5 if hard else 1.0))
    pet = coat * light[:, :, None] + fur[:, :, None]

    offset = np.array([x0, y0])
    for ear in figure.inner_ears:
        inner = _int_points(figure.to_pixels(ear) - offset)
        cv2.fillPoly(pet, [inner], (205.0, 140.0, 140.0) if not hard else tuple(float(c) for c in base * 0.9),
                     cv2.LINE_AA, shift=4)
    for centre, radius in figure.eyes:
        px = tuple(int(c) for c in np.round((figure.to_pixels(centre[None]) - offset)[0] * 16))
        size = max(16, round(radius * figure.scale * 16))
        iris = tuple(float(c) for c in rng.choice([(60, 140, 60), (170, 130, 40), (60, 90, 150), (40, 30, 20)]))
        cv2.circle(pet, px, size, iris, -1, cv2.LINE_AA, shift=4)
        cv2.circle(pet, px, max(8, size // 2), (10.0, 10.0, 10.0), -1, cv2.LINE_AA, shift=4)
    centre, radius = figure.nose
    px = tuple(int(c) for c in np.round((figure.to_pixels(centre[None]) - offset)[0] * 16))
    cv2.circle(pet, px, max(16, round(radius * figure.scale * 16)), (35.0, 25.0, 25.0), -1, cv2.LINE_AA, shift=4)

    weight = coverage[:, :, None]
    image[y0:y1, x0:x1] = behind * (1 - weight) + pet * weight


def _occlude(rng: np.random.Generator, image: np.ndarray, alpha: np.ndarray, figure: _Figure) -> np.ndarray:
    """Draw something in front of the pet (fence bars or an object) and return its coverage (0..255)."""
    height, width = alpha.shape
    cover = np.zeros((height, width), dtype=np.uint8)
    colour = _random_colour(rng)
    if rng.random() < 0.4:  # fence or cage bars across the whole picture
        gap = int(rng.integers(35, 90)) * max(height, width) // 500 + 10
        thickness = int(rng.integers(4, 12))
        slant = rng.normal(0, 0.15)
        for x in range(int(rng.integers(0, gap)) - height, width + height, gap):
            top = (int(x), 0)
            bottom = (int(x + slant * height), height)
            cv2.line(cover, top, bottom, 255, thickness, cv2.LINE_AA)
    else:  # a cushion, toy or hand over part of the pet
        ys, xs = np.nonzero(alpha[::4, ::4] >= 128)
        if ys.size == 0:
            return cover
        pick = int(rng.integers(ys.size))
        cx, cy = xs[pick] * 4, ys[pick] * 4
        size = figure.scale * rng.uniform(0.15, 0.35)
        corners = int(rng.integers(4, 30))  # from a rough box to a smooth cushion
        polygon = _ellipse(cx, cy, size, size * rng.uniform(0.4, 1.0), rng.uniform(0, math.pi), n=corners)
        cv2.fillPoly(cover, [_int_points(polygon)], 255, cv2.LINE_AA, shift=4)
    texture = colour + (_low_noise(rng, height, width, 8)[:, :, None] - 0.5) * 40
    weight = cover.astype(np.float32)[:, :, None] / 255.0
    image *= 1 - weight
    image += texture * weight
    return cover


def _finish(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """Camera effects: exposure, colour cast, softness and sensor noise; returns uint8 RGB."""
    image *= (rng.uniform(0.8, 1.15) * rng.uniform(0.93, 1.07, 3)).astype(np.float32)
    image += np.float32(rng.uniform(-15, 15))
    if rng.random() < 0.3:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.5, 1.2))
    noise = rng.standard_normal(image.shape[:2], dtype=np.float32) * np.float32(rng.uniform(1, 6))
    image += noise[:, :, None]
    return np.clip(image, 0, 255).astype(np.uint8)
