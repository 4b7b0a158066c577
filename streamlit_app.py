"""PetSeg dashboard entry point: declares the pages and the sidebar common to all of them.

    make run        # or: streamlit run streamlit_app.py
"""

from pathlib import Path

import streamlit as st

from dashboard import frame, settings

st.set_page_config(page_title="PetSeg", page_icon="🐾", layout="wide")

_ROOT = Path(__file__).parent
_SECTIONS = {
    "": [("home", "Home", "🏠")],
    "Explore": [
        ("overview", "Overview", "📊"),
        ("browse", "Browse", "🖼️"),
        ("compare", "Compare", "🔍"),
        ("distributions", "Distributions", "📈"),
        ("review", "Review", "🚩"),
        ("model", "Model", "🧠"),
    ],
    "Correct": [("annotate", "Annotate", "✏️"), ("history", "History", "🕘"), ("export", "Export", "📦")],
    "Train": [("train", "Train", "🏋️"), ("runs", "Runs", "⚖️")],
}


def _pages() -> dict[str, list[st.Page]]:
    sections: dict[str, list[st.Page]] = {}
    for section, entries in _SECTIONS.items():
        pages = [
            st.Page(f"pages/{name}.py", title=title, icon=icon, url_path=name, default=name == "home")
            for name, title, icon in entries
            if (_ROOT / "pages" / f"{name}.py").exists()
        ]
        if pages:
            sections[section] = pages
    return sections


current_page = st.navigation(_pages())
frame.sidebar(settings.current())
current_page.run()
