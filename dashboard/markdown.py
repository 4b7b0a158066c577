"""Text from data (ids, breeds, authors, notes, run names, paths, messages) made safe to put inside Streamlit markdown.

    >>> from dashboard.markdown import escape
    >>> escape("great_pyrenees_1")          # underscores would otherwise start italics
    'great\\\\_pyrenees\\\\_1'
    >>> escape("quick-1", code=True)        # shown as code, where Markdown is not interpreted at all
    '`quick-1`'

This is the one place stored or typed text passes through on its way to ``st.markdown``, ``st.caption``,
``st.info``/``warning``/``error``, widget labels and the like (``tests/test_markdown_escaping.py`` checks every
render call). Streamlit never renders raw HTML here (no ``unsafe_allow_html``); escaping stops Markdown syntax in
the data (``![x](http://host/pixel)`` images, links, ``:red[...]``, ``$`` maths, ``*``, ``_``) from acting.
"""

from __future__ import annotations

import re

_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|:<>~$])")
_BACKTICKS = re.compile(r"`+")


def escape(text: object, limit: int = 200, *, code: bool = False) -> str:
    """``text`` (cut to ``limit`` characters, one line) with every markdown character backslash-escaped, or with
    ``code`` as an inline code span (fenced with more backticks than it holds, so it cannot close early).
    """
    value = str(text)[:limit].replace("\n", " ").replace("\r", " ")
    if code:
        fence = "`" * (max((len(run) for run in _BACKTICKS.findall(value)), default=0) + 1)
        pad = " " if value.startswith("`") or value.endswith("`") else ""
        return f"{fence}{pad}{value}{pad}{fence}"
    return _SPECIAL.sub(r"\\\1", value)
