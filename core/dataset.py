"""The Oxford-IIIT Pet dataset in its official layout: reading, odd files, the cached index, image loading.

    >>> from core.dataset import load_image, load_trimap, open_dataset, summarize
    >>> ds = open_dataset(Path("data/oxford-iiit-pet"), Path("workspace"))
    >>> ds.table.loc["Abyssinian_1", ["breed", "species", "split", "width", "height"]].tolist()
    ['Abyssinian', 'cat', 'trainval', 600, 400]
    >>> load_image(ds, "Abyssinian_1").shape, load_trimap(ds, "Abyssinian_1").shape
    ((400, 600, 3), (400, 600))
    >>> summarize(ds)["splits"]
    {'trainval': 3680, 'test': 3669, 'unlisted': 41}

The layout::

    images/<Name>_<n>.jpg              photos (a few are PNG, GIF, CMYK, grayscale, ... behind the .jpg name)
    annotations/trimaps/<Name>_<n>.png 1 = pet, 2 = background, 3 = border
    annotations/list.txt               "<image> <class-id 1..37> <species 1=cat 2=dog> <breed-id>", '#' headers
    annotations/trainval.txt, test.txt the same columns: the official split

The breed comes from the file name (strip ``_<n>``); a capital first letter means a cat. Every image on
disk gets a row in ``Dataset.table``; images in neither split file are ``unlisted``. Whatever is odd
(unreadable files, missing or mismatched trimaps, malformed list lines, list rows without an image) is
reported in ``Dataset.problems``; nothing is silently dropped and nothing crashes the reader.

Links: a symlink is followed only when it resolves inside the dataset root. A list file, trimap or image
(or the trimaps folder) that leads outside is an ``outside-link`` problem, named by its place in the
dataset and never opened, so a dataset from elsewhere cannot make PetSeg show ``/etc/shadow`` or a private
photo; ``images/`` itself leading outside is refused. Problems name a bad list line by file and line number
(and its id when the first field is one), never by its raw content.

The index is cached as ``<workspace>/index/<fingerprint>.parquet``. The fingerprint hashes the names,
sizes and mtimes of the files the index depends on (one ``os.scandir`` pass, no file is opened), so a
warm start decodes nothing; a cold start reads image headers only and decodes the small trimap PNGs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, UnidentifiedImageError

from core.atomic import atomic_open
from core.errors import ImageUnreadable, PetSegError, UnknownImage
from core.masks import BORDER, PET, TRIMAP_VALUES, decode_label_png

BREEDS: tuple[str, ...] = (
    "Abyssinian", "american_bulldog", "american_pit_bull_terrier", "basset_hound", "beagle", "Bengal", "Birman",
    "Bombay", "boxer", "British_Shorthair", "chihuahua", "Egyptian_Mau", "english_cocker_spaniel", "english_setter",
    "german_shorthaired", "great_pyrenees", "havanese", "japanese_chin", "keeshond", "leonberger", "Maine_Coon",
    "miniature_pinscher", "newfoundland", "Persian", "pomeranian", "pug", "Ragdoll", "Russian_Blue", "saint_bernard",
    "samoyed", "scottish_terrier", "shiba_inu", "Siamese", "Sphynx", "staffordshire_bull_terrier", "wheaten_terrier",
    "yorkshire_terrier",
)  # class_id = i + 1 (official numbering: case-insensitive alphabetical order)
SPLITS = ("trainval", "test", "unlisted")
SPECIES = ("cat", "dog")  # species code in list.txt = i + 1

IMAGES_DIR = "images"
ANNOTATIONS_DIR = "annotations"
TRIMAPS_DIR = "annotations/trimaps"
LIST_FILE, TRAINVAL_FILE, TEST_FILE = "list.txt", "trainval.txt", "test.txt"
SYNTHETIC_MARKER = "petseg-synthetic.json"  # written by core.synth into the dataset root
DOWNLOAD_DIR = ".download"  # core.download's working folder inside the dataset root
DOWNLOAD_UNFINISHED = "unfinished"  # present in DOWNLOAD_DIR while archives are being moved into place

# Bump when the index's content or meaning changes: old cache files then simply stop matching.
INDEX_VERSION = 2  # 2: outside links, list problems without raw line contents
INDEX_KEEP = 8  # cache files kept in <workspace>/index (one per dataset version seen recently)
MAX_ID_LENGTH = 100
# Photos above this are refused from their header, before any decode: the official photos are under 1 MP, and
# 40 MP (like core.masks.MAX_MASK_PIXELS) is 120 MB as RGB. Pillow's own limit (~89 MP warns, ~179 MP refuses)
# lets a 12000x12000 PNG behind a .jpg name take 432 MB.
MAX_PHOTO_PIXELS = 40_000_000
_ID = re.compile(r"[A-Za-z]+(?:_[A-Za-z]+)*_[0-9]{1,9}")
_PARALLEL_FROM = 64  # below this many images a thread pool costs more than it saves

_GET_DATA = (
    "download it with `python -m core download --data DIR`, generate a demo set with "
    "`python -m core synth --out DIR` and pass `--data DIR`, or point `--data` at a folder in the official layout"
)

COLUMNS = {
    "image_id": "str",
    "breed": "str",
    "class_id": "int64",
    "species": "str",
    "split": "str",
    "width": "int64",
    "height": "int64",
    "readable": "bool",
    "has_trimap": "bool",
    "gt_pet_fraction": "float64",
    "problem": "str",
}


@dataclass(frozen=True)
class Problem:
    image: str  # image id, or "annotations/list.txt:12", or a folder/file name for folder-level findings
    kind: str  # short word: "missing-trimap", "truncated", "malformed-line", ...
    detail: str  # a sentence a person can act on


# --- names ------------------------------------------------------------------------------------------------------


def is_image_id(text: object) -> bool:
    """True for strings shaped like an official id (``Abyssinian_1``): letters/underscores, then ``_<n>``."""
    return isinstance(text, str) and len(text) <= MAX_ID_LENGTH and _ID.fullmatch(text) is not None


def breed_of(image_id: str) -> str:
    """``"British_Shorthair_102"`` -> ``"British_Shorthair"``."""
    return image_id.rsplit("_", 1)[0]


def species_of(breed: str) -> str:
    """The official rule: breed names starting with a capital letter are cats."""
    return "cat" if breed[:1].isupper() else "dog"


def breed_number(breed: str) -> int:
    """The official per-species breed id (list.txt's 4th column): 1..12 for cats, 1..25 for dogs."""
    species = species_of(breed)
    return [b for b in BREEDS if species_of(b) == species].index(breed) + 1


def _safe(text: object, limit: int = 40) -> str:
    """A user-supplied string cut down to harmless characters, for echoing in messages."""
    if not isinstance(text, str):
        return f"<{type(text).__name__}>"
    kept = "".join(c if (c.isascii() and c.isalnum()) or c in "_.-" else "?" for c in text[:limit])
    return kept + ("..." if len(text) > limit else "")


# --- the dataset object -----------------------------------------------------------------------------------------


class Dataset:
    """An indexed dataset folder. Build it with :func:`open_dataset`."""

    def __init__(self, root: Path, fingerprint: str, synthetic: bool, table: pd.DataFrame, problems: list[Problem]):
        self.root = root
        self.real_root = os.path.realpath(root)  # what a path must resolve inside of to be read
        self.fingerprint = fingerprint
        self.synthetic = synthetic
        self.table = table
        self.problems = problems
        self._ids = frozenset(table.index)

    def ids(self, split: str | None = None) -> list[str]:
        if split is None or split == "all":
            return list(self.table.index)
        if split not in SPLITS:
            raise PetSegError(f"unknown split {_safe(split)!r}: use one of {', '.join(SPLITS)} or 'all'")
        return list(self.table.index[self.table["split"] == split])

    def require(self, image_id: str) -> str:
        """The id itself when the index knows it; else ``UnknownImage`` (the message never echoes much of it)."""
        if not is_image_id(image_id) or image_id not in self._ids:
            raise UnknownImage(
                f"unknown image id '{_safe(image_id)}': it is not in the index of {self.root.name or self.root} "
                "(ids look like Abyssinian_1)"
            )
        return image_id

    def image_path(self, image_id: str) -> Path:
        return self.root / IMAGES_DIR / f"{self.require(image_id)}.jpg"

    def trimap_path(self, image_id: str) -> Path:
        return self.root / TRIMAPS_DIR / f"{self.require(image_id)}.png"

    def __contains__(self, image_id: object) -> bool:
        return isinstance(image_id, str) and image_id in self._ids

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        kind = "synthetic" if self.synthetic else "dataset"
        return f"<Dataset {kind} {self.root}: {len(self)} images, {len(self.problems)} problems>"


def open_dataset(root: Path, workspace: Path) -> Dataset:
    """Index ``root`` (or reuse the cached index when nothing changed) and return the dataset."""
    root = Path(root).expanduser().absolute()
    _check_root(root)
    listing = _Listing.scan(root)
    fingerprint = listing.fingerprint()
    cache = Path(workspace).expanduser().absolute() / "index" / f"{fingerprint}.parquet"
    cached = _read_index(cache)
    if cached is not None:
        table, problems = cached
    else:
        table, problems = _build_index(root, listing)
        _write_index(cache, table, problems)
    return Dataset(root, fingerprint, listing.synthetic, table, problems)


def _check_root(root: Path) -> None:
    if not root.exists():
        raise PetSegError(f"no dataset at {root}: {_GET_DATA}")
    if not root.is_dir():
        raise PetSegError(f"{root} is a file, not a dataset folder: {_GET_DATA}")
    if (root / DOWNLOAD_DIR / DOWNLOAD_UNFINISHED).exists():
        raise PetSegError(f"the download into {root} did not finish: run `python -m core download --data {root}` again")
    if not (root / IMAGES_DIR).is_dir():
        raise PetSegError(f"{root} has no images/ folder, so it is not a dataset in the official layout: {_GET_DATA}")
    if not _inside(os.path.realpath(root), root / IMAGES_DIR):
        raise PetSegError(
            f"{root}/images/ is a link to a folder outside the dataset folder, which PetSeg does not follow: "
            "open the folder that holds the real images/ and annotations/ as --data, or copy the images in"
        )


# --- loading pixels ---------------------------------------------------------------------------------------------


def load_image(ds: Dataset, image_id: str) -> np.ndarray:
    """The image as an (H, W, 3) uint8 RGB array, whatever its bytes (PNG, GIF, CMYK, grayscale, palette, alpha)."""
    with open_photo(ds, image_id) as im:
        try:
            im.load()
            return _to_rgb(im)
        except Exception as exc:  # PIL raises many types for bad bytes; all mean "cannot decode"
            raise _undecodable(image_id, exc) from exc


def open_photo(ds: Dataset, image_id: str) -> Image.Image:
    """The photo as a PIL image with only its header read, after the checks every reader of photos needs:
    the file lies inside the dataset folder and has at most ``MAX_PHOTO_PIXELS``. ``ImageUnreadable`` otherwise.

    For readers that decode on their own terms (a thumbnail's ``draft``); use it as a context manager.
    """
    path = ds.image_path(image_id)
    if not _inside(ds.real_root, path):
        raise ImageUnreadable(f"image {image_id}: {IMAGES_DIR}/{image_id}.jpg {_OUTSIDE}; copy the file in instead")
    try:
        im = Image.open(path)
    except FileNotFoundError as exc:
        raise ImageUnreadable(f"image {image_id} is no longer on disk: reopen the dataset to reindex") from exc
    except Exception as exc:
        raise _undecodable(image_id, exc) from exc
    if im.width * im.height > MAX_PHOTO_PIXELS:
        size = im.size
        im.close()
        raise ImageUnreadable(f"image {image_id}: {_too_many_pixels(*size)}; downscale the file to use it")
    return im


def _undecodable(image_id: str, exc: BaseException) -> ImageUnreadable:
    return ImageUnreadable(
        f"image {image_id} cannot be decoded ({_reason(exc)}): replace the file, or leave it out of training "
        "and evaluation"
    )


def _too_many_pixels(width: int, height: int) -> str:
    return (f"{width}x{height} pixels ({width * height / 1e6:.0f} MP) is above the "
            f"{MAX_PHOTO_PIXELS // 1_000_000}-megapixel cap for photos, so it is not decoded")


def load_trimap(ds: Dataset, image_id: str) -> np.ndarray | None:
    """The official trimap as (H, W) uint8 with values 1/2/3; None when the image has no trimap file.

    A trimap that cannot be decoded, has another size than its image or holds values outside {1, 2, 3}
    raises ``ImageUnreadable``: it is not ground truth anyone should train or score against.
    """
    path = ds.trimap_path(image_id)
    if not _inside(ds.real_root, path):
        raise ImageUnreadable(f"trimap for {image_id}: {TRIMAPS_DIR}/{image_id}.png {_OUTSIDE}: {_NO_GT}")
    if not path.is_file():
        return None
    try:
        trimap = _decode_trimap(path)
    except Exception as exc:
        raise ImageUnreadable(f"trimap for {image_id} cannot be decoded ({_reason(exc)}): {_NO_GT}") from exc
    row = ds.table.loc[image_id]
    issues = _trimap_issues(trimap, (int(row["width"]), int(row["height"])) if row["readable"] else None)
    if issues:
        raise ImageUnreadable(f"trimap for {image_id}: {issues[0][1]}: {_NO_GT}")
    return trimap


_NO_GT = "the image is shown without ground truth and left out of IoU statistics"
_OUTSIDE = "is a link to a file outside the dataset folder, which PetSeg does not read"


def _inside(real_root: str, path: Path | str) -> bool:
    """True when ``path`` (links resolved) is ``real_root`` or lies under it."""
    real = os.path.realpath(path)
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def _to_rgb(im: Image.Image) -> np.ndarray:
    if im.mode == "RGB":
        return np.array(im, dtype=np.uint8)
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # 16-bit and float grayscale: PIL's own conversion clips instead of scaling.
        values = np.asarray(im, dtype=np.float32)
        if values.max(initial=0) > 255:
            values = values / 257.0
        gray = np.clip(values, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info):
        # Flatten transparency onto white, as a browser shows it; the pixels under alpha 0 are arbitrary.
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.array(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8)
    return np.array(im.convert("RGB"), dtype=np.uint8)


def _decode_trimap(path: Path) -> np.ndarray:
    return decode_label_png(path.read_bytes(), what="the trimap file")


def _trimap_issues(trimap: np.ndarray, image_size: tuple[int, int] | None) -> list[tuple[str, str]]:
    issues = []
    height, width = trimap.shape
    if image_size is not None and (width, height) != image_size:
        issues.append(("trimap-size", f"trimap is {width}x{height} but the image is {image_size[0]}x{image_size[1]}"))
    if trimap.size and (trimap.min() < PET or trimap.max() > BORDER):
        counts = np.bincount(trimap.ravel(), minlength=256)
        bad = [int(v) for v in np.flatnonzero(counts) if v not in TRIMAP_VALUES]
        share = counts[bad].sum() / trimap.size
        shown = ", ".join(map(str, bad[:6])) + (", ..." if len(bad) > 6 else "")
        issues.append(("trimap-values", f"values {shown} outside {{1, 2, 3}} in {share:.1%} of the pixels"))
    elif not trimap.size:
        issues.append(("trimap-size", "the trimap is empty (0 pixels)"))
    return issues


def _reason(exc: BaseException) -> str:
    """A short cause for a message, without the file path PIL likes to include."""
    if isinstance(exc, UnidentifiedImageError):
        return "not an image format Pillow knows"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:120]


