"""Home's three ways to get a dataset: download it, point to a folder, or generate a demo set.

    >>> from dashboard import dataset_picker
    >>> dataset_picker.chooser(state.settings())     # three tabs; a success switches the app to the new dataset

The app has no sign-in yet, so every folder typed here must lie inside the configured roots
(``Settings.roots``: $PETSEG_ROOTS, else the data folder's parent and the workspace); others are refused.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from core.config import Settings
from core.errors import PetSegError
from dashboard import state
from dashboard.markdown import escape

DEMO_COUNT = 300
DEMO_MIN, DEMO_MAX = 20, 10_000


def _target(current: Settings, raw: object) -> Path | None:
    """The typed folder, resolved, when it lies inside the roots; else an error on the page and None."""
    if not isinstance(raw, str) or not raw.strip():
        st.error("Type a folder first.")
        return None
    try:
        return current.inside_roots(raw.strip())
    except PetSegError as exc:
        st.error(escape(exc, 600))
        return None


def chooser(current: Settings) -> None:
    download_tab, folder_tab, demo_tab = st.tabs(["Download the official dataset", "Use a folder",
                                                  "Generate a demo set"])
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
    raw = st.text_input("Download into", value=str(current.data), key=state.DOWNLOAD_TARGET)
    if st.button("Download", key="download_start"):
        from core.download import download

        target = _target(current, raw)
        if target is None:
            return
        bar = st.progress(0.0, text="Starting…")
        try:
            download(target, progress=lambda done, total, what: bar.progress(
                min(done / total, 1.0) if total else 0.0, text=f"{what}: {done / 1e6:,.0f} of {total / 1e6:,.0f} MB"
            ))
        except PetSegError as exc:
            st.error(escape(exc, 1000))
            return
        state.choose_data(target)
        st.rerun()


def dataset_folder_of(path: Path) -> Path | None:
    """The dataset folder ``path`` lies in when it is one of the layout's own folders (``images/``,
    ``annotations/``, ``annotations/trimaps/`` or ``annotations/xmls/``), else None."""
    if path.name in ("images", "annotations"):
        parent = path.parent
    elif path.name in ("trimaps", "xmls") and path.parent.name == "annotations":
        parent = path.parent.parent
    else:
        return None
    return parent if (parent / "images").is_dir() else None


def _folder(current: Settings) -> None:
    st.write("A folder in the official layout: `images/`, `annotations/trimaps/`, `annotations/list.txt`, …")
    raw = st.text_input("Dataset folder", value=str(current.data), key=state.FOLDER_CHOICE)
    if st.button("Use this folder", key="folder_use"):
        st.session_state.pop(state.FOLDER_SUGGESTION, None)
        path = _target(current, raw)
        if path is None:
            return
        if not (path / "images").is_dir():
            parent = dataset_folder_of(path)
            if parent is not None:
                st.session_state[state.FOLDER_SUGGESTION] = str(parent)
            else:
                st.error(f"{escape(path, 400, code=True)} has no `images/` folder: it is not a dataset in the "
                         "official layout.")
                return
        else:
            state.choose_data(path)
            st.rerun()
    suggestion = st.session_state.get(state.FOLDER_SUGGESTION)
    if suggestion:
        st.warning(f"That is a folder *inside* a dataset: the dataset is {escape(suggestion, 400, code=True)}, "
                   "the folder that holds `images/` and `annotations/`.")
        if st.button(f"Use {escape(suggestion, 200)}", key="folder_use_parent", type="primary"):
            path = _target(current, suggestion)
            if path is not None:
                st.session_state.pop(state.FOLDER_SUGGESTION, None)
                state.choose_data(path)
                st.rerun()


def _demo(current: Settings) -> None:
    st.write(
        "A generated set in the official layout with cartoon pets on cluttered backgrounds: enough to try every "
        "page offline in a minute. Everything shown from it is labelled synthetic."
    )
    count = st.number_input("Images", min_value=DEMO_MIN, max_value=DEMO_MAX, value=DEMO_COUNT, step=50,
                            key=state.DEMO_COUNT)
    raw = st.text_input("Generate into", value=str(current.data.parent / "petseg-demo"), key=state.DEMO_TARGET)
    if st.button("Generate", key="demo_start", type="primary"):
        from core.synth import generate

        # A widget value is still browser input: check it before it sizes anything.
        if isinstance(count, bool) or not isinstance(count, int | float) or not DEMO_MIN <= count <= DEMO_MAX \
                or count != int(count):
            st.error(f"The number of images must be a whole number from {DEMO_MIN} to {DEMO_MAX:,}.")
            return
        target = _target(current, raw)
        if target is None:
            return
        bar = st.progress(0.0, text="Generating…")
        try:
            generate(target, count=int(count), seed=0, progress=lambda done, total: bar.progress(
                done / total, text=f"{done} of {total} images"
            ))
        except PetSegError as exc:
            st.error(escape(exc, 1000))
            return
        state.choose_data(target)
        st.rerun()
