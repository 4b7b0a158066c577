"""Page and link icons are Streamlit's built-in Material icons: emoji render as empty boxes without an emoji font."""

from __future__ import annotations

import ast

from tests.conftest import PROJECT_ROOT


def _icons() -> list[tuple[str, str]]:
    files = [PROJECT_ROOT / "streamlit_app.py", *sorted((PROJECT_ROOT / "app_pages").glob("*.py")),
             *sorted((PROJECT_ROOT / "dashboard").glob("*.py"))]
    found = []
    for path in files:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg in ("icon", "page_icon") \
                    and isinstance(node.value, ast.Constant):
                found.append((path.name, node.value.value))
            # streamlit_app.py lists its page icons as data: every third item of the section tuples
            if isinstance(node, ast.Tuple) and len(node.elts) == 3 and all(
                    isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts) \
                    and path.name == "streamlit_app.py":
                found.append((path.name, node.elts[2].value))
    return found


def test_every_page_and_link_icon_is_a_material_icon():
    icons = _icons()
    assert len(icons) >= 13 + 5  # the twelve pages, the app icon, and the page links
    assert all(icon.startswith(":material/") and icon.endswith(":") for _, icon in icons), icons
