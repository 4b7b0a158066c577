"""Crash-safe file writes: temporary file in the same folder, fsync, then rename (or link) into place.

A reader never sees a half-written file: after a crash the path holds either the old content or the new
one, and at worst a ``.<name>.<random>.tmp`` temporary is left beside it, which :func:`sweep_temporaries`
removes once it is stale.

    >>> from core.atomic import atomic_create, atomic_write_bytes
    >>> atomic_write_bytes(Path("out.bin"), b"payload")                 # replaces out.bin
    >>> with atomic_create([Path("a.zip"), Path("a-2.zip")]) as new:    # never replaces: first free name
    ...     new.handle.write(b"zip bytes")
    >>> new.path
    PosixPath('a.zip')
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

TEMP_SUFFIX = ".tmp"
STALE_AFTER = 3600.0  # seconds: a temporary this old whose writer holds no lock is a crash leftover


@contextlib.contextmanager
def atomic_open(path: Path) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path``; on clean exit fsync it and move it into place."""
    path = Path(path)
    with _temporary(path) as (handle, tmp_name):
        yield handle
        _flush(handle)
        os.replace(tmp_name, path)
    fsync_dir(path.parent)


@dataclass
class NewFile:
    handle: BinaryIO
    path: Path | None = None  # the name the content landed under, set when the ``with`` block ends


@contextlib.contextmanager
def atomic_create(names: Iterable[Path]) -> Iterator[NewFile]:
    """Like :func:`atomic_open`, but never replaces a file: the content lands under the first name of ``names``
    (all in one folder) that is free at the moment it is published, even if another process took the others
    while this one was writing."""
    candidates = [Path(name) for name in names]
    with _temporary(candidates[0]) as (handle, tmp_name):
        new = NewFile(handle)
        yield new
        _flush(handle)
        for candidate in candidates:
            if _publish_new(tmp_name, candidate):
                new.path = candidate
                break
        else:
            raise FileExistsError(errno.EEXIST, "every candidate name is taken", str(candidates[-1]))
    fsync_dir(candidates[0].parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_open(path) as handle:
        handle.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def is_temporary(name: str) -> bool:
    """Names :func:`atomic_open` gives its temporaries (``.<name>.<random>.tmp``)."""
    return name.startswith(".") and name.endswith(TEMP_SUFFIX) and len(name) > len(TEMP_SUFFIX) + 1


def sweep_temporaries(
    folder: Path, *, older_than: float = STALE_AFTER, dry_run: bool = False, skip: Iterable[str] = ()
) -> list[Path]:
    """Remove crash leftovers of atomic writes under ``folder`` (recursively) and return them.

    A temporary is removed only when its last change is ``older_than`` seconds ago and no process holds its
    lock (every writer of this module locks its temporary until it is renamed into place), so a write in
    progress is never touched, however slow. ``skip`` names top-level subfolders that have their own
    clean-up (``masks`` and its store lock).
    """
    skipped = {os.path.join(folder, name) for name in skip}
    found: list[Path] = []
    cutoff = time.time() - older_than
    for parent, dirs, files in os.walk(folder):  # tens of thousands of prediction PNGs: keep the loop lean
        if parent == str(folder):
            dirs[:] = [d for d in dirs if os.path.join(parent, d) not in skipped]
        for name in files:
            if is_temporary(name):
                path = Path(parent, name)
                if _stale(path, cutoff) and _remove_unlocked(path, dry_run):
                    found.append(path)
    return sorted(found)


# --- internals ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _temporary(path: Path) -> Iterator[tuple[BinaryIO, str]]:
    """A locked temporary beside ``path``, deleted again unless the body moved it away."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            # Held until the file is closed, i.e. after the rename: sweep_temporaries never removes a live write.
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            yield handle, tmp_name
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def _flush(handle: BinaryIO) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _publish_new(tmp_name: str, target: Path) -> bool:
    """Give the temporary the name ``target`` unless that name exists; False when it does."""
    try:
        os.link(tmp_name, target)  # atomic and fails on an existing name, unlike a rename
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        # A filesystem without hard links: reserve the name, then rename over the reservation.
        try:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            return False
        os.replace(tmp_name, target)
        return True
    os.unlink(tmp_name)
    return True


def _stale(path: Path, cutoff: float) -> bool:
    try:
        st = path.lstat()
    except OSError:
        return False
    return st.st_mtime < cutoff and os.path.isfile(path) and not os.path.islink(path)


def _remove_unlocked(path: Path, dry_run: bool) -> bool:
    """Delete ``path`` if no writer holds its lock (checked by taking the lock ourselves)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # a live process is still writing it
        if not dry_run:
            try:
                os.unlink(path)
            except FileNotFoundError:
                return False
            except OSError:
                return False  # not ours to delete (permissions): leave it
        return True
    finally:
        os.close(fd)
