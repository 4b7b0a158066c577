"""Who may do what: the roles annotator < reviewer < admin, stored in the store, checked where each action runs.

    >>> from core import users
    >>> users.require(settings, "ana@example.org", "annotate")     # returns the role, or raises PermissionDenied
    'annotator'
    >>> users.require(settings, "ana@example.org", "train")
    PermissionDenied: ana@example.org is an annotator; to train a model you must be an admin: ask an admin ...
    >>> users.add_user(settings, "lead@example.org", "ben@example.org", "reviewer")   # actor, then who and what

Roles live in the store's ``users`` table (both engines). :data:`ACTIONS` is the one table of what each action
needs; core functions call :func:`require` with their actor (the CLI's ``--as`` or the OS user; in the app the
signed-in user), so a role is enforced even when a page forgets to hide a button.

Configuration and the single-user store. ``PETSEG_ADMIN`` (comma-separated emails, in the environment of the CLI
and of the app server) names admins that are admins whatever the table says: the first admin of a team store,
and a way back in if the table locks everyone out. A store with no user rows and no ``PETSEG_ADMIN`` is a
single-user store: whoever runs PetSeg (the OS user, or the app's user without sign-in) is its admin, exactly as
before roles existed. From the first row on, an identity that is neither listed nor configured has no role and
may do nothing; the first row must therefore be an admin (:func:`add_user` refuses otherwise).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy import exc

from core import audit, store
from core.config import Settings
from core.errors import PetSegError
from core.store.schema import ROLES, users

ADMIN_ENV = "PETSEG_ADMIN"

# action -> (the lowest role allowed to do it, how the refusal names it)
ACTIONS: dict[str, tuple[str, str]] = {
    "annotate": ("annotator", "save, revert or import corrections"),
    "tag": ("annotator", "tag images"),
    "note": ("annotator", "write review notes"),
    "accept": ("reviewer", "accept corrections"),
    "reject": ("reviewer", "reject corrections"),
    "delete": ("reviewer", "delete correction versions"),
    "train": ("admin", "train a model"),
    "evaluate": ("admin", "evaluate a model"),
    "export": ("admin", "export masks"),
    "crossval": ("admin", "run cross-validation"),
    "manage_users": ("admin", "manage users and roles"),
    "workflow": ("admin", "change the review workflow"),
    "assign": ("admin", "assign images to annotators"),
}
_IDENTITY = re.compile(r"[^\s@]+(@[^\s@]+)?")


class PermissionDenied(PetSegError):
    """The acting identity's role does not allow the action."""


@dataclass(frozen=True)
class User:
    email: str
    role: str
    updated_by: str
    updated_at: str
    configured: bool = False  # named by PETSEG_ADMIN: admin whatever the table says


def normalize(identity: str | None) -> str:
    """The identity roles are looked up by: the author text PetSeg records, lower-cased (emails ignore case)."""
    return store.clean_author(identity).lower()


def configured_admins() -> set[str]:
    """The identities ``PETSEG_ADMIN`` names (comma-separated)."""
    return {normalize(part) for part in os.environ.get(ADMIN_ENV, "").split(",") if part.strip()}


def role_of(settings: Settings, email: str | None) -> str | None:
    """The role of ``email`` (None = the OS user) in this store, or None when it has none (see the module docstring)."""
    who = normalize(email)
    admins = configured_admins()
    if who in admins:
        return "admin"
    if not store.exists(settings):
        return None if admins else "admin"
    with store.reading(settings) as conn:
        role, anyone = conn.execute(sa.select(
            sa.select(users.c.role).where(users.c.email == who).scalar_subquery(),
            sa.exists().select_from(users))).one()
    if role is not None:
        return str(role)
    return None if (anyone or admins) else "admin"


