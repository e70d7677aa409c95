"""Property tests of the pure planner over every protocol in the library (issue 3, done-when).

Random start dates (weighted towards month ends and 29 February), dose changes, pauses (one may still be
open) and stops. What must always hold:
- nothing but baselines on the start date, nothing before it;
- no two items with the same key;
- inside each phase the draws are exactly `every` x 1, 2, 3, ... counted from the phase start (month steps
  land on the phase start's day, clamped at month ends: never drifting after a short month);
- the course's lab days are exactly its tracks' draws, minus those on/before the start, while paused or
  after the stop; a track that does not restart on resume moves its one-off draws and each phase's first
  draw by the days paused (issue 13), so a pause drops no one-off draw;
- a checkpoint is exactly at its week plus the days paused before it; none while still paused;
- nothing is due while paused (labs) or after the stop (anything).
Example counts are modest so the file runs in seconds.
"""

from __future__ import annotations

import calendar
import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracker.core.plan import CourseFacts, Pause, PatientFacts, plan_course, track_draws
from tracker.protocol_files import load_library

LIBRARY = load_library()
PROTOCOLS = sorted(LIBRARY.protocols)
D = dt.date.fromisoformat

SPECIAL_STARTS = [D("2024-02-29"), D("2028-02-29"), D("2025-01-31"), D("2024-01-31"), D("2025-08-31"),
                  D("2024-03-31"), D("2025-05-31"), D("2025-12-31"), D("2026-10-31"), D("2025-02-28")]
starts = st.one_of(st.sampled_from(SPECIAL_STARTS), st.dates(D("2020-01-01"), D("2030-12-31")))
offsets = st.integers(min_value=1, max_value=500)


@st.composite
def courses(draw):
    start = draw(starts)
    changes = tuple(sorted({start + dt.timedelta(days=d) for d in draw(st.lists(offsets, max_size=3))}))
    pauses = []
    day = start
    for _ in range(draw(st.integers(0, 2))):
        day = day + dt.timedelta(days=draw(st.integers(1, 200)))
        length = draw(st.one_of(st.none(), st.integers(1, 120)))
        if length is None:
            pauses.append(Pause(day))
            break
        pauses.append(Pause(day, day + dt.timedelta(days=length)))
        day = day + dt.timedelta(days=length)
    stop = draw(st.one_of(st.none(), offsets.map(lambda d: start + dt.timedelta(days=d))))
    if pauses and stop is not None and stop <= pauses[-1].paused_on:
        stop = None
    patient = PatientFacts(sex=draw(st.sampled_from(["f", "m"])), childbearing_potential=draw(st.booleans()))
    facts = CourseFacts(start=start, stop=stop, dose_changes=changes, pauses=tuple(pauses), patient=patient)
    return draw(st.sampled_from(PROTOCOLS)), facts


def horizon_of(facts: CourseFacts) -> dt.date:
    return facts.start + dt.timedelta(days=800)


def paused(facts: CourseFacts, day: dt.date) -> bool:
    return any(p.paused_on <= day and (p.resumed_on is None or day < p.resumed_on) for p in facts.pauses)


def segments(protocol, track, facts):
    """(anchor, last day) of each monitoring segment: a dose change or resume restarts the track."""
    anchors = {facts.start}
    if protocol.restarts_on_dose_change(track):
        anchors |= {d for d in facts.dose_changes if d > facts.start}
        anchors |= {p.resumed_on for p in facts.pauses if p.resumed_on and p.resumed_on > facts.start}
    anchors = sorted(anchors)
    last = min(horizon_of(facts), facts.stop) if facts.stop else horizon_of(facts)
    ends = [a - dt.timedelta(days=1) for a in anchors[1:]] + [last]
    return [(a, min(e, last)) for a, e in zip(anchors, ends)]


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(courses())
def test_items_start_on_time_are_unique_and_stop_with_the_course(case):
    protocol_id, facts = case
    items = plan_course(LIBRARY.protocols[protocol_id], facts, horizon_of(facts))
    for item in items:
        if item.kind == "baseline":
            assert item.due == facts.start
        else:
            assert item.due > facts.start, item
        if facts.stop is not None:
            assert item.due <= facts.stop, item
        if item.kind == "lab":
            assert not paused(facts, item.due), item
    keys = [i.key for i in items]
    assert len(keys) == len(set(keys))


