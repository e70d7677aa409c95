"""A patient's chart: a frozen snapshot of what the clinical rules read about one patient.

The only definitions of "latest result", "previous result", "a course's lab baseline" and "results since a
day" are here. Rows are duck-typed: the shell passes database rows (tracker/store/charts.py), tests pass
small dataclasses; a result has `id, test, value_num, value_text, unit, taken_on, ref_high`, an
assessment `id, assessed_on` and the measures, an item `id, course_id, patient_id, drug, kind, due, status,
week, origin, title, sources`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from tracker.core.protocol import Protocol


def result_order(result) -> tuple:
    """Results of one test are ordered by the day taken, then by when they were recorded (id)."""
    return (result.taken_on, result.id or 0)


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
    (continuous days across back-to-back courses)."""

    patient_id: int
    mrn: str | None = None
    sex: str | None = None
    childbearing_potential: bool = False
    courses: tuple[ChartCourse, ...] = ()
    items: tuple[Any, ...] = ()
    results: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    assessments: tuple[Any, ...] = ()
    failed_drugs: frozenset[str] = frozenset()
    dob: dt.date | None = None
    adverse_event_drugs: frozenset[str] = frozenset()  # drugs stopped for an adverse event
    stopped_courses: tuple[Any, ...] = ()  # stopped courses: `drug, start_on, stop_on`

    def age_on(self, day: dt.date) -> int | None:
        """Age in whole years on `day` (None without a date of birth)."""
        if self.dob is None:
            return None
        return day.year - self.dob.year - ((day.month, day.day) < (self.dob.month, self.dob.day))

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

    def previous(self, result):
        """The result of the same test just before `result`, or None."""
        results = self.results_of(result.test)
        before = None
        for candidate in results:
            if candidate.id == result.id:
                return before
            before = candidate
        return None

    def lab_baseline(self, course: ChartCourse, test: str):
        """A course's baseline for change-from-baseline rules: the latest `test` result on or before its
        start."""
        return self.latest(test, on=course.start_on)

    def results_since(self, test: str, day: dt.date) -> tuple:
        """Results of `test` taken on or after `day`."""
        return tuple(r for r in self.results_of(test) if r.taken_on >= day)

    def items_of(self, course_id: int, *kinds: str) -> list:
        return [i for i in self.items if i.course_id == course_id and (not kinds or i.kind in kinds)]


_STORED_ORDER = attrgetter("taken_on", "id")


def build_results(rows) -> dict[str, tuple]:
    """Group result rows by test, each in `result_order`."""
    grouped: dict[str, list] = {}
    for row in rows:
        grouped.setdefault(row.test, []).append(row)
    out = {}
    for test, group in grouped.items():
        try:
            # `result_order` for stored results (every id set), in C: a whole clinic's charts sort a million.
            out[test] = tuple(sorted(group, key=_STORED_ORDER))
        except TypeError:  # an unsaved result (id None) on a day shared with another
            out[test] = tuple(sorted(group, key=result_order))
    return out
