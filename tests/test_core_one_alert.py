"""Issue 14 items 1 and 5, on plain data: one result is at most one threshold alert per course (the most
severe action leads, the other breached rules are named in it, no lesser rule's text contradicts the value);
one course's overdue baseline set is one alert; interrupt and withhold alerts book a repeat of the test."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass

import pytest

from tracker.core.alerts import AlertSettings
from tracker.core.chart import ChartCourse
from tracker.core.review import baseline_overdue_key, overdue_candidates
from tracker.core.thresholds import PAUSE_ADVICE, threshold_candidates
from tracker.protocol_files import load_library

START = dt.date(2026, 1, 5)
_ids = itertools.count(100)


@dataclass
class Result:
    test: str
    value_num: float | None
    taken_on: dt.date
    value_text: str | None = None
    unit: str | None = None
    ref_high: float | None = None
    id: int = 0

    def __post_init__(self):
        self.id = self.id or next(_ids)


@dataclass
class Item:
    id: int
    kind: str
    due: dt.date
    tests: str
    status: str = "planned"
    title: str = "Baseline"
    received: str | None = None
    patient_id: int = 1
    drug: str = "methotrexate"
    course_id: int = 1
    sources: str = ""


@pytest.fixture(scope="module")
def lib():
    return load_library()


def course_on(lib, drug, course_id=7):
    return ChartCourse(course_id, 1, drug, "active", START, lib.get(drug))


def alerts_for(lib, drug, test, value, on="2026-03-02", previous=None, ref_high=None, repeat_days=7):
    protocol = lib.get(drug)
    uln = lib.vocabulary.tests[test].ref_high if test in lib.vocabulary else None
    result = Result(test, value, dt.date.fromisoformat(on), ref_high=ref_high)
    return threshold_candidates(protocol, course_on(lib, drug), result, None, uln, previous,
                                restart_repeat_days=repeat_days)


def test_methotrexate_alt_200_is_one_alert_withhold_leading_with_the_other_rules_named(lib):
    alerts, follow_ups = alerts_for(lib, "methotrexate", "alt", 200, ref_high=40)  # 5 x ULN
    [alert] = alerts
    assert alert.severity == "critical" and alert.limit_text == "> 100 U/L"
    assert "-> withhold and discuss" in alert.message
    assert "Also breached: > 3 x ULN (120) -> repeat to confirm, then stop; > 1 x ULN (40) -> " \
           "repeat to confirm, then reduce the dose." in alert.message
    assert "up to 3 x ULN" not in alert.message  # the reduce-dose text would contradict 5 x ULN
    assert alert.condition_key == "threshold:course7:alt>100:result%d" % alert.result_id
    assert {"MTX-2009-recs", "SPS-MMF"} <= set(alert.sources)
    # withhold: the repeat of the test is booked, and the alert says to pause the course
    [repeat] = follow_ups
    assert (repeat.due, repeat.tests, repeat.origin) == (dt.date(2026, 3, 9), ("alt",), "threshold")
    assert "Repeat alt booked for 2026-03-09 (7 days, clinic default)" in alert.message
    assert alert.message.endswith(PAUSE_ADVICE)


def test_a_confirmed_stop_leads_once_the_previous_result_breached_too(lib):
    previous = Result("alt", 190, dt.date(2026, 2, 23), ref_high=40)
    [alert], _ = alerts_for(lib, "methotrexate", "alt", 200, previous=previous, ref_high=40)
    assert "-> stop (confirmed: also 2026-02-23)" in alert.message.split("Also breached")[0]
    assert "> 100 U/L -> withhold and discuss" in alert.message


def test_abrocitinib_lymphocytes_04_interrupts_now_and_names_the_confirming_stop(lib):
    [alert], follow_ups = alerts_for(lib, "abrocitinib", "lymphocytes", 0.4)
    assert "-> interrupt. Interrupt; restart when recovered." in alert.message
    assert "Also breached: < 0.5 10^9/L -> repeat to confirm, then stop." in alert.message
    assert [f.tests for f in follow_ups] == [("lymphocytes",)]
    assert "do not give" not in alert.message  # the initiation limit is not named during treatment


def test_azathioprine_neutrophils_08_is_one_critical_alert(lib):
    [alert], follow_ups = alerts_for(lib, "azathioprine", "neutrophils", 0.8)
    assert alert.severity == "critical" and alert.limit_text == "< 1 10^9/L"
    assert "Also breached: < 2 10^9/L -> discuss with specialist." in alert.message
    assert follow_ups == []  # discuss is not interrupt or withhold: no repeat booked here


def test_a_single_rule_alert_is_unchanged_and_books_nothing_without_the_setting(lib):
    [alert], follow_ups = alerts_for(lib, "methotrexate", "mcv", 110, repeat_days=None)
    assert alert.message.endswith("-> discuss with specialist. Check B12, folate and TSH.")
    assert "Also breached" not in alert.message and follow_ups == []


def test_the_restart_repeat_interval_is_a_clinic_default_setting(lib):
    assert AlertSettings().restart_repeat_days == 7
    [alert], [repeat] = alerts_for(lib, "ciclosporin", "neutrophils", 1.2, repeat_days=14)
    assert repeat.due == dt.date(2026, 3, 16) and "(14 days, clinic default)" in alert.message


def test_one_courses_overdue_baseline_set_is_one_alert_listing_the_missing_tests():
    due = dt.date(2026, 1, 5)
    items = [Item(1, "baseline", due, "cbc"), Item(2, "baseline", due, "hbv"), Item(3, "baseline", due, "bp"),
             Item(4, "baseline", due, "bp"), Item(5, "lab", due, "cbc cmp", title="Methotrexate monitoring"),
             Item(6, "baseline", due, "cxr", course_id=2, drug="ciclosporin")]
    alerts = overdue_candidates(items, dt.date(2026, 1, 25), 7, None, {1: "Methotrexate", 2: "Ciclosporin"})
    by_key = {a.condition_key: a for a in alerts}
    assert sorted(by_key) == sorted([baseline_overdue_key(1), baseline_overdue_key(2), "overdue:item5"])
    first = by_key["overdue:course1:baseline"]
    assert first.message == "Methotrexate baseline: 4 tests overdue (due 2026-01-05, 20 days): CBC, HBV, BP x2"
    assert first.item_id == 1 and first.course_id == 1
    assert by_key["overdue:course2:baseline"].message.endswith("1 test overdue (due 2026-01-05, 20 days): CXR")
    # within the grace period nothing is overdue yet
    assert overdue_candidates(items, dt.date(2026, 1, 10), 7) == []