# --- scanning the folder ----------------------------------------------------------------------------------------


@dataclass
class _Listing:
    """What ``os.scandir`` says about the files the index depends on: name -> (size, mtime_ns)."""

    images: dict[str, tuple[int, int]]
    trimaps: dict[str, tuple[int, int]] | None  # None: no annotations/trimaps folder
    lists: dict[str, tuple[int, int] | None]
    synthetic: bool
    marker: tuple[int, int] | None
    outside: frozenset[str]  # relative paths of links that resolve outside the root: never opened

    @classmethod
    def scan(cls, root: Path) -> _Listing:
        real_root = os.path.realpath(root)
        outside: set[str] = set()
        lists = {}
        for name in (LIST_FILE, TRAINVAL_FILE, TEST_FILE):
            rel = f"{ANNOTATIONS_DIR}/{name}"
            if _inside(real_root, root / rel):
                lists[name] = _stat(root / rel)
            else:
                outside.add(rel)
                lists[name] = _stat(root / rel, follow=False)
        if _inside(real_root, root / TRIMAPS_DIR):
            trimaps = _scan_dir(root / TRIMAPS_DIR, real_root, TRIMAPS_DIR, outside)
        else:
            outside.add(TRIMAPS_DIR)
            trimaps = None
        marker = _stat(root / SYNTHETIC_MARKER)
        return cls(
            images=_scan_dir(root / IMAGES_DIR, real_root, IMAGES_DIR, outside) or {},
            trimaps=trimaps,
            lists=lists,
            synthetic=marker is not None,
            marker=marker,
            outside=frozenset(outside),
        )

    def fingerprint(self) -> str:
        lines = [f"petseg-index-v{INDEX_VERSION}"]
        for section, entries in (("images", self.images), ("trimaps", self.trimaps or {})):
            lines.append(f"[{section}] {self.trimaps is not None}")
            lines += [f"{name}\0{size}\0{mtime}" for name, (size, mtime) in sorted(entries.items())]
        lines += [f"{name}\0{stat}" for name, stat in sorted(self.lists.items()) + [(SYNTHETIC_MARKER, self.marker)]]
        lines += [f"[outside] {rel}" for rel in sorted(self.outside)]
        return hashlib.blake2b("\n".join(lines).encode("utf-8", "surrogateescape"), digest_size=12).hexdigest()


