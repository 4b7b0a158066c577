"""Locks between processes (``flock`` on a lock file): one trainer per run, caches kept while mapped.

    >>> from core.locks import acquire, holder
    >>> lock = acquire(run_dir / ".lock", wait=False, record_pid=True)   # None: another process holds it
    >>> holder(run_dir / ".lock")                                         # that process's pid, when recorded
    >>> with acquire(cache_dir / "x.lock", shared=True):                 # many readers, no exclusive holder
    ...     ...

The kernel drops a lock when its process dies, so a crash or a kill never leaves a stale lock. A lock file
may be deleted by whoever holds it exclusively (pruning a cache): :func:`acquire` then notices that the file
it locked is no longer the one at the path and locks the new one instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


class Lock:
    """A held lock; :meth:`release` (or leaving the ``with`` block, or the process ending) drops it."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self._fd: int | None = fd

    def fileno(self) -> int:
        """The descriptor holding the lock (a child process given it by ``pass_fds`` holds the lock too)."""
        if self._fd is None:
            raise ValueError(f"the lock on {self.path} was released")
        return self._fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def delete(self) -> None:
        """Remove the lock file while still holding it exclusively (waiting processes then lock a new file)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire(path: Path, *, shared: bool = False, wait: bool = True, record_pid: bool = False) -> Lock | None:
    """Lock ``path`` (created when missing). ``wait=False`` returns None instead of waiting for another holder.

    ``record_pid`` writes this process's id into the file of an exclusive lock, for :func:`holder`.
    """
    path = Path(path)
    mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if wait else fcntl.LOCK_NB)
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, mode)
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        if _same_file(path, fd):
            break
        os.close(fd)  # the file was deleted while we waited for it: lock the one at the path now
    if record_pid and not shared:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
    return Lock(path, fd)


def held(path: Path) -> bool:
    """Whether a process holds the exclusive lock on ``path``. Probes with a shared lock, so probes running at
    the same time never mistake each other for the holder; a missing file is never held."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def holder(path: Path) -> int | None:
    """The pid recorded in an exclusive lock file, None when there is none (yet)."""
    try:
        text = Path(path).read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _same_file(path: Path, fd: int) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) == (held.st_dev, held.st_ino)
