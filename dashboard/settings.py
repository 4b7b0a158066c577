"""The app's Settings: the folder picked in this session, else $PETSEG_DATA, else the folder picked
last time (remembered in the workspace, so a restart opens the same dataset), else the default.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import streamlit as st

from core.atomic import atomic_write_text
from core.config import DATA_ENV, Settings
from dashboard import state

_PREFS = "dashboard.json"


def current() -> Settings:
    base = Settings.resolve()
    chosen = st.session_state.get(state.DATA_ROOT) or os.environ.get(DATA_ENV) or _remembered_data(base.workspace)
    return Settings.resolve(data=chosen, workspace=base.workspace) if chosen else base


def choose_data(root: Path) -> None:
    settings = Settings.resolve()
    st.session_state[state.DATA_ROOT] = str(root)
    atomic_write_text(settings.workspace / _PREFS, json.dumps({"data": str(root)}))


def _remembered_data(workspace: Path) -> str | None:
    try:
        return json.loads((workspace / _PREFS).read_text()).get("data") or None
    except (OSError, ValueError, AttributeError):
        return None
