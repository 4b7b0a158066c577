"""core.explain: the hooks read the U the encoder reports, and the skip ablation leaves no trace on the model."""

from __future__ import annotations

import numpy as np
import pytest
import segmentation_models_pytorch as smp
import torch

from core.dataset import load_image, open_dataset
from core.device import select_runtime
from core.errors import PetSegError
from core.evaluate import checkpoint_path, predict_image
from core.explain import (
    architecture,
    compare_ablation,
    explain,
    explain_with_ablation,
    zeroed_skips,
)
from core.model import ModelConfig, load_checkpoint


def small_unet(encoder: str = "resnet18", depth: int = 5, decoder=(64, 32, 16, 16, 8), size: int = 64, **kw):
    torch.manual_seed(0)
    model = smp.Unet(encoder, encoder_weights=None, encoder_depth=depth, decoder_channels=decoder[:depth],
                     classes=3, **kw).eval()
    return model, ModelConfig(encoder=encoder, image_size=size, encoder_depth=depth, decoder_channels=decoder[:depth])


def photo(height: int = 90, width: int = 120, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    image[20:70, 30:90] = rng.integers(150, 255, (50, 60, 3), dtype=np.uint8)  # a bright "pet" in the middle
    return image


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


@pytest.mark.parametrize(("encoder", "depth"), [("resnet18", 5), ("resnet18", 3), ("mobilenet_v2", 5), ("vgg11", 5)])
def test_stage_shapes_match_the_channels_and_strides_the_encoder_reports(encoder, depth):
    model, cfg = small_unet(encoder, depth)
    arch = architecture(model, cfg)
    channels, strides = model.encoder.out_channels, arch.reported_strides
    assert strides == tuple(min(2**i, model.encoder.output_stride) for i in range(depth + 1))
    # Feature 0 is the input handed back by most encoders; VGG computes it (then it is "encoder stage 0").
    first = 0 if encoder.startswith("vgg") else 1
    assert [s.key for s in arch.part("encoder")][0] == f"enc{first}"
    assert (arch.stage("input").channels, arch.stage("input").height) == (3, cfg.image_size)
    down = arch.part("encoder") + [arch.stage("bottleneck")]
    assert [s.channels for s in down] == list(channels[first:])
    assert [s.stride for s in down] == list(strides[first:])
    assert [(s.height, s.width) for s in down] == [(cfg.image_size // r, cfg.image_size // r) for r in strides[first:]]
    decoder = arch.part("decoder")
    assert [s.channels for s in decoder] == list(cfg.decoder_channels)
    # Each decoder stage climbs one level, and its skip comes from the encoder stage of the same resolution.
    assert [s.stride for s in decoder] == [strides[j] for j in range(depth - 1, -1, -1)]
    for s in decoder[:-1]:
        source = arch.stage(s.skip_from)
        assert (source.height, source.channels) == (s.height, s.skip_channels)
    assert decoder[-1].skip_from is None and decoder[-1].stride == 1
    assert arch.stage("output").channels == 3 and arch.stage("output").height == cfg.image_size

    image = photo()
    ex = explain(model, cfg, image)
    for info in down + decoder:
        maps = ex.stage(info.key)
        assert (maps.channels, maps.height, maps.width) == (info.channels, info.height, info.width)
        assert maps.mean.shape == (info.height, info.width)
        assert maps.top_maps.shape == (min(4, info.channels), info.height, info.width)
    assert ex.probabilities.shape == (3, cfg.image_size, cfg.image_size)
    np.testing.assert_allclose(ex.probabilities.sum(axis=0), 1.0, atol=1e-5)
    assert ex.mask.shape == image.shape[:2] and set(np.unique(ex.mask)) <= {1, 2, 3}
    assert ex.input_image.shape == (cfg.image_size, cfg.image_size, 3)


def test_parameters_per_part_add_up_to_the_model():
    model, cfg = small_unet()
    arch = architecture(model, cfg)
    total = sum(p.numel() for p in model.parameters())
    assert arch.params["total"] == total
    assert arch.params["encoder"] + arch.params["bottleneck_block"] + arch.params["decoder"] + arch.params["head"] \
        == total
    # Every encoder parameter lands in exactly one stage.
    assert arch.unattributed_encoder_params == 0
    assert sum(s.params for s in arch.stages) == total
    # resnet18: conv1 + bn1 compute stage 1; layer1 stage 2; layer4 is the bottleneck.
    enc = model.encoder
    own = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert arch.stage("enc1").params == own(enc.conv1) + own(enc.bn1)
    assert arch.stage("enc2").params == own(enc.layer1)
    assert arch.stage("bottleneck").params == own(enc.layer4)
    assert arch.stage("dec1").params == own(model.decoder.blocks[0])


def test_a_centre_block_becomes_the_bottleneck_and_its_parameters_count_there():
    model, cfg = small_unet("vgg11")  # smp gives VGG encoders a centre block on top of the deepest feature
    arch = architecture(model, cfg)
    centre = sum(p.numel() for p in model.decoder.center.parameters())
    assert arch.params["bottleneck_block"] == centre > 0
    # VGG's deepest feature is a max-pool of stage 4 (no parameters), so the bottleneck's are the centre block's.
    assert arch.stage("bottleneck").params == centre
    assert sum(s.params for s in arch.stages) == arch.params["total"]
    captured = []
    handle = model.decoder.center.register_forward_hook(lambda _m, _a, out: captured.append(out.mean(dim=1)[0]))
    try:
        ex = explain(model, cfg, photo())
    finally:
        handle.remove()
    np.testing.assert_allclose(ex.stage("bottleneck").mean, captured[0].numpy(), rtol=1e-5, atol=1e-6)


def test_skip_ablation_changes_the_output_and_leaves_the_model_unchanged():
    model, cfg = small_unet()
    image = photo()
    before_state, before_hooks = snapshot(model), hook_count(model)
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        before_out = model(x)
    normal = explain(model, cfg, image)
    ablated = explain(model, cfg, image, zero_skips=None)
    assert ablated.zeroed_skips == ("dec1", "dec2", "dec3", "dec4")  # the last block has no skip input
    assert not np.allclose(normal.probabilities, ablated.probabilities, atol=1e-4)
    # Only the decoder stages from the first zeroed skip on can differ; the encoder is untouched.
    assert np.array_equal(normal.stage("bottleneck").mean, ablated.stage("bottleneck").mean)
    assert not np.array_equal(normal.stage("dec1").mean, ablated.stage("dec1").mean)

    after_state = model.state_dict()
    assert before_state.keys() == after_state.keys()
    assert all(torch.equal(before_state[k], after_state[k]) for k in before_state)
    assert hook_count(model) == before_hooks == 0
    with torch.inference_mode():
        assert torch.equal(model(x), before_out)
    assert not model.training
    again = explain(model, cfg, image)
    assert np.array_equal(again.probabilities, normal.probabilities) and np.array_equal(again.mask, normal.mask)


def test_zeroing_one_skip_only_changes_from_that_decoder_stage_on():
    model, cfg = small_unet()
    image = photo()
    normal = explain(model, cfg, image)
    one = explain(model, cfg, image, zero_skips=[2])  # decoder stage 3 loses encoder stage 2's features
    assert one.zeroed_skips == ("dec3",)
    assert np.array_equal(normal.stage("dec2").mean, one.stage("dec2").mean)
    assert not np.array_equal(normal.stage("dec3").mean, one.stage("dec3").mean)


@pytest.mark.parametrize("skips", [None, (1, 3)])
def test_the_ablation_that_reuses_the_encoder_equals_a_full_ablated_pass(skips):
    model, cfg = small_unet()
    image = photo()
    state = snapshot(model)
    normal, ablated = explain_with_ablation(model, cfg, image, skips)
    full_normal, full_ablated = explain(model, cfg, image), explain(model, cfg, image, zero_skips=skips)
    for mine, full in ((normal, full_normal), (ablated, full_ablated)):
        np.testing.assert_allclose(mine.probabilities, full.probabilities, atol=1e-6)
        assert np.array_equal(mine.mask, full.mask) and mine.zeroed_skips == full.zeroed_skips
        assert [s.key for s in mine.stages] == [s.key for s in full.stages]
        for a, b in zip(mine.stages, full.stages, strict=True):
            np.testing.assert_allclose(a.mean, b.mean, atol=1e-6)
    assert ablated.zeroed_skips == (("dec1", "dec2", "dec3", "dec4") if skips is None else ("dec2", "dec4"))
    assert hook_count(model) == 0
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_the_zeroed_skip_really_is_zero_inside_the_forward_pass():
    model, _ = small_unet()
    seen = []
    handle = model.decoder.blocks[0].register_forward_pre_hook(
        lambda _m, a, kw: seen.append(kw["skip_connection"].abs().sum().item()), with_kwargs=True)
    try:
        with torch.inference_mode():
            model(torch.randn(1, 3, 64, 64))
            with zeroed_skips(model, [0]) as zeroed:
                model(torch.randn(1, 3, 64, 64))
    finally:
        handle.remove()
    # Hooks run in registration order, so ours saw the tensor before the ablation replaced it: check the block input.
    assert zeroed == [0]
    captured = []
    handle = model.decoder.blocks[0].conv1.register_forward_hook(lambda _m, a, _o: captured.append(a[0]))
    try:
        with torch.inference_mode(), zeroed_skips(model, [0]):
            model(torch.randn(1, 3, 64, 64))
    finally:
        handle.remove()
    skip_channels = model.encoder.out_channels[-2]
    assert captured[0][:, -skip_channels:].abs().sum() == 0  # the concatenated skip half is all zeros
    assert captured[0][:, :-skip_channels].abs().sum() > 0
    assert seen[0] > 0


def test_hooks_are_removed_and_training_mode_restored_when_the_pass_fails(monkeypatch):
    model, cfg = small_unet()
    model.train()
    state = snapshot(model)

    def boom(*_a, **_k):
        raise RuntimeError("head exploded")

    monkeypatch.setattr(model.segmentation_head, "forward", boom)
    with pytest.raises(RuntimeError, match="head exploded"):
        explain(model, cfg, photo(), zero_skips=None)
    with pytest.raises(RuntimeError, match="head exploded"):
        architecture(model, cfg)
    assert hook_count(model) == 0
    assert model.training and all(m.training for m in model.modules())
    # The pass ran in eval mode: batch-norm running statistics did not move.
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_bad_inputs_say_what_to_do():
    model, cfg = small_unet()
    with pytest.raises(PetSegError, match="uint8 RGB"):
        explain(model, cfg, np.zeros((10, 10), np.uint8))
    with pytest.raises(PetSegError, match="does not exist"):
        explain(model, cfg, photo(), zero_skips=[7])
    with pytest.raises(PetSegError, match="not an smp U-Net"):
        architecture(torch.nn.Conv2d(3, 3, 1), cfg)


def test_compare_ablation_counts_changes_and_scores_both_masks():
    normal_mask = np.full((40, 40), 2, np.uint8)
    normal_mask[10:30, 10:30] = 1
    ablated_mask = normal_mask.copy()
    ablated_mask[10:12, 10:30] = 2  # the top edge of the pet is lost
    gt = normal_mask.copy()
    dummy = dict(input_image=np.zeros((8, 8, 3), np.uint8), original_size=(40, 40), stages=(),
                 probabilities=np.zeros((3, 8, 8), np.float32))
    from core.explain import Explanation

    summary = compare_ablation(Explanation(mask=normal_mask, **dummy), Explanation(mask=ablated_mask, **dummy), gt)
    assert summary["iou_normal"] == 1.0
    assert summary["iou_ablated"] == pytest.approx(360 / 400)
    assert summary["changed_fraction"] == pytest.approx(40 / 1600)
    assert summary["changed_near_outline_fraction"] == 1.0
    without_gt = compare_ablation(Explanation(mask=normal_mask, **dummy), Explanation(mask=ablated_mask, **dummy), None)
    assert without_gt["iou_normal"] is None and without_gt["iou_ablated"] is None


def test_trained_checkpoint_explanation_agrees_with_the_predictor(trained):
    model, cfg, _ = load_checkpoint(checkpoint_path(trained.settings, trained.run, "best"))
    ds = open_dataset(trained.settings.data, trained.settings.workspace)
    image_id = ds.ids("test")[0]
    image = load_image(ds, image_id)
    arch = architecture(model, cfg)
    assert arch.image_size == cfg.image_size == 64
    assert arch.stage("bottleneck").height == 2 and arch.stage("bottleneck").channels == 512
    ex = explain(model, cfg, image)
    prediction = predict_image(model, cfg, image, select_runtime("cpu", "fp32"))
    # Same weights, resize, precision and logits-then-argmax at the photo's size as the evaluation.
    agree = (ex.mask == prediction.mask).mean()
    assert agree > 0.999
    ablated = explain(model, cfg, image, zero_skips=None)
    assert not np.array_equal(ablated.probabilities, ex.probabilities)
    state = snapshot(model)
    explain(model, cfg, image, zero_skips=None)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert hook_count(model) == 0
