"""Annotate: fix an image's mask in the editor and save it as a new version (`/annotate?image=Abyssinian_1`)."""

import streamlit as st

from core import corrections, ledger, store
from core.errors import PetSegError
from dashboard import annotate_session as edit
from dashboard import auth, editor, filters, loaders, sidebar, state, viewer
from dashboard.markdown import escape

current = state.settings()
ds = loaders.dataset_or_stop(current)
run, split = sidebar.selected_run(), sidebar.selected_split()
st.title("Annotate")
st.session_state.setdefault(state.ANNOTATE_NOTE, "")
user = auth.current_user()
# Taken once per page run: saves (which rerun only the workbench) do not reshuffle the queue being walked.
try:
    ids = edit.queue(current, ds, user)  # the user's open assignment first
except store.StoreUnavailable:  # the Browse order needs the database; walk the dataset's order meanwhile
    ids = ds.ids()
if filters.current_filters().sort != "tension" and st.button(
        "Queue: suspected label errors first", key="annotate_suspects",
        help="walk the images in order of label quality (lowest first; see Review) with Browse's filter"):
    filters.sort_suspects_first()
    ids = edit.queue(current, ds)
    if ids:
        st.query_params["image"] = ids[0]
    st.rerun()
editor.forget_sent()  # a run of the whole page may mount a new editor


def _image_id(session: edit.EditSession | None, others: dict[str, str]) -> str | None:
    """The image of the URL, else the one being edited or looked at, else the first of the queue nobody edits."""
    if st.query_params.get("image"):
        image_id = state.url_image(ds)
        if image_id is None:
            st.page_link("app_pages/annotate.py", label="Open the first image of the queue instead")
        return image_id
    fallback = session.image_id if session else st.session_state.get(state.COMPARE_IMAGE)
    image_id = fallback if isinstance(fallback, str) and fallback in ds else edit.neighbours(ids, "", others)[1]
    if image_id is None:
        st.info("This dataset has no images to annotate.")
        return None
    st.query_params["image"] = image_id
    return image_id


def _open(image_id: str, start: str) -> edit.EditSession | None:
    try:
        fresh = edit.open_session(current, ds, image_id, start, run, split)
    except PetSegError as exc:
        st.error(escape(exc, 1000))
        return None
    old = st.session_state.get(state.ANNOTATE_SESSION)
    if old is not None and old.image_id != image_id:
        edit.release_lease(current, old, user)  # moving on frees the image for the others
    if old is not None and old.image_id == image_id:
        # The browser swaps its mask only on a new revision, and marks edits clean on a new save count.
        fresh.revision, fresh.saved, fresh.sequence = old.revision + 1, old.saved, old.sequence + 1
        fresh.lease_holder, fresh.lease_left, fresh.lease_at = old.lease_holder, old.lease_left, old.lease_at
    st.session_state[state.ANNOTATE_SESSION] = fresh
    return fresh


def _reload_theirs(image_id: str, starts: list[str]) -> None:
    latest = ledger.latest(current, image_id)
    st.session_state[state.ANNOTATE_START] = "correction" if latest else ("gt" if "gt" in starts else "empty")
    fresh = _open(image_id, st.session_state[state.ANNOTATE_START])
    if fresh is not None:
        fresh.status, fresh.status_kind = "Reloaded the latest version; your edit was discarded.", "info"


def _save_on_top() -> None:
    session = st.session_state[state.ANNOTATE_SESSION]
    edit.save_on_top(current, ds, session, author=user,
                     note=st.session_state[state.ANNOTATE_NOTE])
    if session.conflict is None:
        st.session_state[state.ANNOTATE_NOTE] = ""


def _handle(session: edit.EditSession, payload: dict) -> None:
    try:
        event = editor.parse_event(payload, session.image_id, session.shape)
    except PetSegError as exc:
        st.error(escape(exc, 1000))
        return
    if event is not None and event.mask is not None:
        before = session.saved
        edit.handle(current, ds, session, event, author=user,
                    note=st.session_state[state.ANNOTATE_NOTE])
        if session.saved != before:
            st.session_state[state.ANNOTATE_NOTE] = ""  # a note belongs to one save


def _suspicion(image_id: str) -> str:
    """Why the label-quality order suspects this mask (Review, Compare say the same), "" when it does not."""
    try:
        view = loaders.view(current, ds, run, split)
    except store.StoreUnavailable:  # the view joins the ledger; the edit goes on without the sentence
        return ""
    return viewer.suspicion_sentence(view.loc[image_id]) if image_id in view.index else ""


