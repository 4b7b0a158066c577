"""Stored and typed text never reaches Markdown unescaped (issue 12 item 5: Markdown injection).

A correction's author, notes, tags, checkpoint metadata, run names and dataset problem messages are free text;
shown through ``st.markdown``/``st.caption``/``st.error``… unescaped, ``![x](http://host/pixel)`` makes every
viewer's browser fetch that URL. Two tests: a static one that reads every render call in ``app_pages/`` and
``dashboard/`` and accepts only interpolations passed through ``dashboard.markdown.escape`` (or known-safe
numbers), and a behaviour one that saves such an author and looks at what the History and Annotate pages render.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core import corrections
from core.dataset import open_dataset
from dashboard.markdown import escape
from tests.conftest import PROJECT_ROOT, open_app

# Streamlit calls whose text argument is rendered as Markdown (labels of buttons, links and metrics included).
RENDER = {"markdown", "caption", "write", "info", "warning", "error", "success", "exception", "toast", "title",
          "header", "subheader", "button", "page_link", "metric", "download_button", "expander", "tabs", "radio",
          "checkbox", "toggle", "selectbox", "multiselect", "text_input", "number_input", "slider", "pills"}
TEXT_KEYWORDS = {"body", "label", "help", "text"}  # not value=/caption=: widget values and image captions are plain
# Interpolations that cannot carry free text: numbers and counts, the project's own fixed vocabulary (splits,
# metrics, kinds, parts of the U), and values whose type is numeric by construction.
SAFE_CALLS = {"escape", "len", "int", "round", "float", "millions", "abs", "sum", "max", "min", "_fmt", "badge",
              "architecture_text", "stage_text", "ablation_text"}  # the last four escape or format numbers inside
SAFE_NAMES = {
    "width", "height", "page", "pages", "split", "metric", "kind", "what", "title", "source", "rows", "count",
    "total", "code", "mismatched", "iou", "pet_share", "unsure", "chosen", "available", "change", "share",
    "strongest", "version", "DEMO_MIN", "DEMO_MAX", "MAX_LISTED", "TOP", "extra", "status", "position", "order",
    "versions", "flags", "part", "name", "stride", "channels", "image_size", "skip_channels", "params", "key",
    "checkpoint", "epochs_done", "epochs_planned", "problems", "images", "delta", "mean_a", "mean_b", "improved",
    "worsened", "unchanged", "item", "selected", "shown", "corrected", "numbers", "summary", "h", "p", "s", "info",
    "bottom", "prev", "arch", "probs", "top_channels", "skips", "done", "label", "tag", "state",
    "parent_version", "sha256", "in_trainval", "in_test", "missing", "scored_as", "help_text", "base_version",
    "who",
    # Messages that dashboard.jobs_view builds from escaped parts (run_name_problem, busy_message).
    "problem", "busy", "busy_eval", "cv_problem", "cv_busy",
}


def _safe(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.JoinedStr):
        return all(_safe(v) for v in node.values)
    if isinstance(node, ast.FormattedValue):
        # A numeric format (":.3f", ":,", ":+.4f", ":.0%") only accepts numbers.
        return node.format_spec is not None or _safe(node.value)
    if isinstance(node, ast.Call):
        func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if func == "join":  # "; ".join(parts): safe when what is joined is
            return _safe(node.func.value) and all(_safe(a) for a in node.args)
        return func in SAFE_CALLS
    if isinstance(node, ast.BoolOp):
        return all(_safe(v) for v in node.values)
    if isinstance(node, ast.List | ast.Tuple):
        return all(_safe(e) for e in node.elts)
    if isinstance(node, ast.IfExp):
        return _safe(node.body) and _safe(node.orelse)
    if isinstance(node, ast.BinOp):
        return _safe(node.left) and _safe(node.right)
    if isinstance(node, ast.Subscript):  # numbers["images"], s.shape[0]: judged by what is subscripted
        table = node.value.attr if isinstance(node.value, ast.Attribute) else getattr(node.value, "id", "")
        return table.isupper() or _safe(node.value)  # METRIC_LABELS[name]: the project's own vocabulary
    if isinstance(node, ast.Attribute):
        return node.attr in SAFE_NAMES or _safe(node.value) and node.attr in SAFE_NAMES
    if isinstance(node, ast.Name):
        return node.id in SAFE_NAMES
    return False


def _unescaped_renders(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in RENDER):
            continue
        texts = list(node.args[:1]) if node.func.attr != "page_link" else []
        texts += [k.value for k in node.keywords if k.arg in TEXT_KEYWORDS]
        for text in texts:
            if not _safe(text):
                found.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno}: {ast.unparse(text)[:100]}")
    return found


def test_every_render_call_escapes_what_it_interpolates():
    files = sorted((PROJECT_ROOT / "app_pages").glob("*.py")) + sorted((PROJECT_ROOT / "dashboard").glob("*.py"))
    found = [line for path in files for line in _unescaped_renders(path)]
    assert not found, "render calls interpolating text not passed through dashboard.markdown.escape:\n" + "\n".join(
        found)


def test_the_checker_catches_what_it_is_for(tmp_path):
    sample = PROJECT_ROOT / "tests" / "_unescaped_sample.py"
    sample.write_text(
        "st.caption(f'by {item.author}')\n"
        "st.error(str(exc))\n"
        "st.markdown(note)\n"
        "st.caption(f'by {escape(item.author)} · {iou:.3f} · {len(rows)} rows')\n"
    )
    try:
        found = _unescaped_renders(sample)
    finally:
        sample.unlink()
    assert [line.split(": ", 1)[1] for line in found] == ["f'by {item.author}'", "str(exc)", "note"]


def test_escape_neutralises_links_images_and_colour_directives():
    for hostile in ("![x](http://127.0.0.1:9/pixel)", "[click](javascript:alert(1))", ":red[boom]", "$x^2$",
                    "<img src=x>", "**bold** _it_ `code`"):
        escaped = escape(hostile)
        assert not any(escaped[i] in "![]():$<>*_`" and (i == 0 or escaped[i - 1] != "\\")
                       for i in range(len(escaped))), escaped


# --- behaviour: a stored hostile author is shown as text, never as an image ----------------------------------------

PIXEL = "![x](http://127.0.0.1:9/pixel)"


@pytest.fixture
def hostile_history(trained_copy):
    settings = trained_copy.settings
    ds = open_dataset(settings.data, settings.workspace)
    image_id = sorted(ds.table.index[ds.table["has_trimap"]])[0]
    mask = np.full((int(ds.table.loc[image_id, "height"]), int(ds.table.loc[image_id, "width"])), 2, np.uint8)
    saved = corrections.save(settings, ds, image_id, mask, base_version=None, source="gt", author=PIXEL, note=PIXEL)
    assert saved.author == PIXEL  # stored as typed: escaping is the renderer's job
    return image_id


def _rendered_markdown(at: AppTest) -> list[str]:
    texts = []
    for kind in ("markdown", "caption", "info", "warning", "error", "success", "subheader", "title"):
        texts += [element.value for element in getattr(at, kind)]
    return texts


@pytest.mark.parametrize("page", ["history", "annotate"])
def test_a_hostile_author_renders_escaped_not_as_an_image(monkeypatch, trained_copy, hostile_history, page):
    at = open_app(monkeypatch, trained_copy.data, trained_copy.workspace, page, image=hostile_history)
    assert not at.exception, at.exception[0].value
    texts = _rendered_markdown(at)
    shown = [t for t in texts if "127.0.0.1:9/pixel" in t.replace("\\", "")]
    assert shown, "the author should be shown (as text)"
    for text in shown:
        assert PIXEL not in text  # the raw Markdown image never reaches the renderer
        assert escape(PIXEL) in text


def test_code_spans_cannot_be_closed_by_the_text():
    assert escape("quick-1", code=True) == "`quick-1`"
    assert escape("a`b", code=True) == "``a`b``"
    assert escape("`![x](http://h/p)`", code=True) == "`` `![x](http://h/p)` ``"
