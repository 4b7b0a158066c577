"""Model: inside the selected run's U-Net — its shape, one image's feature maps, its output and the skip ablation."""

import streamlit as st

from core.errors import PetSegError
from dashboard import data, explain_view, frame, settings

current = settings.current()
st.title("Inside the U-Net")
st.caption("The selected run's own network, drawn from the model, and one image followed through it: the "
           "contracting path shrinks it into context, the expansive path grows it back into a mask, and the "
           "skip connections bring the detail back.")

ds = data.dataset_or_stop(current)
run = frame.selected_run()
if run is None:
    explain_view.no_run()
    st.stop()

try:
    loaded = explain_view.load(current, run)
except PetSegError as exc:
    st.error(str(exc))
    st.stop()

explain_view.architecture_section(loaded)
st.divider()
st.subheader("One image through the network")
image_id = explain_view.choose_image(current, ds, run, frame.selected_split())
if image_id is not None:
    explain_view.image_sections(current, ds, loaded, image_id)