def _stat(path: Path, follow: bool = True) -> tuple[int, int] | None:
    try:
        st = path.stat() if follow else path.lstat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns) if not follow or path.is_file() else None


def _scan_dir(folder: Path, real_root: str, rel: str, outside: set[str]) -> dict[str, tuple[int, int]] | None:
    """name -> (size, mtime_ns) of the files in ``folder``; links leading out of the root are added to
    ``outside`` and listed with the link's own stat, so the index notices them without touching the target."""
    try:
        iterator = os.scandir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return None
    entries = {}
    with iterator:
        for entry in iterator:
            try:
                if entry.is_symlink() and not _inside(real_root, entry.path):
                    outside.add(f"{rel}/{entry.name}")
                    st = entry.stat(follow_symlinks=False)
                    entries[entry.name] = (st.st_size, st.st_mtime_ns)
                elif entry.is_file():
                    st = entry.stat()
                    entries[entry.name] = (st.st_size, st.st_mtime_ns)
            except OSError:  # vanished between listing and stat
                continue
    return entries


# --- building the index -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _ListEntry:
    class_id: int
    species: int
    breed_id: int
    where: str  # "annotations/list.txt:12"


def _build_index(root: Path, listing: _Listing) -> tuple[pd.DataFrame, list[Problem]]:
    folder_problems: list[Problem] = []
    image_problems: dict[str, list[tuple[str, str]]] = {}

    ids = _ids_in(listing.images, ".jpg", IMAGES_DIR, folder_problems)
    id_set = set(ids)
    if TRIMAPS_DIR in listing.outside:
        folder_problems.append(Problem(TRIMAPS_DIR, "outside-link", f"{TRIMAPS_DIR}/ {_OUTSIDE}: {_NO_GT}"))
        trimap_ids = set()
    elif listing.trimaps is None:
        detail = f"there is no {TRIMAPS_DIR}/ folder: images are shown without ground truth"
        folder_problems.append(Problem(TRIMAPS_DIR, "missing-folder", detail))
        trimap_ids: set[str] = set()
    else:
        trimap_ids = set(_ids_in(listing.trimaps, ".png", TRIMAPS_DIR, folder_problems))
        for orphan in sorted(trimap_ids - id_set):
            image_problems.setdefault(orphan, []).append(
                ("orphan-trimap", f"{TRIMAPS_DIR}/{orphan}.png has no image {IMAGES_DIR}/{orphan}.jpg")
            )

    labels, split_of, list_problems = _read_lists(root, listing)
    for image_id, entries in labels.items():
        if image_id not in id_set:
            image_problems.setdefault(image_id, []).append(
                ("missing-image", f"listed in {entries[0].where} but {IMAGES_DIR}/{image_id}.jpg is not on disk")
            )

    jobs = [(i, i in trimap_ids and f"{TRIMAPS_DIR}/{i}.png" not in listing.outside, listing.images[f"{i}.jpg"][0],
             f"{IMAGES_DIR}/{i}.jpg" in listing.outside) for i in ids]
    inspected = _inspect_all(root, jobs)

    rows = []
    for image_id, (width, height, readable, has_trimap, fraction, issues) in zip(ids, inspected, strict=True):
        breed = breed_of(image_id)
        species = species_of(breed)
        entries = labels.get(image_id, [])
        issues = list(issues)
        if breed in BREEDS:
            class_id = BREEDS.index(breed) + 1
        else:
            class_id = entries[0].class_id if entries else 0
            issues.append(("unknown-breed", f"breed {breed!r} (from the file name) is not one of the 37 official ones"))
        for entry in entries:
            if breed in BREEDS and entry.class_id != class_id:
                issues.append(("label-mismatch", f"{entry.where} gives class {entry.class_id} "
                                                 f"({BREEDS[entry.class_id - 1]}) but the file name says {breed}"))
            elif SPECIES[entry.species - 1] != species:
                issues.append(("label-mismatch", f"{entry.where} gives species {SPECIES[entry.species - 1]} "
                                                 f"but the file name says {species}"))
        if f"{TRIMAPS_DIR}/{image_id}.png" in listing.outside:
            issues.append(("outside-link", f"{TRIMAPS_DIR}/{image_id}.png {_OUTSIDE}: {_NO_GT}"))
        if not has_trimap and image_id not in trimap_ids:
            issues.append(("missing-trimap", f"{TRIMAPS_DIR}/{image_id}.png is missing: {_NO_GT}"))
        image_problems.setdefault(image_id, []).extend(issues)
        rows.append((image_id, breed, class_id, species, split_of.get(image_id, "unlisted"), width, height,
                     readable, has_trimap, fraction, ",".join(kind for kind, _ in image_problems[image_id])))

    table = _typed(pd.DataFrame.from_records(rows, columns=list(COLUMNS)))
    per_image = [Problem(i, kind, detail) for i in sorted(image_problems) for kind, detail in image_problems[i]]
    problems = folder_problems + list_problems + per_image
    return table, problems


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.astype(COLUMNS)
    frame.index = pd.Index(frame["image_id"].tolist(), dtype="str")
    return frame.sort_index()


