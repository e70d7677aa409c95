"""A patient's chart: a frozen snapshot of what the clinical rules read about one patient.

The only definitions of "latest result", "the results of the latest day" (what every rule reading a test's
current value reads: one day may hold several results of a test, and the worst of them counts, never the one
entered last), "previous result", "the result of an earlier day", "a course's lab baseline" (the mean of the latest
N pre-start results when the protocol asks for `lab_baseline: mean_of: N`) and "results since a day" are
here. Rows are duck-typed: the shell passes database rows (tracker/db/charts.py), tests pass small
dataclasses; a result has `id, test, value_num, value_text, unit, taken_on, ref_high` (and may have
`reported_value, reported_unit`), an assessment `id, assessed_on` and the measures, an item `id, course_id,
patient_id, drug, kind, due, status, week, origin, title, sources, tests, received`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from itertools import groupby
from operator import attrgetter
from typing import Any

from tracker.core.protocol import Protocol


def age_on(dob: dt.date, on: dt.date) -> int:
    """Age in whole years on `on` for a date of birth `dob`."""
    return on.year - dob.year - ((on.month, on.day) < (dob.month, dob.day))


def result_order(result) -> tuple:
    """Results of one test are ordered by the day taken, then by when they were recorded (id)."""
    return (result.taken_on, result.id or 0)


@dataclass(frozen=True)
class LabBaseline:
    """A course's baseline value for one test: the mean of `readings` (one reading: that result's value),
    `wanted` the number the protocol asks to average."""

    value_num: float
    readings: tuple
    wanted: int = 1

    def describe(self) -> str:
        """`baseline 80 (mean of 2 readings: 2024-01-01, 2024-01-08)`; a single reading adds nothing."""
        if self.wanted == 1:
            return f"baseline {self.value_num:g}"
        days = ", ".join(r.taken_on.isoformat() for r in self.readings)
        short = f"; {self.wanted} wanted" if len(self.readings) < self.wanted else ""
        noun = "reading" if len(self.readings) == 1 else "readings"
        return f"baseline {self.value_num:.4g} (mean of {len(self.readings)} {noun}: {days}{short})"


@dataclass(frozen=True)
class ChartCourse:
    """A live course (not stopped) with the protocol version it was planned with."""

    id: int
    patient_id: int
    drug: str
    status: str
    start_on: dt.date
    protocol: Protocol
    gate_override: str | None = None
    stop_on: dt.date | None = None


@dataclass(frozen=True)
class Chart:
    """One patient's snapshot. `results` maps a test code to its results in `result_order`; `items` are the
    live courses' planned items; `failed_drugs` the drugs stopped for failure or an adverse event
    (`adverse_event_drugs` those stopped for an adverse event); `stopped_courses` the patient's stopped courses
    (continuous days across back-to-back courses); `weight_kg` the weight on the patient record."""

    patient_id: int
    mrn: str | None = None
    sex: str | None = None
    # yes | no | unknown, as recorded; whether pregnancy rules apply on a day is core.gates.may_conceive.
    childbearing: str = "unknown"
    dob: dt.date | None = None
    courses: tuple[ChartCourse, ...] = ()
    items: tuple[Any, ...] = ()
    results: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    assessments: tuple[Any, ...] = ()
    failed_drugs: frozenset[str] = frozenset()
    adverse_event_drugs: frozenset[str] = frozenset()  # drugs stopped for an adverse event
    stopped_courses: tuple[Any, ...] = ()  # stopped courses: `drug, start_on, stop_on`
    # The body weight on the patient record (`patient add/update --weight-kg`), undated: a weight result is
    # preferred where there is one (core/renal.py).
    weight_kg: float | None = None

    def age_on(self, day: dt.date) -> int | None:
        """Age in whole years on `day` (None without a date of birth)."""
        return None if self.dob is None else age_on(self.dob, day)

    def results_of(self, test: str) -> tuple:
        return self.results.get(test, ())

    def latest(self, test: str, on: dt.date | None = None):
        """The latest result of `test` (taken on or before `on`, if given); None if there is none."""
        results = self.results_of(test)
        if on is None:
            return results[-1] if results else None
        for result in reversed(results):
            if result.taken_on <= on:
                return result
        return None

    def latest_day(self, test: str, on: dt.date | None = None) -> tuple:
        """The results of `test` on its latest day (taken on or before `on`, if given), in `result_order`; ()
        if there is none. A day may hold several (entered twice by hand, two laboratory messages; a
        correction replaces a result, it is not a second one): the rules read them all and the worst counts
        (core/gates.py read_day, core/thresholds.py day_candidates), so entry order never hides a breach."""
        latest = self.latest(test, on)
        if latest is None:
            return ()
        return tuple(r for r in self.results_of(test) if r.taken_on == latest.taken_on)

    def previous(self, result):
        """The result of the same test just before `result`, or None."""
        results = self.results_of(result.test)
        before = None
        for candidate in results:
            if candidate.id == result.id:
                return before
            before = candidate
        return None

    def earlier_day(self, result):
        """The latest result of the same test taken on a day before `result`'s, or None: what a repeat or a
        confirmation reads. A second result the same day (a duplicate, or a draw the day alone cannot tell
        from one) is not the repeat that "repeat in 1 week" or "confirmed" asks for [MTX-2009-recs]."""
        return self.latest(result.test, result.taken_on - dt.timedelta(days=1))

    def earlier_day_results(self, result) -> tuple:
        """Every result of the day `earlier_day` reads (the latest day before `result`'s), in `result_order`;
        () if there is none: a repeat or a confirmation is read from that day's worst, as the latest day's is."""
        return self.latest_day(result.test, result.taken_on - dt.timedelta(days=1))

    def lab_baseline(self, course: ChartCourse, test: str) -> LabBaseline | None:
        """A course's baseline for change-from-baseline rules: the mean of the latest N `test` results on or
        before its start, N from the protocol's `lab_baseline: mean_of` (else 1: the latest alone). With fewer
        results than N on record, the mean of those there are, saying so; None without any."""
        wanted = course.protocol.baseline_readings(test)
        before = [r for r in self.results_of(test) if r.taken_on <= course.start_on and r.value_num is not None]
        readings = tuple(before[-wanted:])
        if not readings:
            return None
        return LabBaseline(sum(r.value_num for r in readings) / len(readings), readings, wanted)

    def results_since(self, test: str, day: dt.date) -> tuple:
        """Results of `test` taken on or after `day`."""
        return tuple(r for r in self.results_of(test) if r.taken_on >= day)

    def items_of(self, course_id: int, *kinds: str) -> list:
        return [i for i in self.items if i.course_id == course_id and (not kinds or i.kind in kinds)]


def shown_value(result) -> str:
    """A result's value as the same-day notes show it: `0.8 10^9/L`, `negative`, `-` without one."""
    if result.value_num is not None:
        return f"{result.value_num:g}{' ' + result.unit if result.unit else ''}"
    return result.value_text or "-"


def same_day_note(worst, results) -> str:
    """What a rule reading the worst of one day's results (`worst`, one of `results`) says of the others when
    their values differ: ` (same day also: neutrophils 3 10^9/L; conflicting results, the worst counts)`;
    '' when there are none."""
    shown = shown_value(worst)
    others = list(dict.fromkeys(shown_value(r) for r in results if r is not worst and shown_value(r) != shown))
    if not others:
        return ""
    return f" (same day also: {worst.test} {', '.join(others)}; conflicting results, the worst counts)"


_TEST_THEN_STORED_ORDER = attrgetter("test", "taken_on", "id")


def build_results(rows) -> dict[str, tuple]:
    """Group result rows by test, each in `result_order`."""
    try:
        # `result_order` within each test for stored results (every id set), sorted and grouped in C: a
        # whole clinic's charts hold a million results (loaded in this order, so the sort only checks it).
        ordered = sorted(rows, key=_TEST_THEN_STORED_ORDER)
    except TypeError:  # an unsaved result (id None) on a day shared with another
        ordered = sorted(rows, key=lambda r: (r.test, *result_order(r)))
    return {test: tuple(group) for test, group in groupby(ordered, key=_TEST)}


_TEST = attrgetter("test")
