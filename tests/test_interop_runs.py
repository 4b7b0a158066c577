"""Runs PetSeg did not train: folders of predicted masks and checkpoints from outside, evaluated like any run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from core import cli
from core.corrections import save
from core.dataset import load_image, load_trimap
from core.errors import CheckpointError, PetSegError
from core.evaluate import evaluate
from core.export import export_archive
from core.interop import read_masks
from core.interop.runs import import_checkpoint, import_predictions
from core.masks import BACKGROUND, BORDER, PET, encode_png, resize_image
from core.metrics import BORDER_METRICS, image_metrics
from core.model import ExternalSpec, build_model, load_checkpoint, load_external, save_checkpoint, to_input
from core.runs import EVAL_COLUMNS, eval_dir, list_runs, load_eval, predicts_border, read_prediction
from core.views import load_view


def _write(folder: Path, image_id: str, array: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if array.dtype == np.uint16:
        cv2.imwrite(str(folder / f"{image_id}.png"), array)
    else:
        (folder / f"{image_id}.png").write_bytes(encode_png(array))


def _shifted(trimap: np.ndarray) -> np.ndarray:
    """A plausible prediction: the ground truth moved two pixels right."""
    return np.roll(trimap, 2, axis=1)


# --- predictions --------------------------------------------------------------------------------------------


def test_index_coded_predictions_are_scored_exactly_like_an_evaluation(settings, ds, tmp_path):
    folder = tmp_path / "keras"
    test_ids = ds.ids("test")
    for image_id in test_ids:
        _write(folder, image_id, _shifted(load_trimap(ds, image_id)) - 1)  # class index 0 pet, 1 bg, 2 border
    _write(folder, "holiday_photo", np.zeros((4, 4), np.uint8))
    report = import_predictions(settings, "keras-unet", folder, encoding="index", ds=ds)
    assert report.split == "test" and report.imported == len(test_ids)
    assert report.unknown == ["holiday_photo.png"] and report.missing == []

    table = load_eval(settings, "keras-unet", "test")
    assert list(table.columns) == list(EVAL_COLUMNS)
    for image_id in test_ids:
        pred = _shifted(load_trimap(ds, image_id))
        np.testing.assert_array_equal(read_prediction(eval_dir(settings, "keras-unet", "test"), image_id), pred)
        expected = image_metrics(pred, load_trimap(ds, image_id))
        for name, value in expected.items():
            assert table.at[image_id, name] == pytest.approx(value), name
    assert table["mean_confidence"].isna().all()  # a hard mask says nothing about confidence
    assert report.per_image_iou == pytest.approx(table["iou_pet"].mean())

    info = {r.name: r for r in list_runs(settings)}["keras-unet"]
    assert info.source == "imported predictions" and info.evaluated_splits == ("test",)
    view = load_view(settings, "keras-unet", "test")
    assert view.loc[test_ids, "iou_pet"].notna().all()


def test_a_correction_rescores_imported_predictions_like_any_run(settings, ds, tmp_path):
    folder = tmp_path / "preds"
    image_id = ds.ids("test")[0]
    _write(folder, image_id, load_trimap(ds, image_id))
    import_predictions(settings, "imported", folder, ds=ds)
    assert load_eval(settings, "imported", "test").at[image_id, "iou_pet"] == pytest.approx(1.0)
    edited = load_trimap(ds, image_id).copy()
    edited[:, : edited.shape[1] // 2][edited[:, : edited.shape[1] // 2] == PET] = BACKGROUND
    saved = save(settings, ds, image_id, edited, base_version=None, source="gt")
    assert saved.rescored == 1
    row = load_eval(settings, "imported", "test").loc[image_id]
    assert row["iou_pet"] < 1.0 and row["iou_pet_official"] == pytest.approx(1.0) and row["gt_version"] == 1


def test_binary_predictions_make_a_binary_run_whose_border_metrics_are_not_applicable(settings, ds, tmp_path):
    folder = tmp_path / "binary"
    for image_id in ds.ids("test"):
        _write(folder, image_id, np.where(load_trimap(ds, image_id) == PET, 255, 0).astype(np.uint8))
    import_predictions(settings, "smp-binary", folder, encoding="binary", ds=ds)
    table = load_eval(settings, "smp-binary", "test")
    assert not predicts_border(settings.run_dir("smp-binary"))
    for name in BORDER_METRICS:
        assert table[name].isna().all()
    assert (table["iou_pet"] == 1.0).all()  # pet vs not, border pixels of the ground truth left out
    image_id = ds.ids("test")[0]
    save(settings, ds, image_id, load_trimap(ds, image_id)[::-1].copy(), base_version=None, source="gt")
    rescored = load_eval(settings, "smp-binary", "test").loc[image_id]
    assert all(math.isnan(rescored[name]) for name in BORDER_METRICS)  # still not applicable after a rescore


def test_probability_maps_as_16_bit_png_and_npy(settings, ds, tmp_path):
    folder = tmp_path / "prob"
    first, second = ds.ids("test")
    pet = load_trimap(ds, first) == PET
    _write(folder, first, np.where(pet, 60000, 3000).astype(np.uint16))
    probability = np.where(load_trimap(ds, second) == PET, 0.9, 0.2).astype(np.float32)
    folder.mkdir(exist_ok=True)
    np.save(folder / f"{second}.npy", probability)
    report = import_predictions(settings, "prob", folder, encoding="probability", ds=ds)
    assert report.imported == 2 and report.refused == []
    table = load_eval(settings, "prob", "test")
    assert table.at[second, "mean_confidence"] == pytest.approx(
        float(np.maximum(probability, 1 - probability).mean()), rel=1e-5)
    assert table.at[first, "iou_pet"] == pytest.approx(1.0)
    assert table["miou_3class"].isna().all()


def test_wrong_size_is_refused_with_the_reason_unless_resizing_is_asked_for(settings, ds, tmp_path):
    folder = tmp_path / "small"
    first, second = ds.ids("test")
    _write(folder, first, cv2.resize(load_trimap(ds, first), (16, 12), interpolation=cv2.INTER_NEAREST))
    _write(folder, second, load_trimap(ds, second))
    report = import_predictions(settings, "small", folder, ds=ds)
    assert report.imported == 1
    (line,) = report.refused
    height, width = load_trimap(ds, first).shape
    assert line.startswith(f"{first}.png: is 16x12") and f"image is {width}x{height}" in line and "--resize" in line
    report = import_predictions(settings, "small", folder, resize=True, ds=ds)  # same run, imported again
    assert report.imported == 2 and report.resized == [first]
    (folder / f"{second}.png").unlink()
    report = import_predictions(settings, "small", folder, resize=True, ds=ds)  # and again, with one file less
    assert report.missing == [second]
    assert sorted(p.stem for p in (eval_dir(settings, "small", "test") / "pred").iterdir()) == [first]
    assert list(load_eval(settings, "small", "test").index) == [first]
    _write(folder, second, load_trimap(ds, second))
    report = import_predictions(settings, "small", folder, resize=True, ds=ds)
    config = json.loads((settings.run_dir("small") / "config.json").read_text())
    assert config["imported"]["resized_ids"] == [first] and config["imported"]["resize"] is True
    assert read_prediction(eval_dir(settings, "small", "test"), first).shape == (height, width)


def test_values_of_another_encoding_and_missing_ids_are_named(settings, ds, tmp_path):
    folder = tmp_path / "mixed"
    first = ds.ids()[0]
    _write(folder, first, load_trimap(ds, first))
    with pytest.raises(PetSegError, match=r"not the index encoding"):
        import_predictions(settings, "wrong", folder, encoding="index", ds=ds)
    report = import_predictions(settings, "partial", folder, encoding="trimap", ds=ds)
    assert report.split == "trainval" and report.missing == ds.ids("trainval")[1:]
    _write(tmp_path / "strangers", "cat_photo", np.ones((4, 4), np.uint8))
    with pytest.raises(PetSegError, match=r"names an image of the dataset \(found cat_photo.png\)"):
        import_predictions(settings, "none", tmp_path / "strangers", ds=ds)


def test_an_imported_run_exports_its_predictions_for_labelling_tools(settings, ds, tmp_path):
    folder = tmp_path / "preds"
    for image_id in ds.ids("test"):
        _write(folder, image_id, _shifted(load_trimap(ds, image_id)))
    import_predictions(settings, "pre", folder, ds=ds)
    path = export_archive(settings, fmt="cvat-mask", run="pre", split="test", out=tmp_path / "pre.zip", ds=ds).path
    items = {m.stem: m for m in read_masks("cvat-mask", path)}
    assert set(items) == set(ds.ids("test"))
    for image_id, item in items.items():
        np.testing.assert_array_equal(item.load(load_trimap(ds, image_id).shape)[0],
                                      _shifted(load_trimap(ds, image_id)))


def test_a_trained_run_is_never_replaced_by_an_import(settings, ds, tmp_path):
    run_dir = settings.run_dir("mine")
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"train": {"epochs": 3}}))
    folder = tmp_path / "p"
    _write(folder, ds.ids()[0], load_trimap(ds, ds.ids()[0]))
    with pytest.raises(PetSegError, match="exists already"):
        import_predictions(settings, "mine", folder, ds=ds)


def test_cli_predictions_import_from_a_zip(settings, ds, tmp_path, capsys):
    import zipfile

    with zipfile.ZipFile(tmp_path / "preds.zip", "w") as archive:
        for image_id in ds.ids("test"):
            archive.writestr(f"predictions/{image_id}.png", encode_png(load_trimap(ds, image_id)))
    code = cli.main(["predictions", "import", "--data", str(settings.data), "--workspace", str(settings.workspace),
                     "--from", str(tmp_path / "preds.zip"), "--run", "cli-run", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert out["imported"] == 2 and out["per_image_iou"] == pytest.approx(1.0)


# --- checkpoints from outside -------------------------------------------------------------------------------------


def _tiny_smp(classes: int, arch: str = "unet"):
    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    kwargs = {"decoder_channels": (32, 16, 8, 8, 8)} if arch == "unet" else {}
    return smp.create_model(arch, encoder_name="resnet18", encoder_weights=None, classes=classes, **kwargs).eval()


def _expected_mask(model, cfg, image: np.ndarray) -> np.ndarray:
    """What the binary model says by itself: pet where its logit at the image's size is above 0."""
    x = to_input(torch.from_numpy(resize_image(image, cfg.image_size))[None], cfg)
    with torch.no_grad():
        logit = model(x)[0, 0]
    up = torch.nn.functional.interpolate(logit[None, None], size=image.shape[:2], mode="bilinear",
                                         align_corners=False)[0, 0]
    return np.where(up.numpy() >= 0, PET, BACKGROUND).astype(np.uint8)


