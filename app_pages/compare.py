"""Compare: one image (``?image=<id>``) with ground truth, prediction and error map; metrics; review tags."""

import streamlit as st

from core import views
from dashboard import filters, loaders, sidebar, state, viewer
from dashboard.markdown import escape

current = state.settings()
ds = loaders.dataset_or_stop(current)
run, split, metric = sidebar.selected_run(), sidebar.selected_split(), sidebar.selected_metric()

st.title("Compare")
order = filters.current_order(current, ds)
raw = st.query_params.get("image")
image_id = state.url_image(ds) if raw is not None else st.session_state.get(state.COMPARE_IMAGE)
if raw is None and image_id not in ds and order:
    image_id = order[0]  # first of the current Browse filter and sort
if image_id not in ds:
    if raw is None:
        st.info("Pick an image in **Browse** (or open a link like `/compare?image=Abyssinian_1`).")
    st.page_link("app_pages/browse.py", label="Go to Browse", icon=":material/photo_library:")
    st.stop()

st.session_state[state.COMPARE_IMAGE] = image_id
# The URL names what is shown, so copying it shares this exact view. Every change of it is a browser history entry:
# a link that already names the image is left as it is, so one Back returns to where it came from.
shown = {"image": image_id, **({"run": run, "split": split} if run else {})}
if raw is None:
    st.query_params.update(shown)

view = loaders.view(current, ds, run, split)
row = view.loc[image_id]
previous_id, next_id = views.neighbours(order, image_id)
position = f"{order.index(image_id) + 1} of {len(order)}" if image_id in order else "not in the current filter"

head = st.columns([4, 1, 1, 1.6])
info = f"**{escape(image_id)}** · {escape(row['breed'])} ({row['species']}, {row['split']}) · {position}"
head[0].markdown(info)
if head[1].button("◀ Previous", disabled=previous_id is None, width="stretch", key="compare_prev"):
    st.query_params.update({**shown, "image": previous_id})
    st.rerun()
if head[2].button("Next ▶", disabled=next_id is None, width="stretch", key="compare_next"):
    st.query_params.update({**shown, "image": next_id})
    st.rerun()
head[3].page_link("app_pages/annotate.py", label="Correct this mask", icon=":material/edit:",
                  query_params={"image": image_id})
if str(row.get("problem") or ""):
    st.warning(f"Problem found in the index for this image: {escape(row['problem'])}")

options = viewer.controls()
viewer.pictures(current, ds, image_id, run, split, options)
if reason := viewer.suspicion_sentence(row):
    st.info(escape(reason))
viewer.metrics(row, split)
viewer.review_box(current, ds, image_id)
