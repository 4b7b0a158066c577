"""The Runs page's import form: predicted masks or a checkpoint made elsewhere, registered as a run.

    >>> from dashboard import run_import
    >>> run_import.import_form(current)      # an expander with two tabs; writes only through core.interop.runs

Uploads are kept in a temporary folder under the workspace for the duration of the import only. Predictions
(a zip of ``<image_id>.png`` / ``.npy``) are scored at once; an imported checkpoint is evaluated by the usual
background evaluation job, started from here.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import streamlit as st

from core.config import Settings
from core.errors import PetSegError
from core.interop import PREDICTION_ENCODINGS
from dashboard import auth, jobs_view
from dashboard.markdown import escape

ENCODING_HELP = {
    "trimap": "Oxford trimap values: 1 pet, 2 background, 3 border",
    "index": "class indices 0 pet, 1 background, 2 border (trimap − 1, the tutorials' 3-class output)",
    "binary": "pet vs not: 0/255 or 0/1, no border (border metrics are then not applicable)",
    "probability": "pet probability: 8- or 16-bit grayscale PNG, or a float .npy in 0..1",
}
CHECKPOINT_TYPES = ["pt", "pth", "ckpt", "safetensors", "zip"]
IMPORTED_KEY = "runs_import_checkpoint_done"  # run name of the checkpoint just imported (offer to evaluate it)


def import_form(settings: Settings) -> None:
    """Import predictions or a checkpoint as a new run."""
    with st.expander("Import predictions or a checkpoint from elsewhere", icon=":material/upload:"):
        predictions, checkpoint = st.tabs(["Predicted masks", "Checkpoint"])
        with predictions:
            _predictions_form(settings)
        with checkpoint:
            _checkpoint_form(settings)


def _predictions_form(settings: Settings) -> None:
    st.caption("A zip of `<image_id>.png` masks (or `.npy` probabilities) from any model. The run is scored like "
               "a PetSeg run and shows in every view as *imported predictions*.")
    upload = st.file_uploader("Predictions (zip)", type=["zip"], key="runs_import_predictions_file")
    left, right = st.columns(2)
    run = left.text_input("Run name", key="runs_import_predictions_run", placeholder="e.g. keras-unet")
    encoding = right.selectbox("Encoding", PREDICTION_ENCODINGS, key="runs_import_predictions_encoding",
                               format_func=lambda e: f"{e}: {ENCODING_HELP[e]}")
    resize = st.checkbox("Resize masks of another size to the photo (nearest neighbour; recorded)",
                         key="runs_import_predictions_resize")
    if not st.button("Import predictions", key="runs_import_predictions_go", disabled=upload is None or not run):
        return
    from core.interop.runs import import_predictions

    try:
        with _saved(settings, upload) as path, st.spinner("Reading and scoring the predictions…"):
            report = import_predictions(settings, run.strip(), path, encoding, resize=resize,
                                        actor=auth.current_user())
    except PetSegError as exc:
        st.error(escape(exc, 1000))
        return
    st.success(escape(report.summary(), 2000))
    for line in report.refused[:20]:
        st.caption(f"refused: {escape(line, 300)}")


def _checkpoint_form(settings: Settings) -> None:
    st.caption("A PetSeg `.pt`, a zip of an smp `save_pretrained` folder, a Lightning `.ckpt` of smp's Oxford-pet "
               "example, or a plain `state_dict` (`.pt`, `.safetensors`; give its architecture). Only weights are "
               "read: a file with pickled code is refused. 1-class models are evaluated as pet vs background.")
    upload = st.file_uploader("Checkpoint", type=CHECKPOINT_TYPES, key="runs_import_checkpoint_file")
    run = st.text_input("Run name", key="runs_import_checkpoint_run", placeholder="e.g. smp-example")
    cols = st.columns(4)
    arch = cols[0].text_input("Architecture (state_dict only)", value="unet", key="runs_import_checkpoint_arch")
    encoder = cols[1].text_input("Encoder (state_dict only)", value="resnet34", key="runs_import_checkpoint_encoder")
    size = cols[2].number_input("Input size (px)", min_value=32, max_value=1024, value=256, step=32,
                                key="runs_import_checkpoint_size")
    pixel_range = cols[3].selectbox("Pixel range before mean/std", ["0-1", "0-255"],
                                    key="runs_import_checkpoint_range")
    if st.button("Import checkpoint", key="runs_import_checkpoint_go", disabled=upload is None or not run):
        from core.interop.runs import import_checkpoint
        from core.model import ExternalSpec

        low, _, high = pixel_range.partition("-")
        spec = ExternalSpec(arch=arch.strip() or "unet", encoder=encoder.strip() or "resnet34",
                            image_size=int(size), input_range=(float(low), float(high)))
        try:
            with _saved(settings, upload) as path, st.spinner("Loading the checkpoint…"):
                cfg = import_checkpoint(settings, run.strip(), path, spec, actor=auth.current_user())
        except PetSegError as exc:
            st.error(escape(exc, 1000))
        else:
            st.session_state[IMPORTED_KEY] = run.strip()
            st.success(f"Imported as run {escape(run.strip(), code=True)}: {escape(cfg.describe())}"
                       + (" · 1-class, evaluated as pet vs background" if cfg.binary else ""))
    done = st.session_state.get(IMPORTED_KEY)
    if done:
        jobs_view.evaluate_button(settings, done, "test", key="runs_import_evaluate", primary=True)


class _saved:
    """The uploaded file written to a temporary folder under the workspace, removed afterwards."""

    def __init__(self, settings: Settings, upload: object):
        self.settings, self.upload = settings, upload

    def __enter__(self) -> Path:
        root = self.settings.workspace / "imports"
        root.mkdir(parents=True, exist_ok=True)
        self.folder = tempfile.TemporaryDirectory(dir=root)
        name = Path(str(getattr(self.upload, "name", "upload"))).name or "upload"
        path = Path(self.folder.name) / name
        path.write_bytes(self.upload.getvalue())  # type: ignore[attr-defined]
        return path

    def __exit__(self, *exc: object) -> None:
        self.folder.cleanup()