def _ids_in(entries: dict[str, tuple[int, int]], suffix: str, folder: str, problems: list[Problem]) -> list[str]:
    """Valid ids among a folder's file names; every other file is reported, never used as a path."""
    ids, hidden = [], 0
    for name in sorted(entries):
        stem, ext = os.path.splitext(name)
        if name.startswith("."):
            hidden += 1  # macOS "._" resource forks (the official trimaps folder has one per file) and the like
        elif ext != suffix:
            problems.append(Problem(f"{folder}/{_safe(name, 60)}", "stray-file", f"not a {suffix} file; ignored"))
        elif not is_image_id(stem):
            problems.append(Problem(f"{folder}/{_safe(name, 60)}", "bad-name",
                                    f"the name is not <Breed>_<number>{suffix}; ignored"))
        else:
            ids.append(stem)
    if hidden:
        problems.append(Problem(f"{folder}/", "hidden-files", f"{hidden} hidden file(s) starting with '.' ignored"))
    return ids


def _read_lists(root: Path, listing: _Listing) -> tuple[dict[str, list[_ListEntry]], dict[str, str], list[Problem]]:
    """Each id's list rows (one per file) and split; malformed lines are reported and skipped."""
    labels: dict[str, list[_ListEntry]] = {}
    split_of: dict[str, str] = {}
    problems: list[Problem] = []
    for name, split in ((LIST_FILE, None), (TRAINVAL_FILE, "trainval"), (TEST_FILE, "test")):
        rel = f"{ANNOTATIONS_DIR}/{name}"
        what = "labels come from the file names" if split is None else f"no image is assigned to {split}"
        if rel in listing.outside or not _inside(os.path.realpath(root), root / rel):
            problems.append(Problem(rel, "outside-link", f"{rel} {_OUTSIDE}: {what}"))
            continue
        if listing.lists[name] is None:
            problems.append(Problem(rel, "missing-list", f"{rel} is missing: {what}"))
            continue
        seen: set[str] = set()
        for entry_id, entry in _parse_list(root / rel, rel, problems):
            if entry_id in seen:
                problems.append(Problem(entry.where, "duplicate-line", f"{entry_id} is listed again; ignored"))
                continue
            seen.add(entry_id)
            labels.setdefault(entry_id, []).append(entry)
            if split is None:
                continue
            if entry_id in split_of and split_of[entry_id] != split:
                problems.append(Problem(entry.where, "split-conflict",
                                        f"{entry_id} is in both {split_of[entry_id]} and {split}; kept in "
                                        f"{split_of[entry_id]}"))
                continue
            split_of[entry_id] = split
    return labels, split_of, problems


