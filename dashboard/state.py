"""The session's state: every ``st.session_state`` key, the settings in use, and the URL ⇄ selection sync.

    >>> from dashboard import state
    >>> current = state.settings()           # the dataset picked in this session, else $PETSEG_DATA, else the last one
    >>> run = state.select_from_url(state.RUN, "run", ["quick-1", "base-2"])   # ?run= once, then the widget wins
    >>> st.selectbox("Run", ["quick-1", "base-2"], key=state.RUN, on_change=state.write_url, args=(state.RUN, "run"))
    >>> image_id = state.url_image(ds)       # ?image= if the index knows it, else None (and a message if it was bad)

A shared link (``/compare?image=Abyssinian_1&run=quick-1``) selects what it names once; after that the widgets
decide, and a widget wired with :func:`write_url` keeps the address bar naming what is shown.
"""

from __future__ import annotations

import json
import os
from collections.abc import Container, Sequence
from pathlib import Path

import streamlit as st

from core.atomic import atomic_write_text
from core.config import DATA_ENV, Settings
from core.dataset import Dataset
from core.errors import PetSegError
from dashboard.markdown import escape

# --- keys -----------------------------------------------------------------------------------------------------------

DATA_ROOT = "data_root"  # dataset folder chosen in the UI (overrides $PETSEG_DATA for this session)
RUN = "run"  # selected run name
SPLIT = "split"  # evaluated split shown by the views
METRIC = "metric"  # per-image metric the views sort and colour by
URL_APPLIED = "url_applied"  # {param: the URL value last taken into the session} (a later widget change wins)
BROWSE_PAGE = "browse_page"
BROWSE_FILTERS = "browse_filters"
FILTERS_URL = "filters_url"  # the filter's URL parameters last read or written (a new link is taken once)
COMPARE_IMAGE = "compare_image"
BROWSE_OVERLAY = "browse_overlay"  # mask drawn on Browse thumbnails: none | gt | pred | errors
BROWSE_SIGNATURE = "browse_signature"  # filters of the page number in BROWSE_PAGE (a new filter restarts at page 1)
GALLERY_OPENED = "gallery_opened"  # image id of the thumbnail just clicked (the grid's trigger puts it there)
REVIEW_ORDER = "review_order"  # review queue ordering: worst | tension
REVIEW_POS = "review_pos"  # the shown item of the review queue: {"queue": what it was ranked by, "id", "index"}
REVIEW_SKIP_DONE = "review_skip_done"  # review queue hides images that already have a tag
VIEW_LAYERS = "view_layers"  # Compare/Review: overlays shown (gt, pred, errors)
VIEW_MODE = "view_mode"  # Compare/Review: "overlay" or "side by side"
VIEW_OPACITY = "view_opacity"  # Compare/Review: overlay opacity 0..1
VIEW_ZOOM = "view_zoom"  # Compare/Review: zoom factor
VIEW_PAN_X = "view_pan_x"  # Compare/Review: horizontal centre of the zoomed crop, in percent
VIEW_PAN_Y = "view_pan_y"  # Compare/Review: vertical centre of the zoomed crop, in percent
VIEW_WIDTH = "view_width"  # Compare/Review: display width in pixels
DIST_PLOT = "dist_plot"  # Distributions: box or violin per breed
DIST_SCATTER = "dist_scatter"  # Distributions: the column the scatter plots the metric against
FILTER_WIDGET_PREFIX = "flt_"  # widget keys of the shared filter panel (seeded from BROWSE_FILTERS)
REVIEW_TAG_PREFIX = "review_tag_"  # + tag: the tag buttons of the review box
REVIEW_NOTE_PREFIX = "review_note_"  # + image id: the note text area of the review box
JOBS_WATCHED = "jobs_watched"  # ids of background jobs this tab saw running (to refresh once when they end)
RUNS_A = "runs_a"  # Runs page: run A (before)
RUNS_B = "runs_b"  # Runs page: run B (after)
RUNS_SPLIT = "runs_split"  # Runs page: split evaluated by both
RUNS_METRIC = "runs_metric"  # Runs page: metric compared
ANNOTATE_EVENT = "annotate_event"  # Annotate: the editor event waiting to be handled (set by the component's callback)
ANNOTATE_SESSION = "annotate_session"  # Annotate: the edit in progress (dashboard.annotate_session.EditSession)
ANNOTATE_START = "annotate_start"  # Annotate: what the edit starts from (correction | gt | prediction | empty)
ANNOTATE_NOTE = "annotate_note"  # Annotate: note recorded with the next saved version
ANNOTATE_EDITOR = "annotate_editor"  # Annotate: the mask editor component's own state
EDITOR_SENT = "editor_sent"  # Annotate: what the mounted mask editor already holds (image, reference masks)
HISTORY_SHOW_DELETED = "history_show_deleted"  # History: list soft-deleted versions too
HISTORY_MESSAGE = "history_message"  # History: outcome of the last revert/delete, shown once
EXPORT_LAST = "export_last"  # Export: path of the zip written in this session (offered for download)
EXPORT_FORMAT = "export_format"  # Export: mask format of the archive
EXPORT_ONLY_CORRECTED = "export_only_corrected"  # Export: leave out images without a correction
EXPORT_POLICY = "export_corrections"  # Export: which correction version is the ground truth (accepted | latest)
TRAIN_POLICY = "train_corrections"  # Train: the same choice for "use corrections"
REVIEW_QUEUE_MESSAGE = "review_queue_message"  # Review corrections: outcome of the last accept/reject, shown once
REVIEW_QUEUE_REASON = "review_queue_reason"  # Review corrections: the reason typed for a rejection
REVIEW_QUEUE_SKIPPED = "review_queue_skipped"  # Review corrections: versions skipped this session (shown last)
ADMIN_MESSAGE = "admin_message"  # Admin: outcome of the last role or workflow change, shown once
ACTIVITY_PERSON = "activity_person"  # Activity: the person whose days are listed ("" = everyone)
ASSIGN_TO = "assign_to"  # Browse/Activity: the annotator the "assign to" box hands the selection to
ASSIGN_LIMIT = "assign_limit"  # Browse/Activity: how many of the selection (from the top) to assign
MODEL_IMAGE = "model_image"  # Model page: image passed through the network
MODEL_SKIPS = "model_skips"  # Model page: decoder blocks whose skip input the ablation zeroes
OVERVIEW_EVAL_SPLIT = "overview_eval_split"  # Overview: split chosen for "Evaluate now"
TRAIN_RUN = "train_run"  # Train: name of the run to start (deleted after a start: the next gets a fresh name)
DOWNLOAD_TARGET = "download_target"  # Home: folder the official archives are unpacked into
FOLDER_CHOICE = "folder_choice"  # Home: dataset folder typed in "Use a folder"
FOLDER_SUGGESTION = "folder_suggestion"  # Home: the dataset folder around a typed images/ or annotations/ folder
DEMO_COUNT = "demo_count"  # Home: number of images of the generated demo set
DEMO_TARGET = "demo_target"  # Home: folder the demo set is generated into

