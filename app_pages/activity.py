"""Activity: who did what — corrections per person and day with the acceptance rate, assignments, and the full
trail of one image (`/activity?image=Abyssinian_1`). Twin: `python -m core activity [--person E] [--image ID]`."""

import pandas as pd
import streamlit as st

from core import assignments, audit
from dashboard import assign_box, loaders, state

current = state.settings()
ds = loaders.dataset_or_stop(current)
st.title("Activity")

st.subheader("People")
people = audit.people(current)
if people.empty:
    st.info("No correction recorded yet: saves, reverts and imports show here with who made them.")
else:
    st.dataframe(people, hide_index=True, column_config={
        "acceptance_rate": st.column_config.NumberColumn("acceptance rate", format="percent",
                                                         help="accepted / (accepted + rejected)"),
        "last_day": "last active (UTC)"})
    person = st.selectbox("Per day for", ["", *people["person"]], key=state.ACTIVITY_PERSON,
                          format_func=lambda p: p or "everyone")
    st.dataframe(audit.daily(current, person or None), hide_index=True, column_config={
        "day": "day (UTC)", "acceptance_rate": st.column_config.NumberColumn("acceptance rate", format="percent")})

st.subheader("Assignments")
table = assignments.table(current)
if table.empty:
    st.caption("Nothing assigned yet.")
else:
    summary = table.groupby("assignee").agg(assigned=("image_id", "size"), done=("done", "sum")).reset_index()
    summary["open"] = summary["assigned"] - summary["done"]
    st.dataframe(summary, hide_index=True)
assign_box.assign_box(current, ds)

st.subheader("Trail of an image")
image_id = state.url_image(ds)
if image_id is None and not st.query_params.get("image"):
    recent = audit.rows(current, limit=200)
    touched = list(dict.fromkeys(recent["image_id"].dropna()[::-1]))
    image_id = st.selectbox("Image", touched, index=None, placeholder="an image someone worked on recently")
if image_id is not None:
    trail = audit.trail(current, image_id)
    if trail.empty:
        st.caption("Nothing recorded for this image yet.")
    else:
        shown = pd.DataFrame({
            "at (UTC)": trail["at"], "who": trail["actor"], "action": trail["action"],
            "what": [", ".join(f"{k}={v}" for k, v in d.items()) for d in trail["detail"]],
        })
        st.dataframe(shown, hide_index=True)  # a table renders stored text as text, never as markdown
    st.page_link("app_pages/history.py", label="History of its versions", icon=":material/history:",
                 query_params={"image": image_id})
