"""An alert whose problem a newer alert carries resolves as superseded, naming that alert, never as "condition
no longer present" (the condition is present): a gate or screen alert when a newer result of its test is
judged (its key names the latest result judged), a threshold alert when a newer result of its test alerts on
the same course. Where the condition did go (a passing or normal result), it still says so."""

from __future__ import annotations

from freezegun import freeze_time

from tests.test_gates import _live_of, _on_upadacitinib, jak_ready

GONE = "condition no longer present"


def _shown(tracker, alert_id: int) -> dict:
    return tracker.json(f"alert show {alert_id}")


def _threshold_alerts(tracker):
    return [a for a in tracker.json("alerts") if a["kind"] == "threshold"]


def test_a_pending_gate_alert_is_superseded_by_the_alert_on_its_first_result(tracker):
    with freeze_time("2026-03-02"):
        tracker("patient add P1 --name 'Raj Bose' --dob 1970-06-01 --sex m")
        jak_ready(tracker, "P1", "2026-02-25")
        tracker("result add P1 tb indeterminate --on 2026-02-26")
        tracker("therapy start P1 baricitinib --on 2026-03-02 --override-gate 'IGRA repeat pending'")
        [gate] = _live_of(tracker, "P1")
    with freeze_time("2026-03-12"):
        tracker("result add P1 tb positive --on 2026-03-11")
        [live] = _live_of(tracker, "P1")
        assert live["id"] != gate["id"]
        old = _shown(tracker, gate["id"])
        assert old["status"] == "resolved"
        assert old["resolution"] == f"auto: superseded by alert #{live['id']} as of 2026-03-12 " \
                                    "(tb: its latest result judged)"
        assert "alert.resolve" in [e["action"] for e in old["history"]]
    with freeze_time("2026-03-20"):
        tracker("result add P1 tb negative --on 2026-03-19")  # passes: the condition is gone
        assert _live_of(tracker, "P1") == []
        assert _shown(tracker, live["id"])["resolution"] == f"auto: {GONE} as of 2026-03-20"


def test_a_screen_alert_is_superseded_by_the_alert_on_a_later_day_that_does_not_pass(tracker):
    _on_upadacitinib(tracker, "J1", screened_on="2026-09-01", start="2026-09-05")
    with freeze_time("2026-10-02"):
        tracker("result add J1 tb positive --on 2026-10-01")
        [first] = _live_of(tracker, "J1")
    with freeze_time("2026-11-21"):
        tracker("result add J1 tb positive --on 2026-11-20")
        [alert] = _live_of(tracker, "J1")
        assert alert["id"] != first["id"]
        resolution = _shown(tracker, first["id"])["resolution"]
        assert resolution == f"auto: superseded by alert #{alert['id']} as of 2026-11-21 (tb: its latest result judged)"
        assert GONE not in resolution


def _superseded_by_a_newer_result(tracker, drug: str, start: str, test: str, values: tuple, days: tuple,
                                  severity: str) -> tuple[dict, dict]:
    """A patient on `drug` from `start` with two alerting results of `test` on two days: the first day's alert
    resolves as superseded by the second's, named (both alerts returned)."""
    with freeze_time(start):
        tracker("patient add P1 --name 'Pat Test' --dob 1970-01-01")
        tracker(f"therapy start P1 {drug} --on {start}")
    with freeze_time(days[0]):
        tracker(f"result add P1 {test} {values[0]} --on {days[0]}")
        [first] = _threshold_alerts(tracker)
        assert first["severity"] == severity
    with freeze_time(days[1]):
        tracker(f"result add P1 {test} {values[1]} --on {days[1]}")  # still alerting: the newer alert carries it
        [second] = _threshold_alerts(tracker)
        assert second["id"] != first["id"]
        old = _shown(tracker, first["id"])
        assert old["status"] == "resolved"
        assert old["resolution"] == f"auto: superseded by alert #{second['id']} as of {days[1]} " \
                                    f"({test} {second['value']} on {days[1]})"
    return first, second


