"""The Model page's sentences hold for the numbers they are written from, and say nothing they cannot support."""

from __future__ import annotations

from dashboard import explain_text
from tests.test_explain import small_unet


def arch():
    from core.explain import architecture

    model, cfg = small_unet()
    return architecture(model, cfg)


def summary(iou_n, iou_a, changed, pet_n=0.3, pet_a=0.3):
    return {"iou_normal": iou_n, "iou_ablated": iou_a, "changed_fraction": changed,
            "changed_near_outline_fraction": 0.5, "pet_fraction_normal": pet_n, "pet_fraction_ablated": pet_a}


def test_no_claim_about_the_bottleneck_when_no_pet_is_predicted_either_way():
    text = explain_text.ablation_text(arch(), summary(0.0, 0.0, 0.001, pet_n=0.0, pet_a=0.002), 4, 4)
    assert "bottleneck carries" not in text and "predicts (almost) no pet" in text


def test_barely_moving_iou_with_many_changed_pixels_is_not_credited_to_the_bottleneck():
    text = explain_text.ablation_text(arch(), summary(0.80, 0.805, 0.20), 4, 4)
    assert "bottleneck carries" not in text and "20.0% of the pixels change class" in text
    calm = explain_text.ablation_text(arch(), summary(0.80, 0.805, 0.005), 4, 4)
    assert "bottleneck carries most" in calm and "0.800 → 0.805" in calm
    assert "drops by 0.300" in explain_text.ablation_text(arch(), summary(0.8, 0.5, 0.2), 4, 4)


def test_strides_are_not_described_as_receptive_fields_and_parameter_claims_follow_the_counts():
    a = arch()
    bottom = a.stage("bottleneck")
    from types import SimpleNamespace

    maps = SimpleNamespace(height=bottom.height, width=bottom.width, channels=bottom.channels, stride=bottom.stride,
                           active_fraction=0.4, top_channels=(1, 2))
    text = explain_text.stage_text(maps, bottom, a, None)
    assert f"positions are {bottom.stride} pixels apart" in text and "covers" not in text
    encoder = a.params["encoder"] / a.params["total"]
    sentence = explain_text.architecture_text(a)
    assert f"({encoder:.0%}) are in the encoder" in sentence if encoder > 0.5 else \
        f"{encoder:.0%} of the parameters are in the encoder" in sentence
    deepest = max((s for s in a.part("encoder") if s.params), key=lambda s: s.stride)
    assert ("in its deepest stage" in sentence) == (encoder > 0.5 and deepest.params / a.params["encoder"] >= 0.5)
