"""Model: inside the selected run's U-Net — its shape, one image's feature maps, its output and the skip ablation.

Shareable as ``/model?image=Abyssinian_1&run=quick-1``. Feature maps are shown at their true resolution: small maps
are enlarged with nearest-neighbour pixels so one square is one position of the map.
"""

import numpy as np
import streamlit as st

from core import groundtruth, views
from core.dataset import load_image
from core.errors import PetSegError
from core.explain import compare_ablation
from core.metrics import pet_iou
from dashboard import explain_text, loaders, plots, sidebar, state
from dashboard.images import GT_COLOURS, PRED_COLOURS, blend, colour_mask, error_overlay, heat, montage
from dashboard.markdown import escape

CLASS_LABELS = ("pet", "background", "border")

current = state.settings()
st.title("Inside the U-Net")
st.caption("The selected run's own network, drawn from the model, and one image followed through it: the "
           "contracting path shrinks it into context, the expansive path grows it back into a mask, and the "
           "skip connections bring the detail back.")

ds = loaders.dataset_or_stop(current)
run, split = sidebar.selected_run(), sidebar.selected_split()
if run is None:
    st.info("No trained run yet: the Model page explains a trained U-Net. Train one on the Train page or with "
            "`python -m core train --run quick-1 --preset quick`, then come back.")
    st.page_link("app_pages/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()
try:
    loaded = loaders.model(current, run)
except PetSegError as exc:
    st.error(escape(exc, 1000))
    st.stop()
arch = loaded.architecture

# --- the architecture -----------------------------------------------------------------------------------------------
st.subheader("The architecture of this run")
cfg = loaded.predictor.cfg
st.caption(f"{escape(cfg.describe())} · checkpoint {loaded.checkpoint}.pt · sha256 {escape(loaded.sha[:12])}")
st.plotly_chart(plots.unet(arch), width="stretch", config={"displayModeBar": False})
p = arch.params
cols = st.columns(4)
cols[0].metric("Parameters", plots.millions(p["total"]))
# Shares go in the value, not as a delta: a delta badge reads as an increase ("↑ 90 %").
cols[1].metric("Encoder (contracting path)", f"{plots.millions(p['encoder'])} · {p['encoder'] / p['total']:.0%}",
               help="parameters, and their share of the model's")
cols[2].metric("Decoder (expansive path)",
               f"{plots.millions(p['decoder'] + p['bottleneck_block'])} · "
               f"{(p['decoder'] + p['bottleneck_block']) / p['total']:.0%}",
               help="parameters, and their share of the model's")
cols[3].metric("Segmentation head", plots.millions(p["head"]))
st.markdown(explain_text.architecture_text(arch))
st.divider()

# --- choosing the image: evaluated images worst-first when there is an evaluation, else every readable image -------
st.subheader("One image through the network")
table = loaders.eval_table(current, run, split)
labels: dict[str, str] = {}
if table is not None and len(table):
    metric = sidebar.selected_metric()
    ordered = views.worst_first(table, metric)  # the same "worst" as Overview, Browse and Review
    labels = {i: f"{i} · {metric} {v:.2f}" if v == v else f"{i} · no ground truth"
              for i, v in zip(ordered["image_id"], ordered[metric], strict=True) if i in ds}
if not labels:
    labels = {i: i for i in ds.table.index[ds.table["readable"]]}
wanted = state.url_value("image", ds)
if wanted is not None:
    labels.setdefault(wanted, wanted)
if not labels:
    st.info("This dataset has no readable image to explain.")
    st.stop()
state.select_from_url(state.MODEL_IMAGE, "image", list(labels))
order = f" of {split}, worst {sidebar.selected_metric()} first" if table is not None and len(table) else ""
image_id = st.selectbox(f"Image{order}", list(labels), format_func=labels.get, key=state.MODEL_IMAGE,
                        on_change=state.write_url, args=(state.MODEL_IMAGE, "image"))
row = ds.table.loc[image_id]
st.markdown(f"#### {escape(image_id)} · {escape(row['breed'])}")
st.caption(f"{escape(row['species'])} · {escape(row['split'])} split · {int(row['width'])}×{int(row['height'])} px")

options = explain_text.skip_options(arch)
# The ablation's widget sits at the bottom of the page; its value from the last rerun decides this pass.
chosen = [i for i in st.session_state.get(state.MODEL_SKIPS, options) if i in options]
try:
    normal, ablated = loaders.explanations(loaded, ds, image_id, tuple(chosen))
    photo = load_image(ds, image_id)
    gt, version = groundtruth.current(current, ds, image_id)
except PetSegError as exc:
    st.error(escape(exc, 1000))
    st.stop()


def stage_row(maps, prev) -> None:
    info = arch.stage(maps.key)
    tiles = [heat(maps.mean)] + [heat(m) for m in maps.top_maps]
    left, right = st.columns([2, 5])
    left.markdown(explain_text.stage_text(maps, info, arch, prev))
    right.image(montage(tiles), caption=f"{maps.height}×{maps.width}: channel mean, then channels "
                f"{', '.join(f'#{c}' for c in maps.top_channels)} (each scaled to its own range)")


# --- input and the stages ------------------------------------------------------------------------------------------
height, width = normal.original_size
st.subheader("Input")
left, right = st.columns([2, 5])
left.markdown(f"The photo is {width}×{height}. It is squashed to {arch.image_size}×{arch.image_size} (aspect "
              "ratio not kept) and normalised with the encoder's mean and standard deviation: this square is "
              "all the network sees.")
right.image(normal.input_image, caption=f"{arch.image_size}×{arch.image_size} network input")
st.subheader("Contracting path (encoder)")
prev = arch.stage("input")
for maps in normal.stages:
    if maps.part == "encoder":
        stage_row(maps, prev)
        prev = arch.stage(maps.key)
st.subheader("Bottleneck")
stage_row(normal.stage("bottleneck"), prev)
st.subheader("Expansive path (decoder)")
for maps in normal.stages:
    if maps.part == "decoder":
        stage_row(maps, None)

# --- output ---------------------------------------------------------------------------------------------------------
probs = normal.probabilities
st.subheader("Output")
pet_share = float((probs[0] > 0.5).mean())
unsure = float((probs.max(axis=0) < 0.6).mean())
st.markdown(f"The head turns the last decoder stage into 3 scores per pixel; softmax makes them probabilities "
            f"that sum to 1. On this image pet is above 0.5 on **{pet_share:.0%}** of the "
            f"{int(probs.shape[1])}×{int(probs.shape[2])} pixels, and **{unsure:.0%}** have no class above 0.6.")
cols = st.columns(3)
for col, name, plane in zip(cols, CLASS_LABELS, probs, strict=True):
    col.image(heat(plane, 0.0, 1.0, side=0), caption=f"P({name}), 0 dark to 1 yellow", width="stretch")
source = "the official trimap" if version is None else f"correction v{version}"
if gt is None:
    st.info(f"{escape(image_id)} has no ground truth: the prediction is shown without IoU.")
else:
    st.markdown(f"The argmax, resized to the photo's {width}×{height}, against the ground truth ({source}): pet IoU "
                f"**{pet_iou(normal.mask, gt):.3f}**. On the error map :red[red] is pet predicted on background, "
                ":blue[blue] is pet predicted as background, :gray[grey] is the ground truth's border band, which "
                "the IoU leaves out.")
cols = st.columns(3)
cols[0].image(colour_mask(normal.mask, PRED_COLOURS), caption="prediction (argmax): orange pet, yellow border",
              width="stretch")
if gt is not None and gt.shape == normal.mask.shape:
    cols[1].image(colour_mask(gt, GT_COLOURS), caption=f"ground truth ({source}): orange pet, yellow border",
                  width="stretch")
    cols[2].image(error_overlay(photo, normal.mask, gt, 0.7), caption="errors on the photo", width="stretch")

# --- the skip ablation ----------------------------------------------------------------------------------------------
st.subheader("What the skip connections do")
st.warning("**Ablation at inference, not a retrained model.** The same trained weights run again with the "
           "chosen skip tensors replaced by zeros in this forward pass only. A U-Net trained without skips "
           "would adapt and do better than this; the point is what *these* weights get from the skips.")
previous = st.session_state.get(state.MODEL_SKIPS)
st.session_state[state.MODEL_SKIPS] = list(options) if previous is None else [i for i in previous if i in options]
chosen = st.multiselect("Skips to zero", list(options), format_func=options.get, key=state.MODEL_SKIPS)
if not chosen:
    st.info("Pick at least one skip connection to zero.")
    st.stop()
summary = compare_ablation(normal, ablated, gt)
cols = st.columns(3)
cols[0].image(colour_mask(normal.mask, PRED_COLOURS), caption="normal output", width="stretch")
cols[1].image(colour_mask(ablated.mask, PRED_COLOURS), caption=f"{len(chosen)} skip(s) zeroed", width="stretch")
changed = (normal.mask != ablated.mask).astype(np.uint8)
cols[2].image(blend(photo, changed, {1: (230, 40, 40)}, 0.75), caption="pixels whose class changed (red)",
              width="stretch")
metric_cols = st.columns(3)
iou_n, iou_a = summary["iou_normal"], summary["iou_ablated"]
metric_cols[0].metric("Pet IoU, normal", "–" if iou_n is None else f"{iou_n:.3f}")
metric_cols[1].metric("Pet IoU, skips zeroed", "–" if iou_a is None else f"{iou_a:.3f}",
                      None if iou_a is None or iou_n is None else f"{iou_a - iou_n:+.3f}")
metric_cols[2].metric("Pixels that changed class", f"{summary['changed_fraction']:.1%}")
normal_row = [heat(m.mean, side=128, exact=True) for m in normal.stages if m.part == "decoder"]
ablated_row = [heat(m.mean, side=128, exact=True) for m in ablated.stages if m.part == "decoder"]
st.image(montage(normal_row), caption="decoder stages 1 → last, channel mean: normal")
st.image(montage(ablated_row), caption="the same stages with the chosen skips zeroed")
st.markdown(explain_text.ablation_text(arch, summary, len(chosen), len(options)))