def _parse_list(path: Path, rel: str, problems: list[Problem]) -> Iterable[tuple[str, _ListEntry]]:
    try:
        text = path.read_bytes().decode("utf-8", errors="replace").lstrip("\ufeff")
    except OSError as exc:
        problems.append(Problem(rel, "unreadable-list", f"{rel} cannot be read ({_reason(exc)}); skipped"))
        return
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{rel}:{number}"
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        # Details name the line and, when the first field is a valid id, that id; never the raw content,
        # which may be anything a link or a hostile file put there.
        fields = stripped.split()
        image_id = fields[0]
        named = f"{image_id}: " if is_image_id(image_id) else ""
        if len(fields) != 4:
            problems.append(Problem(where, "malformed-line", f"{named}{len(fields)} field(s) instead of 4 "
                                                             "('<image> <class-id> <species> <breed-id>'); skipped"))
            continue
        if not named:
            problems.append(Problem(where, "malformed-line", "the first field is not an image id; skipped"))
            continue
        try:
            class_id, species, breed_id = (int(n) for n in fields[1:])
        except ValueError:
            problems.append(Problem(where, "malformed-line", f"{named}non-numeric labels; skipped"))
            continue
        if not (1 <= class_id <= len(BREEDS) and species in (1, 2) and breed_id >= 1):
            problems.append(Problem(where, "malformed-line",
                                    f"{named}labels out of range (class 1..37, species 1..2, breed id 1..); skipped"))
            continue
        yield image_id, _ListEntry(class_id, species, breed_id, where)


