"""Real browser: every view page in headless Chromium against `streamlit run`; thumbnail click and deep link."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.browser import assert_no_exception, chromium_page, streamlit_server, wait_for_app

pytestmark = pytest.mark.browser


def visit(page, address: str, heading: str) -> None:
    """Open ``address`` and wait for the page's title (the first load of a server also compiles and imports)."""
    page.goto(address)
    wait_for_app(page)
    page.get_by_role("heading", name=heading).first.wait_for(timeout=60_000)
    wait_for_app(page)


def wait_for_images(page, count: int) -> None:
    page.wait_for_function(
        f"() => document.querySelectorAll('[data-testid=\"stImage\"] img').length >= {count}", timeout=30_000
    )


def test_views_in_a_real_browser(trained_copy, tmp_path):
    table = pd.read_parquet(trained_copy.workspace / "runs" / trained_copy.run / "eval" / "test" / "metrics.parquet")
    worst = table.sort_values(["iou_pet", "image_id"])["image_id"].tolist()
    with streamlit_server(trained_copy.data, trained_copy.workspace, tmp_path / "server.log") as url, \
            chromium_page() as page:
        visit(page, url, "PetSeg")
        for name in ("overview", "browse", "distributions", "review"):
            visit(page, f"{url}/{name}", name.capitalize())
            assert_no_exception(page)
            page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
            # The sidebar's run selector is there on every view.
            assert "Evaluated split" in page.locator('[data-testid="stSidebar"]').inner_text()

        visit(page, f"{url}/browse", "Browse")
        page.wait_for_function(f"""() => {{
            const imgs = [...document.querySelectorAll('.petseg-gallery img')];
            return imgs.length >= {len(table)} && imgs.every(i => i.complete && i.naturalWidth > 0);
        }}""", timeout=30_000)
        tiles = page.locator(".petseg-gallery figure")
        assert tiles.count() == len(table)
        # Each tile: a link to its Compare view named by the image id, the photo, and its metric caption.
        first = tiles.first
        assert first.locator("a").get_attribute("href") == f"/compare?image={worst[0]}"
        assert first.locator("img").get_attribute("alt") == worst[0]
        assert first.locator("a").inner_text().strip() == worst[0]
        assert f"iou_pet {table.set_index('image_id').loc[worst[0], 'iou_pet']:.2f}" in first.locator(
            "figcaption").inner_text()
        page.evaluate("() => { window.petsegSameDocument = true; }")
        first.locator("a").click()
        page.wait_for_url("**/compare?image=*")
        page.get_by_role("heading", name="Compare").wait_for()
        wait_for_app(page)
        wait_for_images(page, 2)
        assert_no_exception(page)
        assert f"image={worst[0]}" in page.url
        # A tile click switches page inside the session (the Browse filter goes along), not a new page load.
        assert page.evaluate("() => window.petsegSameDocument === true")
        assert page.get_by_text(f"1 of {len(table)}").count() >= 1
        assert page.locator('[data-testid="stImage"] img').count() >= 2  # photo and overlay panels
        page.screenshot(path=str(tmp_path / "compare-from-browse.png"), full_page=True)
        # One Back returns to Browse (opening Compare adds no second history entry).
        page.go_back()
        page.get_by_role("heading", name="Browse").wait_for(timeout=20_000)
        assert "/browse" in page.url

        visit(page, f"{url}/compare?image={worst[3]}", "Compare")
        wait_for_images(page, 2)
        assert_no_exception(page)
        assert page.get_by_text(f"4 of {len(table)}").count() >= 1
        page.get_by_role("button", name="label error").click()
        page.get_by_text("Review: label error").wait_for(timeout=20_000)
        page.screenshot(path=str(tmp_path / "compare-deep-link.png"), full_page=True)

        visit(page, f"{url}/compare?image=%3Cscript%3Ealert(1)%3C/script%3E", "Compare")
        assert_no_exception(page)
        assert page.get_by_text("unknown image id").count() == 1
    from core.review import get_review

    assert get_review(trained_copy.settings, worst[3]).tag == "label_error"


def test_a_deep_link_as_the_first_request_of_a_server_gets_the_app_frame(trained, tmp_path):
    image_id = pd.read_parquet(trained.workspace / "runs" / trained.run / "eval" / "test" / "metrics.parquet")[
        "image_id"].iloc[0]
    with streamlit_server(trained.data, trained.workspace, tmp_path / "server.log") as url, chromium_page() as page:
        visit(page, f"{url}/compare?image={image_id}", "Compare")
        assert "Evaluated split" in page.locator('[data-testid="stSidebar"]').inner_text()
        # The query survives the restart through the entry script: the page shows the linked image.
        assert image_id in page.locator('[data-testid="stMain"]').inner_text()
        assert_no_exception(page)
