"""The sign-in gate (dashboard/auth.py) in AppTest: who is acting, with and without ``[auth]``, and who authors.

AppTest stands in for the browser: ``at.secrets["auth"]`` is the ``[auth]`` section and ``at.user`` what Streamlit
put in ``st.user`` from its signed cookie after a real sign-in (tests/test_browser_signin.py does that one for
real against tests/oidc_provider.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from streamlit import config as st_config
from streamlit.testing.v1 import AppTest

from core import corrections, ledger, store
from core.config import Settings
from core.dataset import open_dataset
from core.review import get_review
from dashboard import auth, state
from dashboard.editor import rle_encode
from tests.conftest import open_app, plain, ui_calls

IMAGE = "Abyssinian_1"
AUTH = {"redirect_uri": "http://127.0.0.1:8501/oauth2callback", "cookie_secret": "x" * 32,
        "client_id": "petseg", "client_secret": "s", "server_metadata_url": "http://127.0.0.1:1/.well-known/x"}
ANA = {"is_logged_in": True, "email": "Ana@Example.org", "email_verified": True, "name": "Ana"}


def _app(monkeypatch, sample_root, workspace, *, user: dict | None = None, secrets: dict | None = None) -> AppTest:
    at = open_app(monkeypatch, sample_root, workspace, run=False)
    if secrets is not None:
        at.secrets["auth"] = secrets
    if user is not None:
        at.user = user
    return at.run()


def _sidebar_text(at: AppTest) -> str:
    return " ".join(plain(c.value) for c in at.sidebar.caption)


def _buttons(at: AppTest) -> list[str]:
    return [b.label for b in at.button]


# --- the address check ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost", "LOCALHOST",
                                     "unix:///tmp/petseg.sock"])
def test_loopback_addresses_are_local(address):
    assert auth.is_loopback(address)
    assert auth.refusal(address, configured=False, environ={}) is None


@pytest.mark.parametrize("address", [None, "", "0.0.0.0", "::", "192.0.2.2", "10.1.2.3", "petseg.example.org"])
def test_an_open_address_without_sign_in_is_refused_in_one_line(address):
    assert not auth.is_loopback(address)
    reason = auth.refusal(address, configured=False, environ={})
    assert reason is not None and "\n" not in reason
    assert "[auth]" in reason and ".streamlit/secrets.toml" in reason and "127.0.0.1" in reason
    # Signed-in access, or the explicit escape hatch (exactly "1"), lets it serve.
    assert auth.refusal(address, configured=True, environ={}) is None
    assert auth.refusal(address, configured=False, environ={auth.ALLOW_OPEN_ENV: "1"}) is None
    assert auth.refusal(address, configured=False, environ={auth.ALLOW_OPEN_ENV: "yes"}) is not None


def test_named_providers_each_get_a_button_and_the_default_comes_first():
    section = {**AUTH, "okta": {"client_id": "a", "client_secret": "b", "server_metadata_url": "c"},
               "client_kwargs": {"prompt": "login"}}
    assert auth.providers(section) == [None, "okta"]
    shared_only = {"redirect_uri": "r", "cookie_secret": "c", "google": {"client_id": "g"}}
    assert auth.providers(shared_only) == ["google"]


def test_an_incomplete_auth_section_is_named_before_anyone_clicks_sign_in():
    assert auth.config_problem(AUTH) is None
    assert "cookie_secret" in auth.config_problem({k: v for k, v in AUTH.items() if k != "cookie_secret"})
    assert "/oauth2callback" in auth.config_problem({**AUTH, "redirect_uri": "http://127.0.0.1:8501/"})
    shared = {"redirect_uri": AUTH["redirect_uri"], "cookie_secret": "c" * 32}
    assert "names no provider" in auth.config_problem(shared)
    assert auth.config_problem({**shared, "okta": {"client_id": "a", "server_metadata_url": "m"}}) == \
        "[auth.okta] lacks client_secret"


def test_a_misconfigured_auth_section_stops_at_a_clear_error(monkeypatch, sample_root, workspace):
    at = _app(monkeypatch, sample_root, workspace, user={"is_logged_in": False},
              secrets={k: v for k, v in AUTH.items() if k != "client_secret"})
    assert not at.exception
    assert [plain(e.value) for e in at.error] == [
        "Sign-in is misconfigured: [auth] lacks client_secret (README: 'Working as a team: signing in')."]
    assert not at.button and not at.sidebar.selectbox


# --- without [auth]: today's single-user tool -----------------------------------------------------------------------

def test_without_auth_the_app_opens_and_the_os_user_is_the_author(monkeypatch, sample_root, workspace):
    at = _app(monkeypatch, sample_root, workspace)
    assert not at.exception
    assert "Sign in" not in _buttons(at) and "Sign out" not in _buttons(at)
    assert "Signed in" not in _sidebar_text(at)
    # AppTest's default st.user has an email; without [auth] it is not an identity.
    at.query_params["image"] = IMAGE
    at.switch_page("app_pages/annotate.py").run()
    assert not at.exception
    assert any(f"Saving as **{store.clean_author(None)}**" in plain(c.value) for c in at.caption)
    assert not [t for t in at.text_input if t.label == "Author"]


def test_an_open_address_without_auth_serves_no_page(monkeypatch, sample_root, workspace):
    monkeypatch.delenv(auth.ALLOW_OPEN_ENV, raising=False)
    before = st_config.get_option("server.address")
    st_config.set_option("server.address", "0.0.0.0")
    try:
        at = _app(monkeypatch, sample_root, workspace)
    finally:
        st_config.set_option("server.address", before)
    assert len(at.error) == 1
    assert plain(at.error[0].value) == auth.refusal("0.0.0.0", configured=False, environ={})
    assert len(at.error) == 1 and not at.sidebar.selectbox and not at.title


# --- with [auth] ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("user", [{"is_logged_in": False}, {"email": "test@example.com"}, {}])
def test_with_auth_nobody_signed_in_sees_only_the_sign_in_button(monkeypatch, sample_root, workspace, user):
    at = _app(monkeypatch, sample_root, workspace, user=user, secrets=AUTH)
    assert not at.exception
    assert [t.value for t in at.title] == ["PetSeg"]
    assert _buttons(at) == ["Sign in"]
    assert not at.sidebar.selectbox and not at.sidebar.caption  # the sidebar (dataset, run) never ran
    # A deep link does not get past the gate either.
    at.query_params["image"] = IMAGE
    at.switch_page("app_pages/annotate.py").run()
    assert _buttons(at) == ["Sign in"] and state.ANNOTATE_SESSION not in at.session_state


def test_signed_in_user_is_shown_and_can_sign_out(monkeypatch, sample_root, workspace):
    at = _app(monkeypatch, sample_root, workspace, user=ANA, secrets=AUTH)
    assert not at.exception
    assert "Signed in as **ana@example.org**" in _sidebar_text(at)
    assert "Sign out" in [b.label for b in at.sidebar.button]
    at.sidebar.button(key="auth_logout").click().run()
    assert _buttons(at) == ["Sign in"]  # st.logout emptied st.user: back at the gate


def test_an_unverified_email_is_not_an_identity(monkeypatch, sample_root, workspace):
    at = _app(monkeypatch, sample_root, workspace, user={**ANA, "email_verified": False}, secrets=AUTH)
    assert any("not verified" in e.value for e in at.error)
    assert not at.sidebar.selectbox
    at = _app(monkeypatch, sample_root, workspace, user={"is_logged_in": True, "name": "No Mail"}, secrets=AUTH)
    assert any("no email address" in e.value for e in at.error)


def test_the_signed_in_email_authors_saves_reverts_and_tags_and_cannot_be_typed(monkeypatch, sample_root,
                                                                                 workspace):
    settings = Settings.resolve(data=sample_root, workspace=workspace)
    at = _app(monkeypatch, sample_root, workspace, user=ANA, secrets=AUTH)
    # Neither a query parameter nor the old author key in the session changes who is acting.
    at.query_params["image"] = IMAGE
    at.query_params["author"] = "mallory@example.org"
    at.session_state["annotate_author"] = "mallory@example.org"
    at.switch_page("app_pages/annotate.py").run()
    assert not at.exception
    assert not [t for t in at.text_input if t.label == "Author"]
    assert any("Saving as **ana@example.org**" in plain(c.value) for c in at.caption)

    session = at.session_state[state.ANNOTATE_SESSION]
    mask = session.work.copy()
    mask[2:12, 2:12] = 1
    at.session_state[state.ANNOTATE_EVENT] = {"action": "save", "image": IMAGE, "revision": session.revision,
                                              "shape": list(mask.shape), "mask": rle_encode(mask),
                                              "strokes": rle_encode(np.zeros(mask.shape, np.uint8))}
    at.run()
    assert not at.exception
    assert [(c.version, c.author) for c in ledger.history(settings, IMAGE)] == [(1, "ana@example.org")]

    at.switch_page("app_pages/history.py").run()
    assert any("by ana@example.org" in plain(c.value) for c in at.caption)
    mask[20:30, 20:30] = 1
    # A second save by someone else, then Ana reverts to v1: the revert is hers.
    corrections.save(settings, open_dataset(sample_root, workspace), IMAGE, mask, base_version=1, source="gt",
                     author="bo@example.org")
    at.run()
    at.button(key="history_revert_1").click().run()
    assert not at.exception
    assert [(c.version, c.author) for c in ledger.history(settings, IMAGE)] == [
        (1, "ana@example.org"), (2, "bo@example.org"), (3, "ana@example.org")]

    at.switch_page("app_pages/compare.py").run()
    assert not at.exception
    tag = next(b for b in at.button if b.key and b.key.startswith(state.REVIEW_TAG_PREFIX) and "clear" not in b.key)
    tag.click().run()
    assert get_review(settings, IMAGE).author == "ana@example.org"


# --- every write from the UI names its author -----------------------------------------------------------------------

# Core writes whose author (``author=``, or ``actor=`` for a reviewer's action) defaults to the OS user.
AUTHORED = {"save", "revert", "import_folder", "import_masks", "set_tag", "set_tags", "set_note", "soft_delete"}


def test_every_authored_write_in_the_ui_passes_the_author():
    """Left out, ``author`` falls back to the server's OS user: wrong for everyone signed in."""
    calls = [(file, line, any(k.arg in ("author", "actor") for k in node.keywords))
             for file, line, _name, node in ui_calls(AUTHORED, ("corrections", "review"))]
    assert {(name, has) for name, _line, has in calls} >= {("annotate_session.py", True), ("history.py", True),
                                                          ("viewer.py", True), ("corrections_import.py", True)}
    assert [c for c in calls if not c[2]] == []
