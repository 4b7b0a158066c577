"""Every ``st.session_state`` key the app uses, in one place."""

DATA_ROOT = "data_root"  # dataset folder chosen in the UI (overrides $PETSEG_DATA for this session)
RUN = "run"  # selected run name
SPLIT = "split"  # evaluated split shown by the views
METRIC = "metric"  # per-image metric the views sort and colour by
BROWSE_PAGE = "browse_page"
BROWSE_FILTERS = "browse_filters"
COMPARE_IMAGE = "compare_image"
URL_RUN = "url_run"  # the ?run= value the sidebar last applied (a later widget change wins over a stale URL)
URL_SPLIT = "url_split"  # the ?split= value the sidebar last applied
BROWSE_OVERLAY = "browse_overlay"  # mask drawn on Browse thumbnails: none | gt | pred | errors
BROWSE_SIGNATURE = "browse_signature"  # filters of the page number in BROWSE_PAGE (a new filter restarts at page 1)
GALLERY_OPENED = "gallery_opened"  # image id of the thumbnail just clicked (the grid's trigger puts it there)
REVIEW_ORDER = "review_order"  # review queue ordering: worst | tension
REVIEW_POS = "review_pos"  # index of the shown item in the review queue
REVIEW_SKIP_DONE = "review_skip_done"  # review queue hides images that already have a tag
EVAL_JOB = "eval_job"  # id of the evaluation job started from Overview (polled until it ends)
VIEW_LAYERS = "view_layers"  # Compare/Review: overlays shown (gt, pred, errors)
VIEW_MODE = "view_mode"  # Compare/Review: "overlay" or "side by side"
VIEW_OPACITY = "view_opacity"  # Compare/Review: overlay opacity 0..1
VIEW_ZOOM = "view_zoom"  # Compare/Review: zoom factor
VIEW_PAN_X = "view_pan_x"  # Compare/Review: horizontal centre of the zoomed crop, in percent
VIEW_PAN_Y = "view_pan_y"  # Compare/Review: vertical centre of the zoomed crop, in percent
VIEW_WIDTH = "view_width"  # Compare/Review: display width in pixels
DIST_PLOT = "dist_plot"  # Distributions: box or violin per breed
FILTER_WIDGET_PREFIX = "flt_"  # widget keys of the shared filter panel (seeded from BROWSE_FILTERS)
REVIEW_TAG_PREFIX = "review_tag_"  # + tag: the tag buttons of the review box
REVIEW_NOTE_PREFIX = "review_note_"  # + image id: the note text area of the review box
JOBS_WATCHED = "jobs_watched"  # ids of background jobs this tab saw running (to refresh once when they end)
RUNS_A = "runs_a"  # Runs page: run A (before)
RUNS_B = "runs_b"  # Runs page: run B (after)
RUNS_SPLIT = "runs_split"  # Runs page: split evaluated by both
ANNOTATE_EVENT = "annotate_event"  # Annotate: the editor event waiting to be handled (set by the component's callback)
ANNOTATE_SESSION = "annotate_session"  # Annotate: the edit in progress (dashboard.annotate_session.EditSession)
ANNOTATE_START = "annotate_start"  # Annotate: what the edit starts from (correction | gt | prediction | empty)
ANNOTATE_AUTHOR = "annotate_author"  # Annotate: author recorded with saved versions
ANNOTATE_NOTE = "annotate_note"  # Annotate: note recorded with the next saved version
EDITOR_SENT = "editor_sent"  # Annotate: what the mounted mask editor already holds (image, reference masks)
HISTORY_SHOW_DELETED = "history_show_deleted"  # History: list soft-deleted versions too
EXPORT_LAST = "export_last"  # Export: path of the zip written in this session (offered for download)
MODEL_IMAGE = "model_image"  # Model page: image passed through the network
MODEL_SKIPS = "model_skips"  # Model page: decoder blocks whose skip input the ablation zeroes
EVAL_JOB_FAILED = "eval_job_failed"  # log tail of a followed evaluation job that failed (shown once)
OVERVIEW_EVAL_SPLIT = "overview_eval_split"  # Overview: split chosen for "Evaluate now"
HISTORY_MESSAGE = "history_message"  # History: outcome of the last revert/delete, shown once