def test_a_critical_threshold_alert_is_superseded_by_a_newer_alerting_result_of_its_test(tracker):
    _superseded_by_a_newer_result(tracker, "ciclosporin", "2026-01-05", "platelets", (120, 100),
                                  ("2026-01-20", "2026-01-21"), "critical")


def test_a_warning_is_superseded_by_a_newer_alerting_result_and_resolves_as_gone_on_a_normal_one(tracker):
    _, second = _superseded_by_a_newer_result(tracker, "methotrexate", "2026-01-05", "mcv", (110, 112),
                                              ("2026-02-02", "2026-02-03"), "warning")
    with freeze_time("2026-02-04"):
        tracker("result add P1 mcv 95 --on 2026-02-04")  # normal: the condition is gone
        assert _threshold_alerts(tracker) == []
        assert _shown(tracker, second["id"])["resolution"] == f"auto: {GONE} as of 2026-02-04"
    assert tracker.json("audit verify")["ok"] is True


def test_a_gate_or_screen_keys_base_is_its_course_and_test():
    from tracker.core.gates import judged_base, judged_test

    assert judged_base("gate:course5:tb:result12") == judged_base("gate:course5:tb") == "gate:course5:tb"
    assert judged_base("screen:course9:pregnancy:result3") == "screen:course9:pregnancy"
    assert judged_test("screen:course9:pregnancy:result3") == judged_test("gate:course5:pregnancy") == "pregnancy"
    assert judged_base("gate:course5:tb:resultx") == "gate:course5:tb:resultx"  # not a result's id


def test_alerts_gone_because_their_course_stopped_say_so(tracker):
    """An alert of a stopped course resolved as "condition no longer present" (a critical one too, no longer
    waiting for an acknowledgement), which says nothing of why: its course stopped."""
    with freeze_time("2026-01-05"):
        tracker("patient add M1 --name 'Max Test' --dob 1970-01-01")
        tracker("therapy start M1 methotrexate --on 2026-01-05")
    with freeze_time("2026-02-02"):
        tracker("result add M1 mcv 110 --on 2026-02-02")
        tracker("result add M1 alt 130 --on 2026-02-02")
        alerts = {a["severity"]: a for a in _threshold_alerts(tracker)}
        assert set(alerts) == {"warning", "critical"}
    with freeze_time("2026-02-03"):
        tracker("therapy stop M1 methotrexate --on 2026-02-03 --reason 'liver' --category adverse_event")
        assert _threshold_alerts(tracker) == []
        for alert in alerts.values():
            shown = _shown(tracker, alert["id"])
            assert (shown["status"], shown["resolution"]) == ("resolved", "auto: course stopped"), shown


def test_a_near_limit_alert_is_superseded_by_the_past_limit_alert(tracker):
    """A course near its maximum duration, then past it: the warning resolved as "condition no longer present"
    although the problem had grown (left open by the first fix)."""
    with freeze_time("2026-03-01"):
        tracker("patient add S1 --name 'Sam Test' --dob 1970-01-01")
        tracker("therapy start S1 prednisolone --on 2026-03-01")  # at most 7 days (clinic default)
    with freeze_time("2026-03-07"):  # a day before its maximum is reached
        [near] = [a for a in tracker.json("alerts --mrn S1") if a["kind"] == "limit"]
        assert near["severity"] == "warning" and "reaches its maximum" in near["message"]
    with freeze_time("2026-03-08"):
        [past] = [a for a in tracker.json("alerts --mrn S1") if a["kind"] == "limit"]
        assert past["id"] != near["id"] and "past its maximum" in past["message"]
        assert _shown(tracker, near["id"])["resolution"] == \
            f"auto: superseded by alert #{past['id']} as of 2026-03-08 (day 8, past its maximum)"
