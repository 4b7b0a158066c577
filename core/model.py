"""The U-Net (built by segmentation_models_pytorch) and its checkpoints.

    >>> from core.model import build_model, load_checkpoint, save_checkpoint
    >>> model, cfg = build_model("resnet18", image_size=128, encoder_weights="imagenet")  # random init offline
    >>> save_checkpoint(Path("runs/demo/best.pt"), model, cfg, meta={"epoch": 1})
    >>> model, cfg, meta = load_checkpoint(Path("runs/demo/best.pt"))
    >>> model, cfg, meta = load_external(Path("smp_model_folder"))      # smp save_pretrained, Lightning, state_dict

A checkpoint is a plain dict of tensors, numbers and strings, written atomically and read only with
``torch.load(weights_only=True)``: one that carries pickled code is refused, never executed. It holds everything
needed to rebuild and use the model (``ModelConfig``: architecture, encoder, input size, normalisation, class
names) and, in ``last.pt``, the optimiser, scheduler and RNG states needed to resume training.

Checkpoints from outside (:func:`load_external`) are read the same safe way (``weights_only`` or safetensors):
a PetSeg checkpoint; an smp folder written by ``save_pretrained`` (config.json + model.safetensors, loaded
with smp's own ``from_pretrained``), or a zip of it; a Lightning checkpoint of smp's Oxford-pet example
(``model.`` prefix, ``mean`` and ``std`` buffers applied to raw 0..255 pixels, as that example does); or a
plain ``state_dict`` of an smp model whose architecture is given (:class:`ExternalSpec`). A 1-class (binary)
model gets :class:`BinaryAsTrimap` as its head, whose three output channels make its pet logit a
pet-vs-background prediction that never says border; its config has ``binary=True`` (border metrics are not
applicable to it). The result can be saved as a PetSeg checkpoint and is rebuilt from it like any other
(``ModelConfig.smp_config`` keeps smp's own constructor arguments).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
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
    # A 1-class model (pet logit) wrapped to give the three class channels; it never predicts border.
    binary: bool = False
    # smp's constructor arguments as JSON (checkpoints from outside, e.g. an FPN or custom decoder): when set, the
    # network is built from these instead of the fields above.
    smp_config: str = ""

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

    if cfg.smp_config:
        net = _smp_from_config(json.loads(cfg.smp_config))
        return binary_as_trimap(net) if cfg.binary else net

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


class BinaryAsTrimap(torch.nn.Module):
    """The segmentation head of a 1-class smp model, seen as the three class channels PetSeg's evaluation reads.

    Channel 0 is the pet logit z, channel 1 is 0 and channel 2 a large negative constant: softmax gives pet
    probability sigmoid(z) (the binary model's own), argmax gives pet where z > 0, and border never wins. It
    replaces the model's ``segmentation_head`` (see :func:`binary_as_trimap`), so the model stays an smp model
    whose every path to the output (its forward, the Model page's head-after-decoder ablation) gives 3 channels.
    """

    NEVER = -1.0e4  # finite, so bilinear resizing keeps it finite; exp(NEVER - max) is 0

    def __init__(self, head: torch.nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.head(x)
        return torch.cat([z, torch.zeros_like(z), torch.full_like(z, self.NEVER)], dim=1)


def binary_as_trimap(net: torch.nn.Module) -> torch.nn.Module:
    """Give a 1-class smp model (weights already loaded) the three-channel output; returns the same model."""
    net.segmentation_head = BinaryAsTrimap(net.segmentation_head)
    return net


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


# --- checkpoints from outside -----------------------------------------------

PRETRAINED_CONFIG = "config.json"
PRETRAINED_WEIGHTS = "model.safetensors"


@dataclass(frozen=True)
class ExternalSpec:
    """What a plain ``state_dict`` does not say about its model (smp names), and the input it was trained on.

    ``classes`` is read from the weights when they hold smp's segmentation head; ``input_range`` is the pixel
    range before mean/std (smp's Oxford-pet example feeds raw 0..255 pixels, most code 0..1).
    """

    arch: str = "unet"
    encoder: str = "resnet34"
    classes: int | None = None
    image_size: int = 256
    input_range: tuple[float, float] = (0.0, 1.0)


def load_external(
    path: Path, spec: ExternalSpec | None = None, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, ModelConfig, dict[str, Any]]:
    """Load a checkpoint PetSeg did not write (or did): ``(model in eval mode, ModelConfig, meta)``.

    ``meta["source"]`` names what was found: ``petseg``, ``smp-pretrained``, ``lightning`` or ``state-dict``.
    """
    path = Path(path).expanduser()
    spec = spec or ExternalSpec()
    check_image_size(spec.image_size)
    if path.is_dir():
        model, cfg, meta = _load_pretrained_folder(path, spec)
    elif path.suffix.lower() == ".zip" and path.is_file():
        model, cfg, meta = _load_pretrained_zip(path, spec)
    elif not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    elif path.suffix.lower() == ".safetensors":
        model, cfg, meta = _from_state_dict(_read_safetensors(path), spec, path, "state-dict")
    else:
        payload = _torch_load(path)
        if isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT:
            model, cfg, meta = load_checkpoint(path)
            meta = {**meta, "source": "petseg"}
        elif isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict) and (
            "pytorch-lightning_version" in payload or any(str(k).startswith("model.") for k in payload["state_dict"])
        ):
            model, cfg, meta = _from_lightning(payload, spec, path)
        elif isinstance(payload, dict) and payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
            model, cfg, meta = _from_state_dict(payload, spec, path, "state-dict")
        else:
            raise CheckpointError(
                f"{path} is neither a PetSeg checkpoint, a Lightning checkpoint nor a state_dict of tensors: save "
                "the model with torch.save(model.state_dict(), path) or smp's save_pretrained(folder)"
            )
    meta.setdefault("imported_from", str(path.absolute()))
    meta.setdefault("sha256", file_sha256(path / PRETRAINED_WEIGHTS if path.is_dir() else path))
    model.to(device).eval()
    return model, cfg, meta


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path} was refused: it holds pickled Python code or objects, not only weights ({first}). PetSeg loads "
            "checkpoints with torch.load(weights_only=True) or safetensors and never runs code from a file; re-save "
            "the weights with torch.save(model.state_dict(), path) or smp's model.save_pretrained(folder)"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError) as exc:
        raise CheckpointError(
            f"{path} is not a readable torch checkpoint (corrupt, truncated or another format)"
        ) from exc


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file ({exc})") from exc


def _smp_from_config(config: dict[str, Any]) -> torch.nn.Module:
    """An smp model from its constructor arguments (``arch`` or save_pretrained's ``_model_class``), untrained."""
    import segmentation_models_pytorch as smp

    kwargs = {k: v for k, v in config.items() if not k.startswith("_") and k != "arch"}
    arch = config.get("arch") or config.get("_model_class")
    kwargs["encoder_weights"] = None  # the weights come from the checkpoint; never download anything
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return smp.create_model(str(arch), **kwargs)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"smp cannot build a {arch!r} model with {kwargs} ({exc})") from exc


def _classes_of(state: dict[str, torch.Tensor], path: Path) -> int | None:
    head = [v for k, v in state.items() if k.startswith("segmentation_head.") and k.endswith(".weight")]
    return int(head[-1].shape[0]) if head else None


def _external_config(smp_config: dict[str, Any], spec: ExternalSpec, path: Path, *, mean: tuple[float, ...] | None,
                     std: tuple[float, ...] | None) -> ModelConfig:
    classes = int(smp_config.get("classes", 1))
    if classes not in (1, 3):
        raise CheckpointError(
            f"{path} is a {classes}-class model: PetSeg evaluates 3-class models (pet, background, border, in that "
            "channel order: trimap value - 1) and 1-class models (pet vs background)"
        )
    encoder = str(smp_config.get("encoder_name", spec.encoder))
    params = preprocessing_params(encoder) if mean is None or std is None else {"input_space": "RGB"}
    depth = int(smp_config.get("encoder_depth", 5))
    return ModelConfig(
        encoder=encoder,
        image_size=spec.image_size,
        arch=str(smp_config.get("arch") or smp_config.get("_model_class") or spec.arch).lower(),
        encoder_depth=depth,
        decoder_channels=tuple(smp_config.get("decoder_channels") or DEFAULT_DECODER_CHANNELS[:depth]),
        mean=tuple(mean) if mean is not None else params["mean"],
        std=tuple(std) if std is not None else params["std"],
        input_range=tuple(float(v) for v in spec.input_range),  # type: ignore[arg-type]
        input_space=str(params.get("input_space") or "RGB"),
        encoder_weights=None,
        binary=classes == 1,
        smp_config=json.dumps({k: v for k, v in smp_config.items() if k != "encoder_weights"}, sort_keys=True),
    )


def _assemble(smp_config: dict[str, Any], state: dict[str, torch.Tensor], spec: ExternalSpec, path: Path,
              source: str, mean: tuple[float, ...] | None = None,
              std: tuple[float, ...] | None = None) -> tuple[torch.nn.Module, ModelConfig, dict[str, Any]]:
    cfg = _external_config(smp_config, spec, path, mean=mean, std=std)
    net = _smp_from_config(json.loads(cfg.smp_config))
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = str(exc).splitlines()[0][:200]
        raise CheckpointError(
            f"the weights in {path} do not fit a {cfg.arch} with encoder {cfg.encoder} and {smp_config.get('classes')} "
            f"class(es) ({detail}): give the architecture it was trained with (--arch, --encoder)"
        ) from exc
    model = binary_as_trimap(net) if cfg.binary else net
    return model, cfg, {"source": source}


def _from_state_dict(state: dict[str, Any], spec: ExternalSpec, path: Path,
                     source: str) -> tuple[torch.nn.Module, ModelConfig, dict[str, Any]]:
    state = {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    found = _classes_of(state, path)
    if spec.classes is not None and found is not None and spec.classes != found:
        raise CheckpointError(f"{path} has a {found}-class head, not {spec.classes} as given")
    classes = found or spec.classes or len(CLASS_NAMES)
    config = {"arch": spec.arch, "encoder_name": spec.encoder, "classes": classes}
    return _assemble(config, state, spec, path, source)


def _from_lightning(payload: dict[str, Any], spec: ExternalSpec,
                    path: Path) -> tuple[torch.nn.Module, ModelConfig, dict[str, Any]]:
    """smp's Oxford-pet example: ``self.model = smp.create_model(arch, encoder_name, in_channels, classes)`` plus
    ``mean``/``std`` buffers that its ``forward`` applies to the raw pixels."""
    raw = payload["state_dict"]
    state = {k[len("model."):]: v for k, v in raw.items() if str(k).startswith("model.")}
    if not state:
        raise CheckpointError(f"{path} is a Lightning checkpoint without 'model.' weights (not smp's example layout)")
    hparams = payload.get("hyper_parameters") if isinstance(payload.get("hyper_parameters"), dict) else {}
    classes = _classes_of(state, path) or hparams.get("out_classes") or spec.classes or 1
    config = {
        "arch": str(hparams.get("arch") or spec.arch),
        "encoder_name": str(hparams.get("encoder_name") or spec.encoder),
        "in_channels": int(hparams.get("in_channels") or 3),
        "classes": int(classes),
    }
    mean = std = None
    if isinstance(raw.get("mean"), torch.Tensor) and isinstance(raw.get("std"), torch.Tensor):
        mean = tuple(float(v) for v in raw["mean"].flatten())
        std = tuple(float(v) for v in raw["std"].flatten())
        # The example normalises raw 0..255 pixels with these (ImageNet-scale) numbers: keep that input range.
        if spec.input_range == ExternalSpec.input_range:
            spec = ExternalSpec(**{**asdict(spec), "input_range": (0.0, 255.0)})
    model, cfg, meta = _assemble(config, state, spec, path, "lightning", mean, std)
    meta.update(epoch=payload.get("epoch"), global_step=payload.get("global_step"))
    return model, cfg, meta


MAX_WEIGHTS_BYTES = 4 * 1024**3  # far above any smp model (a resnet152 U-Net is ~270 MB)


def _load_pretrained_zip(path: Path, spec: ExternalSpec) -> tuple[torch.nn.Module, ModelConfig, dict[str, Any]]:
    """A zip of a save_pretrained folder (what a browser can upload): its two files unpacked, then loaded."""
    import tempfile

    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"{path} is not a readable zip ({exc})") from exc
    with archive, tempfile.TemporaryDirectory() as tmp:
        for wanted in (PRETRAINED_CONFIG, PRETRAINED_WEIGHTS):
            found = [i for i in archive.infolist()
                     if (i.filename == wanted or i.filename.endswith("/" + wanted)) and ".." not in i.filename]
            if not found:
                raise CheckpointError(f"{path.name} has no {wanted}: zip the folder smp's save_pretrained wrote")
            if found[0].file_size > MAX_WEIGHTS_BYTES:
                raise CheckpointError(f"{path.name}: {wanted} would unpack to {found[0].file_size:,} bytes; refused")
            with archive.open(found[0]) as source, open(Path(tmp) / wanted, "wb") as target:
                target.write(source.read(MAX_WEIGHTS_BYTES + 1))
        model, cfg, meta = _load_pretrained_folder(Path(tmp), spec)
        meta["sha256"] = file_sha256(Path(tmp) / PRETRAINED_WEIGHTS)
    return model, cfg, meta


def _load_pretrained_folder(folder: Path, spec: ExternalSpec) -> tuple[torch.nn.Module, ModelConfig, dict[str, Any]]:
    """An smp ``save_pretrained`` folder, loaded with smp's own ``from_pretrained`` from the local files only."""
    import segmentation_models_pytorch as smp

    config_path, weights = folder / PRETRAINED_CONFIG, folder / PRETRAINED_WEIGHTS
    if not config_path.is_file() or not weights.is_file():
        raise CheckpointError(
            f"folder {folder} is not an smp save_pretrained folder: it needs {PRETRAINED_CONFIG} and "
            f"{PRETRAINED_WEIGHTS} (a pytorch_model.bin is a pickle and is not loaded)"
        )
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{config_path} is not readable JSON ({exc})") from exc
    if not isinstance(config, dict) or not (config.get("_model_class") or config.get("arch")):
        raise CheckpointError(f"{config_path} does not name an smp model class (_model_class)")
    cfg = _external_config(config, spec, folder, mean=None, std=None)
    try:
        with _hub_offline(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = smp.from_pretrained(str(folder), encoder_weights=None)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"smp could not load {folder} ({str(exc).splitlines()[0][:200]})") from exc
    model = binary_as_trimap(net) if cfg.binary else net
    return model, cfg, {"source": "smp-pretrained"}
