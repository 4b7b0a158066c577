"""Remove what crashes leave in the workspace; ``python -m core gc`` is its command.

    >>> from core.cleanup import collect
    >>> report = collect(settings, dry_run=True)
    >>> print(report.text())
    would remove runs/quick-1/.best.pt.k2j3h4g5.tmp (temporary of an interrupted write)
    would remove masks/3f/3f2a....png (mask file the database holds since the store upgrade)
    2 files would be removed (dry run)

Two kinds of leftovers:

- temporaries of :mod:`core.atomic` writes (``.<name>.<random>.tmp``, e.g. a checkpoint being written when
  the process died) anywhere in the workspace: removed when older than an hour and not locked by their
  writer, so a write in progress is never touched. This part is safe at any time and runs by itself at the
  start of :func:`core.train.train` and :func:`core.export.export_archive` (:func:`sweep_stale`), whoever
  calls them (CLI, background job, Python).
- the ``masks/`` folder of a workspace from before mask PNGs moved into the database: a file is removed only
  when the store in use holds the same bytes (same SHA-256), so nothing the upgrade could not move is lost;
  the folder's lock file and interrupted-write temporaries (``masks/.incoming``) go with it.

The database itself leaves nothing to collect: a save writes its row and its mask in one transaction.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from core import store
from core.atomic import STALE_AFTER, sweep_temporaries
from core.config import Settings
from core.store.schema import masks

_LEGACY = ("masks",)  # the old file store: collected below, not by the temporary sweep
_LEGACY_FILE = re.compile(r"([0-9a-f]{2})/(\1[0-9a-f]{62})\.png")


@dataclass
class CleanupReport:
    dry_run: bool
    temporaries: list[str] = field(default_factory=list)  # workspace-relative paths
    masks: list[str] = field(default_factory=list)
    skipped: str = ""  # why the mask files were left alone, if they were

    def text(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        lines = [f"{verb} {path} (temporary of an interrupted write)" for path in self.temporaries]
        lines += [f"{verb} {path} (mask file the database holds since the store upgrade)" for path in self.masks]
        if self.skipped:
            lines.append(self.skipped)
        count = len(self.temporaries) + len(self.masks)
        files = f"{count} file{'' if count == 1 else 's'}"
        lines.append(f"{files} would be removed (dry run)" if self.dry_run else f"{files} removed")
        return "\n".join(lines)


def sweep_stale(settings: Settings, older_than: float = STALE_AFTER) -> list[Path]:
    """Remove stale, unlocked atomic-write temporaries from the workspace (safe while other jobs run)."""
    return sweep_temporaries(settings.workspace, older_than=older_than, skip=_LEGACY)


def collect(settings: Settings, *, dry_run: bool = False, older_than: float = STALE_AFTER) -> CleanupReport:
    """Remove (or with ``dry_run`` only list) every leftover described in the module docstring."""
    report = CleanupReport(dry_run=dry_run)
    found = sweep_temporaries(settings.workspace, older_than=older_than, dry_run=dry_run, skip=_LEGACY)
    report.temporaries = [p.relative_to(settings.workspace).as_posix() for p in found]
    if not settings.masks_dir.is_dir():
        return report
    if not store.exists(settings):
        report.skipped = f"mask files left alone: there is no corrections database at {settings.db_url}"
        return report
    report.masks = _legacy_masks(settings, remove=not dry_run)
    return report


def _legacy_masks(settings: Settings, *, remove: bool) -> list[str]:
    files = {}
    for path in sorted(settings.masks_dir.glob("??/*")):
        match = _LEGACY_FILE.fullmatch(path.relative_to(settings.masks_dir).as_posix())
        if match and path.is_file():
            files[match.group(2)] = path
    with store.reading(settings) as conn:
        held = {sha for (sha,) in conn.execute(sa.select(masks.c.sha256).where(masks.c.sha256.in_(sorted(files))))}
    found = [files[sha] for sha in sorted(held)]
    leftovers = sorted((settings.masks_dir / ".incoming").glob("*")) + [settings.masks_dir / ".lock"]
    found += [p for p in leftovers if p.is_file()]
    if remove:
        for path in found:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        for folder in sorted({p.parent for p in found}, reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(folder)  # only when empty
        with contextlib.suppress(OSError):
            os.rmdir(settings.masks_dir)
    return [p.relative_to(settings.workspace).as_posix() for p in found]
