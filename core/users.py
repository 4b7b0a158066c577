"""Roles: who may do what. This branch's copy only lets everyone act (no users table exists yet).

    >>> from core import users
    >>> users.require(settings, "ana@example.org", "assign")   # the actor, cleaned; PermissionDenied if refused
    'ana@example.org'
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
    """The actor (cleaned) when allowed to do ``action``; with no users table every action is allowed."""
    if action not in ACTIONS:
        raise PetSegError(f"unknown action {str(action)[:40]!r}")
    return store.clean_author(actor)
