"""AppTest of the views (Overview, Browse, Compare, Distributions, Review) on the tiny trained and evaluated run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core.review import get_review

APP = Path(__file__).resolve().parents[1] / "streamlit_app.py"
HOSTILE = ["../../etc/passwd", "x" * 5000, "<script>alert(1)</script>", "Abyssinian_1/../../x", "%00", ""]


def app(monkeypatch, env, page: str | None = None, **query) -> AppTest:
    monkeypatch.setenv("PETSEG_DATA", str(env.data))
    monkeypatch.setenv("PETSEG_HOME", str(env.workspace))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    for key, value in query.items():
        at.query_params[key] = value
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception[0].value if at.exception else ""
    return at


def eval_table(env, split: str = "test") -> pd.DataFrame:
    return pd.read_parquet(env.workspace / "runs" / env.run / "eval" / split / "metrics.parquet").set_index("image_id")


def tile_ids(at: AppTest) -> list[str]:
    """Ids of the thumbnail grid's tiles, in order, each checked to link to its own Compare view."""
    grids = [e for e in at.get("bidi_component") if e.proto.component_name.endswith("petseg_gallery")]
    ids = []
    for grid in grids:
        for tile in json.loads(grid.proto.json)["tiles"]:
            assert tile["href"] == "/compare?" + urlencode({"image": tile["id"]})
            assert tile["src"].startswith("data:image/jpeg;base64,") and tile["badges"]
            ids.append(tile["id"])
    return ids


@pytest.mark.parametrize("page", ["overview", "browse", "compare", "distributions", "review"])
def test_every_view_renders_on_a_trained_run(monkeypatch, trained, page):
    at = app(monkeypatch, trained, page)
    assert not at.error
    assert at.title[0].value == page.capitalize()


def test_overview_shows_the_run_and_headline_metrics(monkeypatch, trained):
    at = app(monkeypatch, trained, "overview")
    values = {m.label: m.value for m in at.metric}
    assert values["Run"] == trained.run
    assert values["Images"] == "60"
    table = eval_table(trained)
    assert values["Mean per-image IoU"] == f"{table[table['has_gt']]['iou_pet'].mean():.3f}"
    assert values["Images scored"] == str(int(table["has_gt"].sum()))


def test_browse_is_worst_first_and_filters_by_species_and_search(monkeypatch, trained):
    at = app(monkeypatch, trained, "browse")
    table = eval_table(trained)
    expected = table.sort_values(["iou_pet", "image_id"]).index.tolist()
    assert tile_ids(at) == expected[: len(tile_ids(at))]
    assert len(tile_ids(at)) == len(table)  # the test split fits one page

    at.multiselect(key="flt_species").set_value(["cat"]).run()
    shown = tile_ids(at)
    assert shown and all(table.loc[i, "species"] == "cat" for i in shown)
    assert shown == [i for i in expected if table.loc[i, "species"] == "cat"]

    at.selectbox(key="flt_sort").set_value("id").run()
    assert tile_ids(at) == sorted(shown)

    target = shown[0]
    at.text_input(key="flt_search").set_value(target).run()
    assert tile_ids(at) == [target]
    at.text_input(key="flt_search").set_value("<script>").run()
    assert not at.exception and tile_ids(at) == []
    assert any("No image matches" in i.value for i in at.info)


def test_browse_metric_range_and_all_splits(monkeypatch, trained):
    at = app(monkeypatch, trained, "browse")
    table = eval_table(trained)
    cut = float(table["iou_pet"].median())
    at.slider(key="flt_range").set_value((0.0, round(cut, 2))).run()
    shown = tile_ids(at)
    assert shown and all(table.loc[i, "iou_pet"] <= round(cut, 2) for i in shown)
    at.slider(key="flt_range").set_value((0.0, 1.0)).run()
    at.selectbox(key="flt_split").set_value("all").run()
    assert any("60 of 60 images match" in c.value for c in at.caption)
    at.button(key="browse_next").click().run()
    assert any("Page **2** of 2" in m.value for m in at.markdown)
    assert not at.exception