# --- inspecting files (the cold path) ---------------------------------------------------------------------------

# Per image: width, height, readable, has_trimap (usable), gt_pet_fraction, [(kind, detail), ...]
_Inspected = tuple[int, int, bool, bool, float, list[tuple[str, str]]]


def _inspect_all(root: Path, jobs: list[tuple[str, bool, int, bool]]) -> list[_Inspected]:
    """Inspect every image; PIL and zlib release the GIL while reading and inflating, so threads overlap."""
    if len(jobs) < _PARALLEL_FROM:
        return [_inspect_one(root, *job) for job in jobs]
    workers = min(4, (os.cpu_count() or 1) + 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda job: _inspect_one(root, *job), jobs, chunksize=64))


def _inspect_one(root: Path, image_id: str, trimap_on_disk: bool, file_size: int, image_outside: bool) -> _Inspected:
    if image_outside:
        width, height, readable = 0, 0, False
        issues = [("outside-link", f"{IMAGES_DIR}/{image_id}.jpg {_OUTSIDE}: cannot be shown or trained on")]
    else:
        width, height, readable, issues = _inspect_image(root / IMAGES_DIR / f"{image_id}.jpg", file_size)
    if not trimap_on_disk:
        return width, height, readable, False, math.nan, issues
    try:
        trimap = _decode_trimap(root / TRIMAPS_DIR / f"{image_id}.png")
    except Exception as exc:
        issues.append(("trimap-unreadable", f"the trimap cannot be decoded ({_reason(exc)}): {_NO_GT}"))
        return width, height, readable, False, math.nan, issues
    trimap_issues = _trimap_issues(trimap, (width, height) if readable else None)
    if trimap_issues:
        issues.extend((kind, f"{detail}: {_NO_GT}") for kind, detail in trimap_issues)
        return width, height, readable, False, math.nan, issues
    fraction = np.count_nonzero(trimap == PET) / trimap.size
    return width, height, readable, True, fraction, issues


