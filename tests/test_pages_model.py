"""AppTest of the Model page on the tiny trained run: the U from the model, one image through it, the skip ablation."""

from __future__ import annotations

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import core.explain
from core import groundtruth
from core.dataset import load_image, open_dataset
from core.evaluate import checkpoint_path
from core.explain import architecture, explain
from core.metrics import pet_iou
from core.model import load_checkpoint
from core.runs import load_eval
from dashboard.markdown import escape
from tests.conftest import open_app

HOSTILE = ["../../etc/passwd", "x" * 5000, "<script>alert(1)</script>", "Abyssinian_1/../../x", "%00", ""]


@pytest.fixture(autouse=True)
def _fresh_caches():
    # The page caches models and activations per process; each test starts from nothing.
    st.cache_data.clear()
    st.cache_resource.clear()


def app(monkeypatch, env, **query) -> AppTest:
    at = open_app(monkeypatch, env.data, env.workspace, "model", **query)
    assert not at.exception, at.exception[0].value if at.exception else ""
    return at


def worst_image(env) -> str:
    table = load_eval(env.settings, env.run, "test")
    return table[table["has_gt"]].sort_values("iou_pet").index[0]


def test_the_page_draws_the_u_and_follows_the_image_through_every_stage(monkeypatch, trained):
    image_id = worst_image(trained)
    at = app(monkeypatch, trained, image=image_id)
    assert not at.error
    assert at.selectbox(key="model_image").value == image_id
    headers = [h.value for h in at.subheader]
    for name in ("The architecture of this run", "Input", "Contracting path (encoder)", "Bottleneck",
                 "Expansive path (decoder)", "Output", "What the skip connections do"):
        assert name in headers
    assert len(at.get("plotly_chart")) == 1

    model, cfg, _ = load_checkpoint(checkpoint_path(trained.settings, trained.run, "best"))
    arch = architecture(model, cfg)
    text = " ".join(m.value for m in at.markdown)
    # The tiny run is a resnet18 at 64 px: the sentences carry this model's numbers.
    assert "bottleneck, 2×2 with 512 channels, 1/32 of the input" in text
    for stage in arch.part("encoder"):
        assert f"**{stage.name.capitalize()}** is {stage.height}×{stage.width} with {stage.channels} channels" in text
    for stage in arch.part("decoder")[:-1]:
        assert f"concatenates the {stage.skip_channels} channels of the {arch.stage(stage.skip_from).name}" in text
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Parameters"] == f"{arch.params['total'] / 1e6:.2f} M"
    # Parameter shares are part of the value, never a delta badge that reads as an increase.
    share = f"{arch.params['encoder'] / arch.params['total']:.0%}"
    assert metrics["Encoder (contracting path)"].endswith(f" · {share}")
    assert not any(m.proto.delta for m in at.metric if m.label.startswith(("Encoder", "Decoder")))

    # The IoUs shown are the core's, for this image against its effective ground truth.
    ds = open_dataset(trained.settings.data, trained.settings.workspace)
    gt, _ = groundtruth.current(trained.settings, ds, image_id)
    image = load_image(ds, image_id)
    normal = pet_iou(explain(model, cfg, image).mask, gt)
    ablated = pet_iou(explain(model, cfg, image, zero_skips=None).mask, gt)
    assert metrics["Pet IoU, normal"] == f"{normal:.3f}"
    assert metrics["Pet IoU, skips zeroed"] == f"{ablated:.3f}"
    assert f"pet IoU **{normal:.3f}**" in text
    assert any("Ablation at inference, not a retrained model" in w.value for w in at.warning)
    # input + 4 encoder stages + bottleneck + 5 decoder stages + 3 probability maps + 3 masks + 3 ablation pictures
    # + the decoder stages normal and ablated
    images = at.get("image")
    assert len(images) == 22
    captions = [c for i in images for c in i.captions]
    assert "2×2: channel mean, then channels" in " ".join(captions)  # the bottleneck at its true resolution


