"""Browse: the dataset as a paged thumbnail grid, filtered and sorted by the shared filter; tiles open Compare.

The filter (and a selection made on Distributions) is the shared queue: it is in the URL, can be tagged in bulk
and exported, and Compare and Annotate walk it with Next.
"""

import streamlit as st

from core import views
from core.errors import PetSegError
from core.review import TAG_LABELS, TAGS, set_tags
from dashboard import assign_box, auth, filters, gallery, loaders, sidebar, state
from dashboard.markdown import escape

current = state.settings()
ds = loaders.dataset_or_stop(current)
run, split, metric = sidebar.selected_run(), sidebar.selected_split(), sidebar.selected_metric()

st.title("Browse")
view = loaders.view(current, ds, run, split)
if not view["evaluated"].any():
    st.info("No evaluation to show metrics from yet: the grid shows the dataset. See **Overview** to evaluate.")
chosen = filters.panel(view, metric, url=True)
rows = views.sort_table(views.apply_filters(view, chosen, metric), chosen.sort, metric)
assign_box.assign_box(current, ds, list(rows.index))

overlay_labels = {"none": "photo only", "gt": "ground truth", "pred": "prediction", "errors": "error map"}
st.session_state.setdefault(state.BROWSE_OVERLAY, "none")
pred_folder = sidebar.evaluation_folder(current, run, split)


@st.fragment
def grid() -> None:
    pages = gallery.page_count(len(rows))
    signature = (repr(chosen), run, split, metric)
    if st.session_state.get(state.BROWSE_SIGNATURE) != signature:
        st.session_state[state.BROWSE_SIGNATURE] = signature
        st.session_state[state.BROWSE_PAGE] = 1
    page = min(max(int(st.session_state.get(state.BROWSE_PAGE, 1)), 1), pages)
    bar = st.columns([1, 1, 1.4, 2.4, 3])
    if bar[0].button("◀ Previous", disabled=page <= 1, key="browse_prev", width="stretch"):
        page -= 1
    if bar[1].button("Next ▶", disabled=page >= pages, key="browse_next", width="stretch"):
        page += 1
    st.session_state[state.BROWSE_PAGE] = page
    bar[2].markdown(f"Page **{page}** of {pages}")
    bar[3].caption(f"{len(rows):,} of {len(view):,} images match")
    kind = bar[4].segmented_control("Tiles", list(overlay_labels), key=state.BROWSE_OVERLAY,
                                    format_func=overlay_labels.get, label_visibility="collapsed") or "none"
    if not len(rows):
        st.info("No image matches these filters.")
        return
    start = (page - 1) * gallery.PAGE_SIZE
    shown = rows.iloc[start:start + gallery.PAGE_SIZE]
    gallery.tiles(current, ds, shown, metric, kind, pred_folder, key="browse_grid")
    following = rows.iloc[start + gallery.PAGE_SIZE:start + 2 * gallery.PAGE_SIZE]
    gallery.prefetch(current, ds, list(following.index), kind, following, pred_folder)


grid()


if len(rows):
    ids = list(rows.index)
    with st.expander(f"This queue: all {len(ids):,} images — open, tag, export"):
        links = st.columns(3)
        links[0].page_link("app_pages/compare.py", label="Open the queue in Compare", icon=":material/compare:",
                           query_params={"image": ids[0]})
        links[1].page_link("app_pages/annotate.py", label="Correct the queue in Annotate", icon=":material/edit:",
                           query_params={"image": ids[0]})
        links[2].page_link("app_pages/review.py", label="Review the queue", icon=":material/flag:")
        st.caption("Next on Compare and Annotate walks this queue in this order; the address bar names it, so a "
                   "bookmark or a shared link opens the same queue.")
        bulk = st.columns([2, 1, 2])
        tag = bulk[0].selectbox("Tag every image of the queue as", [*TAGS, None], key="browse_bulk_tag",
                                format_func=lambda t: "no tag (clear)" if t is None else TAG_LABELS[t])
        if bulk[1].button(f"Tag {len(ids):,}", key="browse_bulk_apply", width="stretch"):
            try:
                count = set_tags(current, ds, ids, tag, author=auth.current_user())
            except PetSegError as exc:
                st.error(escape(exc, 1000))
            else:
                st.toast(f"{count:,} image(s) tagged {escape(TAG_LABELS.get(tag, 'none'))}")
                st.rerun()
        columns = [c for c in ("breed", "species", "split", metric, "tag") if c in rows.columns]
        bulk[2].download_button("Download the list (CSV)", rows[columns].rename_axis("image_id").to_csv(),
                                file_name="petseg-queue.csv", mime="text/csv", key="browse_bulk_csv")
