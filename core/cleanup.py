"""Remove what crashes and save conflicts leave in the workspace; ``python -m core gc`` is its command.

    >>> from core.cleanup import collect
    >>> report = collect(settings, dry_run=True)
    >>> print(report.text())
    would remove runs/quick-1/.best.pt.k2j3h4g5.tmp (temporary of an interrupted write)
    would remove masks/3f/3f2a....png (mask file no correction references)
    2 files would be removed (dry run)

Two kinds of leftovers:

- temporaries of :mod:`core.atomic` writes (``.<name>.<random>.tmp``, e.g. a checkpoint being written when
  the process died) anywhere in the workspace outside ``masks/``: removed when older than an hour and not
  locked by their writer, so a write in progress is never touched. This part is safe at any time and runs by
  itself at the start of :func:`core.train.train` and :func:`core.export.export_archive`
  (:func:`sweep_stale`), whoever calls them (CLI, background job, Python).
- mask files no ledger row references (a save that lost a conflict after writing its PNG) and temporaries
  in ``masks/.incoming``: removed by :func:`core.ledger.garbage` under the store's exclusive
  lock, so saves in flight finish first. Only when the ledger database exists: without it every mask file
  would look unreferenced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core import ledger
from core.atomic import STALE_AFTER, sweep_temporaries
from core.config import Settings

_OWN_CLEANUP = ("masks",)  # folders with their own lock-protected clean-up (core.ledger)


@dataclass
class CleanupReport:
    dry_run: bool
    temporaries: list[str] = field(default_factory=list)  # workspace-relative paths
    masks: list[str] = field(default_factory=list)
    skipped: str = ""  # why the mask files were left alone, if they were

    def text(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        lines = [f"{verb} {path} (temporary of an interrupted write)" for path in self.temporaries]
        lines += [f"{verb} {path} (mask file no correction references)" for path in self.masks]
        if self.skipped:
            lines.append(self.skipped)
        count = len(self.temporaries) + len(self.masks)
        files = f"{count} file{'' if count == 1 else 's'}"
        lines.append(f"{files} would be removed (dry run)" if self.dry_run else f"{files} removed")
        return "\n".join(lines)


def sweep_stale(settings: Settings, older_than: float = STALE_AFTER) -> list[Path]:
    """Remove stale, unlocked atomic-write temporaries from the workspace (safe while other jobs run)."""
    return sweep_temporaries(settings.workspace, older_than=older_than, skip=_OWN_CLEANUP)


def collect(settings: Settings, *, dry_run: bool = False, older_than: float = STALE_AFTER) -> CleanupReport:
    """Remove (or with ``dry_run`` only list) every leftover described in the module docstring."""
    report = CleanupReport(dry_run=dry_run)
    found = sweep_temporaries(settings.workspace, older_than=older_than, dry_run=dry_run, skip=_OWN_CLEANUP)
    report.temporaries = [p.relative_to(settings.workspace).as_posix() for p in found]
    if not settings.db_path.is_file():
        if settings.masks_dir.is_dir():
            report.skipped = f"mask files left alone: there is no corrections database at {settings.db_path}"
        return report
    report.masks = ledger.garbage(settings, remove=not dry_run)
    return report
