"""The loop in a real browser: start a tiny training job on Train, watch its progress, evaluate it, then compare
it with the earlier run on the Runs page."""

import pytest

from core import jobs
from tests.browser import assert_no_exception, chromium_page, streamlit_server, wait_for_app

pytestmark = pytest.mark.browser


def test_train_progress_evaluate_and_compare_in_the_browser(trained_copy, tmp_path):
    settings = trained_copy.settings
    with streamlit_server(trained_copy.data, trained_copy.workspace, tmp_path / "server.log") as url, \
            chromium_page() as page:
        try:
            # As a new user does: open the app, then Train in the navigation.
            page.goto(url)
            page.get_by_text("60 images").first.wait_for(timeout=60_000)
            page.get_by_role("link", name="Train").first.click()
            page.get_by_text("New run").wait_for(timeout=60_000)
            wait_for_app(page)
            assert_no_exception(page)
            # A tiny run: 64 px (two steps left of the 128 px preset default), one epoch, no pretrained weights.
            slider = page.locator(".st-key-train_size_quick input[type='range']")
            slider.focus()
            slider.press("ArrowLeft")
            slider.press("ArrowLeft")
            epochs = page.locator(".st-key-train_epochs_quick input")
            epochs.fill("1")
            epochs.press("Enter")
            page.locator(".st-key-train_pretrained label").click()
            wait_for_app(page)
            assert page.locator(".st-key-train_run input").input_value() == "quick-1"
            page.get_by_role("button", name="Start training").click()

            # Live progress from the background job, then its end, without reloading the page.
            progress = page.locator('[data-testid="stProgress"]')
            progress.first.wait_for(timeout=30_000)
            page.get_by_text("Training quick-1", exact=False).first.wait_for(timeout=10_000)
            page.screenshot(path=str(tmp_path / "train-running.png"), full_page=True)
            page.get_by_text("Training quick-1 finished", exact=False).wait_for(timeout=120_000)
            job = jobs.list_jobs(settings, "train")[0]
            assert job.state == "succeeded" and job.job.config["image_size"] == 64
            page.get_by_text("per epoch", exact=False).first.wait_for(timeout=30_000)  # the curves' title
            page.screenshot(path=str(tmp_path / "train-done.png"), full_page=True)

            page.get_by_role("button", name="Evaluate quick-1 on test").first.click()
            page.get_by_text("Evaluation of quick-1 on test finished", exact=False).wait_for(timeout=120_000)
            assert_no_exception(page)

            page.get_by_role("link", name="Compare runs on the Runs page").click()
            page.get_by_text("B − A").first.wait_for(timeout=60_000)
            wait_for_app(page)
            assert_no_exception(page)
            metrics = page.locator('[data-testid="stMetric"]')
            labels = metrics.all_inner_texts()
            assert any("A · tiny" in text for text in labels), labels
            assert any("B · quick-1" in text for text in labels), labels
            assert page.locator('[data-testid="stPlotlyChart"]').count() >= 2
            page.screenshot(path=str(tmp_path / "runs.png"), full_page=True)
            # The same comparison as a shareable link, with the runs swapped.
            page.goto(f"{url}/runs?a=quick-1&b=tiny&split=test")
            page.get_by_text("B − A").first.wait_for(timeout=60_000)
            wait_for_app(page)
            assert_no_exception(page)
            labels = page.locator('[data-testid="stMetric"]').all_inner_texts()
            assert any("A · quick-1" in text for text in labels), labels
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            raise
        finally:
            for status in jobs.list_jobs(settings):
                jobs.cancel(settings, status.job.id)
