"""Fetch the official Oxford-IIIT Pet archives, verify them and unpack them so a half-done job never looks done.

    >>> from core.download import download
    >>> download(Path("data/oxford-iiit-pet"))                          # official URLs and md5s (torchvision's)
    >>> download(Path("data/pets"), base_url="http://127.0.0.1:8000/")  # a mirror serving the same file names

How (torchvision's dataset utilities do the fetching, checking and unpacking):

1. ``images.tar.gz`` and ``annotations.tar.gz`` are fetched into ``<root>/.download/`` with
   ``download_url`` (progress bar, md5 check). An archive that is already there and verifies is not
   fetched again; a partial or corrupt one is fetched again from the start.
2. Both are unpacked with ``extract_archive`` into ``<root>/.download/staging/``, with tarfile's ``data``
   filter so no archive member can land outside it.
3. ``annotations/`` and then ``images/`` are renamed into ``<root>``. While that happens
   ``.download/unfinished`` exists and ``core.dataset`` refuses the folder; ``images/`` arriving last is
   what makes the folder a dataset. Then ``.download/`` is deleted.

Checksums: the official URLs use torchvision's official md5s. With ``base_url`` (a mirror, or the loopback
server of the tests) the md5 comes from the ``md5s`` argument, else from ``<archive>.md5`` served beside the
archive (``md5sum`` format), else the official one (a faithful mirror serves the official bytes).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import socket
import tarfile
import threading
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from torchvision.datasets import OxfordIIITPet
from torchvision.datasets.utils import calculate_md5, download_url, extract_archive

from core.atomic import fsync_dir
from core.dataset import ANNOTATIONS_DIR, DOWNLOAD_DIR, DOWNLOAD_UNFINISHED, IMAGES_DIR, LIST_FILE
from core.errors import PetSegError

# torchvision keeps the official URLs and checksums; the copy below only covers a torchvision that moved them.
_FALLBACK_RESOURCES = (
    ("https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz", "5c4f3ee8e5d25df40f4fd59a7f44e54c"),
    ("https://www.robots.ox.ac.uk/~vgg/data/pets/data/annotations.tar.gz", "95a8c909bbe2e81eed6a22bccdf3f68f"),
)
NETWORK_TIMEOUT = 60.0  # seconds without a byte before a fetch counts as failed
_MD5 = re.compile(r"[0-9a-fA-F]{32}")

ProgressCallback = Callable[[int, int, str], None]  # (bytes done, bytes total or 0, archive name)


def official_resources() -> tuple[tuple[str, str], ...]:
    """(url, md5) of the official archives, as torchvision's ``OxfordIIITPet`` knows them."""
    resources = tuple(getattr(OxfordIIITPet, "_RESOURCES", ()))
    return resources if len(resources) == 2 else _FALLBACK_RESOURCES


def download(
    root: Path,
    base_url: str | None = None,
    *,
    md5s: dict[str, str] | None = None,
    progress: ProgressCallback | None = None,
) -> None:
    """Download, verify and unpack the dataset into ``root`` (see the module docstring for the steps).

    ``progress``: called about four times a second with (bytes done, bytes total or 0, archive name);
    without it a progress bar goes to stderr.
    """
    root = Path(root).expanduser().absolute()
    work = root / DOWNLOAD_DIR
    if _complete(root) and not (work / DOWNLOAD_UNFINISHED).exists():
        return
    if not work.is_dir() and ((root / IMAGES_DIR).exists() or (root / ANNOTATIONS_DIR).exists()):
        raise PetSegError(
            f"{root} already holds images/ or annotations/ that were not downloaded here: "
            "choose an empty folder for --data, or move them away first"
        )
    try:
        work.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PetSegError(f"cannot create {work}: {exc.strerror or exc}; choose a writable folder for --data") from exc

    archives = []
    with _network_timeout(NETWORK_TIMEOUT):
        for url, md5 in _resources(base_url, md5s):
            name = url.rsplit("/", 1)[-1]
            _fetch(url, work, name, md5, progress)
            archives.append(work / name)
    staging = _extract(archives, work / "staging")
    _move_into_place(staging, root, work)


def _complete(root: Path) -> bool:
    return (root / IMAGES_DIR).is_dir() and (root / ANNOTATIONS_DIR / LIST_FILE).is_file()


def _resources(base_url: str | None, md5s: dict[str, str] | None) -> list[tuple[str, str]]:
    official = official_resources()
    if base_url is None:
        return list(official)
    if not base_url.startswith(("http://", "https://")):
        raise PetSegError(f"--base-url must start with http:// or https://, got {base_url[:60]!r}")
    resources = []
    for official_url, official_md5 in official:
        name = official_url.rsplit("/", 1)[-1]
        url = f"{base_url.rstrip('/')}/{name}"
        md5 = (md5s or {}).get(name) or _served_md5(f"{url}.md5") or official_md5
        if not _MD5.fullmatch(md5):
            raise PetSegError(f"the md5 given for {name} is not 32 hex digits: {md5[:40]!r}")
        resources.append((url, md5.lower()))
    return resources


