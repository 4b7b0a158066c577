"""Real browsers, real sign-in, the review workflow: an annotator saves, a reviewer in a second browser accepts it
with the keyboard, and only then does the ground truth that training uses (``--corrections accepted``) take it.

The sign-in is tests/test_browser_signin.py's: Streamlit's /auth/login against tests/oidc_provider.py, nothing
replaced. Each person has their own browser context (their own cookie), as two people on two machines would.
"""

from __future__ import annotations

import pytest

from core import corrections, groundtruth, ledger, users
from core.config import Settings
from core.dataset import open_dataset
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
from tests.test_browser_signin import write_secrets

IMAGE = "Abyssinian_1"
EDITOR = ".petseg-editor"
LEAD, RITA, ANA = "lead@example.org", "rita@example.org", "ana@example.org"


@pytest.mark.browser
def test_an_annotators_save_counts_for_training_only_once_a_reviewer_accepts_it(sample_root, workspace, tmp_path):
    settings = Settings.resolve(data=sample_root, workspace=workspace)
    ds = open_dataset(sample_root, workspace)
    users.add_user(settings, None, LEAD, "admin")
    users.add_user(settings, LEAD, RITA, "reviewer")
    users.add_user(settings, LEAD, ANA, "annotator")
    corrections.set_review_mode(settings, "required", actor=LEAD)

    port = free_port()
    people = {LEAD: "Lead", RITA: "Rita", ANA: "Ana"}
    with OIDCProvider(users=people, redirect_uri=f"http://127.0.0.1:{port}/oauth2callback") as op:
        flags = ["--secrets.files", str(write_secrets(tmp_path / "secrets.toml", op, port))]
        with streamlit_server(sample_root, workspace, tmp_path / "server.log", port=port, args=flags) as url, \
                chromium_page() as ana:
            # Ana, an annotator: no review queue in her navigation; she saves a stroke.
            ana.goto(url)
            sign_in(ana, url, op.issuer, ANA)
            nav = ana.locator('[data-testid="stSidebarNav"]')
            assert "Annotate" in nav.inner_text() and "Review corrections" not in nav.inner_text()
            ana.goto(f"{url}/annotate?image={IMAGE}")
            ana.wait_for_selector(f'{EDITOR}[data-ready^="{IMAGE}@"]', timeout=30_000)
            wait_for_app(ana)
            draw_stroke(ana, EDITOR, end=(0.40, 0.20))
            ana.locator(f"{EDITOR} button[data-action=save]").click()
            ana.wait_for_selector(f'{EDITOR}[data-saved-version="1"]', timeout=30_000)
            wait_for_app(ana)
            assert_no_exception(ana)
            saved = ledger.latest(settings, IMAGE)
            assert (saved.version, saved.author, saved.state) == (1, ANA, "submitted")
            # Submitted is not yet the ground truth training uses by default.
            assert groundtruth.snapshot(settings, ds, [IMAGE], policy="accepted").versions[IMAGE] is None
            assert groundtruth.snapshot(settings, ds, [IMAGE], policy="latest").versions[IMAGE] == 1

            # Rita, a reviewer, in her own browser context: the queue shows Ana's version; "a" accepts it.
            rita = ana.context.browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            rita.goto(url)
            sign_in(rita, url, op.issuer, RITA)
            rita.goto(f"{url}/review_corrections")
            wait_for_app(rita)
            assert_no_exception(rita)
            rita.get_by_text(f"{IMAGE} v1").wait_for(timeout=30_000)
            rita.get_by_text("IoU between before and after").wait_for(timeout=30_000)
            rita.locator('[data-testid="stImage"]').nth(2).wait_for(timeout=30_000)  # before, after, difference
            assert rita.locator('[data-testid="stImage"]').count() == 3
            rita.get_by_text("IoU between before and after").click()  # focus the page, not the reason input
            rita.keyboard.press("a")
            rita.get_by_text("Nothing waits for your review.").wait_for(timeout=30_000)
            assert_no_exception(rita)
            rita.screenshot(path=str(tmp_path / "review-queue-done.png"), full_page=True)

    accepted = ledger.get_version(settings, IMAGE, 1)
    assert (accepted.state, accepted.reviewer) == ("accepted", RITA)
    # What `core train --use-corrections --corrections accepted` learns from: Ana's mask, version 1.
    truth = groundtruth.snapshot(settings, ds, [IMAGE], policy="accepted")
    assert truth.versions[IMAGE] == 1 and (truth.mask(IMAGE) == ledger.load_mask(settings, accepted)).all()
