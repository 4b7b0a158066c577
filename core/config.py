"""The one settings object, resolved as CLI flag > environment variable > default.

    >>> from core.config import Settings
    >>> s = Settings.resolve(data=None, workspace="/tmp/ws")   # data from $PETSEG_DATA or the default
    >>> s.runs_dir
    PosixPath('/tmp/ws/runs')
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from core.errors import PetSegError

DEFAULT_DATA = Path("data/oxford-iiit-pet")
DEFAULT_WORKSPACE = Path("workspace")
DATA_ENV = "PETSEG_DATA"
WORKSPACE_ENV = "PETSEG_HOME"

# Run names become folder names: keep them boring so they can never escape runs/.
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@dataclass(frozen=True)
class Settings:
    data: Path
    workspace: Path

    @classmethod
    def resolve(cls, data: str | Path | None = None, workspace: str | Path | None = None) -> Settings:
        data_path = Path(data) if data else Path(os.environ.get(DATA_ENV) or DEFAULT_DATA)
        workspace_path = Path(workspace) if workspace else Path(os.environ.get(WORKSPACE_ENV) or DEFAULT_WORKSPACE)
        return cls(data=data_path.expanduser().absolute(), workspace=workspace_path.expanduser().absolute())

    @property
    def index_dir(self) -> Path:
        return self.workspace / "index"

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
        return self.workspace / "petseg.sqlite"

    def run_dir(self, name: str) -> Path:
        return self.runs_dir / check_run_name(name)


def check_run_name(name: str) -> str:
    if not isinstance(name, str) or not RUN_NAME.fullmatch(name):
        raise PetSegError(
            f"run name {name!r} is not allowed: "
            "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name
