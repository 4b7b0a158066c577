"""Fetch the official Oxford-IIIT Pet archives, verify them and unpack them so a half-done job never looks done.

    >>> from core.download import download
    >>> download(Path("data/oxford-iiit-pet"))                          # official URLs and md5s (torchvision's)
    >>> download(Path("data/pets"), base_url="http://127.0.0.1:8000/")  # a mirror of the official files
    >>> download(Path("data/ours"), base_url="http://mirror.lan/pets/",  # a mirror of modified archives
    ...          md5s={"images.tar.gz": "0123456789abcdef0123456789abcdef"})

How:

1. ``images.tar.gz`` and ``annotations.tar.gz`` are fetched into ``<root>/.download/`` with torchvision's
   ``download_url`` (progress bar, md5 check). An archive that is already there and verifies is not
   fetched again; a partial or corrupt one is fetched again from the start.
2. Both are unpacked into ``<root>/.download/staging/`` by ``tarfile`` with a filter passed to that one
   ``extractall`` call (nothing process-wide is changed, so two downloads in one server cannot interfere):
   tarfile's ``data`` filter (no member lands outside staging, no links out, no device files) plus a size
   budget checked before each member is written, so an archive that would unpack to far more than the
   official one (a few MB expanding to a GiB) is refused before it fills the disk.
3. ``annotations/`` and then ``images/`` are renamed into ``<root>``. While that happens
   ``.download/unfinished`` exists and ``core.dataset`` refuses the folder; ``images/`` arriving last is
   what makes the folder a dataset. Then ``.download/`` is deleted.

Checksums: every archive must match torchvision's official md5, from the official URLs or from a mirror
(``base_url``): a faithful mirror serves the official bytes, and a checksum served by the mirror itself would
vouch for nothing. For a private mirror of modified archives, pass the md5 you trust explicitly (``md5s``,
``--md5 images.tar.gz=HEX`` on the command line); it replaces the official one for that archive only.
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
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from torchvision.datasets import OxfordIIITPet
from torchvision.datasets.utils import calculate_md5, download_url

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

_MIB = 1024 * 1024
# What an archive may unpack to. The official images.tar.gz (755 MB) unpacks to about 0.8 GB and
# annotations.tar.gz (18 MB) to well under 0.1 GB; the caps leave room for modified archives on a mirror.
EXTRACT_CAP = {"images.tar.gz": 2048 * _MIB, "annotations.tar.gz": 256 * _MIB}
EXPANSION_LIMIT = 20  # unpacked bytes per archive byte: the official archives are about 1x and 3x
EXPANSION_FLOOR = 64 * _MIB  # small archives (a subset on a mirror) may expand more than 20x up to this
MAX_MEMBERS = 100_000  # files per archive (the official ones hold about 7,400 and 19,000)
MAX_MEMBER_BYTES = 256 * _MIB  # one file (the official photos are a few MB at most)

ProgressCallback = Callable[[int, int, str], None]  # (bytes done, bytes total or 0, archive name)


def official_resources() -> tuple[tuple[str, str], ...]:
    """(url, md5) of the official archives, as torchvision's ``OxfordIIITPet`` knows them."""
    resources = tuple(getattr(OxfordIIITPet, "_RESOURCES", ()))
    return resources if len(resources) == 2 else _FALLBACK_RESOURCES


def archive_names() -> list[str]:
    return [url.rsplit("/", 1)[-1] for url, _ in official_resources()]


def parse_md5_options(texts: Iterable[str]) -> dict[str, str]:
    """``["images.tar.gz=HEX", ...]`` (the CLI's ``--md5``) as a dict for :func:`download`'s ``md5s``."""
    md5s = {}
    for text in texts:
        name, sep, md5 = text.partition("=")
        if not sep:
            raise PetSegError(f"--md5 takes NAME=HEX (e.g. images.tar.gz=<32 hex digits>), got {text[:60]!r}")
        md5s[name.strip()] = md5.strip()
    return _checked_md5s(md5s)


