"""Real browser, real sign-in: `streamlit run` with an ``[auth]`` section pointing at tests/oidc_provider.py.

Chromium clicks "Sign in", Streamlit's own /auth/login sends it to the provider's login form, the provider sends it
back to /oauth2callback with a code, Streamlit exchanges the code (client secret, PKCE) and checks the RS256 ID token
and its nonce. Nothing in the login path is replaced. Then a stroke saved in Annotate carries the signed-in email,
and History shows it.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from core import ledger
from core.config import Settings
from tests.browser import (
    assert_no_exception,
    chromium_page,
    draw_stroke,
    free_port,
    sign_in,
    streamlit_server,
    wait_for_app,
)
from tests.oidc_provider import OIDCProvider

IMAGE = "Abyssinian_1"
EDITOR = ".petseg-editor"
ANA = "ana@example.org"


def write_secrets(path: Path, op: OIDCProvider, port: int) -> Path:
    """The ``[auth]`` section as README "Signing in" describes it, for the test provider."""
    path.write_text(
        "[auth]\n"
        f'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'
        f'cookie_secret = "{secrets.token_hex(32)}"\n'
        f'client_id = "{op.client_id}"\n'
        f'client_secret = "{op.client_secret}"\n'
        f'server_metadata_url = "{op.metadata_url}"\n'
    )
    return path


@pytest.mark.browser
def test_sign_in_then_a_saved_correction_carries_the_email(sample_root, workspace, tmp_path):
    port = free_port()
    users = {ANA: "Ana", "bo@example.org": "Bo"}
    with OIDCProvider(users=users, redirect_uri=f"http://127.0.0.1:{port}/oauth2callback") as op:
        flags = ["--secrets.files", str(write_secrets(tmp_path / "secrets.toml", op, port))]
        with streamlit_server(sample_root, workspace, tmp_path / "server.log", port=port, args=flags) as url, \
                chromium_page() as page:
            # Not signed in: a deep link shows only the sign-in button.
            page.goto(f"{url}/annotate?image={IMAGE}")
            page.get_by_role("button", name="Sign in").wait_for(timeout=30_000)
            wait_for_app(page)
            assert_no_exception(page)
            assert page.locator(EDITOR).count() == 0
            assert page.locator('[data-testid="stSidebarNav"]').count() == 0

            # Streamlit's login route -> the provider's form -> /oauth2callback -> the app, signed in.
            sign_in(page, url, op.issuer, ANA)
            assert_no_exception(page)
            assert len(op.issued) == 1 and op.issued[0]["email"] == ANA and op.issued[0]["nonce"]

            # The author is who signed in, whatever the URL says.
            page.goto(f"{url}/annotate?image={IMAGE}&author=mallory@example.org")
            page.wait_for_selector(f'{EDITOR}[data-ready^="{IMAGE}@"]', timeout=30_000)
            wait_for_app(page)
            page.get_by_text(f"Saving as {ANA}").wait_for(timeout=30_000)
            draw_stroke(page, EDITOR)
            page.locator(f"{EDITOR} button[data-action=save]").click()
            page.wait_for_selector(f'{EDITOR}[data-saved-version="1"]', timeout=30_000)
            wait_for_app(page)
            assert_no_exception(page)

            settings = Settings.resolve(data=sample_root, workspace=workspace)
            assert [(c.version, c.author) for c in ledger.history(settings, IMAGE)] == [(1, ANA)]

            page.goto(f"{url}/history?image={IMAGE}")
            wait_for_app(page)
            assert_no_exception(page)
            page.get_by_text(f"by {ANA}").first.wait_for(timeout=30_000)
            page.screenshot(path=str(tmp_path / "history-signed-in.png"), full_page=True)

            # Signing out goes through the provider's end-session and back to the gate.
            page.get_by_role("button", name="Sign out").click()
            page.get_by_role("button", name="Sign in").wait_for(timeout=30_000)
            assert page.get_by_text(f"Signed in as {ANA}").count() == 0
