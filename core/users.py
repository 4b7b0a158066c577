"""Roles: who may do what. This branch's copy only lets everyone act (no users table exists yet).

    >>> from core import users
    >>> users.require(settings, "ana@example.org", "assign")   # the actor's role; PermissionDenied if refused
    'admin'
"""

from __future__ import annotations

from core import store
from core.config import Settings
from core.errors import PetSegError

ACTIONS = ("annotate", "tag", "note", "accept", "reject", "train", "evaluate", "export", "crossval", "users",
           "workflow", "assign")


class PermissionDenied(PetSegError):
    """The actor's role does not allow the action."""


def require(settings: Settings, actor: str | None, action: str) -> str:
    """The role of ``actor`` when allowed to do ``action``: with no users table everyone is an admin."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
    store.clean_author(actor)  # refuses what no identity can be (too long, a NUL character)
    return "admin"
