"""The Model page's sentences: each stage of the U, the architecture and the skip ablation, with the model's numbers.

    >>> from dashboard import explain_text
    >>> st.markdown(explain_text.architecture_text(loaded.architecture))
    >>> explain_text.skip_options(arch)           # {0: "encoder stage 4 → decoder stage 1 (4×4)", ...}

Pure functions (an architecture and numbers in, Markdown out): the numbers are the model's, never free text, and a
sentence is only written when its numbers support it (e.g. nothing about what the skips carry when no pet is
predicted with or without them).
"""

from __future__ import annotations

from core.explain import Architecture, StageInfo, StageMaps

NO_PET = 0.01  # predicted pet fraction below which "the model found no pet"
IOU_MOVE = 0.02  # a pet IoU change smaller than this "barely moves"
FEW_CHANGED = 0.02  # share of pixels changing class below which "few pixels change"


def architecture_text(arch: Architecture) -> str:
    """What the diagram shows, with this model's numbers."""
    bottom = arch.stage("bottleneck")
    skips = [s for s in arch.part("decoder") if s.skip_from]
    return (
        f"The input is {arch.image_size}×{arch.image_size}. The encoder halves the resolution "
        f"{len(arch.part('encoder')) + 1} times down to the **bottleneck, {bottom.height}×{bottom.width} with "
        f"{bottom.channels} channels, 1/{bottom.stride} of the input**; the decoder doubles it back in "
        f"{len(arch.part('decoder'))} stages. {len(skips)} skip connections (dashed) copy the encoder's feature "
        "maps across the U to the decoder stage of the same resolution, where they are concatenated to the "
        f"upsampled features. {_where_parameters_sit(arch)}"
    )


def _where_parameters_sit(arch: Architecture) -> str:
    """Where most parameters are, stated only as far as the per-stage counts show it."""
    total = arch.params.get("total") or 0
    encoder = arch.params.get("encoder") or 0
    if not total:
        return ""
    share = encoder / total
    stages = [s for s in arch.part("encoder") if s.params]
    if share <= 0.5 or not stages:
        return f"{share:.0%} of the parameters are in the encoder."
    deepest = max(stages, key=lambda s: s.stride)
    deep = deepest.params / max(encoder, 1)
    where = (f", {deep:.0%} of those in its deepest stage ({deepest.channels} channels)"
             if deep >= 0.5 else "")
    return f"Most parameters ({share:.0%}) are in the encoder{where}."


def stage_text(s: StageMaps, info: StageInfo, arch: Architecture, prev: StageInfo | None) -> str:
    """One stage of the U in words: its size, what changed since ``prev``, how active it is."""
    share = f"{s.active_fraction:.0%} of its values are above zero"
    strongest = ", ".join(f"#{c}" for c in s.top_channels)
    if info.part == "encoder":
        if prev is None or prev.part == "input":
            change = f" The input's 3 colour channels have become {s.channels} feature channels."
        else:
            change = (f" Compared with the {prev.name}: {prev.height * prev.width // (s.height * s.width)}× fewer "
                      f"positions, {s.channels / max(prev.channels, 1):.3g}× the channels.")
        return (f"**{info.name.capitalize()}** is {s.height}×{s.width} with {s.channels} channels, 1/{s.stride} of "
                f"the input: neighbouring positions are {s.stride} pixels apart in the "
                f"{arch.image_size}×{arch.image_size} input (each one sees a larger area around that point, its "
                f"receptive field).{change} {share}; strongest channels {strongest}.")
    if info.part == "bottleneck":
        return (f"**The bottleneck is {s.height}×{s.width} with {s.channels} channels, 1/{s.stride} of the input**: "
                f"the whole image as {s.height * s.width} positions of {s.channels} numbers. It holds *what* is where "
                f"roughly, but its positions are {s.stride} pixels apart, so on its own it cannot place the outline "
                f"more finely than that grid. {share}.")
    if info.skip_from:
        source = arch.stage(info.skip_from)
        return (f"**{info.name.capitalize()}** upsamples to {s.height}×{s.width} (1/{s.stride}) and concatenates "
                f"the {info.skip_channels} channels of the {source.name} (the same {s.height}×{s.width} grid) before "
                f"two convolutions: {s.channels} channels out. The skip brings back the detail the encoder had at "
                f"this resolution. {share}.")
    return (f"**{info.name.capitalize()}** upsamples to the full {s.height}×{s.width} with no skip (smp's U-Net has "
            f"none at full resolution): {s.channels} channels, which the head turns into class scores. {share}.")


def skip_options(arch: Architecture) -> dict[int, str]:
    """Decoder block index -> "encoder stage 2 → decoder stage 3 (64×64)" for every block that has a skip."""
    decoder = arch.part("decoder")
    return {i: f"{arch.stage(s.skip_from).name} → decoder stage {i + 1} ({s.height}×{s.width})"
            for i, s in enumerate(decoder) if s.skip_from}


def ablation_text(arch: Architecture, summary: dict, chosen: int, available: int) -> str:
    """What zeroing ``chosen`` of ``available`` skips did to this image, from :func:`core.explain.compare_ablation`."""
    bottom = arch.stage("bottleneck")
    source = "alone" if chosen == available else "and the skips left on"
    text = (f"With {chosen} of {available} skips zeroed the decoder rebuilds the mask from the "
            f"{bottom.height}×{bottom.width} bottleneck {source}. {summary['changed_fraction']:.1%} of the pixels "
            f"change class; {summary['changed_near_outline_fraction']:.0%} of those lie near the normal output's "
            "pet outline. ")
    iou_n, iou_a = summary["iou_normal"], summary["iou_ablated"]
    if iou_n is None or iou_a is None:
        return text + "Without ground truth there is no IoU to compare."
    pet_n, pet_a = summary.get("pet_fraction_normal"), summary.get("pet_fraction_ablated")
    if pet_n is not None and pet_a is not None and pet_n < NO_PET and pet_a < NO_PET:
        return text + ("The model predicts (almost) no pet on this image, with or without the skips: the IoU "
                       f"({iou_n:.3f} → {iou_a:.3f}) cannot show what the skips contribute. Pick an image the model "
                       "gets partly right.")
    delta = iou_a - iou_n
    if delta < -IOU_MOVE:
        return text + (f"Pet IoU drops by {-delta:.3f}: the detail the decoder needed came through the skips. "
                       "Compare the decoder rows above to see at which resolution it goes missing.")
    if delta > IOU_MOVE:
        return text + (f"Pet IoU rises by {delta:.3f}: on this image the skips hurt, which happens with weak or "
                       "barely trained models whose decoder has not learned to use them yet.")
    if summary["changed_fraction"] > FEW_CHANGED:
        return text + (f"Pet IoU barely moves ({iou_n:.3f} → {iou_a:.3f}) although "
                       f"{summary['changed_fraction']:.1%} of the pixels change class: the changes are mostly outside "
                       "what the IoU counts (border and background), or cancel out.")
    return text + (f"Pet IoU barely moves ({iou_n:.3f} → {iou_a:.3f}) and few pixels change: on this image the "
                   "bottleneck carries most of what this model uses.")