def download(
    root: Path,
    base_url: str | None = None,
    *,
    md5s: dict[str, str] | None = None,
    progress: ProgressCallback | None = None,
) -> None:
    """Download, verify and unpack the dataset into ``root`` (see the module docstring for the steps).

    ``md5s``: archive name -> md5 to expect instead of the official one (only with ``base_url``).
    ``progress``: called about four times a second with (bytes done, bytes total or 0, archive name);
    without it a progress bar goes to stderr.
    """
    resources = _resources(base_url, md5s)
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
        for url, md5 in resources:
            name = url.rsplit("/", 1)[-1]
            _fetch(url, work, name, md5, progress)
            archives.append(work / name)
    staging = _extract(archives, work / "staging")
    _move_into_place(staging, root, work)


def _complete(root: Path) -> bool:
    return (root / IMAGES_DIR).is_dir() and (root / ANNOTATIONS_DIR / LIST_FILE).is_file()


def _resources(base_url: str | None, md5s: dict[str, str] | None) -> list[tuple[str, str]]:
    official = official_resources()
    md5s = _checked_md5s(md5s or {})
    if base_url is None:
        if md5s:
            raise PetSegError("--md5 applies only with --base-url: the official URLs serve the official archives")
        return list(official)
    if not base_url.startswith(("http://", "https://")):
        raise PetSegError(f"--base-url must start with http:// or https://, got {base_url[:60]!r}")
    resources = []
    for official_url, official_md5 in official:
        name = official_url.rsplit("/", 1)[-1]
        resources.append((f"{base_url.rstrip('/')}/{name}", md5s.get(name, official_md5)))
    return resources


def _checked_md5s(md5s: dict[str, str]) -> dict[str, str]:
    names = archive_names()
    checked = {}
    for name, md5 in md5s.items():
        if name not in names:
            raise PetSegError(f"--md5 names an archive {str(name)[:60]!r} is not one of {', '.join(names)}")
        if not isinstance(md5, str) or not _MD5.fullmatch(md5):
            raise PetSegError(f"the md5 given for {name} is not 32 hex digits: {str(md5)[:40]!r}")
        checked[name] = md5.lower()
    return checked


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
                                               f"; if this mirror serves a modified archive on purpose, pass the "
                                               f"checksum you trust: --md5 {name}=<32 hex digits>")
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


class ArchiveTooLarge(Exception):
    """An archive would unpack to more than its budget (raised from the extraction filter, before writing)."""


class _Budget:
    """How much one archive may unpack to, checked member by member before each is written."""

    def __init__(self, name: str, archive_bytes: int):
        self.name = name
        cap = EXTRACT_CAP.get(name, min(EXTRACT_CAP.values()))
        self.limit = min(cap, max(EXPANSION_FLOOR, EXPANSION_LIMIT * archive_bytes))
        self.total = 0
        self.members = 0

    def filter(self, member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
        """The ``filter`` of one ``extractall`` call: tarfile's ``data`` filter, then the budget."""
        member = tarfile.data_filter(member, dest)
        self.check(member, dest)
        return member

    def check(self, member: tarfile.TarInfo, dest: str) -> None:
        self.members += 1
        if self.members > MAX_MEMBERS:
            raise ArchiveTooLarge(f"{self.name} holds more than {MAX_MEMBERS:,} files")
        if member.size > MAX_MEMBER_BYTES:
            shown = member.name if len(member.name) <= 80 else member.name[:77] + "..."
            raise ArchiveTooLarge(f"{self.name} has one file ({shown!r}) of more than {_size(MAX_MEMBER_BYTES)}")
        self.total += member.size
        if self.total > self.limit:
            raise ArchiveTooLarge(f"{self.name} would unpack to more than {_size(self.limit)}")


def _size(count: int) -> str:
    if count >= 1024**3:
        return f"{count / 1024**3:.1f} GiB"
    return f"{count / _MIB:.0f} MiB" if count >= _MIB else f"{count // 1024} KiB"


def _extract(archives: list[Path], staging: Path) -> Path:
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for archive in archives:
        archive_bytes = archive.stat().st_size
        budget = _Budget(archive.name, archive_bytes)
        try:
            with tarfile.open(archive, "r:*") as tar:
                tar.extractall(staging, filter=budget.filter)
        except ArchiveTooLarge as exc:
            shutil.rmtree(staging, ignore_errors=True)
            archive.unlink(missing_ok=True)
            raise PetSegError(
                f"{exc} from {_size(archive_bytes)}: refused before unpacking further, and deleted. The official "
                "archive unpacks to far less: check --base-url and any --md5 you passed"
            ) from exc
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
