"""core.audit on both engines: rows commit with the action they describe, readers for the Activity page, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core import audit, cli, corrections, groundtruth, ledger, review, store
from core.errors import PetSegError

pytestmark = pytest.mark.usefixtures("engine")
ID = "Abyssinian_1"


def _save(settings, ds, author: str, image_id: str = ID, shift: int = 0):
    mask, version = groundtruth.current(settings, ds, image_id)
    mask = np.array(mask)
    mask[shift, :] = 1
    return corrections.save(settings, ds, image_id, mask, base_version=version, source="gt", author=author)


def test_save_revert_delete_tag_and_note_each_leave_one_row_with_who_and_what(settings, ds):
    first = _save(settings, ds, "ana@example.org")
    _save(settings, ds, "ben@example.org", shift=1)
    corrections.revert(settings, ds, ID, 1, author="ana@example.org")
    corrections.soft_delete(settings, ds, ID, 3, actor="lead@example.org")
    corrections.soft_delete(settings, ds, ID, 3, actor="lead@example.org")  # already deleted: nothing happens
    review.set_tag(settings, ds, ID, "label_error", author="ben@example.org")
    review.set_note(settings, ds, ID, "ear", author="ben@example.org")
    trail = audit.trail(settings, ID)
    assert list(zip(trail["actor"], trail["action"], strict=True)) == [
        ("ana@example.org", "save"), ("ben@example.org", "save"), ("ana@example.org", "revert"),
        ("lead@example.org", "delete"), ("ben@example.org", "tag"), ("ben@example.org", "note")]
    assert [d.get("version") for d in trail["detail"]] == [1, 2, 3, 3, None, None]
    assert trail["detail"][0]["source"] == "gt" and trail["detail"][4] == {"tag": "label_error"}
    assert trail["at"].is_monotonic_increasing and trail["at"][0] >= first.created_at[:19]
    assert list(trail["id"]) == sorted(trail["id"])


def test_a_failed_save_leaves_no_audit_row_and_a_failed_record_no_save(settings, ds, monkeypatch):
    _save(settings, ds, "ana")
    with pytest.raises(ledger.ConflictError):  # a stale base version: refused inside the transaction
        corrections.save(settings, ds, ID, groundtruth.current(settings, ds, ID)[0], base_version=None,
                         source="gt", author="ben")
    assert list(audit.trail(settings, ID)["actor"]) == ["ana"]

    real = audit.record

    def record_then_fail(conn, *args, **kwargs):
        real(conn, *args, **kwargs)
        raise RuntimeError("connection lost after the audit insert")

    monkeypatch.setattr(audit, "record", record_then_fail)
    with pytest.raises(RuntimeError):
        _save(settings, ds, "ben", shift=2)
    with pytest.raises(RuntimeError):
        review.set_tag(settings, ds, ID, "fine", author="ben")
    monkeypatch.undo()
    assert [c.version for c in ledger.history(settings, ID)] == [1]  # the version rolled back with its row
    assert review.get_review(settings, ID) is None
    assert list(audit.trail(settings, ID)["actor"]) == ["ana"]


def test_the_trail_is_append_only_in_use_and_validated(settings):
    audit.record_now(settings, "lead", "train", run="r1", epochs=3)
    with pytest.raises(PetSegError, match="not one of"):
        audit.record_now(settings, "lead", "drop table")
    with pytest.raises(PetSegError, match="longer than"):
        audit.record_now(settings, "lead", "export", blob="x" * (audit.MAX_DETAIL + 1))
    found = audit.rows(settings)
    assert list(found["action"]) == ["train"] and found["detail"][0] == {"epochs": 3, "run": "r1"}
    assert found["image_id"][0] is None


def test_daily_counts_submissions_and_decisions_per_person_and_rate(settings, ds):
    _save(settings, ds, "ana")
    _save(settings, ds, "ana", image_id="beagle_1")
    _save(settings, ds, "ben", image_id="Bengal_1")
    with store.writing(settings) as conn:  # accept/reject as the review workflow records them
        audit.record(conn, "rita", "accept", ID, version=1, author="ana")
        audit.record(conn, "rita", "reject", "beagle_1", version=1, author="ana", reason="ear")
        audit.record(conn, "rita", "accept", "Bengal_1", version=1)  # no author: the image's latest submitter
    per_day = audit.daily(settings)
    today = per_day["day"][0]
    assert per_day[["person", "submitted", "accepted", "rejected"]].values.tolist() == [
        ["ana", 2, 1, 1], ["ben", 1, 1, 0]]
    assert set(per_day["day"]) == {today} and per_day["acceptance_rate"].tolist() == [0.5, 1.0]
    assert audit.daily(settings, "ben")["submitted"].tolist() == [1]
    people = audit.people(settings)
    assert people.set_index("person").loc["ana", "acceptance_rate"] == 0.5
    assert people.set_index("person").loc["ben", "last_day"] == today


def test_activity_cli_prints_people_and_an_image_trail(settings, ds, capsys):
    _save(settings, ds, "ana@example.org")
    review.set_note(settings, ds, ID, "ear", author="ben@example.org")
    _save(settings, ds, "ben@example.org", image_id="beagle_1")
    args = ["--data", str(settings.data), "--workspace", str(settings.workspace)]
    assert cli.main(["activity", *args]) == 0
    out = capsys.readouterr().out
    assert "ana@example.org" in out and "ben@example.org" in out
    assert cli.main(["activity", *args, "--image", ID, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["trail"]
    assert [(r["actor"], r["action"]) for r in rows] == [("ana@example.org", "save"), ("ben@example.org", "note")]
    assert cli.main(["activity", *args, "--person", "ana@example.org"]) == 0
    out = capsys.readouterr().out
    assert "ana@example.org" in out and "ben@example.org" not in out



def test_a_job_start_is_recorded_as_its_actor_and_a_refused_one_is_not(settings):
    from core import jobs
    from core.train import TrainConfig

    config = TrainConfig(run="audited", preset="quick", epochs=1, image_size=64, encoder_weights=None).to_dict()
    with pytest.raises(PetSegError):
        jobs.start(settings, "train", {**config, "preset": "huge"}, actor="lead@example.org")
    job = jobs.start(settings, "train", config, actor="lead@example.org")
    try:
        again = jobs.restart(settings, jobs.cancel(settings, job.id).job.id, actor="ana@example.org")
        jobs.cancel(settings, again.id)
    finally:
        jobs.cancel(settings, job.id)
    started = audit.rows(settings, actions=("train",))
    assert started["actor"].tolist() == ["lead@example.org", "ana@example.org"]
    assert [(d["run"], d["job"]) for d in started["detail"]] == [("audited", job.id), ("audited", again.id)]
