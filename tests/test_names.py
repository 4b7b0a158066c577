"""Names that become paths are checked with ``fullmatch``: ``re.match(...$)`` lets a trailing newline through."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.config import check_run_name
from core.errors import PetSegError

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def test_a_run_name_with_a_trailing_newline_is_refused():
    assert check_run_name("quick-1") == "quick-1"
    with pytest.raises(PetSegError, match="not allowed"):
        check_run_name("quick-1\n")


def test_no_validation_in_core_or_dashboard_anchors_with_dollar_under_match():
    """``.match(`` on a pattern ending in ``$`` is the bug shape; ``fullmatch`` says what is meant."""
    offenders = []
    for folder in ("core", "dashboard", "app_pages"):
        for path in sorted((PROJECT_ROOT / folder).rglob("*.py")):
            text = path.read_text()
            patterns = dict(re.findall(r"^(\w+) = re\.compile\(r?[\"'](.*)[\"']\)", text, flags=re.M))
            for name, pattern in patterns.items():
                if pattern.endswith("$") and re.search(rf"\b{name}\.match\(", text):
                    offenders.append(f"{path.relative_to(PROJECT_ROOT)}: {name}")
            offenders += [f"{path.relative_to(PROJECT_ROOT)}: re.match" for _ in re.finditer(r"\bre\.match\(", text)]
    assert offenders == []
