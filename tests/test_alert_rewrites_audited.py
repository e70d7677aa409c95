"""A live alert's text rewritten by a pass is audited (`alert.update`, the text before and after), as every
other change of an alert is: a gate or threshold alert's new text (a same-day result, a rule newly breached),
an overdue alert's new list of what is missing. An overdue alert's count of days is never rewritten, so a
day passing writes nothing (no audit row a day per overdue alert). The audit chain stays intact."""

from __future__ import annotations

from freezegun import freeze_time


def _updates(tracker, alert_id: int) -> list[dict]:
    rows = tracker.json(["audit", "--action", "alert.update", "--limit", "0"])
    return sorted((r for r in rows if r["entity_id"] == alert_id), key=lambda r: r["id"])


def _threshold_alerts(tracker):
    return [a for a in tracker.json("alerts") if a["kind"] == "threshold"]


@freeze_time("2026-10-21")
def test_a_same_day_result_that_changes_a_threshold_alerts_text_is_audited_with_both_texts(tracker):
    tracker("patient add U1 --name 'U One' --dob 1970-01-01 --sex m --childbearing-potential no")
    tracker("therapy start U1 upadacitinib --on 2026-09-01 --override-gate 'bloods drawn'")
    tracker("result add U1 neutrophils 0.8 --on 2026-10-20")
    [alert] = _threshold_alerts(tracker)
    assert _updates(tracker, alert["id"]) == []
    tracker("result add U1 neutrophils 3 --on 2026-10-20")  # the same day: named in the open alert's text
    [after] = _threshold_alerts(tracker)
    assert after["id"] == alert["id"] and after["message"] != alert["message"]
    [update] = _updates(tracker, alert["id"])
    assert update["mrn"] == "U1" and update["entity"] == "alert"
    assert update["before"]["message"] == alert["message"] and update["after"]["message"] == after["message"]
    assert "same day also: neutrophils 3 10^9/L" in update["after"]["message"]
    history = [e["action"] for e in tracker.json(f"alert show {alert['id']}")["history"]]
    assert history == ["alert.raise", "alert.update"]
    tracker("nightly")  # the same text again: nothing rewritten, nothing audited
    assert len(_updates(tracker, alert["id"])) == 1
    assert tracker.json("audit verify")["ok"] is True


def test_an_overdue_alert_is_audited_when_what_is_missing_changes_never_for_its_day_count(tracker):
    with freeze_time("2026-01-05"):
        tracker("patient add C1 --name 'Cy Test' --dob 1970-01-01")
        tracker("therapy start C1 ciclosporin --on 2026-01-05")
    with freeze_time("2026-01-20"):
        [alert] = [a for a in tracker.json("alerts") if a["kind"] == "overdue" and "baseline" in a["condition_key"]]
        tracker("result add C1 bp_systolic 120 --on 2026-01-20")
        tracker("result add C1 bp_diastolic 80 --on 2026-01-20")
        [after] = [a for a in tracker.json("alerts") if a["id"] == alert["id"]]
        assert after["message"] != alert["message"] and "BP x2" not in after["message"]
        updates = _updates(tracker, alert["id"])
        assert updates and updates[0]["before"]["message"] == alert["message"]
        assert updates[-1]["after"]["message"] == after["message"]
        assert all(u["before"]["message"] != u["after"]["message"] for u in updates)
    with freeze_time("2026-01-21"):  # a day later, nothing received: the day count alone is not rewritten
        tracker("nightly")
        [same] = [a for a in tracker.json("alerts") if a["id"] == alert["id"]]
        assert same["message"] == after["message"]
        assert _updates(tracker, alert["id"]) == updates
    assert tracker.json("audit verify")["ok"] is True
