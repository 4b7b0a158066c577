"""PetSeg dashboard entry point: declares the pages and the sidebar common to all of them.

    make run        # python -m dashboard.serve: refuses an open address without sign-in before starting
    streamlit run streamlit_app.py --server.address 127.0.0.1
"""

from pathlib import Path

import streamlit as st

from core.errors import PetSegError
from core.users import rank
from dashboard import auth, heap, sidebar, state

st.set_page_config(page_title="PetSeg", page_icon=":material/pets:", layout="wide")
# Before any page or the sidebar: an open server without sign-in, or a visitor not signed in, gets no further.
auth.gate()

# Not "pages/": Streamlit treats a pages/ folder beside the entry script as a legacy multipage app, and then
# runs a deep link that is a fresh server's first request (/compare?image=...) without this script.
_PAGES = Path(__file__).parent / "app_pages"
# Material icons ship with Streamlit's frontend: emoji render as empty boxes where no emoji font is installed.
_SECTIONS = {
    "": [("home", "Home", ":material/home:")],
    "Explore": [
        ("overview", "Overview", ":material/dashboard:"),
        ("browse", "Browse", ":material/photo_library:"),
        ("compare", "Compare", ":material/compare:"),
        ("distributions", "Distributions", ":material/bar_chart:"),
        ("review", "Review", ":material/flag:"),
        ("model", "Model", ":material/account_tree:"),
    ],
    "Correct": [
        ("annotate", "Annotate", ":material/edit:"),
        ("history", "History", ":material/history:"),
        ("export", "Export", ":material/archive:"),
        ("activity", "Activity", ":material/groups:"),
    ],
    "Train": [("train", "Train", ":material/model_training:"), ("runs", "Runs", ":material/compare_arrows:")],
}
# Pages shown only from a role up (each page checks the role again: a hidden page is not a protected one).
_ROLE_PAGES = {"Correct": [("review_corrections", "Review corrections", ":material/fact_check:", "reviewer")],
               "Team": [("admin", "Admin", ":material/admin_panel_settings:", "admin")]}
try:
    _role = auth.role(state.settings())
except PetSegError:  # the store is unreachable: pages say so themselves
    _role = None
for _section, _entries in _ROLE_PAGES.items():
    _SECTIONS.setdefault(_section, []).extend((name, title, icon) for name, title, icon, needed in _entries
                                              if _role is not None and rank(_role) >= rank(needed))
PAGES = {
    section: [
        st.Page(_PAGES / f"{name}.py", title=title, icon=icon, url_path=name, default=name == "home")
        for name, title, icon in entries
    ]
    for section, entries in _SECTIONS.items()
}

# Expanded: collapsed, Streamlit hides every page after the tenth behind "View more" once there are over twelve.
current_page = st.navigation(PAGES, expanded=True)
sidebar.sidebar(state.settings())
current_page.run()
heap.freeze_new_imports()
