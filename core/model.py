"""The U-Net (built by segmentation_models_pytorch) and its checkpoints.

    >>> from core.model import build_model, load_checkpoint, save_checkpoint
    >>> model, cfg = build_model("resnet18", image_size=128, encoder_weights="imagenet")  # random init offline
    >>> save_checkpoint(Path("runs/demo/best.pt"), model, cfg, meta={"epoch": 1})
    >>> model, cfg, meta = load_checkpoint(Path("runs/demo/best.pt"))

A checkpoint is a plain dict of tensors, numbers and strings, written atomically and read only with
``torch.load(weights_only=True)``: one that carries pickled code is refused, never executed. It holds everything
needed to rebuild and use the model (``ModelConfig``: architecture, encoder, input size, normalisation, class
names) and, in ``last.pt``, the optimiser, scheduler and RNG states needed to resume training.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import pickle
import socket
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import torch

from core.atomic import atomic_open
from core.errors import CheckpointError, PetSegError
from core.masks import CLASS_NAMES

log = logging.getLogger("petseg")

CHECKPOINT_FORMAT = "petseg-unet"
CHECKPOINT_VERSION = 1
DEFAULT_DECODER_CHANNELS = (256, 128, 64, 32, 16)
# What every smp "imagenet" encoder config says; used only when that config cannot be fetched (no network and
# nothing cached), i.e. when the encoder is randomly initialised anyway.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_NETWORK_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the network and feed it: stored in every checkpoint."""

    encoder: str = "resnet34"
    image_size: int = 256
    arch: str = "unet"
    encoder_depth: int = 5
    decoder_channels: tuple[int, ...] = DEFAULT_DECODER_CHANNELS
    class_names: tuple[str, ...] = CLASS_NAMES
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    input_range: tuple[float, float] = (0.0, 1.0)
    input_space: str = "RGB"
    # What the encoder was initialised from ("imagenet" or None for random): a fact about the weights.
    encoder_weights: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("decoder_channels", "class_names", "mean", "std", "input_range"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("decoder_channels", "class_names", "mean", "std", "input_range"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)

    def describe(self) -> str:
        weights = self.encoder_weights or "random init"
        return f"{self.arch} {self.encoder} ({weights}) at {self.image_size} px"


def check_image_size(size: int) -> int:
    if size < 32 or size % 32:
        raise PetSegError(f"image size {size} is not a multiple of 32 (>= 32): use e.g. 128 or 256")
    return size


# --- building ---------------------------------------------------------------


def _hub_endpoint() -> tuple[str, int]:
    try:
        from huggingface_hub import constants

        url = urlparse(constants.ENDPOINT)
        return url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    except Exception:  # noqa: BLE001 - an unknown hub layout only means "assume the default endpoint"
        return "huggingface.co", 443


def hub_reachable(timeout: float = _NETWORK_TIMEOUT_S) -> bool:
    """A quick TCP probe so an offline machine fails in seconds instead of minutes of hub retries."""
    host, port = _hub_endpoint()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """Read pretrained files from the local Hugging Face cache only (no HTTP, no retries)."""
    from huggingface_hub import constants

    old = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = old


def _from_hub(fetch: Any) -> Any:
    """Run ``fetch()`` against the local cache, then against the network if the hub is reachable."""
    try:
        with _hub_offline(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fetch()
    except (OSError, ValueError, RuntimeError):
        if not hub_reachable():
            raise
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fetch()


def preprocessing_params(encoder: str) -> dict[str, Any]:
    """The encoder's own normalisation (mean, std, input range, colour order), ImageNet's if unobtainable."""
    import segmentation_models_pytorch as smp

    try:
        params = _from_hub(lambda: smp.encoders.get_preprocessing_params(encoder))
    except (OSError, ValueError, RuntimeError, KeyError):
        params = {"mean": IMAGENET_MEAN, "std": IMAGENET_STD, "input_range": (0, 1), "input_space": "RGB"}
    return {
        "mean": tuple(float(v) for v in params["mean"]),
        "std": tuple(float(v) for v in params["std"]),
        "input_range": tuple(float(v) for v in params.get("input_range") or (0, 1)),
        "input_space": str(params.get("input_space") or "RGB"),
    }


def create_network(cfg: ModelConfig, encoder_weights: str | None = None) -> torch.nn.Module:
    """The smp model for ``cfg``; ``encoder_weights`` downloads pretrained encoder weights (may raise)."""
    import segmentation_models_pytorch as smp

    weights: Any = encoder_weights
    if encoder_weights and cfg.encoder.startswith("tu-"):
        weights = True  # timm encoders name their pretrained tag in the encoder name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return smp.create_model(
                cfg.arch,
                encoder_name=cfg.encoder,
                encoder_weights=weights,
                encoder_depth=cfg.encoder_depth,
                decoder_channels=tuple(cfg.decoder_channels),
                classes=len(cfg.class_names),
            )
        except KeyError as exc:
            raise PetSegError(
                f"unknown encoder {cfg.encoder!r} ({exc}): use one of smp's encoders, e.g. resnet18 or resnet34"
            ) from exc


class SegLoss(torch.nn.Module):
    """The training loss: smp's multiclass Dice loss plus cross-entropy, on logits (in fp32 under autocast)."""

    def __init__(self) -> None:
        super().__init__()
        import segmentation_models_pytorch as smp

        self.dice = smp.losses.DiceLoss(mode="multiclass", from_logits=True)
        self.ce = torch.nn.CrossEntropyLoss()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        return self.dice(logits, target) + self.ce(logits, target)


def build_model(
    encoder: str = "resnet34",
    image_size: int = 256,
    encoder_weights: str | None = "imagenet",
    decoder_channels: tuple[int, ...] | None = None,
    encoder_depth: int = 5,
) -> tuple[torch.nn.Module, ModelConfig]:
    """A fresh U-Net; pretrained encoder weights when obtainable, else random init with a warning."""
    check_image_size(image_size)
    if encoder_weights in ("none", "None", ""):
        encoder_weights = None
    decoder_channels = tuple(decoder_channels or DEFAULT_DECODER_CHANNELS[:encoder_depth])
    cfg = ModelConfig(
        encoder=encoder,
        image_size=image_size,
        encoder_depth=encoder_depth,
        decoder_channels=decoder_channels,
        **preprocessing_params(encoder),
    )
    used = None
    if encoder_weights:
        try:
            model = _from_hub(lambda: create_network(cfg, encoder_weights))
            used = encoder_weights
        except (OSError, ValueError, RuntimeError) as exc:
            reason = "the weights hub is unreachable and they are not cached" if not hub_reachable() else (
                str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
            )
            log.warning(
                "%s weights for encoder %s could not be downloaded (%s): training from random initialisation, "
                "which needs more epochs; run once with network access to cache them",
                encoder_weights, encoder, reason,
            )
    if used is None:
        model = create_network(cfg, None)
    cfg = ModelConfig.from_dict({**cfg.to_dict(), "encoder_weights": used})
    return model, cfg


def network_from_config(cfg: ModelConfig) -> torch.nn.Module:
    """The architecture of ``cfg`` with untrained weights (to load a state dict into)."""
    return create_network(cfg, None)


# --- preprocessing ----------------------------------------------------------


def normalize(images: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """Float NCHW RGB pixels in 0..255 -> the encoder's input (its mean, std, range and colour order)."""
    x = images.float()
    if cfg.input_space.upper() == "BGR":
        x = x.flip(1)
    scale = (cfg.input_range[1] - cfg.input_range[0]) / 255.0
    mean = torch.tensor(cfg.mean, device=x.device).view(1, -1, 1, 1)
    inv_std = 1.0 / torch.tensor(cfg.std, device=x.device).view(1, -1, 1, 1)
    # (x * scale + lo - mean) / std as one multiply-add
    return x * (scale * inv_std) + (cfg.input_range[0] - mean) * inv_std


def to_input(images: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """uint8 NHWC RGB batch -> normalised float NCHW."""
    return normalize(images.permute(0, 3, 1, 2), cfg)


# --- checkpoints ------------------------------------------------------------


def save_checkpoint(
    path: Path,
    model: torch.nn.Module,
    cfg: ModelConfig,
    meta: dict[str, Any] | None = None,
    train_state: dict[str, Any] | None = None,
) -> None:
    """Write a checkpoint atomically (temporary file, fsync, rename): a kill never leaves a torn file."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "model_config": cfg.to_dict(),
        "class_names": list(cfg.class_names),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
        "meta": dict(meta or {}),
    }
    if train_state is not None:
        payload["train_state"] = train_state
    with atomic_open(Path(path)) as handle:
        torch.save(payload, handle)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The raw checkpoint dict, loaded weights-only and checked to be a PetSeg checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: train the run first (python -m core train)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"checkpoint {path} was refused: it carries pickled Python objects, not just weights "
            "(only load checkpoints written by PetSeg)"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError) as exc:
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated: delete it and retrain or resume") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"checkpoint {path} is not a PetSeg U-Net checkpoint (another architecture or tool wrote it)"
        )
    if payload.get("format_version", 0) > CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint {path} was written by a newer PetSeg: upgrade PetSeg to read it")
    return payload


def config_of(payload: dict[str, Any], path: Path) -> ModelConfig:
    try:
        return ModelConfig.from_dict(payload["model_config"])
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} has no usable model config: retrain the run") from exc


def load_state(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], cfg: ModelConfig, path: Path) -> None:
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint {path} does not match a {cfg.arch} with encoder {cfg.encoder}: its weights come from "
            "another architecture; retrain or point to the right run"
        ) from exc


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, ModelConfig, dict]:
    """Rebuild the model from a checkpoint: ``(model in eval mode on device, ModelConfig, meta)``."""
    path = Path(path)
    payload = read_checkpoint(path)
    cfg = config_of(payload, path)
    try:
        model = network_from_config(cfg)
    except (PetSegError, KeyError, ValueError, TypeError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {path} describes a model this PetSeg cannot build ({exc})") from exc
    load_state(model, payload.get("state_dict") or {}, cfg, path)
    model.to(device).eval()
    meta = dict(payload.get("meta") or {})
    meta.setdefault("class_names", payload.get("class_names"))
    return model, cfg, meta


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def rng_state(numpy_rng: np.random.Generator, torch_gen: torch.Generator) -> dict[str, Any]:
    """RNG states as weights-only-safe values (tensors, dicts, ints, strings)."""
    return {
        "numpy": numpy_rng.bit_generator.state,
        "torch": torch_gen.get_state(),
        "torch_global": torch.get_rng_state(),
    }


def restore_rng(state: dict[str, Any], numpy_rng: np.random.Generator, torch_gen: torch.Generator) -> None:
    numpy_rng.bit_generator.state = state["numpy"]
    torch_gen.set_state(state["torch"])
    torch.set_rng_state(state["torch_global"])
