"""Every ``st.session_state`` key the app uses, in one place."""

DATA_ROOT = "data_root"  # dataset folder chosen in the UI (overrides $PETSEG_DATA for this session)
RUN = "run"  # selected run name
SPLIT = "split"  # evaluated split shown by the views
METRIC = "metric"  # per-image metric the views sort and colour by
BROWSE_PAGE = "browse_page"
BROWSE_FILTERS = "browse_filters"
COMPARE_IMAGE = "compare_image"
