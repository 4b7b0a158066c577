"""core.model (checkpoints: round trip, atomic writes, weights-only loading, clear errors) and core.device."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from core.device import cpu_has_native_bf16, resolve_precision, select_runtime
from core.errors import CheckpointError, PetSegError
from core.model import (
    CHECKPOINT_FORMAT,
    ModelConfig,
    build_model,
    load_checkpoint,
    normalize,
    read_checkpoint,
    save_checkpoint,
)

PROJECT = Path(__file__).resolve().parents[1]
TINY = {"encoder": "resnet18", "image_size": 64, "encoder_weights": None, "encoder_depth": 3,
        "decoder_channels": (32, 16, 8)}


@pytest.fixture(scope="module")
def tiny() -> tuple[torch.nn.Module, ModelConfig]:
    torch.manual_seed(0)
    return build_model(**TINY)


def _one_line(exc: pytest.ExceptionInfo, path: Path) -> str:
    message = str(exc.value)
    assert "\n" not in message
    assert str(path) in message
    return message


def test_checkpoint_round_trip_restores_weights_config_and_meta(tiny, tmp_path: Path) -> None:
    model, cfg = tiny
    path = tmp_path / "best.pt"
    save_checkpoint(path, model, cfg, meta={"epoch": 3, "dataset_fingerprint": "abc", "metrics": {"val_iou_pet": 0.5}})
    loaded, loaded_cfg, meta = load_checkpoint(path)
    assert loaded_cfg == cfg
    assert loaded_cfg.class_names == ("pet", "background", "border")
    assert meta["epoch"] == 3 and meta["dataset_fingerprint"] == "abc" and meta["metrics"]["val_iou_pet"] == 0.5
    assert not loaded.training
    x = torch.rand(2, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    payload = read_checkpoint(path)
    assert payload["format"] == CHECKPOINT_FORMAT
    assert payload["class_names"] == ["pet", "background", "border"]


def test_pickled_code_in_a_checkpoint_is_refused_not_run(tiny, tmp_path: Path) -> None:
    model, cfg = tiny
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"format": CHECKPOINT_FORMAT, "model_config": cfg.to_dict(), "state_dict": model.state_dict(),
                "meta": {"x": Payload()}}, path)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    assert "refused" in _one_line(exc, path)
    assert not marker.exists()


def test_checkpoint_of_another_architecture_names_the_file(tiny, tmp_path: Path) -> None:
    model, cfg = tiny
    path = tmp_path / "other.pt"
    payload = {"format": CHECKPOINT_FORMAT, "format_version": 1, "meta": {},
               "model_config": {**cfg.to_dict(), "decoder_channels": [64, 32, 16]},
               "state_dict": model.state_dict()}
    torch.save(payload, path)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    assert "does not match" in _one_line(exc, path)


def test_foreign_and_corrupt_files_give_one_line_errors(tiny, tmp_path: Path) -> None:
    model, cfg = tiny
    foreign = tmp_path / "plain_state_dict.pt"
    torch.save(model.state_dict(), foreign)
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(foreign)
    assert "not a PetSeg" in _one_line(exc, foreign)

    good = tmp_path / "good.pt"
    save_checkpoint(good, model, cfg)
    torn = tmp_path / "torn.pt"
    torn.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(torn)
    assert "corrupt" in _one_line(exc, torn)

    missing = tmp_path / "missing.pt"
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(missing)
    _one_line(exc, missing)


_WRITER = textwrap.dedent(
    """
    import sys, torch
    from pathlib import Path
    from core.model import ModelConfig, network_from_config, save_checkpoint
    cfg = ModelConfig.from_dict({cfg!r})
    model = network_from_config(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(7.0)
    print("ready", flush=True)
    for i in range(1000):
        save_checkpoint(Path(sys.argv[1]), model, cfg, meta={{"epoch": 100 + i}})
    """
)


def test_a_writer_killed_mid_save_leaves_the_previous_checkpoint_loadable(tmp_path: Path) -> None:
    # A model big enough (~100 MB) that a save takes long enough to be caught in the middle.
    model, cfg = build_model("resnet34", 64, encoder_weights=None)
    path = tmp_path / "last.pt"
    save_checkpoint(path, model, cfg, meta={"epoch": 1})
    script = tmp_path / "writer.py"
    script.write_text(_WRITER.format(cfg=cfg.to_dict()))
    proc = subprocess.Popen([sys.executable, str(script), str(path)], cwd=PROJECT, stdout=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(PROJECT)})
    try:
        assert proc.stdout.readline().strip() == b"ready"
        deadline = time.monotonic() + 60
        partial = []
        while time.monotonic() < deadline and not partial:
            partial = [p for p in tmp_path.glob(".last.pt.*") if p.stat().st_size > 1_000_000]
        assert partial, "the writer never started a save"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert partial[0].exists()  # the torn temporary is what the kill left behind...
    _, _, meta = load_checkpoint(path)  # ...while the checkpoint itself is whole: old or completely new
    assert meta["epoch"] == 1 or meta["epoch"] >= 100


def test_offline_imagenet_request_falls_back_to_random_init_with_a_warning(caplog) -> None:
    from core.model import hub_reachable

    if hub_reachable():
        pytest.skip("the weights hub is reachable here: the fallback path is not exercised")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="petseg"):
        _, cfg = build_model("resnet18", 64, encoder_weights="imagenet", encoder_depth=3,
                             decoder_channels=(32, 16, 8))
    assert time.monotonic() - started < 20  # no minutes of hub retries
    assert cfg.encoder_weights is None  # recorded: this model starts from random weights
    assert any("random initialisation" in r.getMessage() for r in caplog.records)


def test_normalize_uses_the_encoders_mean_and_std() -> None:
    cfg = ModelConfig(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5))
    pixels = torch.randint(0, 256, (2, 3, 5, 7)).float()
    mean = torch.tensor(cfg.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std).view(1, 3, 1, 1)
    assert torch.allclose(normalize(pixels, cfg), (pixels / 255 - mean) / std, atol=1e-5)


def test_image_size_must_be_a_multiple_of_32() -> None:
    with pytest.raises(PetSegError, match="multiple of 32"):
        build_model("resnet18", 100, encoder_weights=None)


def test_precision_auto_follows_native_bf16_support() -> None:
    runtime = select_runtime("cpu", "auto")
    assert runtime.precision == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert runtime.channels_last == (runtime.precision == "bf16")
    assert select_runtime("cpu", "fp32").precision == "fp32"
    assert select_runtime("cpu", "bf16").precision == "bf16"  # forcing is allowed
    with pytest.raises(PetSegError, match="fp16"):
        resolve_precision("fp16", "cpu")
    with pytest.raises(PetSegError, match="unknown precision"):
        resolve_precision("int8", "cpu")
