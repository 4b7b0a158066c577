"""Shared fixtures. Data is generated per test or read from the real 20-image sample."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_ROOT = Path(os.environ.get("PETSEG_SAMPLE", PROJECT_ROOT.parent / "shared" / "data" / "oxford-pet-sample"))


@pytest.fixture(scope="session")
def sample_root() -> Path:
    """The 20 real Oxford-IIIT Pet images (read-only: copy before modifying)."""
    if not (SAMPLE_ROOT / "images").is_dir():
        pytest.fail(f"the real sample is missing at {SAMPLE_ROOT}; set PETSEG_SAMPLE")
    return SAMPLE_ROOT


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "workspace"
    ws.mkdir()
    return ws


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read the developer's own dataset or workspace through the environment."""
    monkeypatch.delenv("PETSEG_DATA", raising=False)
    monkeypatch.delenv("PETSEG_HOME", raising=False)
