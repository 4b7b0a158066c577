"""Who is acting in the app: the signed-in user (OpenID Connect via ``st.login``) or, without sign-in, the OS user.

    >>> from dashboard import auth
    >>> auth.gate()                 # in streamlit_app.py, before any page: refuse, ask to sign in, or let through
    >>> auth.current_user()         # the author of every save, revert, tag and note made in the app
    'ana@example.org'
    >>> auth.role(settings)          # their role in the store (core.users), None = none
    'annotator'
    >>> auth.require_role(settings, "accept")   # at the top of a page: the refusal shown and the page stopped

Sign-in is on when ``.streamlit/secrets.toml`` has an ``[auth]`` section (README, "Working as a team: signing in"); the
identity is the ``email`` claim of the ID token, which Streamlit keeps in a signed cookie and exposes as
``st.user``. Nothing the browser sends (a widget, a query parameter) can change it. Without ``[auth]`` PetSeg is
the single-user tool it always was: the author is the OS user and the server binds 127.0.0.1. A server bound to
any other address without sign-in serves nothing (:func:`refusal`); ``python -m dashboard.serve`` checks the same
before the server starts.
"""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Mapping

import streamlit as st

from core import store, users
from core.config import Settings
from core.errors import PetSegError
from dashboard.markdown import escape

# The escape hatch for a server that is reachable only through something that already restricts access (a
# container port published on the host's 127.0.0.1, an SSH tunnel): Streamlit must bind 0.0.0.0 there.
ALLOW_OPEN_ENV = "PETSEG_I_KNOW_THIS_IS_OPEN"
_PROVIDER_KEYS = ("client_id", "client_secret", "server_metadata_url")


class NotSignedIn(PetSegError):
    """Sign-in is configured and nobody is signed in (the gate keeps pages from running in that state)."""


def auth_section() -> Mapping | None:
    """The ``[auth]`` section of the secrets, or None when sign-in is not configured."""
    try:
        section = st.secrets.get("auth")
    except FileNotFoundError:  # no secrets file, or one Streamlit could not parse (it logs why at start-up)
        return None
    return section if isinstance(section, Mapping) and section else None


def auth_configured() -> bool:
    return auth_section() is not None


def providers(section: Mapping) -> list[str | None]:
    """The sign-in buttons to offer: None for the default provider (keys directly in ``[auth]``), else the names
    of the ``[auth.<name>]`` provider sections, in file order."""
    named = [name for name, value in section.items() if isinstance(value, Mapping) and "client_id" in value]
    return ([None] if "client_id" in section else []) + named


def config_problem(section: Mapping) -> str | None:
    """What is missing from an ``[auth]`` section for Streamlit to sign anyone in (None when nothing is)."""
    missing = [key for key in ("redirect_uri", "cookie_secret") if not section.get(key)]
    if missing:
        return f"[auth] in .streamlit/secrets.toml lacks {', '.join(missing)}"
    if not str(section["redirect_uri"]).endswith("/oauth2callback"):
        return "[auth] redirect_uri must be the app's address followed by /oauth2callback"
    names = providers(section)
    if not names:
        return "[auth] names no provider: add client_id, client_secret and server_metadata_url"
    for name in names:
        keys = section if name is None else section[name]
        lacking = [key for key in _PROVIDER_KEYS if not keys.get(key)]
        if lacking:
            return f"[auth{'' if name is None else '.' + name}] lacks {', '.join(lacking)}"
    return None


def is_loopback(address: str | None) -> bool:
    """True when a server bound to ``address`` is reachable from this machine only.

    Unset means Streamlit binds every interface. Host names other than ``localhost`` count as open: what they
    resolve to can change. A Unix socket is local.
    """
    if not address:
        return False
    text = address.strip()
    if text.startswith("unix://"):
        return True
    if text.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(text.strip("[]")).is_loopback
    except ValueError:
        return False