def require(settings: Settings, actor: str | None, action: str) -> str:
    """The role of ``actor`` (None = the OS user) if it may do ``action`` (a key of :data:`ACTIONS`); else
    :class:`PermissionDenied` saying what is missing and who can grant it."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
    needed, what = ACTIONS[action]
    who = normalize(actor)
    role = role_of(settings, who)
    if role is None:
        raise PermissionDenied(f"{who} has no role in this store, so may not {what}: an admin adds people with "
                               f"`python -m core users add {who} --role annotator` (or on the Admin page)")
    if rank(role) < rank(needed):
        raise PermissionDenied(f"{who} is {_article(role)} {role}; to {what} you must be {_article(needed)} {needed}"
                               f"{' or above' if needed != 'admin' else ''}: ask an admin "
                               f"(`python -m core users set-role {who} {needed}`)")
    return role


def allowed(settings: Settings, actor: str | None, action: str) -> bool:
    """Whether :func:`require` would let ``actor`` do ``action`` (for pages deciding what to show)."""
    try:
        require(settings, actor, action)
    except PermissionDenied:
        return False
    return True


def rank(role: str) -> int:
    return ROLES.index(role)


def list_users(settings: Settings) -> list[User]:
    """Every user row, then the configured admins that have none, sorted by email."""
    rows: list[User] = []
    if store.exists(settings):
        with store.reading(settings) as conn:
            rows = [User(str(e), str(r), str(b), str(a)) for e, r, b, a in conn.execute(
                sa.select(users.c.email, users.c.role, users.c.updated_by, users.c.updated_at)
                .order_by(users.c.email))]
    admins = configured_admins()
    listed = {u.email for u in rows}
    rows = [User(u.email, "admin", u.updated_by, u.updated_at, True) if u.email in admins else u for u in rows]
    rows += [User(email, "admin", ADMIN_ENV, "", True) for email in sorted(admins - listed)]
    return sorted(rows, key=lambda u: u.email)


def add_user(settings: Settings, actor: str | None, email: str, role: str) -> User:
    """Give ``email`` a role (an admin's action); refused if it has one already (use :func:`set_role`)."""
    require(settings, actor, "manage_users")
    who, role = _check_identity(email), _check_role(role)
    with store.writing(settings) as conn:
        if not conn.execute(sa.select(sa.exists().select_from(users))).scalar() and not configured_admins() \
                and role != "admin":
            raise PetSegError(f"the first user of a store must be an admin, or nobody could manage roles: add "
                              f"yourself first (`python -m core users add YOUR_EMAIL --role admin`), or set "
                              f"{ADMIN_ENV}")
        row = User(who, role, normalize(actor), store.utc_now())
        try:
            conn.execute(users.insert().values(email=row.email, role=row.role, updated_by=row.updated_by,
                                               updated_at=row.updated_at))
        except exc.IntegrityError:
            raise PetSegError(f"{who} has a role already; change it with `python -m core users set-role {who} "
                              f"{role}`") from None
        audit.record(conn, actor, "role", user=who, role=role, before=None)
    return row


def set_role(settings: Settings, actor: str | None, email: str, role: str) -> User:
    """Change the role of a listed user (an admin's action); the last admin cannot step down."""
    require(settings, actor, "manage_users")
    who, role = _check_identity(email), _check_role(role)
    if who in configured_admins():
        raise PetSegError(f"{who} is an admin by configuration ({ADMIN_ENV}); remove it there to change its role")
    with store.writing(settings) as conn:
        old = conn.execute(sa.select(users.c.role).where(users.c.email == who)).scalar()
        if old is None:
            raise PetSegError(f"{who} is not a user of this store; add it with `python -m core users add {who} "
                              f"--role {role}`")
        if old == "admin" and role != "admin" and not configured_admins():
            admins = conn.execute(sa.select(sa.func.count()).where(users.c.role == "admin")).scalar()
            if admins <= 1:
                raise PetSegError(f"{who} is the only admin: make someone else an admin first, or nobody could "
                                  "manage roles")
        row = User(who, role, normalize(actor), store.utc_now())
        conn.execute(users.update().where(users.c.email == who)
                     .values(role=role, updated_by=row.updated_by, updated_at=row.updated_at))
        audit.record(conn, actor, "role", user=who, role=role, before=old)
    return row


def _check_identity(email: str) -> str:
    if not isinstance(email, str) or not email.strip():
        raise PetSegError("a user is named by an email address (or a login name); got nothing")
    who = normalize(email)
    if not _IDENTITY.fullmatch(who):
        raise PetSegError(f"{who[:100]!r} is not an email address or login name (no spaces, at most one '@')")
    return who


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise PetSegError(f"role {str(role)[:40]!r} is not one of {', '.join(ROLES)}")
    return role


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"