def test_activations_are_computed_once_per_checkpoint_image_and_skip_choice(monkeypatch, trained):
    calls = []
    real = core.explain.explain_with_ablation

    def counting(model, cfg, image, zero_skips=None, **kw):
        calls.append(zero_skips)
        return real(model, cfg, image, zero_skips, **kw)

    monkeypatch.setattr(core.explain, "explain_with_ablation", counting)
    ids = load_eval(trained.settings, trained.run, "test").index[:2]
    at = app(monkeypatch, trained, image=ids[0])
    assert calls == [(0, 1, 2, 3)]  # one call: the normal pass and the ablation of every skip
    at.switch_page("app_pages/model.py").run()
    assert not at.exception and at.selectbox(key="model_image").value == ids[0]
    assert "Pet IoU, skips zeroed" in [m.label for m in at.metric]
    assert len(calls) == 1
    at.query_params["image"] = ids[1]
    at.switch_page("app_pages/model.py").run()
    assert not at.exception and at.selectbox(key="model_image").value == ids[1]
    assert len(calls) == 2
    at.multiselect(key="model_skips").set_value([0]).run()
    assert calls[-1] == (0,) and len(calls) == 3


def test_choosing_which_skips_to_zero(monkeypatch, trained):
    at = app(monkeypatch, trained, image=worst_image(trained))
    skips = at.multiselect(key="model_skips")
    assert skips.value == [0, 1, 2, 3]  # resnet18 depth 5: four skips, the last decoder stage has none
    skips.set_value([3]).run()
    assert not at.exception
    assert "1 skip(s) zeroed" in [c for i in at.get("image") for c in i.captions]
    assert any("With 1 of 4 skips zeroed" in m.value and "and the skips left on" in m.value for m in at.markdown)
    at.multiselect(key="model_skips").set_value([]).run()
    assert any("Pick at least one skip" in i.value for i in at.info)


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_image_ids_get_a_plain_message(monkeypatch, trained, hostile):
    at = app(monkeypatch, trained, image=hostile)
    assert any("no image called" in w.value for w in at.warning)
    assert "<script>" not in " ".join(w.value for w in at.warning)
    assert all(len(w.value) < 300 for w in at.warning)
    # The rest of the page still works: the architecture and a valid image from the list.
    assert "The architecture of this run" in [h.value for h in at.subheader]
    assert at.selectbox(key="model_image").value in load_eval(trained.settings, trained.run, "test").index


def test_without_a_run_the_page_says_how_to_train_one(monkeypatch, trained, tmp_path):
    from types import SimpleNamespace

    env = SimpleNamespace(data=trained.data, workspace=tmp_path / "empty-ws")
    at = app(monkeypatch, env)
    assert any("No trained run yet" in i.value for i in at.info)
    assert any(link.proto.page.endswith("train") or "train" in link.proto.page for link in at.get("page_link"))
    assert not at.get("plotly_chart")


def test_a_run_without_a_checkpoint_says_so(monkeypatch, trained_copy):
    for name in ("best.pt", "last.pt"):
        (trained_copy.workspace / "runs" / trained_copy.run / name).unlink()
    at = app(monkeypatch, trained_copy)
    assert any("has no checkpoint yet" in e.value for e in at.error)


def test_the_page_names_the_image_it_shows(monkeypatch, trained):
    image_id = worst_image(trained)
    at = app(monkeypatch, trained, image=image_id)
    breed = open_dataset(trained.settings.data, trained.settings.workspace).table.loc[image_id, "breed"]
    heading = [m.value for m in at.markdown if m.value.startswith("#### ")]
    assert heading == [f"#### {escape(image_id)} · {escape(breed)}"]
    # Another image from the list: the heading follows it, and the address bar names it for sharing.
    other = [o for o in at.selectbox(key="model_image").options if not o.startswith(image_id)][0].split(" · ")[0]
    at.selectbox(key="model_image").set_value(other).run()
    assert any(m.value.startswith(f"#### {escape(other)} ·") for m in at.markdown)
    assert at.query_params["image"] in (other, [other])
