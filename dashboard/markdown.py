"""Text from data (ids, breeds, notes) made safe to put inside Streamlit markdown.

    >>> from dashboard.markdown import escape
    >>> escape("great_pyrenees_1")          # underscores would otherwise start italics
    'great\\\\_pyrenees\\\\_1'

Streamlit never renders raw HTML here (no ``unsafe_allow_html``); escaping only stops markdown syntax in the
data (``*``, ``_``, ``[``, ``:red[...]``, ``$``) from changing how it is shown.
"""

from __future__ import annotations

import re

_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|:<>~$])")


def escape(text: object, limit: int = 200) -> str:
    """``text`` (cut to ``limit`` characters, one line) with every markdown character backslash-escaped."""
    value = str(text)[:limit].replace("\n", " ").replace("\r", " ")
    return _SPECIAL.sub(r"\\\1", value)
