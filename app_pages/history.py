"""History: every saved version of an image's mask, with revert and soft delete (`/history?image=Abyssinian_1`)."""

import streamlit as st

from core import corrections, ledger
from core.dataset import load_trimap
from core.errors import PetSegError
from dashboard import annotate_views, auth, loaders, state
from dashboard.markdown import escape

current = state.settings()
ds = loaders.dataset_or_stop(current)
st.title("History")

corrected = ledger.latest_table(current)
image_id = state.url_image(ds)
if st.query_params.get("image") and image_id is None:
    st.stop()  # url_image said why
if image_id is None:
    session = st.session_state.get(state.ANNOTATE_SESSION)
    wanted = session.image_id if session is not None else None
    image_id = wanted if wanted in corrected.index else (corrected.index[0] if len(corrected) else None)
    if image_id is None:
        st.info("No image has a correction yet: fix a mask on **Annotate** and its versions appear here.")
        st.page_link("app_pages/annotate.py", label="Go to Annotate", icon=":material/edit:")
        st.stop()

options = list(dict.fromkeys([image_id, *corrected.index]))
chosen = st.selectbox("Image", options, index=0, format_func=lambda i: f"{i} · v{corrected.at[i, 'version']}"
                      if i in corrected.index else f"{i} · no correction",
                      help=f"{len(corrected)} corrected image{'s' if len(corrected) != 1 else ''} in this workspace")
if chosen != image_id:
    st.query_params["image"] = chosen
    st.rerun()

show_deleted = st.toggle("Show deleted versions", key=state.HISTORY_SHOW_DELETED)
versions = ledger.history(current, image_id, include_deleted=show_deleted)
latest = ledger.latest(current, image_id)
left, right = st.columns([3, 1])
left.caption(f"{len(versions)} version{'s' if len(versions) != 1 else ''} of **{escape(image_id)}** · effective "
             f"ground truth: {f'v{latest.version}' if latest else 'the official trimap'}")
right.page_link("app_pages/annotate.py", label="Edit in Annotate", icon=":material/edit:",
                query_params={"image": image_id})


def _changed(message: str, rescored: int) -> None:
    rows = f"{rescored} stored evaluation row{'s' if rescored != 1 else ''} rescored against the new ground truth"
    st.session_state[state.HISTORY_MESSAGE] = f"{message} {rows}."


def _revert(version: int) -> None:
    try:
        made = corrections.revert(current, ds, image_id, version, author=auth.current_user())
    except PetSegError as exc:
        st.session_state[state.HISTORY_MESSAGE] = f"error: {exc}"
        return
    _changed(f"Reverted: v{made.version} has the content of v{version}.", made.rescored)


def _revert_to_official() -> None:
    try:
        made = corrections.save(current, ds, image_id, load_trimap(ds, image_id),
                                base_version=latest.version if latest else None, source="revert",
                                author=auth.current_user(), note="revert to the official trimap")
    except PetSegError as exc:
        st.session_state[state.HISTORY_MESSAGE] = f"error: {exc}"
        return
    _changed(f"Reverted: v{made.version} has the content of the official trimap.", made.rescored)


def _delete(version: int) -> None:
    deleted = corrections.soft_delete(current, ds, image_id, version, author=auth.current_user())
    _changed(f"Deleted v{version} (soft: it stays in the ledger; show deleted versions to restore it).",
             deleted.rescored)


message = st.session_state.pop(state.HISTORY_MESSAGE, None)
if message:
    (st.error if message.startswith("error: ") else st.success)(message.removeprefix("error: "))

for item in reversed(versions):
    with st.container(border=True):
        picture, details, actions = st.columns([2, 4, 2])
        try:
            picture.image(annotate_views.version_thumbnail(current, ds, item))
        except PetSegError as exc:
            picture.warning(escape(exc, 1000))
        flags = " · **deleted**" if item.deleted else (" · **latest**" if latest and item.version == latest.version
                                                      else "")
        # parent_version is the content's origin only for a revert; for any other save it is the version the edit
        # was saved over (a mask started from the official trimap, a prediction or nothing still has one).
        details.markdown(f"**v{item.version}**{flags} · {escape(item.source)}"
                         + ("" if not item.parent_version else f" (content of v{item.parent_version})"
                            if item.source == "revert" else f" (saved over v{item.parent_version})"))
        iou = "n/a (no original GT)" if item.iou_gt is None else f"{item.iou_gt:.3f}"
        details.caption(f"IoU vs original GT: {iou} · by {escape(item.author)} · {escape(item.created_at)} · "
                        f"sha256 {item.sha256[:12]}")
        if item.note:
            details.text(item.note)
        if not (latest and item.version == latest.version):
            actions.button("Restore as new version" if item.deleted else f"Revert to v{item.version}",
                           key=f"history_revert_{item.version}", on_click=_revert, args=(item.version,))
        if not item.deleted:
            actions.button(f"Delete v{item.version}", key=f"history_delete_{item.version}", on_click=_delete,
                           args=(item.version,), help="Soft delete: hidden from history and from the ground truth")

with st.container(border=True):
    picture, details = st.columns([2, 6])
    official = annotate_views.official_thumbnail(ds, image_id)
    if official is None:
        picture.info("No usable official trimap.")
    else:
        picture.image(official)
    details.markdown("**Original GT** · the official trimap from the dataset (never changed by PetSeg)")
    if official is not None and latest is not None:
        details.button("Revert to the official trimap", key="history_revert_official", on_click=_revert_to_official,
                       help="a new version with the official trimap's content; every version stays in the history")
