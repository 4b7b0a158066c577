"""Export: the effective masks (the accepted or latest correction, else the official trimap), or a run's predictions,
as a zip (an admin's action)."""

import datetime as dt
from pathlib import Path

import streamlit as st

from core import audit, ledger
from core.errors import PetSegError
from core.export import FORMATS, export_archive
from core.runs import list_runs
from dashboard import auth, corrections_import, loaders, state
from dashboard.markdown import escape
from dashboard.review_views import policy_choice

FORMAT_HELP = {
    "trimap": "`annotations/trimaps/<id>.png`, 1 pet / 2 background / 3 border: a drop-in replacement for the "
              "official folder",
    "binary": "`binary/<id>.png`, 0 background / 255 pet with the border counted as pet (the smp convention)",
    "coco": "`annotations.json`, COCO instances with RLE segmentations (categories pet and border; species and "
            "breed attributes)",
    "cvat-mask": "CVAT *Segmentation mask 1.1*: `labelmap.txt`, `ImageSets/Segmentation`, `SegmentationClass` and "
                 "`SegmentationObject` PNGs; upload it to a CVAT task with the same photos",
    "labelstudio": "Label Studio `tasks.json` with brush-label (RLE) pre-annotations and `labeling_config.xml`; photos "
                   "are referenced as local files under the dataset's `images/`",
    "fiftyone": "FiftyOne *ImageSegmentationDirectory*: `data/` photos + `labels/` masks (0 background, 1 pet, "
                "2 border)",
}
MAX_LISTED = 20

current = state.settings()
ds = loaders.dataset_or_stop(current)
st.title("Export")
corrected = len(ledger.latest_versions(current))
st.caption(f"{len(ds):,} images · {corrected:,} with a correction. Every zip also holds `manifest.csv` (version, "
           f"author, note, IoU vs original GT per image). Zips are written to "
           f"{escape(current.exports_dir, 400, code=True)} only.")

fmt = st.radio("Format", FORMATS, horizontal=True, key=state.EXPORT_FORMAT)
st.caption(FORMAT_HELP[fmt])
evaluated = {r.name: r.evaluated_splits for r in list_runs(current) if r.evaluated_splits}
what = st.radio("Masks", ["corrections", "predictions"], horizontal=True, key="export_what",
                format_func=lambda w: "Latest corrections" if w == "corrections" else "A run's predictions",
                disabled=not evaluated, help="A run's predictions go to a labelling tool as pre-annotations")
run = split = None
if what == "predictions" and evaluated:
    left, right = st.columns(2)
    run = left.selectbox("Run", list(evaluated), key="export_run_name")
    split = right.selectbox("Split", evaluated[run], key="export_run_split")
only_corrected = st.toggle("Only corrected images", key=state.EXPORT_ONLY_CORRECTED,
                           disabled=corrected == 0 or run is not None,
                           help="Leave out images that still have only the official trimap")
policy = policy_choice(state.EXPORT_POLICY, disabled=run is not None)


def _download(path: Path, key: str, primary: bool = False) -> None:
    st.download_button(f"Download {path.name}", data=path.read_bytes, file_name=path.name, mime="application/zip",
                       key=key, type="primary" if primary else "secondary", on_click="ignore")


if st.button("Export", type="primary", key="export_run"):
    try:
        with st.spinner("Writing the zip…"):
            audit.record_now(current, auth.current_user(), "export", format=fmt, only_corrected=only_corrected,
                             run=run, via="app")
            report = export_archive(current, fmt=fmt, only_corrected=only_corrected and corrected > 0 and run is None,
                                    ds=ds, run=run, split=split or "test", corrections=policy,
                                    actor=auth.current_user())
    except PetSegError as exc:
        st.error(escape(exc, 1000))
    else:
        st.session_state[state.EXPORT_LAST] = (str(report.path), report.summary())

last = st.session_state.get(state.EXPORT_LAST)
if last and Path(last[0]).is_file():
    st.success(escape(last[1], 1000))
    _download(Path(last[0]), "export_download_last", primary=True)

corrections_import.import_form(current, ds)

exports = sorted(current.exports_dir.glob("*.zip"), key=lambda p: p.stat().st_mtime, reverse=True) \
    if current.exports_dir.is_dir() else []
st.subheader("Previous exports")
if not exports:
    st.caption("None yet.")
for number, path in enumerate(exports[:MAX_LISTED]):
    info = path.stat()
    name, when, button = st.columns([3, 2, 2])
    name.text(path.name)
    when.caption(f"{dt.datetime.fromtimestamp(info.st_mtime):%Y-%m-%d %H:%M} · {info.st_size / 1e6:,.2f} MB")
    with button:
        _download(path, f"export_download_{number}")
if len(exports) > MAX_LISTED:
    st.caption(f"{len(exports) - MAX_LISTED} older exports are in {escape(current.exports_dir, 400, code=True)}.")
