"""Activity page in AppTest on both engines: per-person counts and acceptance rate, an image's trail, assigning."""

from __future__ import annotations

import numpy as np
import pytest

from core import assignments, audit, corrections, groundtruth, review, store
from core.config import Settings
from core.dataset import open_dataset
from dashboard import state
from tests.conftest import open_app, plain

pytestmark = pytest.mark.usefixtures("engine")


@pytest.fixture
def busy(settings, ds, monkeypatch):
    """Two annotators' saves, a reviewer's decisions and a note, then the app on that workspace."""
    ids = ds.ids()
    for author, image_id in (("ana@example.org", ids[0]), ("ana@example.org", ids[1]), ("ben@example.org", ids[2])):
        mask, version = groundtruth.current(settings, ds, image_id)
        mask = np.array(mask)
        mask[0, :] = 1
        corrections.save(settings, ds, image_id, mask, base_version=version, source="gt", author=author)
    with store.writing(settings) as conn:
        audit.record(conn, "rita@example.org", "accept", ids[0], version=1, author="ana@example.org")
        audit.record(conn, "rita@example.org", "reject", ids[1], version=1, author="ana@example.org", reason="ear")
    review.set_note(settings, ds, ids[0], "<b>ear</b> fixed", author="rita@example.org")
    store.dispose_all()
    app = open_app(monkeypatch, settings.data, settings.workspace)
    return app, ids


def test_activity_shows_people_with_their_acceptance_rate_and_days(busy):
    app, _ids = busy
    app.switch_page("app_pages/activity.py").run()
    assert not app.exception, app.exception[0].value
    people = app.dataframe[0].value.set_index("person")
    assert people.loc["ana@example.org", ["submitted", "accepted", "rejected"]].tolist() == [2, 1, 1]
    assert people.loc["ana@example.org", "acceptance_rate"] == 0.5
    assert people.loc["ben@example.org", "submitted"] == 1 and np.isnan(people.loc["ben@example.org",
                                                                                  "acceptance_rate"])
    app.selectbox(key=state.ACTIVITY_PERSON).set_value("ben@example.org").run()
    days = app.dataframe[1].value
    assert days["person"].tolist() == ["ben@example.org"] and days["submitted"].tolist() == [1]


def test_activity_shows_the_full_trail_of_the_url_image(busy):
    app, ids = busy
    app.query_params["image"] = ids[0]
    app.switch_page("app_pages/activity.py").run()
    assert not app.exception, app.exception[0].value
    trail = app.dataframe[-1].value
    assert list(zip(trail["who"], trail["action"], strict=True)) == [
        ("ana@example.org", "save"), ("rita@example.org", "accept"), ("rita@example.org", "note")]
    assert "note=<b>ear</b> fixed" in trail["what"].tolist()[-1]  # shown as text in a table, not rendered


def test_assign_box_hands_the_browse_selection_to_an_annotator(busy, settings):
    from core.views import Filters

    app, _ids = busy
    app.session_state[state.BROWSE_FILTERS] = Filters(split="all", sort="id").to_dict()
    app.switch_page("app_pages/activity.py").run()
    assert app.button(key="assign_run").disabled  # no assignee yet
    app.text_input(key=state.ASSIGN_TO).input("carl@example.org").run()
    app.number_input(key=state.ASSIGN_LIMIT).set_value(2).run()
    app.button(key="assign_run").click().run()
    assert not app.exception, app.exception[0].value
    assert any("Assigned 2 images to carl@example.org" in plain(s.value) for s in app.success)
    reopened = Settings.resolve(data=settings.data, workspace=settings.workspace)
    ds = open_dataset(reopened.data, reopened.workspace)
    assert assignments.open_items(reopened, "carl@example.org") == sorted(ds.ids())[:2]
    app.run()
    summary = next(d.value for d in app.dataframe if "assignee" in d.value.columns)
    assert summary.set_index("assignee").loc["carl@example.org", ["assigned", "done", "open"]].tolist() == [2, 0, 2]