def test_smp_save_pretrained_folder_is_evaluated_as_pet_vs_background(settings, ds, tmp_path):
    net = _tiny_smp(1)
    net.save_pretrained(str(tmp_path / "smp-model"))
    cfg = import_checkpoint(settings, "smp-pre", tmp_path / "smp-model", ExternalSpec(image_size=64))
    assert cfg.binary and cfg.arch == "unet"
    summary = evaluate(settings, run="smp-pre", split="test", progress=False)
    assert summary["images"] == len(ds.ids("test"))
    table = load_eval(settings, "smp-pre", "test")
    assert table["miou_3class"].isna().all() and table["pixel_accuracy"].isna().all()
    assert table["iou_pet"].notna().all()
    image_id = ds.ids("test")[0]
    predicted = read_prediction(eval_dir(settings, "smp-pre", "test"), image_id)
    expected = _expected_mask(net, cfg, load_image(ds, image_id))
    assert (predicted == BORDER).sum() == 0
    assert (predicted == expected).mean() > 0.99  # ties at logit 0 aside, the model's own answer
    _, _, meta = load_checkpoint(settings.run_dir("smp-pre") / "best.pt")
    assert meta["source"] == "smp-pretrained" and meta["imported_from"].endswith("smp-model")
    assert {r.name: r for r in list_runs(settings)}["smp-pre"].source == "external checkpoint"


