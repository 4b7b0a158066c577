"""The Export page's way back in: corrected masks from CVAT, Label Studio, FiftyOne or PetSeg's own zips.

    >>> from dashboard import corrections_import
    >>> corrections_import.import_form(current, ds)   # upload, format, note -> per-file report (author: auth)

Writes only through :func:`core.corrections.import_masks` (the same checks and report as the CLI's
``corrections import --format``); the upload lives in a temporary folder under the workspace during the import.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from core.config import Settings
from core.dataset import Dataset
from core.errors import PetSegError
from core.interop import IMPORT_FORMATS
from dashboard import auth
from dashboard.markdown import escape

FORMAT_HELP = {
    "cvat-mask": "the zip CVAT exports as *Segmentation mask 1.1* (colours from its labelmap.txt: pet, border, "
                 "background)",
    "labelstudio": "Label Studio's JSON export (a .json, or PetSeg's zip): the last submitted annotation per task",
    "fiftyone": "a FiftyOne *ImageSegmentationDirectory* export, zipped (labels 0 background, 1 pet, 2 border)",
    "trimap": "PetSeg's trimap zip, or any zip of `<image_id>.png` trimaps (1/2/3)",
    "binary": "PetSeg's binary zip, or any zip of `<image_id>.png` 0/255 masks (border band regenerated)",
}
MAX_LINES = 50


def import_form(settings: Settings, ds: Dataset) -> None:
    with st.expander("Import corrected masks from a labelling tool", icon=":material/upload:"):
        fmt = st.selectbox("Format", IMPORT_FORMATS, key="corrections_import_format")
        st.caption(FORMAT_HELP[fmt])
        upload = st.file_uploader("Export of the tool", type=["zip", "json"], key="corrections_import_file")
        note = st.text_input("Note", key="corrections_import_note", placeholder="e.g. CVAT review, batch 3")
        author = auth.current_user()  # the signed-in user (or the OS user without sign-in), never typed
        st.caption(f"Recorded as imported by {escape(author, code=True)}.")
        if not st.button("Import corrections", key="corrections_import_go", disabled=upload is None):
            return
        from core.corrections import import_masks
        from core.interop import read_masks

        root = settings.workspace / "imports"
        root.mkdir(parents=True, exist_ok=True)
        try:
            with tempfile.TemporaryDirectory(dir=root) as tmp, st.spinner("Reading and storing the masks…"):
                path = Path(tmp) / (Path(upload.name).name or "upload.zip")
                path.write_bytes(upload.getvalue())
                report = import_masks(settings, read_masks(fmt, path), author=author, note=note, ds=ds)
        except PetSegError as exc:
            st.error(escape(exc, 1000))
            return
        imported, refused = len(report.imported), report.refused
        unchanged = len(report.results) - imported - refused
        message = (f"{imported} imported, {unchanged} unchanged, {refused} refused; "
                   f"{report.rescored} stored evaluation rows rescored")
        (st.warning if refused else st.success)(message)
        lines = [r.line() for r in report.results if not r.ok or r.new_version][:MAX_LINES]
        if lines:
            st.code("\n".join(lines), language=None)