def test_compare_deep_link_shows_the_image_metrics_and_neighbours(monkeypatch, trained):
    table = eval_table(trained)
    order = table.sort_values(["iou_pet", "image_id"]).index.tolist()
    middle = order[len(order) // 2]
    at = app(monkeypatch, trained, "compare", image=middle)
    assert not at.error
    assert any(middle.replace("_", "\\_") in m.value for m in at.markdown)
    values = {m.label: m.value for m in at.metric}
    assert values["IoU pet"] == f"{table.loc[middle, 'iou_pet']:.3f}"
    at.button(key="compare_next").click().run()  # follows the Browse order (worst first)
    assert at.query_params["image"] == order[len(order) // 2 + 1]
    at.button(key="compare_prev").click().run()
    assert at.query_params["image"] == middle
    assert not at.exception


@pytest.mark.parametrize("hostile", HOSTILE)
def test_compare_answers_hostile_ids_with_a_plain_message(monkeypatch, trained, hostile):
    at = app(monkeypatch, trained, "compare", image=hostile)
    assert not at.exception
    if hostile:
        assert at.error and "unknown image id" in at.error[0].value
        assert len(at.error[0].value) < 300 and "<script>" not in at.error[0].value
    assert not at.get("imgs") and not at.metric


def test_tags_and_notes_persist_into_a_new_session_and_the_review_progress(monkeypatch, trained_copy):
    table = eval_table(trained_copy)
    image_id = table.sort_values(["iou_pet", "image_id"]).index[0]
    at = app(monkeypatch, trained_copy, "compare", image=image_id)
    at.button(key="review_tag_label_error").click().run()
    at.text_area(key=f"review_note_{image_id}").set_value("ear marked as background").run()
    at.button(key="review_note_save").click().run()
    assert not at.exception
    review = get_review(trained_copy.settings, image_id)
    assert review.tag == "label_error" and review.note == "ear marked as background"

    again = app(monkeypatch, trained_copy, "review")  # a new session: as after a restart
    bar = again.get("progress")[0]
    assert "Reviewed 1 of" in bar.proto.text
    again.multiselect(key="flt_tags").set_value(["label_error"]).run()
    assert "Reviewed 1 of 1" in again.get("progress")[0].proto.text
    fresh = app(monkeypatch, trained_copy, "compare", image=image_id)
    assert fresh.button(key="review_tag_label_error").proto.type == "primary"
    assert fresh.text_area(key=f"review_note_{image_id}").value == "ear marked as background"


def test_review_queue_orders_worst_first_or_by_label_error_tension(monkeypatch, trained_copy):
    table = eval_table(trained_copy)
    at = app(monkeypatch, trained_copy, "review")
    worst = table.sort_values(["iou_pet", "image_id"]).index[0]
    assert any(worst.replace("_", "\\_") in m.value and "1 / " in m.value for m in at.markdown)
    at.radio(key="review_order").set_value("tension").run()
    # Suspected label errors: the lowest label quality first (in-sample here, and the page says so)
    top = table.sort_values(["label_quality", "image_id"]).index[0]
    assert any(top.replace("_", "\\_") in m.value and "1 / " in m.value for m in at.markdown)
    assert any("the model was trained on these very masks" in c.value for c in at.caption)  # in-sample
    assert any("to the model trained on this very mask" in i.value for i in at.info)
    # Tagging in the queue moves on to the next image.
    at.button(key="review_tag_fine").click().run()
    assert get_review(trained_copy.settings, top).tag == "fine"
    assert any(m.value.startswith("**2 / ") for m in at.markdown)
    at.toggle(key="review_skip_done").set_value(True).run()
    assert not any(top.replace("_", "\\_") in m.value for m in at.markdown)


def test_distributions_lists_breeds_worst_first(monkeypatch, trained):
    at = app(monkeypatch, trained, "distributions")
    frame = at.dataframe[0].value
    assert list(frame["mean"]) == sorted(frame["mean"])
    assert frame["n"].sum() == int(eval_table(trained)["iou_pet"].notna().sum())
    assert len(at.get("plotly_chart")) >= 4


def test_overview_without_evaluation_offers_evaluate_now(monkeypatch, trained_copy):
    shutil.rmtree(trained_copy.workspace / "runs" / trained_copy.run / "eval")
    at = app(monkeypatch, trained_copy, "overview")
    assert any("not been evaluated" in i.value for i in at.info)
    assert at.button(key="evaluate_test").label == "Evaluate now"
    browse = app(monkeypatch, trained_copy, "browse")
    assert any("No evaluation" in i.value for i in browse.info)


def test_views_without_a_run_point_to_training(monkeypatch, trained_copy):
    shutil.rmtree(trained_copy.workspace / "runs")
    at = app(monkeypatch, trained_copy, "overview")
    assert any("No trained run" in i.value for i in at.info)
    for page in ("browse", "compare", "distributions", "review"):
        assert not app(monkeypatch, trained_copy, page).exception


def test_run_and_split_from_the_url_are_applied(monkeypatch, trained):
    trainval = len(eval_table(trained, "trainval"))
    at = app(monkeypatch, trained, "browse", split="trainval", run=trained.run)
    assert any(f"{trainval} of 60 images match" in c.value for c in at.caption)
    hostile = app(monkeypatch, trained, "browse", split="../../etc", run="<b>x</b>")
    assert any(f"{len(eval_table(trained))} of 60 images match" in c.value for c in hostile.caption)



def test_overview_headline_is_against_the_official_trimaps_with_corrections_beside_it(monkeypatch, trained_copy):
    import numpy as np

    from core.corrections import save
    from core.dataset import load_trimap, open_dataset

    before = {m.label: m.value for m in app(monkeypatch, trained_copy, "overview").metric}
    ds = open_dataset(trained_copy.data, trained_copy.workspace)
    table = eval_table(trained_copy)
    image_id = table.index[table["has_gt"]][0]
    mask = load_trimap(ds, image_id)
    save(trained_copy.settings, ds, image_id, np.where(mask == 2, 1, mask).astype(np.uint8), base_version=None,
         source="gt")
    at = app(monkeypatch, trained_copy, "overview")
    after = {m.label: m.value for m in at.metric}
    for label in ("Mean per-image IoU", "Dataset IoU (all pixels)", "Images scored"):
        assert after[label] == before[label]
    corrected = eval_table(trained_copy)
    scored = corrected[corrected["has_gt"]]
    assert scored.loc[image_id, "iou_pet"] != pytest.approx(scored.loc[image_id, "iou_pet_official"])
    note = " ".join(i.value for i in at.info)
    assert f"mean per-image IoU {scored['iou_pet'].mean():.3f}" in note and "1 image(s)" in note
    assert "evaluation-only" in note


def test_browse_review_and_model_start_from_the_same_worst_image_with_ties_broken_the_same_way(
        monkeypatch, trained_copy):
    from core.views import natural_key

    path = trained_copy.workspace / "runs" / trained_copy.run / "eval" / "test" / "metrics.parquet"
    table = pd.read_parquet(path)
    scored = table[table["has_gt"]]
    tied = sorted(scored["image_id"], key=natural_key)[:4]  # four images made to tie at IoU 0
    rows = table["image_id"].isin(tied)
    table.loc[rows, "iou_pet"] = 0.0
    table.loc[rows, "iou_pet_border_as_pet"] = 0.0
    table.loc[rows, "gt_pet_fraction"] = [0.3 if i == tied[2] else 0.1 for i in table.loc[rows, "image_id"]]
    table.to_parquet(path, index=False)
    # Larger missed pet first, then natural id order.
    expected = [tied[2], tied[0], tied[1], tied[3]]

    browse = app(monkeypatch, trained_copy, "browse")
    assert tile_ids(browse)[:4] == expected
    review = app(monkeypatch, trained_copy, "review")
    assert any(m.value.startswith("**1 / ") and expected[0].replace("_", "\\_") in m.value for m in review.markdown)
    model = app(monkeypatch, trained_copy, "model")
    assert model.selectbox(key="model_image").options[:4] == [f"{i} · iou_pet 0.00" for i in expected]


def test_a_note_typed_before_a_tag_click_is_stored_with_the_tag(monkeypatch, trained_copy):
    image_id = eval_table(trained_copy).index[0]
    at = app(monkeypatch, trained_copy, "compare", image=image_id)
    # Typed, then a tag clicked, never "Save note": one rerun carries both, as in the browser.
    at.text_area(key=f"review_note_{image_id}").set_value("tail cut off")
    at.button(key="review_tag_label_error").click().run()
    assert not at.exception
    review = get_review(trained_copy.settings, image_id)
    assert review.tag == "label_error" and review.note == "tail cut off"


def review_position(at: AppTest) -> tuple[int, str]:
    """(1-based position, image id) of the Review page's current item, from its "**k / n** · **id**" line."""
    for m in at.markdown:
        if m.value.startswith("**") and " / " in m.value.split("·")[0]:
            first, second = m.value.split(" · ")[:2]
            return int(first.strip("*").split(" / ")[0]), second.strip("*").replace("\\_", "_")
    raise AssertionError("no queue position on the page")


def test_review_restarts_when_order_or_filters_change_and_keeps_its_image_when_the_queue_shifts(
        monkeypatch, trained_copy):
    from core.dataset import open_dataset
    from core.review import set_tag

    at = app(monkeypatch, trained_copy, "review")
    at.toggle(key="review_skip_done").set_value(True).run()
    first = review_position(at)[1]
    at.button(key="review_next").click().run()
    at.button(key="review_next").click().run()
    assert review_position(at)[0] == 3
    third = review_position(at)[1]
    # "Next in the queue" lists what comes after the current image, not the top of the queue.
    upcoming = at.dataframe[0].value["image"].tolist()
    assert third not in upcoming and first not in upcoming

    # Another reviewer tags the first image: it leaves the queue, and this page stays on the same image.
    set_tag(trained_copy.settings, open_dataset(trained_copy.data, trained_copy.workspace), first, "fine")
    at.run()
    assert review_position(at) == (2, third)

    # A new order restarts at the most urgent image instead of keeping the numeric position.
    at.radio(key="review_order").set_value("tension").run()
    assert review_position(at)[0] == 1
    at.button(key="review_next").click().run()
    assert review_position(at)[0] == 2
    at.multiselect(key="flt_species").set_value(["cat"]).run()
    assert review_position(at)[0] == 1


def test_the_label_error_order_warns_when_the_run_is_too_weak_for_it(monkeypatch, trained_copy):
    path = trained_copy.workspace / "runs" / trained_copy.run / "eval" / "test" / "metrics.parquet"
    table = pd.read_parquet(path)
    at = app(monkeypatch, trained_copy, "review")
    at.radio(key="review_order").set_value("tension").run()
    strong = not any("too weak" in w.value for w in at.warning)
    table["iou_pet"] = table["iou_pet"] * 0.3  # the same run, made weak: mean IoU below 0.5
    table.to_parquet(path, index=False)
    weak = app(monkeypatch, trained_copy, "review")
    weak.radio(key="review_order").set_value("tension").run()
    assert any("too weak for this ranking" in w.value for w in weak.warning)
    assert strong == (eval_table(trained_copy)["iou_pet"].mean() / 0.3 >= 0.5)


def test_browse_filters_live_in_the_url_and_a_link_opens_the_same_queue(monkeypatch, trained):
    from core.views import natural_key

    table = eval_table(trained)
    at = app(monkeypatch, trained, "browse", species="cat", sort="id")
    cats = sorted(table.index[table["species"] == "cat"], key=natural_key)
    assert tile_ids(at) == cats
    assert at.multiselect(key="flt_species").value == ["cat"]
    at.selectbox(key="flt_sort").set_value("metric_asc").run()
    assert at.query_params.get("species") in ("cat", ["cat"])
    assert "sort" not in at.query_params  # the default sort is not spelled out


def test_a_selection_is_a_queue_paged_tagged_in_bulk_and_walked_by_compare(monkeypatch, trained_copy):
    table = eval_table(trained_copy)
    picked = list(table.index[:5])
    at = app(monkeypatch, trained_copy, "browse", ids=",".join(picked))
    shown = tile_ids(at)
    assert sorted(shown) == sorted(picked)
    assert any("Selection of 5 image(s)" in c.value for c in at.caption)
    at.selectbox(key="browse_bulk_tag").set_value("ambiguous")
    at.button(key="browse_bulk_apply").click().run()
    assert not at.exception
    assert all(get_review(trained_copy.settings, i).tag == "ambiguous" for i in picked)
    assert get_review(trained_copy.settings, table.index[6]) is None
    # Compare, opened from the queue, walks the selection in the Browse order.
    at.query_params.clear()
    at.query_params["image"] = shown[0]
    at.switch_page("app_pages/compare.py").run()
    assert any("1 of 5" in m.value for m in at.markdown)
    at.button(key="compare_next").click().run()
    assert at.query_params["image"] in (shown[1], [shown[1]])


def test_compare_has_a_legend_and_says_when_no_pet_is_predicted(monkeypatch, trained_copy):
    import cv2

    from core.dataset import open_dataset

    ds = open_dataset(trained_copy.data, trained_copy.workspace)
    image_id = eval_table(trained_copy).index[0]
    path = trained_copy.workspace / "runs" / trained_copy.run / "eval" / "test" / "pred" / f"{image_id}.png"
    height, width = int(ds.table.loc[image_id, "height"]), int(ds.table.loc[image_id, "width"])
    cv2.imwrite(str(path), np.full((height, width), 2, np.uint8))  # the model found no pet here
    at = app(monkeypatch, trained_copy, "compare", image=image_id)
    legend = " ".join(h.proto.body for h in at.get("html"))
    assert "pet" in legend and "border" in legend
    captions = [c for i in at.get("image") for c in i.captions]
    assert any("no pet predicted" in c for c in captions), captions
