"""Clinic defaults shown in alerts (issue 14 item 7, remainder): a threshold the clinic chose and the
overdue grace period say "clinic default"; sourced thresholds do not. Plain dataclasses."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from tests.core_support import Result
from tracker.core.protocol import Protocol, Threshold
from tracker.core.review import overdue_candidate
from tracker.core.thresholds import threshold_candidates


@dataclass
class Course:
    id: int = 1
    patient_id: int = 1
    drug: str = "x"
    start_on: dt.date = dt.date(2026, 1, 5)


@dataclass
class Item:
    id: int
    due: dt.date
    kind: str = "lab"
    status: str = "planned"
    course_id: int = 1
    patient_id: int = 1
    drug: str = "x"
    title: str = "Bloods"
    tests: str = "cbc"
    sources: str = ""
    received: str | None = None


def _alerts(threshold):
    protocol = Protocol.model_construct(name="X", thresholds=[threshold])
    alerts, _ = threshold_candidates(protocol, Course(), Result(1, "egfr", 25, dt.date(2026, 3, 2)), None, None)
    return alerts


def test_a_clinic_default_threshold_says_so_in_its_text_and_limit():
    [alert] = _alerts(Threshold(analyte="egfr", below=30, action="withhold", severity="critical", clinic_default=True))
    assert "egfr 25 on 2026-03-02: < 30 (clinic default) -> withhold and discuss" in alert.message
    assert alert.limit_text == "< 30 (clinic default)"


def test_a_sourced_threshold_does_not():
    [alert] = _alerts(Threshold(analyte="egfr", below=30, action="withhold", sources=["S"]))
    assert "clinic default" not in alert.message and alert.limit_text == "< 30"


def test_the_overdue_grace_period_is_a_clinic_default():
    alert = overdue_candidate(Item(1, dt.date(2026, 3, 1)), dt.date(2026, 3, 20), 7)
    assert alert.limit_text == "grace 7 days (clinic default)" and alert.value == "19 days overdue"
