"""Inside the U-Net, for one model and one image: the shape of the network, its feature maps, the skip ablation.

    >>> from core.explain import architecture, explain, compare_ablation
    >>> model, cfg, _ = load_checkpoint(path)
    >>> arch = architecture(model, cfg)                     # one forward pass on a blank input
    >>> [(s.name, s.height, s.channels, s.params) for s in arch.stages][:2]
    [('input', 256, 3, 0), ('encoder stage 1', 128, 64, 9536)]
    >>> normal = explain(model, cfg, image)                 # image: (H, W, 3) uint8 RGB, any size
    >>> normal.stage("bottleneck").mean.shape, normal.probabilities.shape, normal.mask.shape
    ((8, 8), (3, 256, 256), (375, 500))
    >>> ablated = explain(model, cfg, image, zero_skips=None)   # every skip tensor replaced by zeros
    >>> normal, ablated = explain_with_ablation(model, cfg, image)   # the same, the encoder run once
    >>> compare_ablation(normal, ablated, ground_truth)["iou_ablated"]
    0.41

Everything is read from the smp model itself: the encoder's feature list (a forward hook on ``model.encoder``),
the bottleneck (the deepest encoder feature, through ``decoder.center`` when the model has a centre block), the
output of every ``decoder.blocks[i]`` and the skip tensor each block receives (a forward pre-hook: smp 0.6 calls
``block(x, height, width, skip_connection=...)``). Parameters are attributed to encoder stages by the
resolution of the output of each parameter-holding layer during that forward pass, so no encoder-specific table
is needed.

The skip ablation zeroes the skip tensors at inference, in that forward pass only: the weights are the trained
ones and the network was never trained without skips. Hooks are removed in ``finally`` blocks and the model's
train/eval mode is restored, so the model is unchanged afterwards even when the pass fails.

Results are plain numpy arrays and numbers (no torch tensors), so callers can cache them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from core.errors import PetSegError
from core.evaluate import at_original_size
from core.masks import PET, border_band, resize_image
from core.metrics import pet_iou
from core.model import ModelConfig, to_input

TOP_CHANNELS = 4  # strongest channels kept per stage (by mean absolute activation)
ARCHITECTURE_PROBE = 64  # input side of the forward pass that reads the architecture
_NO_SECOND_PASS = object()


@dataclass(frozen=True)
class StageInfo:
    """One box of the U: where it sits, what it holds, what it costs."""

    key: str  # "input", "enc1".., "bottleneck", "dec1".., "output"
    name: str  # "encoder stage 1", "bottleneck", "decoder stage 2", ...
    part: str  # "input", "encoder", "bottleneck", "decoder" or "output"
    channels: int
    height: int
    width: int
    stride: int  # input side / this side: 1, 2, 4, ... 32
    params: int  # parameters of the layers that compute this stage
    skip_from: str | None = None  # decoder stages: key of the encoder stage concatenated in
    skip_channels: int = 0


@dataclass(frozen=True)
class Architecture:
    description: str  # ModelConfig.describe()
    encoder: str
    image_size: int
    stages: tuple[StageInfo, ...]
    params: dict[str, int]  # encoder, bottleneck_block (smp's optional centre block), decoder, head, total
    reported_channels: tuple[int, ...]  # encoder.out_channels (input first)
    reported_strides: tuple[int, ...]  # the reduction of each encoder feature as the encoder reports it
    unattributed_encoder_params: int = 0  # encoder layers that did not run in the forward pass

    def stage(self, key: str) -> StageInfo:
        return next(s for s in self.stages if s.key == key)

    def part(self, part: str) -> list[StageInfo]:
        return [s for s in self.stages if s.part == part]


@dataclass(frozen=True)
class StageMaps:
    """What one stage computed for one image, reduced to something a person can look at."""

    key: str
    name: str
    part: str
    channels: int
    height: int
    width: int
    stride: int
    mean: np.ndarray  # (h, w) float32: the mean over channels
    top_channels: tuple[int, ...]  # the strongest channels (largest mean |activation|), strongest first
    top_strength: tuple[float, ...]  # their mean |activation|
    top_maps: np.ndarray  # (k, h, w) float32 maps of those channels
    active_fraction: float  # share of values > 0 (after a ReLU: how much of the map fires at all)


@dataclass(frozen=True)
class Explanation:
    input_image: np.ndarray  # (S, S, 3) uint8: what the network saw (squashed to its input size)
    original_size: tuple[int, int]  # (H, W) of the photo
    stages: tuple[StageMaps, ...]
    probabilities: np.ndarray  # (3, S, S) float32 softmax at the model's output resolution, class order
    mask: np.ndarray  # (H, W) uint8 trimap-coded argmax at the photo's size (logits resized first, as evaluate)
    zeroed_skips: tuple[str, ...] = field(default=())  # keys of the decoder stages whose skip input was zeroed

    def stage(self, key: str) -> StageMaps:
        return next(s for s in self.stages if s.key == key)


# --- reading the model ----------------------------------------------------------------------------------------


def _unet_parts(model: torch.nn.Module) -> tuple[Any, Any, list[torch.nn.Module], torch.nn.Module]:
    encoder = getattr(model, "encoder", None)
    decoder = getattr(model, "decoder", None)
    blocks = getattr(decoder, "blocks", None)
    head = getattr(model, "segmentation_head", None)
    if encoder is None or blocks is None or head is None or not hasattr(encoder, "out_channels"):
        raise PetSegError(
            f"{type(model).__name__} is not an smp U-Net (encoder, decoder.blocks, segmentation_head): "
            "the Model page explains U-Net runs only"
        )
    return encoder, decoder, list(blocks), head


def _count(module: torch.nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def _has_centre(decoder: torch.nn.Module) -> bool:
    centre = getattr(decoder, "center", None)
    return centre is not None and not isinstance(centre, torch.nn.Identity)


def reported_strides(encoder: Any) -> tuple[int, ...]:
    """The reduction of each encoder feature as smp defines it: 2**i, capped at ``encoder.output_stride``."""
    depth = len(encoder.out_channels) - 1
    return tuple(min(2**i, int(encoder.output_stride)) for i in range(depth + 1))


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise PetSegError("the image to explain must be an (H, W, 3) uint8 RGB array: load it with core.dataset")


def _model_input(model: torch.nn.Module, cfg: ModelConfig, square: np.ndarray) -> torch.Tensor:
    param = next(model.parameters())
    return to_input(torch.from_numpy(np.ascontiguousarray(square))[None], cfg).to(param.device, param.dtype)


@contextlib.contextmanager
def _hooks() -> Iterator[list[Any]]:
    """Collect hook handles; every one is removed on the way out, also when the forward pass raised."""
    handles: list[Any] = []
    try:
        yield handles
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def _evaluating(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode for the pass (batch-norm statistics must not move), the caller's mode restored afterwards."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        for module, training in modes.items():
            module.training = training


@contextlib.contextmanager
def zeroed_skips(model: torch.nn.Module, blocks: Iterable[int] | None = None) -> Iterator[list[int]]:
    """Within the block, decoder blocks ``blocks`` (0-based; None = all) receive zeros instead of their skip tensor.

    Yields a list that the forward pass fills with the indices of the blocks whose skip was zeroed (the last
    block of an smp U-Net has no skip input). The zeros have the skip's shape, so every
    convolution sees the input it was built for; only the information carried by the skip is gone.
    """
    _, _, decoder_blocks, _ = _unet_parts(model)
    wanted = set(range(len(decoder_blocks))) if blocks is None else {int(b) for b in blocks}
    unknown = wanted - set(range(len(decoder_blocks)))
    if unknown:
        raise PetSegError(f"decoder block {min(unknown)} does not exist: this U-Net has {len(decoder_blocks)} blocks")
    zeroed: list[int] = []

    def make_hook(index: int):
        def hook(_module: torch.nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
            if kwargs.get("skip_connection") is not None:
                zeroed.append(index)
                return args, {**kwargs, "skip_connection": torch.zeros_like(kwargs["skip_connection"])}
            if len(args) >= 4 and args[3] is not None:  # an smp that passes the skip positionally
                zeroed.append(index)
                return (*args[:3], torch.zeros_like(args[3]), *args[4:]), kwargs
            return None

        return hook

    with _hooks() as handles:
        for index in sorted(wanted):
            handles.append(decoder_blocks[index].register_forward_pre_hook(make_hook(index), with_kwargs=True))
        yield zeroed


def _skip_of(args: tuple, kwargs: dict) -> torch.Tensor | None:
    skip = kwargs.get("skip_connection")
    if skip is None and len(args) >= 4:
        skip = args[3]
    return skip


def _spatial(tensor: Any) -> tuple[int, int] | None:
    if isinstance(tensor, torch.Tensor) and tensor.ndim == 4:
        return int(tensor.shape[-2]), int(tensor.shape[-1])
    return None


# --- the architecture ------------------------------------------------------------------------------------------


def architecture(model: torch.nn.Module, cfg: ModelConfig) -> Architecture:
    """The U of this model at its input size: every stage's resolution, channels, parameters and skip link."""
    encoder, decoder, blocks, head = _unet_parts(model)
    size = cfg.image_size
    # Shapes scale with the input (sizes are multiples of 32), so a small probe gives the same U at a fraction
    # of the cost; the numbers are reported at the model's own input size.
    probe = min(size, ARCHITECTURE_PROBE)
    features: list[torch.Tensor] = []
    centre_out: list[torch.Tensor] = []
    block_out: dict[int, torch.Tensor] = {}
    block_skip: dict[int, torch.Tensor | None] = {}
    layer_sizes: list[tuple[torch.nn.Module, tuple[int, int] | None]] = []

    leaves = [m for m in encoder.modules() if not list(m.children()) and any(True for _ in m.parameters(False))]
    with _hooks() as handles, _evaluating(model):
        handles.append(encoder.register_forward_hook(lambda _m, _a, out: features.extend(out)))
        for leaf in leaves:
            handles.append(leaf.register_forward_hook(lambda m, _a, out: layer_sizes.append((m, _spatial(out)))))
        if _has_centre(decoder):
            handles.append(decoder.center.register_forward_hook(lambda _m, _a, out: centre_out.append(out)))
        for i, block in enumerate(blocks):
            handles.append(block.register_forward_hook(lambda _m, _a, out, i=i: block_out.__setitem__(i, out)))
            handles.append(block.register_forward_pre_hook(
                lambda _m, args, kwargs, i=i: block_skip.__setitem__(i, _skip_of(args, kwargs)), with_kwargs=True))
        param = next(model.parameters())
        x = torch.zeros(1, 3, probe, probe, device=param.device, dtype=param.dtype)
        logits = model(x)

    depth = len(features) - 1
    sizes = [_spatial(f) for f in features]
    stage_params = [0] * (depth + 1)
    seen: set[int] = set()
    current = 0
    for layer, hw in layer_sizes:
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        # Layers run in order and stages only get smaller, so a layer belongs to the first stage at or after the
        # current one with its output size; a size that matches none stays with the current stage.
        match = next((j for j in range(current, depth + 1) if hw is not None and sizes[j] == hw), None)
        if match is not None:
            current = match
        stage_params[current] += _count_own(layer)
    unattributed = _count(encoder) - sum(stage_params)

    def info(key: str, name: str, part: str, tensor: torch.Tensor, params: int, **extra: Any) -> StageInfo:
        stride = max(1, round(probe / int(tensor.shape[-2])))
        return StageInfo(key, name, part, int(tensor.shape[1]), size // stride, size // stride, stride, params, **extra)

    stages = [StageInfo("input", "input", "input", int(x.shape[1]), size, size, 1, 0)]
    if _first_is_computed(stage_params):
        stages.append(info("enc0", "encoder stage 0", "encoder", features[0], stage_params[0]))
    for j in range(1, depth):
        stages.append(info(f"enc{j}", f"encoder stage {j}", "encoder", features[j], stage_params[j]))
    bottom = centre_out[0] if centre_out else features[depth]
    stages.append(info("bottleneck", "bottleneck", "bottleneck", bottom, stage_params[depth] + _count(decoder.center)))
    by_identity = {id(f): j for j, f in enumerate(features)}
    for i in range(len(blocks)):
        skip = block_skip.get(i)
        j = by_identity.get(id(skip)) if skip is not None else None
        stages.append(info(
            f"dec{i + 1}", f"decoder stage {i + 1}", "decoder", block_out[i], _count(blocks[i]),
            skip_from=None if j is None else (f"enc{j}" if j < depth else "bottleneck"),
            skip_channels=0 if skip is None else int(skip.shape[1]),
        ))
    stages.append(info("output", "output", "output", logits, _count(head)))

    params = {
        "encoder": _count(encoder),
        "bottleneck_block": _count(decoder.center),
        "decoder": sum(_count(b) for b in blocks),
        "head": _count(head),
    }
    params["total"] = _count(model)
    return Architecture(
        description=cfg.describe(),
        encoder=cfg.encoder,
        image_size=size,
        stages=tuple(stages),
        params=params,
        reported_channels=tuple(int(c) for c in encoder.out_channels),
        reported_strides=reported_strides(encoder),
        unattributed_encoder_params=unattributed,
    )


def _first_is_computed(stage_params: list[int]) -> bool:
    """Most smp encoders hand the input itself back as feature 0; a few (VGG) compute it at full resolution."""
    return stage_params[0] > 0


def _count_own(layer: torch.nn.Module) -> int:
    return sum(p.numel() for p in layer.parameters(recurse=False))


# --- one image through the network -----------------------------------------------------------------------------


def _summarise(key: str, name: str, part: str, tensor: torch.Tensor, size: int, top: int) -> StageMaps:
    x = tensor[0].float()
    channels, h, w = int(x.shape[0]), int(x.shape[1]), int(x.shape[2])
    strength = x.abs().mean(dim=(1, 2))
    k = min(top, channels)
    order = torch.argsort(strength, descending=True)[:k]
    return StageMaps(
        key=key, name=name, part=part, channels=channels, height=h, width=w, stride=max(1, round(size / h)),
        mean=x.mean(dim=0).cpu().numpy().astype(np.float32),
        top_channels=tuple(int(c) for c in order),
        top_strength=tuple(float(strength[c]) for c in order),
        top_maps=x[order].cpu().numpy().astype(np.float32),
        active_fraction=float((x > 0).float().mean()),
    )


def explain(
    model: torch.nn.Module,
    cfg: ModelConfig,
    image: np.ndarray,
    *,
    zero_skips: Iterable[int] | None = (),
    top: int = TOP_CHANNELS,
) -> Explanation:
    """Pass ``image`` through the model and keep, per stage, the channel mean and the ``top`` strongest channels.

    ``zero_skips``: decoder blocks (0-based) whose skip input is replaced by zeros; ``()`` = the normal model,
    ``None`` = every skip (the ablation).
    """
    return _explain(model, cfg, image, zero_skips, top)[0]


def explain_with_ablation(
    model: torch.nn.Module,
    cfg: ModelConfig,
    image: np.ndarray,
    zero_skips: Iterable[int] | None = None,
    *,
    top: int = TOP_CHANNELS,
) -> tuple[Explanation, Explanation]:
    """``(normal, ablated)``: as two :func:`explain` calls, but the ablation reuses the encoder's features.

    Zeroing skips changes nothing before the decoder, so the second pass runs only the decoder and the head on
    the features of the first (as smp's own forward does: ``head(decoder(encoder(x)))``).
    """
    wanted = None if zero_skips is None else tuple(zero_skips)
    normal, ablated = _explain(model, cfg, image, (), top, ablation=wanted)
    return normal, ablated if ablated is not None else normal


def _explain(
    model: torch.nn.Module,
    cfg: ModelConfig,
    image: np.ndarray,
    zero_skips: Iterable[int] | None,
    top: int,
    ablation: tuple[int, ...] | None | object = _NO_SECOND_PASS,
) -> tuple[Explanation, Explanation | None]:
    _check_image(image)
    encoder, decoder, blocks, head = _unet_parts(model)
    size = cfg.image_size
    square = resize_image(image, size)
    depth = len(encoder.out_channels) - 1
    centre = _has_centre(decoder)
    sink: dict[str, dict[str, StageMaps]] = {"stages": {}}  # where the hooks write (normal pass, then ablation)
    features: list[torch.Tensor] = []

    def keep(key: str, name: str, part: str, tensor: torch.Tensor) -> None:
        sink["stages"][key] = _summarise(key, name, part, tensor, size, top)

    def on_encoder(_m: torch.nn.Module, inputs: tuple, out: list[torch.Tensor]) -> None:
        features.extend(out)
        if out[0] is not inputs[0]:  # feature 0 is computed (VGG), not the input handed back
            keep("enc0", "encoder stage 0", "encoder", out[0])
        for j in range(1, depth):
            keep(f"enc{j}", f"encoder stage {j}", "encoder", out[j])
        if not centre:
            keep("bottleneck", "bottleneck", "bottleneck", out[depth])

    def on_block(i: int):
        def hook(_m: torch.nn.Module, _a: tuple, out: torch.Tensor) -> None:
            keep(f"dec{i + 1}", f"decoder stage {i + 1}", "decoder", out)

        return hook

    def skips(wanted: tuple[int, ...] | None) -> contextlib.AbstractContextManager:
        return zeroed_skips(model, wanted) if wanted != () else contextlib.nullcontext([])

    with _hooks() as handles, _evaluating(model):
        handles.append(encoder.register_forward_hook(on_encoder))
        if centre:
            handles.append(decoder.center.register_forward_hook(
                lambda _m, _a, out: keep("bottleneck", "bottleneck", "bottleneck", out)))
        for i, block in enumerate(blocks):
            handles.append(block.register_forward_hook(on_block(i)))
        wanted = None if zero_skips is None else tuple(zero_skips)
        with skips(wanted) as zeroed:
            logits = model(_model_input(model, cfg, square)).float()
        first = _finish(image, square, depth, len(blocks), sink["stages"], logits, zeroed)
        second = None
        if ablation is not _NO_SECOND_PASS and ablation != ():
            sink["stages"] = dict(sink["stages"])  # encoder stages are shared; decoder entries get replaced
            with skips(ablation) as zeroed:
                logits = head(decoder(features)).float()
            second = _finish(image, square, depth, len(blocks), sink["stages"], logits, zeroed)
    return first, second


def _finish(image: np.ndarray, square: np.ndarray, depth: int, n_blocks: int, stages: dict[str, StageMaps],
            logits: torch.Tensor, zeroed: list[int]) -> Explanation:
    height, width = image.shape[:2]
    probabilities = torch.softmax(logits, dim=1)[0].cpu().numpy().astype(np.float32)
    mask, _, _ = at_original_size(logits[0].cpu(), height, width)
    order = [f"enc{j}" for j in range(depth)] + ["bottleneck"] + [f"dec{i + 1}" for i in range(n_blocks)]
    return Explanation(
        input_image=square,
        original_size=(int(height), int(width)),
        stages=tuple(stages[k] for k in order if k in stages),
        probabilities=probabilities,
        mask=mask.numpy(),
        zeroed_skips=tuple(f"dec{i + 1}" for i in sorted(set(zeroed))),
    )


# --- comparing the ablation with the normal output ----------------------------------------------------------------


def _iou_or_none(mask: np.ndarray, ground_truth: np.ndarray | None) -> float | None:
    return None if ground_truth is None or ground_truth.shape != mask.shape else pet_iou(mask, ground_truth)


def compare_ablation(normal: Explanation, ablated: Explanation, ground_truth: np.ndarray | None) -> dict[str, Any]:
    """Both IoUs, how many pixels changed class, and how many of those lie near the normal output's pet outline."""
    changed = normal.mask != ablated.mask
    n_changed = int(changed.sum())
    near = int((changed & border_band(normal.mask == PET)).sum())
    return {
        "iou_normal": _iou_or_none(normal.mask, ground_truth),
        "iou_ablated": _iou_or_none(ablated.mask, ground_truth),
        "changed_fraction": n_changed / changed.size,
        "changed_near_outline_fraction": near / n_changed if n_changed else 0.0,
        "pet_fraction_normal": float((normal.mask == PET).mean()),
        "pet_fraction_ablated": float((ablated.mask == PET).mean()),
    }
