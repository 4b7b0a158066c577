"""UI pieces shared by the Streamlit pages: state keys, cached loaders, sidebar, image views.

Pages import from here; nothing in ``core/`` imports from here.
"""