# --- the settings in use --------------------------------------------------------------------------------------------

_PREFS = "dashboard.json"


def settings() -> Settings:
    """The dataset of :func:`data_source` with the configured workspace. The roots stay the configured ones: a
    folder picked in the app never widens where the app may go.
    """
    base = Settings.resolve()
    chosen, _ = data_source(base)
    return Settings.resolve(data=chosen, workspace=base.workspace, roots=base.roots) if chosen else base


def data_source(base: Settings | None = None) -> tuple[str | None, str]:
    """Which dataset folder to use and why, in words: the folder picked in this session, else $PETSEG_DATA when
    it exists, else the one picked last time on Home (remembered in the workspace) when it exists, else a
    $PETSEG_DATA that does not exist (so Home says where it looked), else the default (None).
    """
    base = base or Settings.resolve()
    picked = st.session_state.get(DATA_ROOT)
    if picked:
        return picked, "picked in this session"
    env = os.environ.get(DATA_ENV) or None
    if env and Path(env).expanduser().is_dir():
        return env, f"from ${DATA_ENV}"
    remembered = _remembered_data(base.workspace)
    if remembered and Path(remembered).is_dir():
        why = "the folder you picked last time on Home"
        return remembered, why + (f" (${DATA_ENV} points at {env}, which does not exist)" if env else "")
    if env:
        return env, f"from ${DATA_ENV}, which does not exist"
    return None, "the default location"


def choose_data(root: Path) -> None:
    """Use ``root`` as the dataset from now on (this session, and the next start of the app)."""
    base = Settings.resolve()
    st.session_state[DATA_ROOT] = str(root)
    atomic_write_text(base.workspace / _PREFS, json.dumps({"data": str(root)}))


def _remembered_data(workspace: Path) -> str | None:
    try:
        return json.loads((workspace / _PREFS).read_text()).get("data") or None
    except (OSError, ValueError, AttributeError):
        return None


# --- URL ⇄ selection ------------------------------------------------------------------------------------------------


def url_value(param: str, choices: Container[str], what: str | None = None, *, complain: bool = True
              ) -> str | None:
    """``?param=`` when it names one of ``choices``; None when absent. A value that is not a choice gives None and,
    with ``complain``, a plain warning (quoting a short, escaped form of it) and its removal from the address bar.
    """
    wanted = st.query_params.get(param)
    if wanted is None:
        return None
    if isinstance(wanted, str) and wanted and wanted in choices:
        return wanted
    if not complain:
        return None
    what = what or param
    st.warning(f"The link's {what} is not available here: there is no {what} called “{escape(wanted, 60)}”. "
               "Pick one below.")
    del st.query_params[param]
    return None


def url_image(ds: Dataset) -> str | None:
    """``?image=`` when the index knows it; None when absent or empty. An unknown id gives the index's own message
    (which quotes only a sanitised, shortened form of it) as an error, and None.
    """
    raw = st.query_params.get("image")
    if raw is None or raw == "":
        return None
    try:
        return ds.require(raw if isinstance(raw, str) else "")
    except PetSegError as exc:
        st.error(escape(exc, 1000))
        return None


def select_from_url(key: str, param: str, choices: Sequence[str], default: str | None = None,
                    what: str | None = None, *, complain: bool = True) -> str | None:
    """Put ``?param=`` into ``st.session_state[key]`` once per new URL value, then keep the selection one of
    ``choices`` (``default``, else the first, when it is not). Returns the selection (None without choices).
    """
    applied = st.session_state.setdefault(URL_APPLIED, {})
    wanted = st.query_params.get(param)
    if wanted is not None and wanted != applied.get(param):
        applied[param] = wanted
        taken = url_value(param, choices, what, complain=complain)
        if taken is not None:
            st.session_state[key] = taken
    if st.session_state.get(key) not in choices:
        if not choices:
            return None
        st.session_state[key] = default if default in choices else choices[0]
    return st.session_state[key]


def write_url(key: str, param: str) -> None:
    """``on_change`` of a widget: the address bar names the selection, so copying it shares this view."""
    value = st.session_state.get(key)
    st.query_params[param] = value
    st.session_state.setdefault(URL_APPLIED, {})[param] = value
