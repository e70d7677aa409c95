"""Issue 14 items 6 and 7 on a real database through the CLI: continuous steroid days across back-to-back
courses, and clinic defaults shown as such in alerts, calendars, ICS staff descriptions and `schedules show`."""

from __future__ import annotations

from freezegun import freeze_time

from tests.ics_support import events_by_uid, export, parse_checked


def limit_alerts(tracker, mrn="S1"):
    return [a for a in tracker.json(f"alerts --mrn {mrn}") if a["kind"] == "limit"]


def test_a_steroid_course_restarted_the_day_after_a_stop_counts_on_from_the_first(tracker):
    with freeze_time("2026-03-01"):
        tracker("patient add S1 --name 'Sam Test' --dob 1970-01-01")
        tracker("therapy start S1 prednisolone --on 2026-03-01")
    with freeze_time("2026-03-06"):
        tracker("therapy stop S1 prednisolone --on 2026-03-06 --reason 'flare settled'")  # day 6
    with freeze_time("2026-03-07"):
        tracker("therapy start S1 prednisolone --on 2026-03-07")  # restarted the next day: day 7 of the run
        [near] = limit_alerts(tracker)
        assert near["severity"] == "warning" and "continuous since 2026-03-01" in near["message"]
    with freeze_time("2026-03-08"):
        [past] = limit_alerts(tracker)
    assert past["severity"] == "critical"
    assert "is on day 8, past its maximum of 7 days (clinic default)" in past["message"]
    assert "at most 3 days apart (clinic default)" in past["message"]
    assert past["limit"] == "maximum 7 days (clinic default)"


def test_a_steroid_course_restarted_after_more_than_three_days_off_starts_afresh(tracker):
    with freeze_time("2026-03-01"):
        tracker("patient add S1 --name 'Sam Test' --dob 1970-01-01")
        tracker("therapy start S1 prednisolone --on 2026-03-01")
    with freeze_time("2026-03-06"):
        tracker("therapy stop S1 prednisolone --on 2026-03-06 --reason 'flare settled'")
    with freeze_time("2026-03-11"):  # 4 days off (7-10 March)
        tracker("therapy start S1 prednisolone --on 2026-03-11")
    with freeze_time("2026-03-12"):
        assert limit_alerts(tracker) == []


def test_nbuvb_past_8_weeks_is_a_clinic_default_warning(tracker):
    with freeze_time("2026-01-05"):
        tracker("patient add U1 --name 'Uma Test' --dob 1970-01-01")
        tracker("therapy start U1 nbuvb --on 2026-01-05")
    with freeze_time("2026-03-02"):  # 8 weeks
        [past] = limit_alerts(tracker, "U1")
    assert past["severity"] == "warning" and "maximum of 8 weeks (clinic default)" in past["message"]
    assert past["sources"] == []


def test_calendars_and_staff_ics_say_clinic_default_where_the_value_is_one(tracker):
    with freeze_time("2026-03-01"):
        tracker("patient add S1 --name 'Sam Test' --dob 1970-01-01")
        tracker("therapy start S1 prednisolone --on 2026-03-01")
        [limit] = [r for r in tracker.json("calendar S1") if r["kind"] == "limit"]
        text = tracker("calendar S1", env={"COLUMNS": "300"}).stdout
    assert limit["clinic_default"] == ["maximum 7 days", "courses at most 3 days apart count as one"]
    assert "clinic default: maximum 7 days" in " ".join(text.split())
    staff = events_by_uid(parse_checked(export(tracker, "--patient", "S1")))
    patient = events_by_uid(parse_checked(export(tracker, "--patient", "S1", "--audience", "patient")))
    assert any("Clinic default: maximum 7 days" in e["description"] for e in staff.values())
    assert not any("Clinic default" in e["description"] for e in patient.values())


def test_sourced_values_are_not_marked(tracker):
    with freeze_time("2026-01-05"):
        tracker("patient add D1 --name 'Dee Test' --dob 1985-03-01")
        tracker("therapy start D1 dupilumab --on 2026-01-05")
        rows = tracker.json("calendar D1")
    [checkpoint] = [r for r in rows if r["kind"] == "checkpoint"]
    assert checkpoint["clinic_default"] == []  # NICE's EASI-50 and DLQI -4 at week 16


def test_schedules_show_marks_clinic_defaults(tracker):
    shown = tracker.json("schedules show methotrexate --weeks 13")
    [checkpoint] = [r for r in shown["timeline"] if r["kind"] == "checkpoint"]
    assert checkpoint["clinic_default"] == ["week 12 target"]
    [limit] = [r for r in tracker.json("schedules show nbuvb")["timeline"] if r["kind"] == "limit"]
    assert limit["clinic_default"] == ["maximum 8 weeks"] and limit["sources"] == []
    text = tracker("schedules show nbuvb").stdout
    assert "clinic default" in text  # in the Rule and Sources columns of the table


def test_every_clinic_default_number_shown_says_so(tracker):
    """Found exploring (A10): the baseline-set overdue alert's limit read "grace 7 days", `config show` gave
    overdue_grace_days and restart_repeat_days unmarked, and the unevaluable checkpoint text gave the 28-day
    baseline window unmarked; the reference gives none of them."""
    with freeze_time("2026-01-20"):
        tracker("patient add X1 --name 'X one' --dob 1970-01-01 --sex m --childbearing-potential no")
        tracker("therapy start X1 methotrexate --on 2026-01-05")
        [baseline] = [a for a in tracker.json("alerts --mrn X1") if a["condition_key"].endswith(":baseline")]
        assert baseline["limit"] == "grace 7 days (clinic default)"
        assert tracker.json(f"alert show {baseline['id']}")["limit"] == "grace 7 days (clinic default)"
    shown = tracker("config show").stdout
    for key in ("overdue_grace_days", "restart_repeat_days", "baseline_window_days"):
        [line] = [line for line in shown.splitlines() if line.startswith(f"{key} =")]
        assert line.endswith("# clinic default"), line
    with freeze_time("2026-04-27"):  # dupilumab week 16, no assessment before the start
        tracker("patient add D1 --name 'Dee Test' --dob 1985-03-01")
        tracker("therapy start D1 dupilumab --on 2026-01-05")
        tracker("assess D1 --on 2026-04-27 --easi 9 --dlqi 5")
        [alert] = [a for a in tracker.json("alerts --mrn D1") if a["kind"] == "checkpoint_missed"]
        assert "within 28 days (clinic default) before the start 2026-01-05" in alert["message"]