@SETTINGS
@given(courses())
def test_draws_step_from_the_phase_start_and_make_up_the_course_labs(case):
    protocol_id, facts = case
    protocol = LIBRARY.protocols[protocol_id]
    expected: dict[dt.date, set[str]] = {}
    for track in protocol.monitoring.tracks if protocol.monitoring else []:
        for anchor, until in segments(protocol, track, facts):
            draws = track_draws(track, anchor, until)
            phase_start = anchor
            for phase in track.phases:
                days = [d for d, _, p in draws if p is phase]
                if phase.at is not None:
                    want = sorted(o.after(phase_start) for o in phase.at)
                    assert days == [d for d in want if d <= until]
                else:
                    assert days == [phase.every.after(phase_start, k) for k in range(1, len(days) + 1)]
                    if phase.every.unit in "my":
                        for day in days:  # month steps stay on the phase start's day, clamped
                            month_end = calendar.monthrange(day.year, day.month)[1]
                            assert day.day == min(phase_start.day, month_end)
                    end = phase.length.after(phase_start) if phase.length else until
                    if days:
                        assert days[-1] <= min(end, until)
                    # None missing: the next step would fall outside the phase or the segment.
                    assert phase.every.after(phase_start, len(days) + 1) > min(end, until)
                if phase.length is None:
                    break
                phase_start = phase.length.after(phase_start)
                if phase_start > until:
                    break
            if not protocol.restarts_on_dose_change(track):
                draws = moved_by_pauses(draws, facts, until)
            for day, tests, _ in draws:
                if day > facts.start and not paused(facts, day):
                    expected.setdefault(day, set()).update(tests)
    labs = {i.due: set(i.tests) for i in plan_course(protocol, facts, horizon_of(facts)) if i.kind == "lab"}
    assert labs == expected


def treatment_day(facts: CourseFacts, day: dt.date) -> dt.date | None:
    """A draw's `day` of treatment as a calendar date: later by each pause that begins on or before it
    (None: still paused)."""
    for pause in facts.pauses:  # sorted
        if pause.paused_on <= day:
            if pause.resumed_on is None:
                return None
            day += pause.resumed_on - pause.paused_on
    return day


def moved_by_pauses(draws, facts: CourseFacts, until: dt.date) -> list:
    """Issue 13: a track that does not restart on resume moves its one-off draws and each repeating phase's
    first draw by the days paused; later steps stay, except those the moved first draw has passed."""
    out, first = [], {}
    for day, tests, phase in draws:
        if phase.at is not None or id(phase) not in first:
            moved = treatment_day(facts, day)
            if phase.at is None:
                first[id(phase)] = moved
            if moved is not None and moved <= until:
                out.append((moved, tests, phase))
        elif first[id(phase)] is not None and day > first[id(phase)]:
            out.append((day, tests, phase))
    return out


@SETTINGS
@given(courses())
def test_a_pause_drops_no_one_off_draw(case):
    """Every one-off draw of a course is planned once it is due in treatment time, paused or not."""
    protocol_id, facts = case
    protocol = LIBRARY.protocols[protocol_id]
    labs = {}
    for item in plan_course(protocol, facts, horizon_of(facts)):
        if item.kind == "lab":
            labs[item.due] = set(item.tests)
    for track in protocol.monitoring.tracks if protocol.monitoring else []:
        if protocol.restarts_on_dose_change(track):
            continue  # a resume re-plans the whole track from the resume date
        for day, tests, phase in track_draws(track, facts.start, horizon_of(facts)):
            if phase.at is None:
                continue
            moved = treatment_day(facts, day)
            last = min(horizon_of(facts), facts.stop) if facts.stop else horizon_of(facts)
            if moved is not None and facts.start < moved <= last:
                assert set(tests) <= labs.get(moved, set()), (track.name, day, moved)


