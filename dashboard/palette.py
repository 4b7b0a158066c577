"""The one palette: a colour per mask class and per species, the same on every page (editor, overlays, plots).

    >>> from dashboard import palette
    >>> palette.CLASS_RGB[PET], palette.CLASS_WORDS[PET]     # ((255, 96, 32), "orange")
    >>> palette.SPECIES_HEX["cat"]                            # "#f28e2b"
    >>> st.html(palette.legend_html(prediction=True))         # the swatches Compare shows above its pictures

Ground truth and prediction use the same class colours (a pet is orange wherever it is drawn); where both lie on
one photo, the prediction is filled and the ground truth is its outline. The editor (``editor.js``) draws with
these colours too; a test keeps its ``LABEL_RGBA`` equal to :data:`CLASS_RGB`.
"""

from __future__ import annotations

from core.masks import BACKGROUND, BORDER, PET

Colour = tuple[int, int, int]

CLASS_RGB: dict[int, Colour] = {PET: (255, 96, 32), BACKGROUND: (40, 120, 255), BORDER: (255, 230, 0)}
CLASS_WORDS = {PET: "orange", BACKGROUND: "blue", BORDER: "yellow"}
# Overlays leave the background as the photo shows it; the editor tints it faintly.
MASK_RGB: dict[int, Colour] = {PET: CLASS_RGB[PET], BORDER: CLASS_RGB[BORDER]}
# Error map codes (see dashboard.images.error_codes): not classes, so colours of their own.
ERROR_RGB: dict[str, Colour] = {"false_pet": (230, 40, 40), "missed_pet": (30, 120, 255), "gt_border": (150, 150, 150)}
SPECIES_HEX = {"cat": "#f28e2b", "dog": "#4e79a7"}


def hex_of(colour: Colour) -> str:
    return "#{:02x}{:02x}{:02x}".format(*colour)


def legend_html(*, prediction: bool = True, errors: bool = True) -> str:
    """Swatches for the classes (and the error map); fixed text only, no user input."""
    items = [(CLASS_RGB[PET], "pet"), (CLASS_RGB[BORDER], "border (trimap's unsure band)")]
    if prediction:
        items.append(((255, 255, 255), "overlay: prediction filled, ground truth as outline"))
    if errors:
        items += [(ERROR_RGB["false_pet"], "error map: pet predicted on background"),
                  (ERROR_RGB["missed_pet"], "error map: pet missed"),
                  (ERROR_RGB["gt_border"], "error map: border band, not scored")]
    swatch = ('<span style="display:inline-flex;align-items:center;margin-right:14px;font-size:0.85rem">'
              '<span style="width:12px;height:12px;border:1px solid #888;background:{};margin-right:5px;'
              'display:inline-block"></span>{}</span>')
    return '<div class="petseg-legend">' + "".join(swatch.format(hex_of(c), t) for c, t in items) + "</div>"