def _served_md5(url: str) -> str | None:
    """The checksum in an ``md5sum``-style file served beside an archive, or None when there is none."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            text = response.read(4096).decode("ascii", errors="replace")
    except (urllib.error.URLError, OSError, ValueError):
        return None
    token = text.split()[0] if text.split() else ""
    return token if _MD5.fullmatch(token) else None


def _fetch(url: str, folder: Path, name: str, md5: str, progress: ProgressCallback | None) -> None:
    path = folder / name
    try:
        if progress is None:
            download_url(url, str(folder), name, md5)
        else:
            total = _content_length(url)
            _with_progress(lambda: download_url(url, str(folder), name, md5), path, total, name, progress)
    except RecursionError as exc:  # torchvision's way of saying "too many redirects"
        raise PetSegError(f"cannot fetch {_short(url)}: {exc}; check --base-url") from exc
    except RuntimeError as exc:  # torchvision: "File not found or corrupted." after a failed md5 check
        got = calculate_md5(path) if path.is_file() else "nothing"
        path.unlink(missing_ok=True)
        raise PetSegError(
            f"{name} from {_short(url)} failed its md5 check (expected {md5}, got {got}); the file was deleted: "
            "run the command again to retry" + ("" if url in dict(official_resources()) else
                                               f", or serve the right checksum as {name}.md5 beside the archive")
        ) from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise PetSegError(
            f"cannot fetch {_short(url)} ({reason}): check the network connection (or pass --base-url for a mirror) "
            "and run the command again; offline, generate a demo set with `python -m core synth --out DIR`"
        ) from exc


def _short(url: str) -> str:
    return url if len(url) <= 100 else url[:97] + "..."


def _content_length(url: str) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=30) as response:
            return int(response.headers.get("Content-Length") or 0)
    except (urllib.error.URLError, OSError, ValueError):
        return 0


def _with_progress(fetch: Callable[[], None], path: Path, total: int, name: str, progress: ProgressCallback) -> None:
    """Run ``fetch`` in a thread and report the file's growth from this one, where UI callbacks may draw."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            fetch()
        except BaseException as exc:  # handed to the calling thread below
            failure.append(exc)

    worker = threading.Thread(target=run, name=f"petseg-download-{name}", daemon=True)
    worker.start()
    while True:
        worker.join(0.25)
        done = path.stat().st_size if path.is_file() else 0
        progress(done, max(total, done), name)
        if not worker.is_alive():
            break
    if failure:
        raise failure[0]


@contextlib.contextmanager
def _network_timeout(seconds: float) -> Iterator[None]:
    """torchvision's urlopen calls pass no timeout; a stalled server must not hang the command forever."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


@contextlib.contextmanager
def _safe_tar_members() -> Iterator[None]:
    """Make torchvision's plain ``extractall`` refuse absolute paths, '..', links out and device files."""
    previous = tarfile.TarFile.extraction_filter
    tarfile.TarFile.extraction_filter = staticmethod(tarfile.data_filter)
    try:
        yield
    finally:
        tarfile.TarFile.extraction_filter = previous


def _extract(archives: list[Path], staging: Path) -> Path:
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for archive in archives:
        try:
            with _safe_tar_members():
                extract_archive(str(archive), str(staging))
        except (tarfile.TarError, EOFError, zlib.error, OSError, ValueError) as exc:
            shutil.rmtree(staging, ignore_errors=True)
            archive.unlink(missing_ok=True)
            raise PetSegError(
                f"{archive.name} passed its checksum but cannot be unpacked ({exc}); it was deleted: run the "
                "command again, and if it fails again the source serves a broken archive"
            ) from exc
    missing = [name for name in (IMAGES_DIR, ANNOTATIONS_DIR) if not (staging / name).is_dir()]
    if missing:
        shutil.rmtree(staging, ignore_errors=True)
        raise PetSegError(
            f"the archives unpacked without {' and '.join(f'{m}/' for m in missing)}: they are not the "
            "Oxford-IIIT Pet archives; check --base-url"
        )
    return staging


def _move_into_place(staging: Path, root: Path, work: Path) -> None:
    unfinished = work / DOWNLOAD_UNFINISHED
    unfinished.touch()
    fsync_dir(work)
    for name in (ANNOTATIONS_DIR, IMAGES_DIR):  # images/ last: its arrival is what makes root a dataset
        target = root / name
        if target.exists():  # left by an interrupted earlier move into this same folder (see the guard above)
            shutil.rmtree(target)
        os.replace(staging / name, target)
    fsync_dir(root)
    unfinished.unlink()
    shutil.rmtree(work, ignore_errors=True)
