"""Keep the Streamlit server's full garbage collections short.

    >>> from dashboard import heap
    >>> heap.freeze_new_imports()   # at the end of every script run; cheap when nothing new was imported

The server process holds torch, pandas and Streamlit: millions of objects that live as long as it does. Python
walks all of them on every full collection, which took 230-320 ms here and came about once per Annotate save,
so a save waited for it about every other time. Moving what the imports created into the permanent generation
(``gc.freeze``) leaves a full collection only the objects made since.
"""

from __future__ import annotations

import gc
import sys

_modules_when_frozen = 0


def freeze_new_imports() -> None:
    """Freeze the heap after a script run that imported new modules (the first visit of a page, mostly)."""
    global _modules_when_frozen
    if len(sys.modules) > _modules_when_frozen:
        gc.collect()
        gc.freeze()
        _modules_when_frozen = len(sys.modules)
