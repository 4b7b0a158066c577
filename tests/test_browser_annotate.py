"""Real browser: draw on the Annotate editor with the mouse, save twice, move on, and find the versions in History.

Runs `streamlit run` on the real 20-image sample with an empty workspace and drives /usr/bin/chromium.
"""

from __future__ import annotations

import numpy as np
import pytest

from core import groundtruth, ledger
from core.config import Settings
from core.dataset import load_trimap, open_dataset
from tests.browser import assert_no_exception, chromium_page, draw_stroke, streamlit_server, wait_for_app

IMAGE = "Abyssinian_1"
EDITOR = ".petseg-editor"


@pytest.mark.browser
def test_stroke_save_and_history(sample_root, workspace, tmp_path):
    with streamlit_server(sample_root, workspace, tmp_path / "server.log") as url, chromium_page() as page:
        page.goto(f"{url}/annotate?image={IMAGE}")
        page.wait_for_selector(f'{EDITOR}[data-ready^="{IMAGE}@"]', timeout=30_000)
        wait_for_app(page)
        assert_no_exception(page)
        assert "0 px changed" in page.locator(f"{EDITOR} [data-role=readout]").inner_text()

        canvas = page.locator(f"{EDITOR} [data-role=canvas]")
        box = canvas.bounding_box()
        start = (box["x"] + box["width"] * 0.08, box["y"] + box["height"] * 0.10)
        end = (box["x"] + box["width"] * 0.30, box["y"] + box["height"] * 0.14)
        page.mouse.move(*start)
        page.mouse.down()
        page.mouse.move(*end, steps=12)
        page.mouse.up()
        readout = page.locator(f"{EDITOR} [data-role=readout]").inner_text()
        assert "unsaved changes" in readout and "0 px changed" not in readout
        page.screenshot(path=str(tmp_path / "annotate-stroke.png"), full_page=True)

        page.locator(f"{EDITOR} button[data-action=save]").click()
        page.wait_for_selector(f'{EDITOR}[data-saved-version="1"]', timeout=20_000)
        assert "Saved v1" in page.locator(f"{EDITOR} [data-role=status]").inner_text()
        wait_for_app(page)
        assert_no_exception(page)
        page.screenshot(path=str(tmp_path / "annotate-saved.png"), full_page=True)

        settings = Settings.resolve(data=sample_root, workspace=workspace)
        ds = open_dataset(sample_root, workspace)
        saved = ledger.history(settings, IMAGE)
        assert [c.version for c in saved] == [1]
        mask, version = groundtruth.current(settings, ds, IMAGE)
        gt = load_trimap(ds, IMAGE)
        assert version == 1 and mask.shape == gt.shape and set(np.unique(mask)) <= {1, 2, 3}
        # The stroke's middle, in image pixels, is pet now; far away nothing changed.
        mid_x = round((0.08 + 0.30) / 2 * gt.shape[1])
        mid_y = round((0.10 + 0.14) / 2 * gt.shape[0])
        assert gt[mid_y, mid_x] == 2 and mask[mid_y, mid_x] == 1
        assert np.array_equal(mask[gt.shape[0] // 2:], gt[gt.shape[0] // 2:])

        # A second save and Next run only the editor's fragment (no photo resent): the version, the image, the
        # caption and the shareable URL must all follow.
        page.mouse.move(*start)
        page.mouse.down()
        page.mouse.move(end[0], end[1] + box["height"] * 0.1, steps=12)
        page.mouse.up()
        page.locator(f"{EDITOR} button[data-action=save]").click()
        page.wait_for_selector(f'{EDITOR}[data-saved-version="2"]', timeout=20_000)
        page.locator(f"{EDITOR} button[data-action=next]").click()
        page.wait_for_selector(f'{EDITOR}[data-ready]:not([data-ready^="{IMAGE}@"]):not([data-ready=""])',
                               timeout=20_000)
        wait_for_app(page)
        shown = page.locator(EDITOR).get_attribute("data-ready").split("@")[0]
        assert page.url.endswith(f"image={shown}")
        assert shown in page.locator('[data-testid="stMain"]').inner_text()
        assert_no_exception(page)
        assert [c.version for c in ledger.history(settings, IMAGE)] == [1, 2]

        page.goto(f"{url}/history?image={IMAGE}")
        page.get_by_text("Original GT", exact=True).wait_for(timeout=20_000)
        wait_for_app(page)
        assert_no_exception(page)
        main = page.locator('[data-testid="stMain"]').inner_text()
        assert "v1" in main and "v2" in main and "latest" in main and "Original GT" in main
        page.screenshot(path=str(tmp_path / "history.png"), full_page=True)


@pytest.mark.browser
def test_unsaved_edits_warn_before_leaving_survive_a_reload_and_ctrl_s_saves_from_anywhere(sample_root, workspace,
                                                                                            tmp_path):
    with streamlit_server(sample_root, workspace, tmp_path / "server.log") as url, chromium_page() as page:
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.type), dialog.accept()))
        page.goto(f"{url}/annotate?image={IMAGE}")
        page.wait_for_selector(f'{EDITOR}[data-ready^="{IMAGE}@"]', timeout=30_000)
        wait_for_app(page)
        draw_stroke(page, EDITOR)
        readout = page.locator(f"{EDITOR} [data-role=readout]")
        changed = readout.inner_text().split(" · ")[1]
        assert changed != "0 px changed from the start"
        page.wait_for_timeout(800)  # the draft is written shortly after the last stroke

        page.reload()
        page.wait_for_selector(f'{EDITOR}[data-ready^="{IMAGE}@"]', timeout=30_000)
        wait_for_app(page)
        assert "beforeunload" in dialogs  # leaving with unsaved edits asked first
        page.wait_for_selector(f'{EDITOR}[data-dirty="1"]', timeout=10_000)
        assert changed in readout.inner_text() and "unsaved changes" in readout.inner_text()
        assert "Restored your unsaved edits" in page.locator(f"{EDITOR} [data-role=status]").inner_text()

        # Ctrl+S with the focus outside the editor (on the page's title) still saves the mask.
        page.locator("h1").first.click()
        page.keyboard.press("Control+s")
        page.wait_for_selector(f'{EDITOR}[data-saved-version="1"]', timeout=20_000)
        wait_for_app(page)
        assert_no_exception(page)
        settings = Settings.resolve(data=sample_root, workspace=workspace)
        assert [c.version for c in ledger.history(settings, IMAGE)] == [1]
        # Saved: the draft is gone, a reload restores nothing and does not ask.
        dialogs.clear()
        page.reload()
        page.wait_for_selector(f'{EDITOR}[data-ready^="{IMAGE}@"]', timeout=30_000)
        wait_for_app(page)
        assert not dialogs
        assert "Restored" not in page.locator(f"{EDITOR} [data-role=status]").inner_text()
        assert page.locator(EDITOR).get_attribute("data-dirty") == "0"