_MODE_NOTES = {
    "CMYK": ("cmyk", "CMYK image; converted to RGB when loaded"),
    "L": ("grayscale", "grayscale image; converted to RGB when loaded"),
    "LA": ("grayscale", "grayscale image with transparency; flattened onto white and converted to RGB when loaded"),
    "1": ("grayscale", "black-and-white image; converted to RGB when loaded"),
    "P": ("palette", "palette image; converted to RGB when loaded"),
    "PA": ("palette", "palette image with transparency; flattened onto white when loaded"),
    "RGBA": ("alpha", "RGBA image; transparency flattened onto white when loaded"),
}


def _inspect_image(path: Path, file_size: int) -> tuple[int, int, bool, list[tuple[str, str]]]:
    """Header-only look at an image: size, format, mode; a full decode only when the file ends suspiciously."""
    if file_size == 0:
        return 0, 0, False, [("corrupt", "empty file (0 bytes): cannot be shown or trained on")]
    try:
        im = Image.open(path)
    except Image.DecompressionBombError as exc:
        return 0, 0, False, [("too-large", f"{_reason(exc)}: cannot be shown or trained on")]
    except Exception as exc:
        return 0, 0, False, [("corrupt", f"not a readable image ({_reason(exc)}): cannot be shown or trained on")]
    issues: list[tuple[str, str]] = []
    with im:
        fmt, mode, (width, height) = im.format or "unknown", im.mode, im.size
        if width * height > MAX_PHOTO_PIXELS:  # from the header: nothing decoded yet
            return 0, 0, False, [("too-large", f"{_too_many_pixels(width, height)}: cannot be shown or trained on")]
        clean_end = fmt == "JPEG" and _jpeg_ends_cleanly(path, file_size)
        if not clean_end:
            # Rare (non-JPEG bytes, or a JPEG without its end marker): decode to know whether it is usable.
            try:
                im.load()
            except Exception as exc:
                kind = "truncated" if fmt == "JPEG" or "truncated" in str(exc) else "corrupt"
                detail = f"{width}x{height} {fmt} that does not decode ({_reason(exc)}): cannot be shown or trained on"
                return 0, 0, False, [(kind, detail)]
    if fmt != "JPEG":
        issues.append(("not-jpeg", f"{fmt} data behind a .jpg name; read as RGB"))
    if mode in _MODE_NOTES:
        issues.append(_MODE_NOTES[mode])
    elif mode not in ("RGB", "YCbCr"):
        issues.append(("color-mode", f"{mode} image; converted to RGB when loaded"))
    return width, height, True, issues


