"""Issue 14 item 2 in the pure core: renal decline is never silent. A still-low repeat after "eGFR < 60,
repeat in 1 week" withholds (BSR); an eGFR < 30 floor (clinic default) alerts at once on methotrexate,
mycophenolate and azathioprine; ciclosporin without pre-start renal values has absolute rules; baricitinib
and apremilast read a Cockcroft-Gault estimate, else eGFR, when no creatinine clearance is on record.
Plain dataclasses, the built-in protocols."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.core_support import Result
from tracker.core import review as review_module
from tracker.core.algorithm import Algorithm
from tracker.core.chart import Chart, ChartCourse, build_results
from tracker.core.protocol import Threshold
from tracker.core.renal import clearance_result, clearance_weight, cockcroft_gault, rule_applies
from tracker.core.review import review
from tracker.core.settings import AlertSettings
from tracker.protocol_files import load_library

D = dt.date
START = D(2026, 1, 5)


@pytest.fixture(scope="module")
def library():
    return load_library()


def _review(library, drug, results, sex="m", dob=D(1956, 1, 1), today=D(2026, 4, 1)):
    protocol = library.get(drug)
    course = ChartCourse(1, 1, protocol.id, "active", START, protocol)
    rows = [Result(i + 1, test, value, day) for i, (test, value, day) in enumerate(results)]
    chart = Chart(1, "P1", sex, dob=dob, courses=(course,), results=build_results(rows))
    return review(chart, today, AlertSettings(), Algorithm(), library.vocabulary)


def _threshold_alerts(rev, test=None):
    return [a for a in rev.alerts if a.kind == "threshold" and (test is None or a.condition_key.split(":")[2].startswith(test))]


@pytest.mark.parametrize("drug", ["methotrexate", "mycophenolate", "azathioprine"])
def test_still_low_repeat_more_than_30_pct_below_baseline_withholds(library, drug):
    results = [("egfr", 80, START - dt.timedelta(days=7)), ("egfr", 50, D(2026, 3, 2)), ("egfr", 48, D(2026, 3, 9))]
    rev = _review(library, drug, results)
    [alert] = _threshold_alerts(rev, "egfr")
    assert alert.severity == "critical" and "withhold and discuss" in alert.message
    assert "egfr-30%!repeat<60" in alert.condition_key and "still < 60" in alert.message
    assert [f.tests for _, f in rev.follow_ups] == [("egfr",)]  # and the repeat rule keeps booking repeats


def test_a_same_day_second_low_egfr_is_not_the_repeat(library):
    """A8: "repeat in 1 week; if still ..." asks for another occasion; a second result the same day (a
    duplicate, or a draw the day cannot tell from one) neither withholds nor stops the repeat being asked."""
    day = D(2026, 3, 2)
    rev = _review(library, "methotrexate", [("egfr", 80, START - dt.timedelta(days=7)), ("egfr", 50, day),
                                            ("egfr", 48, day)])
    assert _threshold_alerts(rev, "egfr") == []
    assert [f.due for _, f in rev.follow_ups] == [D(2026, 3, 9)]


@pytest.mark.parametrize("drug", ["methotrexate", "mycophenolate", "azathioprine"])
def test_first_low_egfr_only_books_the_repeat(library, drug):
    rev = _review(library, drug, [("egfr", 80, START - dt.timedelta(days=7)), ("egfr", 50, D(2026, 3, 2))])
    assert _threshold_alerts(rev, "egfr") == []
    assert [f.due for _, f in rev.follow_ups] == [D(2026, 3, 9)]


def test_still_low_within_30_pct_of_baseline_books_a_repeat_only(library):
    rev = _review(library, "methotrexate", [("egfr", 62, START - dt.timedelta(days=7)), ("egfr", 55, D(2026, 3, 2)),
                                             ("egfr", 54, D(2026, 3, 9))])
    assert _threshold_alerts(rev, "egfr") == [] and len(rev.follow_ups) == 1


def test_still_low_repeat_without_a_baseline_asks_for_a_discussion_marked_clinic_default(library):
    rev = _review(library, "methotrexate", [("egfr", 45, D(2026, 3, 2)), ("egfr", 44, D(2026, 3, 9))])
    [alert] = _threshold_alerts(rev, "egfr")
    assert alert.severity == "warning" and "discuss with specialist" in alert.message
    assert "clinic default" in alert.message and "!nobaseline" in alert.condition_key


@pytest.mark.parametrize("drug", ["methotrexate", "mycophenolate", "azathioprine"])
def test_egfr_floor_alerts_at_once_as_a_clinic_default(library, drug):
    """25 then 24 used to book repeats for ever; now the first result below the floor withholds."""
    rev = _review(library, drug, [("egfr", 25, D(2026, 3, 2))])
    [alert] = _threshold_alerts(rev, "egfr")
    assert alert.severity == "critical" and "egfr<30" in alert.condition_key
    assert "< 30 mL/min/1.73m2 (clinic default) -> withhold and discuss" in alert.message
    assert alert.limit_text == "< 30 mL/min/1.73m2 (clinic default)"


def test_ciclosporin_without_pre_start_values_has_absolute_rules(library):
    """eGFR 40 with creatinine 250 at week 2 and no pre-start renal values: used to raise nothing."""
    week2 = START + dt.timedelta(weeks=2)
    rev = _review(library, "ciclosporin", [("egfr", 40, week2), ("creatinine", 250, week2)], today=week2)
    keys = sorted(a.condition_key.split(":")[2] for a in _threshold_alerts(rev))
    assert keys == ["creatinine>1xULN!nobaseline", "egfr<60!nobaseline"]
    egfr = next(a for a in _threshold_alerts(rev, "egfr"))
    assert egfr.severity == "critical" and "withhold and discuss" in egfr.message


def test_ciclosporin_with_a_baseline_judges_by_change_only(library):
    before = [("egfr", 45, START - dt.timedelta(days=14)), ("egfr", 47, START - dt.timedelta(days=7)),
              ("creatinine", 140, START - dt.timedelta(days=14)), ("creatinine", 140, START - dt.timedelta(days=7))]
    week2 = START + dt.timedelta(weeks=2)
    rev = _review(library, "ciclosporin", [*before, ("egfr", 44, week2), ("creatinine", 142, week2)], today=week2)
    assert _threshold_alerts(rev) == []


def test_cockcroft_gault_formula():
    # (140 - 70) x 60 / (72 x 1.0 mg/dL) = 58.33; women x 0.85
    assert cockcroft_gault(88.4, 70, 60, female=False) == pytest.approx(58.333, abs=1e-3)
    assert cockcroft_gault(88.4, 70, 60, female=True) == pytest.approx(58.333 * 0.85, abs=1e-3)
    assert cockcroft_gault(0, 70, 60, female=True) is None


def test_baricitinib_reads_a_cockcroft_gault_estimate_when_no_clearance_is_on_record(library):
    """80-year-old woman, 50 kg, creatinine 120 umol/L (1.36 mg/dL): CrCl = 60 x 50 / (72 x 1.357) x 0.85
    = 26.1 mL/min -> not recommended (< 30), with what it was estimated from."""
    day = D(2026, 3, 2)
    rev = _review(library, "baricitinib", [("weight", 50, D(2026, 1, 1)), ("creatinine", 120, day), ("egfr", 70, day)],
                  sex="f", dob=D(1946, 1, 1))
    keys = sorted(a.condition_key.split(":")[2] for a in _threshold_alerts(rev))
    assert keys == ["crcl<30"]  # one result, one problem: the < 60 rule is named in it
    assert "Also breached: < 60" in _threshold_alerts(rev)[0].message
    stop = next(a for a in _threshold_alerts(rev) if "crcl<30" in a.condition_key)
    assert stop.severity == "critical" and "26.1 mL/min" in stop.message
    assert "estimated: Cockcroft-Gault from creatinine 120 umol/L" in stop.message and "age 80" in stop.message
    assert stop.result_id == 2  # the creatinine result it rests on


def test_baricitinib_reads_the_weight_on_the_patient_record_without_a_weight_result(library):
    """Found exploring (A3): the estimate read weight RESULTS only, so `patient add --weight-kg 50` with a
    creatinine of 120 at 80 gave no estimate and a CrCl of 26.1 went silent. The record's weight is undated:
    a weight result, when there is one, is read instead."""
    protocol = library.get("baricitinib")
    course = ChartCourse(1, 1, protocol.id, "active", START, protocol)
    creatinine = Result(1, "creatinine", 120, D(2026, 3, 2))
    chart = Chart(1, "P1", "f", dob=D(1946, 1, 1), courses=(course,), results=build_results([creatinine]),
                  weight_kg=50)
    rev = review(chart, D(2026, 4, 1), AlertSettings(), Algorithm(), library.vocabulary)
    [stop] = _threshold_alerts(rev)
    assert "crcl<30" in stop.condition_key and "26.1 mL/min" in stop.message
    assert "weight 50 kg (patient record)" in stop.message
    heavier = Result(2, "weight", 80, D(2025, 6, 1))  # a weight result, even an older one, is read instead
    chart = Chart(1, "P1", "f", dob=D(1946, 1, 1), courses=(course,),
                  results=build_results([creatinine, heavier]), weight_kg=50)
    assert clearance_weight(chart, D(2026, 3, 2)) == (80, "2025-06-01")
    assert clearance_result(chart, protocol).value_num == 41.7  # 60 x 80 / (72 x 1.357) x 0.85


def test_baricitinib_falls_back_to_egfr_without_weight(library):
    """eGFR 25 on baricitinib used to be silent (crcl is never scheduled, labs do not report it)."""
    rev = _review(library, "baricitinib", [("egfr", 25, D(2026, 3, 2))])
    keys = sorted(a.condition_key.split(":")[2] for a in _threshold_alerts(rev))
    assert keys == ["crcl<30"]
    assert all("eGFR 25 mL/min/1.73m2 of 2026-03-02 standing in" in a.message for a in _threshold_alerts(rev))


def test_apremilast_falls_back_too(library):
    rev = _review(library, "apremilast", [("egfr", 25, D(2026, 3, 2))])
    [alert] = _threshold_alerts(rev)
    assert "crcl<30" in alert.condition_key and "standing in" in alert.message


def test_a_recorded_clearance_wins_unless_older_than_the_renal_results(library):
    protocol = library.get("baricitinib")
    recorded = Result(1, "crcl", 70, D(2026, 3, 2))
    egfr = Result(2, "egfr", 25, D(2026, 3, 1))
    chart = Chart(1, results=build_results([recorded, egfr]))
    assert clearance_result(chart, protocol) is recorded
    newer = Result(3, "egfr", 25, D(2026, 3, 9))
    chart = Chart(1, results=build_results([recorded, egfr, newer]))
    assert clearance_result(chart, protocol).id == 3


def test_clearance_protocols_read_creatinine_egfr_and_weight(library):
    assert {"creatinine", "egfr", "weight"} <= review_module.tests_read([library.get("baricitinib")], library.vocabulary)


def test_rule_applies_to_repeats_and_missing_baselines_only():
    still = Threshold(analyte="egfr", fall_pct=30, after_repeat_below=60, action="withhold", clinic_default=True)
    nobase = Threshold(analyte="egfr", below=60, without_baseline=True, action="withhold", clinic_default=True)
    low, prior = Result(2, "egfr", 50, D(2026, 3, 9)), Result(1, "egfr", 55, D(2026, 3, 2))
    assert rule_applies(still, low, prior, 80) and not rule_applies(still, low, None, 80)
    assert not rule_applies(still, low, Result(1, "egfr", 65, D(2026, 3, 2)), 80)
    assert rule_applies(nobase, low, prior, None) and not rule_applies(nobase, low, prior, 80)
    assert still.rule_id == "egfr-30%!repeat<60" and nobase.rule_id == "egfr<60!nobaseline"
    with pytest.raises(ValueError, match="without_baseline"):
        Threshold(analyte="egfr", fall_pct=30, without_baseline=True, action="withhold", clinic_default=True)
