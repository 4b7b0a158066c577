"""The Model page's sentences: each stage of the U, the architecture and the skip ablation, with the model's numbers.

    >>> from dashboard import explain_text
    >>> st.markdown(explain_text.architecture_text(loaded.architecture))
    >>> explain_text.skip_options(arch)           # {0: "encoder stage 4 → decoder stage 1 (4×4)", ...}

Pure functions (an architecture and numbers in, Markdown out): the numbers are the model's, never free text.
"""

from __future__ import annotations

from core.explain import Architecture, StageInfo, StageMaps


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
        "upsampled features. Most parameters sit deep in the encoder, where there are many channels."
    )


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
                f"the input: each position stands for a {s.stride}×{s.stride}-pixel patch of the "
                f"{arch.image_size}×{arch.image_size} input.{change} {share}; strongest channels {strongest}.")
    if info.part == "bottleneck":
        return (f"**The bottleneck is {s.height}×{s.width} with {s.channels} channels, 1/{s.stride} of the input**: "
                f"the whole image as {s.height * s.width} positions of {s.channels} numbers. It holds *what* is where "
                f"roughly, but one position covers {s.stride}×{s.stride} pixels, so it cannot say where the outline "
                f"runs to the pixel. {share}.")
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
    delta = iou_a - iou_n
    if delta < -0.02:
        return text + (f"Pet IoU drops by {-delta:.3f}: the detail the decoder needed came through the skips. "
                       "Compare the decoder rows above to see at which resolution it goes missing.")
    if delta > 0.02:
        return text + (f"Pet IoU rises by {delta:.3f}: on this image the skips hurt, which happens with weak or "
                       "barely trained models whose decoder has not learned to use them yet.")
    return text + "Pet IoU barely moves: on this image the bottleneck carries most of what this model uses."
