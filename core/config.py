"""The one settings object, resolved as CLI flag > environment variable > default.

    >>> from core.config import Settings
    >>> s = Settings.resolve(data=None, workspace="/tmp/ws")   # data from $PETSEG_DATA or the default
    >>> s.runs_dir
    PosixPath('/tmp/ws/runs')
    >>> s.db                                                    # --db > $PETSEG_DB > the workspace's SQLite file
    'sqlite:////tmp/ws/petseg.sqlite'
    >>> s.inside_roots("/etc")                                  # PetSegError: outside the dataset parent/workspace
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from core.errors import PetSegError

DEFAULT_DATA = Path("data/oxford-iiit-pet")
DEFAULT_WORKSPACE = Path("workspace")
DB_FILE = "petseg.sqlite"
DATA_ENV = "PETSEG_DATA"
WORKSPACE_ENV = "PETSEG_HOME"
DB_ENV = "PETSEG_DB"  # database URL: sqlite:///file or postgresql://user@host:port/dbname
ROOTS_ENV = "PETSEG_ROOTS"  # os.pathsep-separated folders the dashboard may read datasets from and write into

# Run names become folder names: keep them boring so they can never escape runs/.
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class Settings:
    data: Path
    workspace: Path
    # Folders the dashboard may open, download or generate a dataset in: it has no sign-in yet, so whoever
    # reaches it must not be able to point it anywhere on the machine. Empty: the data folder's parent and the
    # workspace.
    roots: tuple[Path, ...] = ()
    # The store's URL (core.store); empty: the SQLite file in the workspace.
    db: str = ""

    @classmethod
    def resolve(cls, data: str | Path | None = None, workspace: str | Path | None = None,
                roots: Sequence[str | Path] | None = None, db: str | None = None) -> Settings:
        data_path = Path(data) if data else Path(os.environ.get(DATA_ENV) or DEFAULT_DATA)
        workspace_path = Path(workspace) if workspace else Path(os.environ.get(WORKSPACE_ENV) or DEFAULT_WORKSPACE)
        data_path, workspace_path = data_path.expanduser().absolute(), workspace_path.expanduser().absolute()
        if roots is None:
            roots = [r for r in os.environ.get(ROOTS_ENV, "").split(os.pathsep) if r.strip()]
        root_paths = tuple(Path(r).expanduser().absolute() for r in roots) or (data_path.parent, workspace_path)
        db_url = (db or os.environ.get(DB_ENV) or "").strip() or f"sqlite:///{workspace_path / DB_FILE}"
        return cls(data=data_path, workspace=workspace_path, roots=root_paths, db=db_url)

    def inside_roots(self, path: str | Path) -> Path:
        """``path`` made absolute, symlinks resolved, if it lies inside one of :attr:`roots`; else ``PetSegError``."""
        roots = self.roots or (self.data.parent, self.workspace)
        try:
            target = Path(path).expanduser().resolve()
        except (OSError, RuntimeError, ValueError) as exc:
            raise PetSegError(f"cannot use the folder {str(path)[:80]!r}: {exc}") from None
        for root in roots:
            if target.is_relative_to(root.resolve()):
                return target
        allowed = ", ".join(str(r) for r in roots)
        raise PetSegError(f"the folder {str(target)[:120]!r} is outside the folders this server may use ({allowed}); "
                          f"pick one inside them, or start the app with {ROOTS_ENV} listing the folders to allow")

    @property
    def cache_dir(self) -> Path:
        return self.workspace / "cache"

    @property
    def runs_dir(self) -> Path:
        return self.workspace / "runs"

    @property
    def masks_dir(self) -> Path:
        return self.workspace / "masks"

    @property
    def exports_dir(self) -> Path:
        return self.workspace / "exports"

    @property
    def db_path(self) -> Path:
        """The workspace's own SQLite file (the default store; see :attr:`db_url` for the store in use)."""
        return self.workspace / DB_FILE

    @property
    def db_url(self) -> str:
        return self.db or f"sqlite:///{self.db_path}"

    def run_dir(self, name: str) -> Path:
        return self.runs_dir / check_run_name(name)


def check_run_name(name: str) -> str:
    if not isinstance(name, str) or not RUN_NAME.fullmatch(name):
        raise PetSegError(
            f"run name {name!r} is not allowed: "
            "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name
