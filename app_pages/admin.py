"""Admin: users and their roles, and the store's review workflow (admins only; core checks the role again)."""

import pandas as pd
import streamlit as st

from core import corrections, users
from core.errors import PetSegError
from core.store.schema import ROLES
from dashboard import auth, state
from dashboard.markdown import escape

current = state.settings()
st.title("Admin")
admin = auth.require_role(current, "manage_users")

message = st.session_state.pop(state.ADMIN_MESSAGE, None)
if message:
    (st.error if message.startswith("error: ") else st.success)(escape(message.removeprefix("error: "), 1000))


def _do(action, *args) -> None:
    try:
        st.session_state[state.ADMIN_MESSAGE] = action(*args)
    except PetSegError as exc:
        st.session_state[state.ADMIN_MESSAGE] = f"error: {exc}"


def _set_review() -> str:
    mode = corrections.set_review_mode(current, st.session_state["admin_review_mode"], actor=admin)
    return f"Review is now {mode}."


# Callbacks read the widgets' values from the session: they run before the script, with what was just typed.
def _add() -> str:
    user = users.add_user(current, admin, st.session_state["admin_add_email"], st.session_state["admin_add_role"])
    return f"{user.email} is now {user.role}."


def _set_role() -> str:
    user = users.set_role(current, admin, st.session_state["admin_role_user"], st.session_state["admin_role_role"])
    return f"{user.email} is now {user.role}."


st.subheader("Review workflow")
mode = corrections.review_mode(current)
st.caption("Required: every new correction version is submitted and becomes ground truth (for training, evaluation "
           "and export with the default policy) once a reviewer accepts it. Off: saves are accepted at once.")
wanted = st.radio("Review", corrections.REVIEW_MODES, index=corrections.REVIEW_MODES.index(mode), horizontal=True,
                  key="admin_review_mode")
st.button("Apply", key="admin_review_apply", disabled=wanted == mode, on_click=_do, args=(_set_review,))

st.subheader("Users")
listed = users.list_users(current)
if listed:
    st.dataframe(pd.DataFrame([{"email": u.email, "role": u.role,
                                "set by": users.ADMIN_ENV if u.configured else u.updated_by,
                                "at": u.updated_at} for u in listed]), hide_index=True)
else:
    st.info(f"No users yet: this store is single-user and whoever runs PetSeg is its admin. Add yourself as the "
            f"first admin, or set {escape(users.ADMIN_ENV)} for the server.")

add_email, add_role, add_button = st.columns([3, 2, 1], vertical_alignment="bottom")
add_email.text_input("Email", key="admin_add_email", max_chars=100)
add_role.selectbox("Role", ROLES, key="admin_add_role")
add_button.button("Add", key="admin_add", on_click=_do, args=(_add,))

changeable = [u.email for u in listed if not u.configured]
if changeable:
    who_col, role_col, set_col = st.columns([3, 2, 1], vertical_alignment="bottom")
    who_col.selectbox("User", changeable, key="admin_role_user")
    role_col.selectbox("New role", ROLES, key="admin_role_role")
    set_col.button("Change", key="admin_role_set", on_click=_do, args=(_set_role,))