# The editor's events (save, tools, prev/next) rerun only this fragment, not the sidebar and the page around it:
# a save is confirmed and the next image drawn without the whole app being rebuilt in the browser.
@st.fragment
def workbench() -> None:
    session: edit.EditSession | None = st.session_state.get(state.ANNOTATE_SESSION)
    payload = editor.pop_event()
    if isinstance(payload, dict) and payload.get("action") == editor.RESEND_REQUEST:
        editor.forget_sent()
        payload = None
    others = edit.others_editing(current, user)  # one read per run: whom Next passes over, and who has this one
    if session is not None and isinstance(payload, dict) and payload.get("action") in ("prev", "next"):
        if payload.get("image") == session.image_id:
            previous_id, next_id = edit.neighbours(ids, session.image_id, others)
            target = previous_id if payload["action"] == "prev" else next_id
            if target:
                st.query_params["image"] = target
        payload = None

    image_id = _image_id(session, others)
    if image_id is None:
        return
    try:
        starts = edit.available_starts(current, ds, image_id, run, split)
    except store.StoreUnavailable:
        if session is None or session.image_id != image_id:
            st.error("The database cannot be reached right now: this image opens once it is back.")
            return
        starts = [session.start]  # keep the open edit on screen until the database is back
    if session is None or session.image_id != image_id or st.session_state.get(state.ANNOTATE_START) not in starts:
        st.session_state[state.ANNOTATE_START] = starts[0]
    if session is None or session.image_id != image_id:
        session = _open(image_id, st.session_state[state.ANNOTATE_START])
        if session is None:
            return
    edit.hold_lease(current, session, user)  # on opening and on each event: renewed while the editor is used
    if payload is not None:
        _handle(session, payload)

    # The widgets come after the event: a save may clear the note before its widget exists in this run.
    row = ds.table.loc[image_id]
    try:
        latest = ledger.latest(current, image_id)
        versions = f"latest correction v{latest.version} by {escape(latest.author)}" if latest else "no correction yet"
    except store.StoreUnavailable:
        versions = "database unreachable"
    st.caption(f"**{escape(image_id)}** · {escape(row['breed'])} ({escape(row['species'])}) · "
               f"{escape(row['split'])} · {int(row['width'])}×{int(row['height'])} px · {versions}")
    if run and (reason := _suspicion(image_id)):
        st.info(escape(reason))
    left, middle, right = st.columns([3, 2, 3])
    left.radio("Start from", starts, key=state.ANNOTATE_START, format_func=edit.START_LABELS.get, horizontal=True,
               help="Switching discards unsaved edits (undo in the editor brings them back).")
    # Display only: the author is who is signed in (or the OS user without sign-in), never typed.
    middle.caption(f"Saving as **{escape(user)}**")
    right.text_input("Note for the next save", key=state.ANNOTATE_NOTE, max_chars=corrections.MAX_NOTE,
                     placeholder="e.g. left ear was background")
    if st.session_state[state.ANNOTATE_START] != session.start:
        session = _open(image_id, st.session_state[state.ANNOTATE_START]) or session

    if session.lease_holder and session.lease_holder != user:
        st.warning(f"Being edited by **{escape(session.lease_holder)}** (for {session.lease_left:.0f} s more unless "
                   "they keep editing): Next passes over it; a save of yours is checked against theirs.",
                   icon=":material/edit_note:")
    previous_id, next_id = edit.neighbours(ids, image_id, others)
    position = f"{ids.index(image_id) + 1} / {len(ids)}" if image_id in ids else f"not in the queue ({len(ids)})"
    if session.preview is not None:  # above the editor: below a tall canvas they were out of sight
        accept, reject, _ = st.columns([1, 1, 4])
        accept.button("Accept preview", key="annotate_accept", type="primary", on_click=edit.accept_preview,
                      args=(session,))
        reject.button("Reject preview", key="annotate_reject", on_click=edit.reject_preview, args=(session,))
    try:
        editor.mask_editor(
            key=state.ANNOTATE_EDITOR, ds=ds, image_id=image_id, mask=session.work, start=session.start_mask,
            gt=session.gt, revision=session.revision, preview=session.preview,
            preview_label=edit.TOOL_LABELS.get(session.preview_tool, ""), dirty=session.dirty, saved=session.saved,
            version=session.base_version, status=session.status, status_kind=session.status_kind,
            position=position, has_prev=previous_id is not None, has_next=next_id is not None,
            sequence=session.sequence,
        )
    except PetSegError as exc:  # the photo cannot be read
        st.error(escape(exc, 1000))
        return

    numbers = session.readout()
    iou = "no original GT" if numbers["iou_gt"] is None else f"IoU vs original GT {numbers['iou_gt']:.3f}"
    st.caption(f"At the last apply/save: {iou} · {numbers['changed']:,} px changed from the start · "
               f"{'unsaved changes' if session.dirty else 'no unsaved changes'} · started from "
               f"{edit.START_LABELS[session.start]} · editing on top of "
               f"{f'v{session.base_version}' if session.base_version else 'no correction'}")
    if session.status:
        show = {"success": st.success, "error": st.error, "warning": st.warning}.get(session.status_kind, st.info)
        show(session.status)

    if session.conflict is not None:
        st.warning(escape(session.conflict.message, 1000))
        theirs, mine, _ = st.columns([1, 1, 3])
        theirs.button("Reload theirs", key="annotate_reload", on_click=_reload_theirs, args=(image_id, starts))
        mine.button("Save mine on top as a new version", key="annotate_on_top", type="primary", on_click=_save_on_top)

    st.page_link("app_pages/history.py", label=f"History of {escape(image_id)}", icon=":material/history:",
                 query_params={"image": image_id})


workbench()
