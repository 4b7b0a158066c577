"""The sidebar shared by every page: which dataset is in use and what it holds."""

from __future__ import annotations

import streamlit as st

from core.config import Settings
from core.errors import PetSegError
from dashboard import data


def sidebar(settings: Settings) -> None:
    with st.sidebar:
        st.caption("Dataset")
        try:
            ds = data.dataset(settings)
        except PetSegError as exc:
            st.error(str(exc))
            return
        if ds is None:
            st.warning("No dataset yet: see Home.")
            st.caption(f"`{settings.data}`")
            return
        kind = "synthetic (generated)" if ds.synthetic else "Oxford-IIIT Pet"
        st.markdown(f"**{len(ds):,} images** · {kind}")
        problems = len(ds.problems)
        st.caption(f"`{settings.data}`  \n{problems} problem{'s' if problems != 1 else ''} found")
