"""Read an import that is a zip or an unpacked folder through one interface, with limits checked before reading.

    >>> from core.interop.source import open_source
    >>> source = open_source(Path("cvat-export.zip"))
    >>> [n for n in source.names() if n.startswith("SegmentationClass/")][:1]
    ['SegmentationClass/Abyssinian_1.png']
    >>> data = source.read("labelmap.txt")

Names are relative POSIX paths. A zip member that would land outside the folder (absolute, ``..``), a symbolic
link, and anything larger than :data:`MAX_FILE_BYTES` (or a zip whose declared contents exceed
:data:`MAX_TOTAL_BYTES`) are refused with the reason before a byte is decompressed; macOS's ``__MACOSX/`` and
hidden files are skipped.
"""

from __future__ import annotations

import os
import stat
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from core.errors import PetSegError

MAX_FILE_BYTES = 64 * 1024 * 1024  # a mask PNG or a tasks JSON entry; no single label file is near this
MAX_TOTAL_BYTES = 8 * 1024 * 1024 * 1024  # the whole zip, uncompressed (a full export with photos is ~1 GB)
MAX_ENTRIES = 200_000


@dataclass(frozen=True)
class MaskFile:
    """One mask found in an import: where it came from, the image id it names, and how to decode it."""

    name: str  # the file (and entry) it came from, for the per-file report
    stem: str  # the image id it claims (checked against the dataset by the importer)
    # (height, width) of the photo -> (trimap-coded mask, how it was coded); raises PetSegError with the reason
    load: Callable[[tuple[int, int]], tuple[np.ndarray, str]]


class Source:
    """A zip or a folder, read by relative name."""

    def __init__(self, path: Path):
        self.path = path

    def names(self) -> list[str]:
        raise NotImplementedError

    def read(self, name: str, limit: int = MAX_FILE_BYTES) -> bytes:
        raise NotImplementedError

    def describe(self, name: str) -> str:
        return name


class FolderSource(Source):
    def __init__(self, path: Path):
        super().__init__(path)
        self._names: list[str] = []
        for root, dirs, files in os.walk(path, followlinks=False):
            dirs[:] = sorted(d for d in dirs if not _skipped(d))
            rel = Path(root).relative_to(path)
            self._names += [(rel / f).as_posix() for f in sorted(files) if not _skipped(f)]
            if len(self._names) > MAX_ENTRIES:
                raise PetSegError(f"{path} holds more than {MAX_ENTRIES:,} files; point to the export folder itself")

    def names(self) -> list[str]:
        return list(self._names)

    def read(self, name: str, limit: int = MAX_FILE_BYTES) -> bytes:
        if name not in self._names:
            raise PetSegError(f"{name} is not in {self.path}")
        return _read_file(self.path / name, limit)


def _read_file(full: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    # O_NOFOLLOW: a file swapped for a symlink after the listing is refused, not followed.
    try:
        fd = os.open(full, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise PetSegError(f"cannot be read ({exc.strerror}); a symbolic link is not followed") from exc
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise PetSegError("is not a regular file")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise PetSegError(f"is larger than {limit // (1024 * 1024)} MB; no label file is that big")
    return data


class ZipSource(Source):
    def __init__(self, path: Path):
        super().__init__(path)
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise PetSegError(f"{path} is not a readable zip file ({exc})") from exc
        infos = self._zip.infolist()
        if len(infos) > MAX_ENTRIES:
            raise PetSegError(f"{path} holds more than {MAX_ENTRIES:,} entries; this is not a PetSeg-sized export")
        total = sum(i.file_size for i in infos)
        if total > MAX_TOTAL_BYTES:
            raise PetSegError(f"{path} would unpack to {total / 1e9:,.1f} GB; refused (a full export is ~1 GB)")
        self._infos: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            if info.is_dir():
                continue
            name = PurePosixPath(info.filename)
            if name.is_absolute() or ".." in name.parts or any(_skipped(p) for p in name.parts):
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                continue  # a symlink entry: never followed, never read
            self._infos[name.as_posix()] = info

    def names(self) -> list[str]:
        return sorted(self._infos)

    def read(self, name: str, limit: int = MAX_FILE_BYTES) -> bytes:
        info = self._infos.get(name)
        if info is None:
            raise PetSegError(f"{name} is not in {self.path.name}")
        if info.file_size > limit:
            raise PetSegError(f"is larger than {limit // (1024 * 1024)} MB; no label file is that big")
        try:
            with self._zip.open(info) as handle:
                data = handle.read(limit + 1)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:  # CRC error, truncated entry
            raise PetSegError(f"cannot be read from the zip ({exc})") from exc
        if len(data) > limit:
            raise PetSegError("unpacks to more than its declared size: refused")
        return data

    def describe(self, name: str) -> str:
        return f"{self.path.name}:{name}"


class FileSource(Source):
    """A single file (a Label Studio JSON export) seen as a folder holding only it."""

    def names(self) -> list[str]:
        return [self.path.name]

    def read(self, name: str, limit: int = MAX_FILE_BYTES) -> bytes:
        if name != self.path.name:
            raise PetSegError(f"{name} is not {self.path.name}")
        return _read_file(self.path, limit)


def open_source(path: Path) -> Source:
    """``path`` as a :class:`Source`: a folder, a ``.zip``, or a single file."""
    path = Path(path).expanduser()
    if path.is_symlink():
        raise PetSegError(f"{path} is a symbolic link; point to the file or folder itself")
    if path.is_dir():
        return FolderSource(path)
    if not path.is_file():
        raise PetSegError(f"{path} does not exist")
    if zipfile.is_zipfile(path):
        return ZipSource(path)
    return FileSource(path)


def _skipped(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"
