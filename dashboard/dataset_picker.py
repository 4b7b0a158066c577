"""The three ways to get a dataset from the UI: download it, point to a folder, or generate a demo set."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.config import Settings
from core.errors import PetSegError
from dashboard import state

DEMO_COUNT = 300


def chooser(current: Settings) -> None:
    tabs = ["Download the official dataset", "Use a folder", "Generate a demo set"]
    download_tab, folder_tab, demo_tab = st.tabs(tabs)
    with download_tab:
        _download(current)
    with folder_tab:
        _folder(current)
    with demo_tab:
        _demo(current)


def _download(current: Settings) -> None:
    st.write(
        "Fetches the official `images.tar.gz` and `annotations.tar.gz` (about 800 MB), checks their checksums "
        "and unpacks them. An interrupted download resumes when you start it again."
    )
    target = st.text_input("Download into", value=str(current.data), key="download_target")
    if st.button("Download", key="download_start"):
        from core.download import download

        bar = st.progress(0.0, text="Starting…")
        try:
            download(Path(target), progress=lambda done, total, what: bar.progress(
                min(done / total, 1.0) if total else 0.0, text=f"{what}: {done / 1e6:,.0f} of {total / 1e6:,.0f} MB"
            ))
        except PetSegError as exc:
            st.error(str(exc))
            return
        state.choose_data(Path(target))
        st.rerun()


def _folder(current: Settings) -> None:
    st.write("A folder in the official layout: `images/`, `annotations/trimaps/`, `annotations/list.txt`, …")
    folder = st.text_input("Dataset folder", value=str(current.data), key="folder_choice")
    if st.button("Use this folder", key="folder_use"):
        path = Path(folder).expanduser()
        if not (path / "images").is_dir():
            st.error(f"`{path}` has no `images/` folder: it is not a dataset in the official layout.")
            return
        state.choose_data(path.absolute())
        st.rerun()


def _demo(current: Settings) -> None:
    st.write(
        "A generated set in the official layout with cartoon pets on cluttered backgrounds: enough to try every "
        "page offline in a minute. Everything shown from it is labelled synthetic."
    )
    count = st.number_input("Images", min_value=20, max_value=10_000, value=DEMO_COUNT, step=50, key="demo_count")
    target = st.text_input("Generate into", value=str(current.data.parent / "petseg-demo"), key="demo_target")
    if st.button("Generate", key="demo_start", type="primary"):
        from core.synth import generate

        bar = st.progress(0.0, text="Generating…")
        try:
            generate(Path(target), count=int(count), seed=0, progress=lambda done, total: bar.progress(
                done / total, text=f"{done} of {total} images"
            ))
        except PetSegError as exc:
            st.error(str(exc))
            return
        state.choose_data(Path(target).absolute())
        st.rerun()