def test_lightning_checkpoint_of_smps_pet_example(settings, ds, tmp_path):
    """The layout smp's Oxford-pet example saves: model.* weights, mean/std buffers, hyper_parameters."""
    net = _tiny_smp(1, "fpn")
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    state = {f"model.{k}": v for k, v in net.state_dict().items()} | {"mean": mean, "std": std}
    torch.save({"epoch": 4, "global_step": 120, "pytorch-lightning_version": "2.5.0", "state_dict": state,
                "hyper_parameters": {"arch": "FPN", "encoder_name": "resnet18", "in_channels": 3, "out_classes": 1},
                "optimizer_states": [], "lr_schedulers": [], "loops": {}}, tmp_path / "pet.ckpt")
    model, cfg, meta = load_external(tmp_path / "pet.ckpt", ExternalSpec(image_size=64))
    assert meta["source"] == "lightning" and meta["epoch"] == 4 and cfg.binary and cfg.arch == "fpn"
    assert cfg.input_range == (0.0, 255.0)  # the example normalises raw pixels
    image = load_image(ds, ds.ids()[0])
    x = torch.from_numpy(resize_image(image, 64)).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        reference = net((x - mean) / std)  # the example's forward
        ours = model(to_input(torch.from_numpy(resize_image(image, 64))[None], cfg))
    torch.testing.assert_close(ours[:, :1], reference, rtol=1e-4, atol=1e-4)


