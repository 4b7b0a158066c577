"""The "assign to" box: hand the current Browse selection (its filter and sort) to an annotator.

    >>> from dashboard import assign_box
    >>> assign_box.assign_box(settings, ds, ids)   # ids: Browse's filter and sort; assigns the first N of them

The assignment itself is :func:`core.assignments.assign` (the ``assign`` permission is checked there, and the
assignment is recorded in the audit trail); this is only the form.
"""

from __future__ import annotations

import streamlit as st

from core import assignments, store
from core.config import Settings
from core.dataset import Dataset
from core.errors import PetSegError
from dashboard import auth, state
from dashboard.filters import current_order
from dashboard.markdown import escape

DEFAULT_LIMIT = 200


def assign_box(settings: Settings, ds: Dataset, ids: list[str] | None = None) -> None:
    """An expander with the assignee, how many of ``ids`` (default: Browse's selection), and the Assign button."""
    ids = current_order(settings, ds) if ids is None else ids
    with st.expander(f"Assign to an annotator ({len(ids)} images in the Browse selection)", icon=":material/group:"):
        st.caption("The first images of the Browse filter and sort (e.g. worst first) go to the annotator; their "
                   "Next in Annotate walks them first. Assigning an image again moves it.")
        left, middle, right = st.columns([3, 1, 1])
        assignee = left.text_input("Assign to", key=state.ASSIGN_TO, max_chars=store.MAX_AUTHOR,
                                   placeholder="annotator@example.org")
        limit = middle.number_input("How many", min_value=1, max_value=assignments.MAX_BATCH, step=10,
                                    value=min(DEFAULT_LIMIT, max(len(ids), 1)), key=state.ASSIGN_LIMIT)
        right.write("")
        if right.button("Assign", key="assign_run", type="primary", disabled=not ids or not assignee.strip()):
            try:
                count = assignments.assign(settings, ds, assignee, ids[: int(limit)], actor=auth.current_user())
            except PetSegError as exc:
                st.error(escape(exc, 1000))
            else:
                st.success(f"Assigned {count} image{'s' if count != 1 else ''} to {escape(assignee.strip())}.")
