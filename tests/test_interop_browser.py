"""The issue's "done when" in a real browser: a folder of Keras-style masks (class indices) is imported as a run
on the Runs page and reviewed; the corrections go out as a CVAT zip from the Export page and come back."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from core import groundtruth
from core.dataset import load_trimap
from core.interop.colour import decode_colour_png, encode_colour_png
from core.masks import PET, encode_png
from core.runs import list_runs, load_eval
from tests.browser import assert_no_exception, chromium_page, streamlit_server, wait_for_app

pytestmark = pytest.mark.browser


def test_import_keras_masks_review_them_and_round_trip_cvat(settings, ds, tmp_path):
    masks = tmp_path / "keras.zip"
    with zipfile.ZipFile(masks, "w") as archive:
        for image_id in ds.ids("test"):
            archive.writestr(f"{image_id}.png", encode_png(np.roll(load_trimap(ds, image_id), 1, axis=1) - 1))
    with streamlit_server(settings.data, settings.workspace, tmp_path / "server.log") as url, \
            chromium_page() as page:
        try:
            page.goto(f"{url}/runs")
            page.get_by_text("Import predictions or a checkpoint from elsewhere").click()
            page.locator(".st-key-runs_import_predictions_file input[type='file']").set_input_files(str(masks))
            run_name = page.locator(".st-key-runs_import_predictions_run input")
            run_name.fill("keras-unet")
            run_name.press("Enter")
            page.locator(".st-key-runs_import_predictions_encoding").click()
            page.get_by_role("option", name="index: class indices", exact=False).click()
            wait_for_app(page)
            page.get_by_role("button", name="Import predictions").click()
            page.get_by_text("predictions imported as run keras-unet", exact=False).wait_for(timeout=60_000)
            assert_no_exception(page)
            table = load_eval(settings, "keras-unet", "test")
            assert len(table) == len(ds.ids("test")) and table["iou_pet"].between(0, 1).all()
            assert {r.name: r.source for r in list_runs(settings)}["keras-unet"] == "imported predictions"

            page.goto(f"{url}/review?run=keras-unet&split=test")
            page.get_by_text("Review").first.wait_for(timeout=60_000)
            wait_for_app(page)
            assert_no_exception(page)

            page.goto(f"{url}/export")
            page.get_by_text("cvat-mask").first.click()
            wait_for_app(page)
            page.get_by_role("button", name="Export", exact=True).click()
            page.get_by_role("button", name="Download cvat-mask", exact=False).first.wait_for(timeout=60_000)
            (exported,) = settings.exports_dir.glob("cvat-mask-*.zip")
            assert exported.stat().st_mode & 0o044  # readable by the team, not 0600

            # Someone paints the top rows of one image as pet in CVAT; the rest comes back untouched.
            edited_id = ds.ids("test")[0]
            edited = tmp_path / "from-cvat.zip"
            with zipfile.ZipFile(exported) as source, zipfile.ZipFile(edited, "w") as target:
                for name in source.namelist():
                    data = source.read(name)
                    if name == f"SegmentationClass/{edited_id}.png":
                        rgb, _ = decode_colour_png(data, expected_size=load_trimap(ds, edited_id).shape)
                        rgb = rgb.copy()
                        rgb[:2] = (128, 0, 0)
                        data = encode_colour_png(rgb)
                    target.writestr(name, data)
            page.get_by_text("Import corrected masks from a labelling tool").click()
            page.locator(".st-key-corrections_import_file input[type='file']").set_input_files(str(edited))
            wait_for_app(page)
            page.get_by_role("button", name="Import corrections").click()
            page.get_by_text(f"1 imported, {len(ds) - 1} unchanged, 0 refused", exact=False).wait_for(timeout=60_000)
            assert_no_exception(page)
            mask, version = groundtruth.current(settings, ds, edited_id)
            assert version == 1 and (mask[:2] == PET).all()
            np.testing.assert_array_equal(mask[2:], load_trimap(ds, edited_id)[2:])
            # the imported run was rescored against the corrected mask of its test image
            assert load_eval(settings, "keras-unet", "test").at[edited_id, "gt_version"] == 1
        finally:
            page.screenshot(path=str(tmp_path / "interop.png"), full_page=True)
