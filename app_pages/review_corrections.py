"""Review corrections: others' submitted versions, oldest first, before/after with the difference; accept or reject.

Keyboard: a = accept, x = reject (with the reason typed), n = skip to the next (r is Streamlit's rerun).
"""

import streamlit as st

from core import corrections, ledger
from core.errors import PetSegError
from dashboard import auth, loaders, review_views, state
from dashboard.markdown import escape

current = state.settings()
ds = loaders.dataset_or_stop(current)
st.title("Review corrections")
reviewer = auth.require_role(current, "accept")

message = st.session_state.pop(state.REVIEW_QUEUE_MESSAGE, None)
if message:
    (st.error if message.startswith("error: ") else st.success)(escape(message.removeprefix("error: "), 1000))

submitted = [row for row in ledger.submitted(current) if row.image_id in ds.table.index]
own = [row for row in submitted if row.author.lower() == reviewer.lower()]
skipped = st.session_state.setdefault(state.REVIEW_QUEUE_SKIPPED, [])
others = [row for row in submitted if row.author.lower() != reviewer.lower()]
queue = [row for row in others if f"{row.image_id} v{row.version}" not in skipped]
if others and not queue:  # everything skipped: go round again
    skipped.clear()
    queue = others
mode = corrections.review_mode(current)
st.caption(f"Review is **{escape(mode)}** · {len(others)} version{'s' if len(others) != 1 else ''} waiting for "
           f"you, oldest first" + (f" · {len(own)} of your own wait for another reviewer" if own else "")
           + " · keys: **a** accept, **x** reject, **n** skip")
if not queue:
    st.info("Nothing waits for your review." + ("" if mode == "required" else
            " Review is off, so saves are accepted at once; an admin turns it on on the Admin page."))
    st.stop()

row = queue[0]
label = f"{row.image_id} v{row.version}"


def _decide(accept: bool) -> None:
    reason = st.session_state.get(state.REVIEW_QUEUE_REASON, "")
    try:
        if accept:
            done = corrections.accept(current, ds, row.image_id, row.version, actor=reviewer, reason=reason)
        else:
            done = corrections.reject(current, ds, row.image_id, row.version, actor=reviewer, reason=reason)
    except PetSegError as exc:
        st.session_state[state.REVIEW_QUEUE_MESSAGE] = f"error: {exc}"
        return
    st.session_state[state.REVIEW_QUEUE_REASON] = ""
    st.session_state[state.REVIEW_QUEUE_MESSAGE] = (f"{label} {done.state}; {done.rescored} stored evaluation "
                                                    f"row{'s' if done.rescored != 1 else ''} rescored.")


def _skip() -> None:
    skipped.append(label)


st.subheader(label)
try:
    change = corrections.change_of(current, ds, row)
    before, after, diff = review_views.pictures(ds, change)
except PetSegError as exc:
    st.warning(f"{escape(exc, 1000)} — reject it with a reason, or skip it.")
else:
    left, middle, right = st.columns(3)
    left.caption(f"Before: {escape(change.before_label)}")
    if before is None:
        left.info("No usable mask before this version.")
    else:
        left.image(before)
    middle.caption(f"After: v{row.version}")
    middle.image(after)
    right.caption(f"Difference · {escape(review_views.DIFF_LEGEND)}")
    if diff is not None:
        right.image(diff)
    iou = "n/a" if change.iou is None else f"{change.iou:.3f}"
    st.markdown(f"**IoU between before and after: {iou}**")
st.caption(f"by {escape(row.author)} · {escape(row.created_at)} · {escape(row.source)}"
           + (f" (from v{row.parent_version})" if row.parent_version else ""))
if row.note:
    st.text(row.note)

st.text_input("Reason (required to reject, optional to accept)", key=state.REVIEW_QUEUE_REASON, max_chars=500)
accept_col, reject_col, skip_col, history_col = st.columns(4)
accept_col.button("Accept", key="review_accept", type="primary", icon=":material/check:", shortcut="a",
                  on_click=_decide, args=(True,))
reject_col.button("Reject", key="review_reject", icon=":material/close:", shortcut="x", on_click=_decide,
                  args=(False,))
skip_col.button("Skip", key="review_skip", icon=":material/skip_next:", shortcut="n", on_click=_skip)
history_col.page_link("app_pages/history.py", label="History", icon=":material/history:",
                      query_params={"image": row.image_id})
