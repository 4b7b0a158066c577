"""Real browser: Distributions draws its charts and a lasso on a scatter lists the selected images."""

from __future__ import annotations

import pytest

from tests.browser import assert_no_exception, chromium_page, streamlit_server, wait_for_app

pytestmark = pytest.mark.browser


def test_lasso_on_a_scatter_lists_the_images(trained, trained_scored, tmp_path):
    with streamlit_server(trained.data, trained.workspace, tmp_path / "server.log") as url, chromium_page() as page:
        page.goto(url)
        wait_for_app(page)
        page.get_by_role("heading", name="PetSeg").first.wait_for(timeout=60_000)
        page.goto(f"{url}/distributions")
        wait_for_app(page)
        page.get_by_role("heading", name="Distributions").wait_for(timeout=60_000)
        charts = page.locator(".js-plotly-plot")
        charts.nth(3).wait_for(timeout=30_000)
        assert charts.count() == 4  # histogram, species, breeds, one scatter
        assert page.locator(".js-plotly-plot canvas").count() == 0  # no WebGL: all SVG
        assert_no_exception(page)
        # Lasso around the whole plotting area of the scatter: every image is selected, also those whose
        # marker was not drawn because another image's covers it.
        charts.nth(3).scroll_into_view_if_needed()
        area = charts.nth(3).locator(".nsewdrag").first.bounding_box()
        corners = [(area["x"] + 2, area["y"] + 2), (area["x"] + area["width"] - 2, area["y"] + 2),
                   (area["x"] + area["width"] - 2, area["y"] + area["height"] - 2),
                   (area["x"] + 2, area["y"] + area["height"] - 2), (area["x"] + 2, area["y"] + 4)]
        page.mouse.move(*corners[0])
        page.mouse.down()
        for x, y in corners[1:]:
            page.mouse.move(x, y, steps=8)
        page.mouse.up()
        n = int(trained_scored["gt_pet_fraction"].notna().sum())
        page.get_by_role("heading", name="Selected:").wait_for(timeout=30_000)
        wait_for_app(page)
        assert page.get_by_role("heading", name="Selected:").inner_text() == f"Selected: {n} images"
        tiles = page.locator(".petseg-gallery figure")
        assert tiles.count() == min(n, 48)
        assert set(page.locator(".petseg-gallery img").evaluate_all("els => els.map(e => e.alt)")) <= set(
            trained_scored.index)
        assert_no_exception(page)
        page.screenshot(path=str(tmp_path / "distributions-selected.png"), full_page=True)
        # The other scatter is one click away.
        page.locator("button").filter(has_text="mean_confidence").first.click()
        page.get_by_text("iou_pet against mean_confidence").wait_for(timeout=30_000)
        assert_no_exception(page)


def test_a_selection_opens_as_a_shareable_queue_in_browse(trained, trained_scored, tmp_path):
    with streamlit_server(trained.data, trained.workspace, tmp_path / "server.log") as url, chromium_page() as page:
        page.goto(f"{url}/distributions")
        wait_for_app(page)
        page.get_by_role("heading", name="Distributions").wait_for(timeout=60_000)
        charts = page.locator(".js-plotly-plot")
        charts.nth(3).wait_for(timeout=30_000)
        charts.nth(3).scroll_into_view_if_needed()
        # A lasso around the left half of the scatter: some images, not all.
        area = charts.nth(3).locator(".nsewdrag").first.bounding_box()
        half = area["x"] + area["width"] / 2
        corners = [(area["x"] + 2, area["y"] + 2), (half, area["y"] + 2), (half, area["y"] + area["height"] - 2),
                   (area["x"] + 2, area["y"] + area["height"] - 2), (area["x"] + 2, area["y"] + 4)]
        page.mouse.move(*corners[0])
        page.mouse.down()
        for x, y in corners[1:]:
            page.mouse.move(x, y, steps=8)
        page.mouse.up()
        heading = page.get_by_role("heading", name="Selected:")
        heading.wait_for(timeout=30_000)
        wait_for_app(page)
        n = int(heading.inner_text().split()[1])
        assert 0 < n
        page.get_by_role("button", name=f"Open these {n} as a queue in Browse").click()
        page.get_by_role("heading", name="Browse").wait_for(timeout=30_000)
        wait_for_app(page)
        assert_no_exception(page)
        assert "ids=" in page.url
        assert f"Selection of {n} image(s)" in page.locator('[data-testid="stMain"]').inner_text()
        assert page.locator(".petseg-gallery figure").count() == min(n, 48)
        # The address bar names the queue: a fresh tab opening it shows the same images.
        shared = page.url
        page.goto("about:blank")
        page.goto(shared)
        page.get_by_role("heading", name="Browse").wait_for(timeout=30_000)
        wait_for_app(page)
        assert f"Selection of {n} image(s)" in page.locator('[data-testid="stMain"]').inner_text()