def test_plain_state_dict_with_architecture_flags_and_a_wrong_architecture(settings, ds, tmp_path):
    net = _tiny_smp(3)
    torch.save(net.state_dict(), tmp_path / "weights.pt")
    # decoder channels differ from smp's defaults: the state dict cannot fit a default unet
    with pytest.raises(CheckpointError, match="do not fit a unet with encoder resnet18"):
        load_external(tmp_path / "weights.pt", ExternalSpec(encoder="resnet18", image_size=64))
    import segmentation_models_pytorch as smp

    default = smp.create_model("unet", encoder_name="resnet18", encoder_weights=None, classes=3).eval()
    torch.save(default.state_dict(), tmp_path / "default.pt")
    model, cfg, meta = load_external(tmp_path / "default.pt", ExternalSpec(encoder="resnet18", image_size=64))
    assert meta["source"] == "state-dict" and not cfg.binary
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), default(x))
    from safetensors.torch import save_file

    save_file(default.state_dict(), str(tmp_path / "default.safetensors"))
    model, _, _ = load_external(tmp_path / "default.safetensors", ExternalSpec(encoder="resnet18", image_size=64))
    with torch.no_grad():
        torch.testing.assert_close(model(x), default(x))


class Payload:
    """Any class: torch.save pickles a reference to it, and weights-only loading must refuse to run it."""

    def __reduce__(self):
        return (print, ("this code must never run",))


def test_a_checkpoint_with_pickled_code_is_refused_and_never_run(tmp_path, capsys):
    torch.save({"state_dict": {"w": torch.zeros(1)}, "extra": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="pickled Python code.*never runs code"):
        load_external(tmp_path / "evil.pt")
    assert "never run" not in capsys.readouterr().out


def test_a_petseg_checkpoint_imports_as_itself(settings, tmp_path):
    model, cfg = build_model("resnet18", image_size=64, encoder_weights=None, decoder_channels=(32, 16, 8, 8, 8))
    save_checkpoint(tmp_path / "best.pt", model, cfg, meta={"epoch": 2})
    loaded, loaded_cfg, meta = load_external(tmp_path / "best.pt")
    assert meta["source"] == "petseg" and loaded_cfg == cfg


def test_cli_evaluate_with_an_outside_checkpoint(settings, ds, tmp_path, capsys):
    _tiny_smp(1).save_pretrained(str(tmp_path / "folder"))
    code = cli.main(["evaluate", "--data", str(settings.data), "--workspace", str(settings.workspace),
                     "--checkpoint", str(tmp_path / "folder"), "--run", "ext", "--image-size", "64", "--json"])
    assert code == 0
    captured = capsys.readouterr()
    assert "pet vs background" in captured.err
    summary = json.loads(captured.out.splitlines()[-1])
    assert summary["run"] == "ext" and summary["images"] == len(ds.ids("test"))
    code = cli.main(["evaluate", "--data", str(settings.data), "--workspace", str(settings.workspace),
                     "--checkpoint", str(tmp_path / "nothing.pt"), "--run", "ext2"])
    assert code == 2 and "does not exist" in capsys.readouterr().err
    assert isinstance(load_eval(settings, "ext", "test"), pd.DataFrame)


def test_evaluating_an_imported_predictions_run_says_there_is_no_model(settings, ds, tmp_path):
    folder = tmp_path / "p"
    _write(folder, ds.ids("test")[0], load_trimap(ds, ds.ids("test")[0]))
    import_predictions(settings, "imported", folder, ds=ds)
    with pytest.raises(PetSegError, match="holds imported predictions, not a model"):
        evaluate(settings, run="imported", split="test", progress=False)


def test_a_failed_first_import_leaves_no_empty_run(settings, ds, tmp_path):
    folder = tmp_path / "tiny"
    _write(folder, ds.ids("test")[0], np.ones((3, 3), np.uint8))  # wrong size, no --resize
    with pytest.raises(PetSegError, match="could be imported"):
        import_predictions(settings, "failed", folder, ds=ds)
    assert not settings.run_dir("failed").exists() and list_runs(settings) == []
