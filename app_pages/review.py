"""Review: a queue of the worst images (or the suspected label errors) in the shared filter, tagged one by one."""

import streamlit as st

from core import views
from core.review import review_progress
from dashboard import filters, loaders, sidebar, state, viewer
from dashboard.markdown import escape
from dashboard.viewer import quality_caption

current = state.settings()
ds = loaders.dataset_or_stop(current)
run, split, metric = sidebar.selected_run(), sidebar.selected_split(), sidebar.selected_metric()

st.title("Review")
view = loaders.view(current, ds, run, split)
if not view["evaluated"].any():
    st.info("The review queue ranks evaluated images: train a run and evaluate it first (see **Overview**).")
    st.page_link("app_pages/overview.py", label="Go to Overview", icon=":material/dashboard:")
    st.stop()

with st.expander("Filters (shared with Browse)", expanded=False):
    chosen = filters.panel(view, metric, show_sort=False)
st.session_state.setdefault(state.REVIEW_ORDER, "worst")
top = st.columns([2.2, 1.2])
ordering = top[0].radio("Order", list(views.REVIEW_ORDERS), key=state.REVIEW_ORDER,
                         format_func=views.REVIEW_ORDERS.get, horizontal=True)
skip_done = top[1].toggle("Hide reviewed", key=state.REVIEW_SKIP_DONE)
ranking_column = views.suspect_order(view)[0] if ordering == "tension" else metric
if ordering == "tension":
    st.caption(escape(quality_caption(view, ranking_column)))
    weak = views.weak_run_warning(view[view["evaluated"]])
    if weak:
        st.warning(escape(weak))

queue_all = views.review_queue(view, chosen, metric, ordering)
done, total = review_progress(current, list(queue_all.index))
st.progress(done / total if total else 0.0, text=f"Reviewed {done} of {total} in this queue")
queue = queue_all[queue_all["tag"].isna()] if skip_done else queue_all
if not len(queue):
    st.success("Nothing left to review in this queue." if total else "No image matches these filters.")
    st.stop()

ids = list(queue.index)
# The position is kept by image id; a new order or filter restarts the queue at its first (most urgent) image.
ranked_by = [run, split, metric, ordering, sorted(chosen.to_dict().items())]
saved = st.session_state.get(state.REVIEW_POS)
if not isinstance(saved, dict) or saved.get("queue") != ranked_by:
    saved = {"queue": ranked_by, "id": None, "index": 0}
position = views.queue_position(ids, saved.get("id") if isinstance(saved.get("id"), str) else None,
                                saved.get("index") if isinstance(saved.get("index"), int) else 0)
nav = st.columns([1, 1, 4])
if nav[0].button("◀ Previous", key="review_prev", disabled=position == 0, width="stretch"):
    position -= 1
if nav[1].button("Next ▶", key="review_next", disabled=position >= len(ids) - 1, width="stretch"):
    position += 1
image_id = ids[position]
st.session_state[state.REVIEW_POS] = {"queue": ranked_by, "id": image_id, "index": position}
row = queue.loc[image_id]
nav[2].markdown(f"**{position + 1} / {len(ids)}** · **{escape(image_id)}** · {escape(row['breed'])} · "
                f"{escape(ranking_column)} {float(row[ranking_column]):.3f}")
cols = st.columns([1, 1, 3])
cols[0].page_link("app_pages/compare.py", label="Open in Compare", icon=":material/compare:",
                  query_params={"image": image_id})

options = viewer.controls()
viewer.pictures(current, ds, image_id, run, split, options)


def advance() -> None:
    # With "hide reviewed" the tagged image leaves the queue, so the same position already shows the next one.
    if not skip_done and position + 1 < len(ids):
        st.session_state[state.REVIEW_POS] = {"queue": ranked_by, "id": ids[position + 1], "index": position + 1}


if ordering == "tension" and (reason := viewer.suspicion_sentence(row)):
    st.info(escape(reason))
viewer.review_box(current, ds, image_id, on_tag=advance)
viewer.metrics(row, split)

upcoming = queue.iloc[position + 1:position + 21]
with st.expander(f"Next in the queue ({len(upcoming)} after this one)"):
    head = upcoming[["breed", "species", metric, ranking_column if ordering == "tension" else "tension",
                     "tag"]].copy()
    head.insert(0, "image", head.index)
    head["tag"] = head["tag"].map(views.tag_label)
    st.dataframe(head, hide_index=True, width="stretch",
                 column_config={metric: st.column_config.NumberColumn(format="%.3f"),
                                "tension": st.column_config.NumberColumn(format="%.3f"),
                                "label_quality": st.column_config.NumberColumn(format="%.3f")})