def _jpeg_ends_cleanly(path: Path, file_size: int) -> bool:
    """A complete JPEG has its end-of-image marker (FF D9) at the end, give or take a little padding."""
    with open(path, "rb") as handle:
        handle.seek(max(0, file_size - 256))
        return b"\xff\xd9" in handle.read()


# --- the index cache --------------------------------------------------------------------------------------------

_META_KEY = b"petseg"


def _write_index(path: Path, table: pd.DataFrame, problems: list[Problem]) -> None:
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    meta = json.dumps({"version": INDEX_VERSION, "problems": [[p.image, p.kind, p.detail] for p in problems]})
    arrow = arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), _META_KEY: meta.encode()})
    try:
        with atomic_open(path) as handle:
            pq.write_table(arrow, handle)
        _prune(path.parent, keep=path)
    except OSError:
        pass  # an unwritable workspace costs a cold start next time, not a failure now


def _read_index(path: Path) -> tuple[pd.DataFrame, list[Problem]] | None:
    try:
        arrow = pq.read_table(path)
        meta = json.loads(arrow.schema.metadata[_META_KEY])
        if meta.get("version") != INDEX_VERSION or list(arrow.column_names) != list(COLUMNS):
            return None
        table = _typed(arrow.to_pandas())
        problems = [Problem(*p) for p in meta["problems"]]
    except (OSError, KeyError, ValueError, TypeError, pa.ArrowException):
        return None  # missing or damaged cache: rebuild
    os.utime(path)  # recently used caches survive pruning
    return table, problems


def _prune(folder: Path, keep: Path) -> None:
    caches = sorted(folder.glob("*.parquet"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in [c for c in caches if c != keep][INDEX_KEEP - 1:]:
        old.unlink(missing_ok=True)


# --- summaries --------------------------------------------------------------------------------------------------


def summarize(ds: Dataset) -> dict:
    """The ``info --json`` object: counts per split, species and breed, and every problem found."""
    table = ds.table
    present = table["breed"].value_counts()
    order = [b for b in BREEDS if b in present] + sorted(b for b in present.index if b not in BREEDS)
    return {
        "images": len(table),
        "with_trimap": int(table["has_trimap"].sum()),
        "splits": {split: int((table["split"] == split).sum()) for split in SPLITS},
        "species": {species: int((table["species"] == species).sum()) for species in SPECIES},
        "breeds": {breed: int(present[breed]) for breed in order},
        "problems": [{"image": p.image, "kind": p.kind, "detail": p.detail} for p in ds.problems],
    }


def format_summary(summary: dict, max_problems: int = 40) -> str:
    """``summarize``'s dict as text for a terminal."""
    splits, species, breeds, problems = summary["splits"], summary["species"], summary["breeds"], summary["problems"]
    lines = [
        f"{summary['images']} images, {summary['with_trimap']} with a usable trimap",
        "splits:  " + ", ".join(f"{name} {count}" for name, count in splits.items()),
        "species: " + ", ".join(f"{name} {count}" for name, count in species.items()),
        f"breeds ({len(breeds)}):",
    ]
    width = max((len(name) for name in breeds), default=0)
    lines += [f"  {name:<{width}}  {count}" for name, count in breeds.items()]
    if not problems:
        lines.append("problems: none")
        return "\n".join(lines)
    kinds: dict[str, int] = {}
    for problem in problems:
        kinds[problem["kind"]] = kinds.get(problem["kind"], 0) + 1
    lines.append(f"problems ({len(problems)}): " + ", ".join(f"{kind} {count}" for kind, count in kinds.items()))
    lines += [f"  {p['image']}: {p['kind']}: {p['detail']}" for p in problems[:max_problems]]
    if len(problems) > max_problems:
        lines.append(f"  ... and {len(problems) - max_problems} more (see `python -m core info --json`)")
    return "\n".join(lines)
