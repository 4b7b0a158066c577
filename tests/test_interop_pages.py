"""AppTest: the Runs page's import form, the Export page's new formats, and every view on an imported run."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from core.dataset import load_trimap
from core.interop.runs import import_predictions
from core.masks import PET, encode_png
from core.runs import list_runs, load_eval
from tests.conftest import open_app, plain


def _predictions_zip(ds, binary: bool = False) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for image_id in ds.ids("test"):
            trimap = load_trimap(ds, image_id)
            mask = np.where(trimap == PET, 255, 0).astype(np.uint8) if binary else trimap
            archive.writestr(f"preds/{image_id}.png", encode_png(mask))
    return buffer.getvalue()


def _button(at, key: str):
    return next(b for b in at.button if b.key == key)


def test_runs_page_imports_a_zip_of_predictions(monkeypatch, settings, ds):
    at = open_app(monkeypatch, settings.data, settings.workspace, "runs")
    assert not at.exception
    at.file_uploader(key="runs_import_predictions_file").upload("keras.zip", _predictions_zip(ds), "application/zip")
    at.text_input(key="runs_import_predictions_run").set_value("keras-unet")
    at.selectbox(key="runs_import_predictions_encoding").set_value("trimap")
    at.run()
    _button(at, "runs_import_predictions_go").click()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "2 predictions imported as run keras-unet (test)" in plain(at.success[0].value)
    table = load_eval(settings, "keras-unet", "test")
    assert (table["iou_pet"] == 1.0).all()
    assert not any(settings.workspace.joinpath("imports").iterdir())  # the upload is gone again


def test_runs_page_imports_a_save_pretrained_zip_and_offers_to_evaluate_it(monkeypatch, settings, tmp_path):
    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    net = smp.create_model("unet", encoder_name="resnet18", encoder_weights=None, classes=1,
                           decoder_channels=(32, 16, 8, 8, 8))
    net.save_pretrained(str(tmp_path / "model"))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in ("config.json", "model.safetensors"):
            archive.write(tmp_path / "model" / name, f"model/{name}")
    at = open_app(monkeypatch, settings.data, settings.workspace, "runs")
    at.file_uploader(key="runs_import_checkpoint_file").upload("model.zip", buffer.getvalue(), "application/zip")
    at.text_input(key="runs_import_checkpoint_run").set_value("smp-example")
    at.number_input(key="runs_import_checkpoint_size").set_value(64)
    at.run()
    _button(at, "runs_import_checkpoint_go").click()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "pet vs background" in plain(at.success[0].value)
    assert (settings.run_dir("smp-example") / "best.pt").is_file()
    assert any(b.key == "runs_import_evaluate" for b in at.button)
    assert {r.name: r.source for r in list_runs(settings)}["smp-example"] == "external checkpoint"


def test_runs_page_refuses_a_pickle_with_code(monkeypatch, settings, tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("never",))

    buffer = io.BytesIO()
    torch.save({"x": Payload()}, buffer)
    at = open_app(monkeypatch, settings.data, settings.workspace, "runs")
    at.file_uploader(key="runs_import_checkpoint_file").upload("evil.pt", buffer.getvalue())
    at.text_input(key="runs_import_checkpoint_run").set_value("evil")
    at.run()
    _button(at, "runs_import_checkpoint_go").click()
    at.run()
    assert "pickled Python code" in plain(at.error[0].value)
    assert not settings.run_dir("evil").exists()


@pytest.mark.parametrize("page", ["overview", "browse", "compare", "distributions", "review"])
def test_every_view_shows_an_imported_binary_run(monkeypatch, settings, ds, tmp_path, page):
    (tmp_path / "p.zip").write_bytes(_predictions_zip(ds, binary=True))
    import_predictions(settings, "imported", tmp_path / "p.zip", encoding="binary", ds=ds)
    at = open_app(monkeypatch, settings.data, settings.workspace, page, run="imported", split="test")
    assert not at.exception, at.exception[0].value if at.exception else ""
    assert at.title[0].value == page.capitalize()
    if page == "overview":
        values = {m.label: m.value for m in at.metric}
        assert values["Encoder"] == "imported predictions"
        assert values["Mean per-image IoU"] == "1.000"  # pet vs not: the border band of the truth is left out
        assert values["Pixel accuracy (all pixels)"] == "n/a"  # no border class: not applicable


def test_model_page_explains_an_imported_binary_smp_model(monkeypatch, settings, ds, tmp_path):
    import segmentation_models_pytorch as smp

    from core.evaluate import evaluate
    from core.interop.runs import import_checkpoint
    from core.model import ExternalSpec

    torch.manual_seed(0)
    smp.create_model("unet", encoder_name="resnet18", encoder_weights=None, classes=1,
                     decoder_channels=(32, 16, 8, 8, 8)).save_pretrained(str(tmp_path / "m"))
    import_checkpoint(settings, "ext", tmp_path / "m", ExternalSpec(image_size=64))
    evaluate(settings, run="ext", split="test", progress=False)
    at = open_app(monkeypatch, settings.data, settings.workspace, "model", run="ext", split="test")
    assert not at.exception, at.exception[0].value if at.exception else ""
    assert any("checkpoint best.pt" in c.value for c in at.caption)


def test_export_page_writes_cvat_and_a_runs_predictions_for_label_studio(monkeypatch, settings, ds, tmp_path):
    (tmp_path / "p.zip").write_bytes(_predictions_zip(ds))
    import_predictions(settings, "imported", tmp_path / "p.zip", ds=ds)
    at = open_app(monkeypatch, settings.data, settings.workspace, "export")
    at.radio(key="export_format").set_value("cvat-mask").run()
    _button(at, "export_run").click()
    at.run()
    assert not at.exception and not at.error
    (cvat_zip,) = Path(settings.exports_dir).glob("cvat-mask-*.zip")
    with zipfile.ZipFile(cvat_zip) as archive:
        assert "labelmap.txt" in archive.namelist()
    at.radio(key="export_format").set_value("labelstudio").run()
    at.radio(key="export_what").set_value("predictions").run()
    at.selectbox(key="export_run_name").set_value("imported").run()
    _button(at, "export_run").click()
    at.run()
    assert not at.exception and not at.error
    (ls_zip,) = Path(settings.exports_dir).glob("labelstudio-imported-test-*.zip")
    with zipfile.ZipFile(ls_zip) as archive:
        tasks = json.loads(archive.read("tasks.json"))
    assert sorted(t["data"]["image_id"] for t in tasks) == sorted(ds.ids("test"))
    assert tasks[0]["predictions"][0]["model_version"] == "petseg:imported"


def test_export_page_imports_corrections_from_a_cvat_zip(monkeypatch, settings, ds, tmp_path):
    from core.config import Settings
    from core.corrections import save
    from core.export import export_archive
    from core.ledger import latest

    image_id = ds.ids()[0]
    edited = load_trimap(ds, image_id).copy()
    edited[:3] = PET
    elsewhere = Settings.resolve(data=settings.data, workspace=tmp_path / "colleague")
    save(elsewhere, ds, image_id, edited, base_version=None, source="gt")
    cvat_zip = export_archive(elsewhere, fmt="cvat-mask", out=tmp_path / "task.zip", ds=ds).path

    at = open_app(monkeypatch, settings.data, settings.workspace, "export")
    at.selectbox(key="corrections_import_format").set_value("cvat-mask").run()
    at.file_uploader(key="corrections_import_file").upload("task.zip", cvat_zip.read_bytes(), "application/zip")
    at.text_input(key="corrections_import_note").set_value("from CVAT")
    at.run()
    _button(at, "corrections_import_go").click()
    at.run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.success[0].value.startswith(f"1 imported, {len(ds) - 1} unchanged, 0 refused")
    row = latest(settings, image_id)
    assert row is not None and row.note == "from CVAT" and row.source == "import"
    np.testing.assert_array_equal(groundtruth_mask(settings, ds, image_id), edited)


def groundtruth_mask(settings, ds, image_id):
    from core import groundtruth

    return groundtruth.current(settings, ds, image_id)[0]
