"""Real browser: the Model page on the tiny trained run renders the U, every stage and the ablation, without errors.

Runs `streamlit run` on the generated set of the ``trained`` fixture (a private copy) and drives /usr/bin/chromium.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from core.runs import load_eval
from tests.browser import assert_no_exception, chromium_page, streamlit_server, wait_for_app


@pytest.mark.browser
def test_model_page_renders_every_panel(trained_copy, tmp_path):
    table = load_eval(trained_copy.settings, trained_copy.run, "test")
    image_id = table[table["has_gt"]].sort_values("iou_pet").index[0]
    with streamlit_server(trained_copy.data, trained_copy.workspace, tmp_path / "server.log") as url, \
            chromium_page(viewport=(1400, 1000)) as page:
        page.goto(f"{url}/model?image={image_id}")
        page.get_by_text("What the skip connections do").wait_for(timeout=60_000)
        wait_for_app(page, timeout_ms=60_000)
        assert_no_exception(page)
        main = page.locator('[data-testid="stMain"]')
        text = main.inner_text()
        for expected in ("The architecture of this run", "Contracting path (encoder)", "Expansive path (decoder)",
                         "bottleneck, 2×2 with 512 channels, 1/32 of the input", "Ablation at inference",
                         "Pet IoU, skips zeroed"):
            assert expected in text, expected
        assert page.locator('[data-testid="stPlotlyChart"]').count() == 1
        page.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=20_000)
        images = main.locator('[data-testid="stImage"] img')
        assert images.count() == 22
        # Every picture was actually decoded by the browser (no broken media URLs).
        assert page.evaluate("""() => [...document.querySelectorAll('[data-testid="stImage"] img')]
                                      .every(img => img.complete && img.naturalWidth > 0)""")
        assert page.locator('[data-testid="stAlert"]').filter(has_text="no image called").count() == 0
        # Streamlit scrolls inside its own container: grow the window to the content to capture all of it.
        height = page.evaluate("""() => Math.max(...[...document.querySelectorAll('*')]
                                     .map(e => e.scrollHeight || 0))""")
        page.set_viewport_size({"width": 1400, "height": min(int(height) + 100, 12_000)})
        page.wait_for_timeout(500)
        page.screenshot(path=str(tmp_path / "model-page.png"))
        page.set_viewport_size({"width": 1400, "height": 1000})

        page.goto(f"{url}/model?image={quote('<script>alert(1)</script>')}")
        page.get_by_text("no image called").wait_for(timeout=30_000)
        wait_for_app(page, timeout_ms=60_000)
        assert_no_exception(page)
        assert page.locator('[data-testid="stPlotlyChart"]').count() == 1
        page.screenshot(path=str(tmp_path / "model-hostile.png"))
