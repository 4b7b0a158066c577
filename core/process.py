"""Which process a pid is: an identity recorded when a process starts, so that a later process that got the
same pid (after the first died, or after a reboot) is never taken for it (Linux ``/proc``).

    >>> from core.process import is_process, process_token, signal_if_same
    >>> token = process_token(pid)            # record it with the pid, e.g. in job.json or progress.json
    >>> is_process(pid, token)                # later: still that process, alive (not a zombie)?
    >>> signal_if_same(pid, token, signal.SIGTERM)   # signals only that process; False when it is gone

Used by :mod:`core.jobs` (status, cancel) and by :mod:`core.runs` (is a run's trainer still alive).
"""

from __future__ import annotations

import os
import signal
from pathlib import Path


def _stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (after the command name, which may hold spaces), None without it."""
    try:
        with open(f"/proc/{int(pid)}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError, ValueError):
        return None


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "?"


def process_token(pid: int) -> str | None:
    """Who ``pid`` is: boot id and start time in clock ticks since boot (field 22 of /proc/<pid>/stat).

    Record it when the process starts; a later process that got the same pid (after it died, or after a reboot)
    has another token. None when there is no such process (or no /proc)."""
    return _token(_stat(pid))


def _token(fields: list[str] | None) -> str | None:
    return None if fields is None or len(fields) < 20 else f"{_boot_id()}:{fields[19]}"


def is_process(pid: object, token: object) -> bool:
    """Whether ``pid`` is still the live (not zombie) process ``token`` was recorded for."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or not isinstance(token, str):
        return False
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z" and _token(fields) == token


def process_group(pid: object, token: object) -> int | None:
    """The process group of ``pid`` if it is still the process ``token`` names, else None."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or not isinstance(token, str):
        return None
    fields = _stat(pid)
    if fields is None or fields[0] == "Z" or _token(fields) != token:
        return None
    return int(fields[2])


def signal_if_same(pid: object, token: object, signum: int) -> bool:
    """Send ``signum`` to ``pid`` only if it is still the process ``token`` names; True when sent."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        handle = os.pidfd_open(pid)  # from here on the handle names this process, whatever happens to the pid
    except ProcessLookupError:
        return False
    except OSError:
        handle = None  # a kernel without pidfds: the check right before the signal is the best there is
    try:
        if not is_process(pid, token):
            return False
        if handle is None:
            os.kill(pid, signum)
        else:
            signal.pidfd_send_signal(handle, signum)
        return True
    except ProcessLookupError:
        return False
    finally:
        if handle is not None:
            os.close(handle)
