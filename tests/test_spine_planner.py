"""Issue 2 acceptance: exact dates from the pure planner (phase boundaries, dose change, month ends)."""

from __future__ import annotations

import datetime as dt

import pytest

from tracker.core.plan import CourseFacts, Pause, PatientFacts, plan_course
from tracker.protocol_files import load_library

D = dt.date.fromisoformat


@pytest.fixture(scope="module")
def library():
    return load_library()


def labs(items):
    return [i.due.isoformat() for i in items if i.kind == "lab"]


def test_methotrexate_from_a_monday_follows_the_bsr_phases(library):
    start = D("2024-01-01")  # a Monday
    assert start.weekday() == 0
    items = plan_course(library.get("methotrexate"), CourseFacts(start=start), D("2025-01-31"))
    assert labs(items) == [
        # every 2 weeks until the dose has been stable for 6 weeks
        "2024-01-15", "2024-01-29", "2024-02-12",
        # then monthly for 3 months, counted from the end of the first phase
        "2024-03-12", "2024-04-12", "2024-05-12",
        # then every 12 weeks
        "2024-08-04", "2024-10-27", "2025-01-19",
    ]
    assert all(i.tests == ("cbc", "cmp") for i in items if i.kind == "lab")
    checkpoints = [i for i in items if i.kind == "checkpoint"]
    assert [(c.due, c.week, c.target) for c in checkpoints] == [(D("2024-03-25"), 12, "EASI-50")]
    assert "CKS-MTX" in [i for i in items if i.kind == "lab"][0].sources


def test_dose_increase_in_week_10_restarts_the_two_weekly_phase(library):
    start = D("2024-01-01")
    change = start + dt.timedelta(weeks=10)  # 2024-03-11
    items = plan_course(library.get("methotrexate"), CourseFacts(start=start, dose_changes=(change,)),
                        D("2024-12-31"))
    assert labs(items) == [
        "2024-01-15", "2024-01-29", "2024-02-12",  # before the change: unchanged
        "2024-03-25", "2024-04-08", "2024-04-22",  # 2-weekly again from the change date
        "2024-05-22", "2024-06-22", "2024-07-22",  # monthly for 3 months
        "2024-10-14",  # then 12-weekly
    ]
    # The response checkpoint counts from the start, not from the dose change.
    assert [i.due for i in items if i.kind == "checkpoint"] == [D("2024-03-25")]


def test_month_end_anchor_clamps_without_drifting_across_a_leap_day(library):
    # Start + 6 weeks = 2024-01-31, so the monthly phase is anchored on a 31st in a leap year.
    items = plan_course(library.get("methotrexate"), CourseFacts(start=D("2023-12-20")), D("2024-09-01"))
    assert labs(items) == [
        "2024-01-03", "2024-01-17", "2024-01-31",
        "2024-02-29", "2024-03-31", "2024-04-30",  # computed from Jan 31 each time, never chained
        "2024-07-23",
    ]


def test_month_end_anchor_in_a_common_year(library):
    items = plan_course(library.get("methotrexate"), CourseFacts(start=D("2024-12-20")), D("2025-05-01"))
    assert labs(items)[3:6] == ["2025-02-28", "2025-03-31", "2025-04-30"]


def test_course_starting_on_a_leap_day(library):
    items = plan_course(library.get("azathioprine"), CourseFacts(start=D("2024-02-29")), D("2025-03-31"))
    # 2-weekly x3 from Feb 29, monthly from Apr 11, then 3-monthly from Jul 11.
    assert labs(items) == ["2024-03-14", "2024-03-28", "2024-04-11", "2024-05-11", "2024-06-11",
                           "2024-07-11", "2024-10-11", "2025-01-11"]


def test_dupilumab_has_no_routine_labs_and_a_week_16_checkpoint(library):
    start = D("2024-01-01")
    items = plan_course(library.get("dupilumab"), CourseFacts(start=start), D("2025-01-31"))
    assert labs(items) == []
    checkpoint = [i for i in items if i.kind == "checkpoint"]
    assert [(c.due, c.week) for c in checkpoint] == [(D("2024-04-22"), 16)]
    assert checkpoint[0].measure == "easi+dlqi"
    assert "NICE-534" in checkpoint[0].sources


def test_baselines_are_due_on_the_start_and_follow_the_patient(library):
    start = D("2024-01-01")
    mtx = library.get("methotrexate")
    man = plan_course(mtx, CourseFacts(start=start, patient=PatientFacts(sex="m")), start)
    woman = plan_course(mtx, CourseFacts(start=start, patient=PatientFacts(sex="f", childbearing_potential=True)),
                        start)
    assert all(i.due == start for i in man if i.kind == "baseline")
    assert "pregnancy" not in [i.tests[0] for i in man if i.kind == "baseline"]
    assert "pregnancy" in [i.tests[0] for i in woman if i.kind == "baseline"]
    # at-risk screening is suggested at start, not scheduled for everyone
    assert "tb" not in [i.tests[0] for i in man if i.kind == "baseline"]
    tpmt = [i for i in plan_course(library.get("azathioprine"), CourseFacts(start=start), start)
            if i.tests == ("tpmt",)]
    assert tpmt[0].gate == "hard"


def test_pause_moves_nothing_into_the_pause_and_shifts_the_checkpoint(library):
    start = D("2024-01-01")
    pause = Pause(D("2024-01-20"), D("2024-02-03"))  # 14 days paused
    items = plan_course(library.get("methotrexate"), CourseFacts(start=start, pauses=(pause,)), D("2024-06-30"))
    dues = labs(items)
    assert not [d for d in dues if "2024-01-20" <= d < "2024-02-03"]
    # Resuming restarts the 2-weekly phase (methotrexate restarts on dose changes and resumes).
    assert dues[:4] == ["2024-01-15", "2024-02-17", "2024-03-02", "2024-03-16"]
    assert [i.due for i in items if i.kind == "checkpoint"] == [D("2024-04-08")]  # week 12 + 14 days


def test_stop_cancels_everything_after_the_stop(library):
    start = D("2024-01-01")
    items = plan_course(library.get("methotrexate"), CourseFacts(start=start, stop=D("2024-02-01")),
                        D("2024-12-31"))
    assert labs(items) == ["2024-01-15", "2024-01-29"]
    assert not [i for i in items if i.kind == "checkpoint"]


def test_plans_are_never_chained_for_long_horizons(library):
    """Ten years of 3-monthly azathioprine draws stay on their phase anchor's day of month."""
    items = plan_course(library.get("azathioprine"), CourseFacts(start=D("2023-12-20")), D("2033-12-31"))
    # Monthly phase from 2024-01-31; the 3-monthly phase starts 3 months later, on 2024-04-30 (clamped),
    # and every later draw is computed from that anchor: always the 30th, never drifting to the 28th.
    quarterly = [D(d) for d in labs(items)][6:]
    assert quarterly[0] == D("2024-07-30")
    assert {d.day for d in quarterly} == {30}
    assert len(quarterly) == 38