def refusal(address: str | None, configured: bool, environ: Mapping[str, str] = os.environ) -> str | None:
    """The one-line reason not to serve, or None: an address others can reach, without sign-in."""
    if configured or is_loopback(address) or environ.get(ALLOW_OPEN_ENV) == "1":
        return None
    where = address if address else "every network address (server.address is unset)"
    return (f"PetSeg refuses to serve on {where} without sign-in: configure OpenID Connect in an [auth] section "
            "of .streamlit/secrets.toml (README: 'Working as a team: signing in'), or serve on --server.address "
            f"127.0.0.1 (behind access control of your own: {ALLOW_OPEN_ENV}=1)")


def signed_in_email() -> str | None:
    """The signed-in user's email from ``st.user`` (None when nobody is signed in).

    Raises PetSegError when the provider signed someone in without a usable email: PetSeg records people by email.
    """
    user = st.user
    if user.get("is_logged_in") is not True:
        return None
    email = user.get("email")
    if not isinstance(email, str) or "@" not in email or not email.strip():
        raise PetSegError("your sign-in provider sent no email address: add 'email' to the scopes it grants "
                          "this app (client_kwargs scope = \"openid email profile\")")
    if user.get("email_verified") is False:
        # Some providers let anyone claim any address; an unverified one could impersonate a colleague.
        raise PetSegError(f"the provider says {email} is not verified: verify it with the provider, then sign in "
                          "again")
    return store.clean_author(email.strip().lower())


def current_user() -> str:
    """The author of what this session does: the signed-in email, or the OS user when sign-in is not configured.

    Raises NotSignedIn when sign-in is configured and nobody is signed in.
    """
    if not auth_configured():
        return store.clean_author(None)
    email = signed_in_email()
    if email is None:
        raise NotSignedIn("sign in to make changes")
    return email


def role(settings: Settings) -> str | None:
    """The current user's role in the store (core.users.role_of); None when they have none."""
    return users.role_of(settings, current_user())


def may(settings: Settings, action: str) -> bool:
    """Whether the current user's role allows ``action`` (to decide what a page offers; core checks again)."""
    return users.allowed(settings, current_user(), action)


def require_role(settings: Settings, action: str) -> str:
    """The current user if their role allows ``action``; else the refusal is shown and the page stops."""
    user = current_user()
    try:
        users.require(settings, user, action)
    except PetSegError as exc:
        st.error(escape(exc, 1000))
        st.stop()
    return user


def gate() -> None:
    """Refuse an open server, or ask for sign-in, or show who is signed in (sidebar) and let the page run.

    Everything after this call in the frame (the sidebar, every page) runs only for a signed-in user, or for the
    local user of a server without sign-in.
    """
    configured = auth_configured()
    reason = refusal(st.get_option("server.address"), configured)
    if reason is not None:
        _log_once(reason)
        st.error(escape(reason, 1000))
        st.stop()
    if not configured:
        return
    problem = config_problem(auth_section() or {})
    if problem is not None:
        st.error(escape(f"Sign-in is misconfigured: {problem} (README: 'Working as a team: signing in').", 1000))
        st.stop()
    try:
        email = signed_in_email()
    except PetSegError as exc:
        st.error(escape(exc, 1000))
        st.button("Sign out", key="auth_logout", on_click=st.logout)
        st.stop()
    if email is None:
        _login_screen(auth_section() or {})
        st.stop()
    st.sidebar.caption(f"Signed in as **{escape(email)}**")
    st.sidebar.button("Sign out", key="auth_logout", icon=":material/logout:", on_click=st.logout)


def _login_screen(section: Mapping) -> None:
    st.title("PetSeg")
    st.write("Sign in to open PetSeg: your email is recorded as the author of every change you make.")
    for name in providers(section):
        label = "Sign in" if name is None else f"Sign in with {name.capitalize()}"
        st.button(label, key=f"auth_login_{name or 'default'}", type="primary", icon=":material/login:",
                  on_click=st.login, args=(() if name is None else (name,)))


_logged: set[str] = set()  # this module is imported once per server, the frame runs once per page view


def _log_once(message: str) -> None:
    """Put the refusal in the server's log once (every visitor sees it in the page)."""
    if message not in _logged:
        _logged.add(message)
        print(f"error: {message}", file=sys.stderr, flush=True)