@SETTINGS
@given(courses())
def test_a_checkpoint_is_at_its_week_plus_the_days_paused_before_it(case):
    protocol_id, facts = case
    protocol = LIBRARY.protocols[protocol_id]
    got = {i.week: i.due for i in plan_course(protocol, facts, horizon_of(facts)) if i.kind == "checkpoint"}
    for checkpoint in protocol.checkpoints:
        due = facts.start + dt.timedelta(weeks=checkpoint.week)
        still_paused = False
        for pause in facts.pauses:  # sorted; a pause that begins before the (shifted) date pushes it
            if pause.paused_on < due:
                if pause.resumed_on is None:
                    still_paused = True
                    break
                due += pause.resumed_on - pause.paused_on
        if still_paused or due > horizon_of(facts) or (facts.stop and due > facts.stop):
            assert checkpoint.week not in got
        else:
            assert got[checkpoint.week] == due
            if not facts.pauses:
                assert (due - facts.start).days == 7 * checkpoint.week


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(PROTOCOLS), starts, st.integers(1, 300))
def test_re_planning_with_a_later_horizon_only_adds_items(protocol_id, start, extra):
    protocol = LIBRARY.protocols[protocol_id]
    facts = CourseFacts(start=start)
    short = plan_course(protocol, facts, start + dt.timedelta(days=365))
    longer = plan_course(protocol, facts, start + dt.timedelta(days=365 + extra))
    assert {i.key for i in short} <= {i.key for i in longer}
    assert all(i.due > start + dt.timedelta(days=365) for i in longer if i.key not in {s.key for s in short})


# --- Focused examples: phase boundaries, month ends, pauses, adjustments ----------------------------------


def lab_days(protocol_id, facts, until):
    return [i.due.isoformat() for i in plan_course(LIBRARY.get(protocol_id), facts, D(until)) if i.kind == "lab"]


def test_a_leap_day_start_steps_monthly_from_the_29th_not_the_28th():
    # Methotrexate from 2024-02-29: 2-weekly to 04-11, then monthly on the 11th, then 12-weekly.
    days = lab_days("methotrexate", CourseFacts(start=D("2024-02-29")), "2024-12-31")
    assert days[:6] == ["2024-03-14", "2024-03-28", "2024-04-11", "2024-05-11", "2024-06-11", "2024-07-11"]


def test_a_january_31_phase_start_clamps_each_month_separately():
    from tracker.core.durations import Duration

    monthly = Duration(1, "m")
    assert [monthly.after(D("2024-01-31"), k).isoformat() for k in (1, 2, 3, 4)] == [
        "2024-02-29", "2024-03-31", "2024-04-30", "2024-05-31"]


def test_a_pause_moves_the_checkpoint_and_the_resume_restarts_monitoring():
    facts = CourseFacts(start=D("2024-01-01"), pauses=(Pause(D("2024-02-05"), D("2024-02-19")),))
    items = plan_course(LIBRARY.get("methotrexate"), facts, D("2024-06-30"))
    assert [i.due for i in items if i.kind == "checkpoint"] == [D("2024-04-08")]  # week 12 + 14 days
    # 01-15, 01-29 before the pause; restarted on 02-19: 03-04, 03-18, 04-01, then monthly.
    assert [i.due.isoformat() for i in items if i.kind == "lab"][:6] == [
        "2024-01-15", "2024-01-29", "2024-03-04", "2024-03-18", "2024-04-01", "2024-05-01"]


def test_still_paused_means_nothing_more_is_planned():
    facts = CourseFacts(start=D("2024-01-01"), pauses=(Pause(D("2024-02-05")),))
    items = plan_course(LIBRARY.get("methotrexate"), facts, D("2025-06-30"))
    assert max(i.due for i in items if i.kind != "baseline") == D("2024-01-29")


def test_an_adjustment_replaces_only_the_open_ended_phase_from_its_date():
    from tracker.core.durations import Duration
    from tracker.core.plan import IntervalAdjustment

    facts = CourseFacts(start=D("2024-01-01"),
                        adjustment=IntervalAdjustment(Duration(8, "w"), D("2024-03-01"), "stable"))
    items = [i for i in plan_course(LIBRARY.get("methotrexate"), facts, D("2024-12-31")) if i.kind == "lab"]
    # The monthly phase (to 05-12) is untouched; maintenance is 8-weekly from its start, 05-12.
    assert [(i.due.isoformat(), "adjusted for this course: stable" in i.detail) for i in items[3:]] == [
        ("2024-03-12", False), ("2024-04-12", False), ("2024-05-12", False),
        ("2024-07-07", True), ("2024-09-01", True), ("2024-10-27", True), ("2024-12-22", True)]


def test_a_protocol_without_monitoring_has_only_baselines_and_checkpoints():
    items = plan_course(LIBRARY.get("dupilumab"), CourseFacts(start=D("2024-01-01")), D("2024-12-31"))
    assert {i.kind for i in items} <= {"baseline", "checkpoint", "limit"}
    assert [(i.due, i.week) for i in items if i.kind == "checkpoint"][0] == (D("2024-04-22"), 16)
