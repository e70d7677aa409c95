"""Two results of one test on one day during a course: the threshold rules read the worst of the latest day,
never whichever was entered last (neutrophils 0.8 then 3 the same day on upadacitinib is still "interrupt"),
as the gates do (core/gates.py read_day). Core on plain data, the CLI, and the whole-clinic prefilter (SQL)."""

from __future__ import annotations

import datetime as dt

import pytest
from freezegun import freeze_time
from sqlmodel import Session, select

from tests.core_support import Result
from tests.test_lab_import import methotrexate_patient, oru
from tracker.core.alerts import AlertSettings
from tracker.core.algorithm import Algorithm
from tracker.core.chart import Chart, ChartCourse, build_results
from tracker.core.review import review
from tracker.db.tables import Patient
from tracker.protocol_files import load_library

D = dt.date
START = D(2026, 9, 1)
DAY = D(2026, 10, 20)
NOTE = "conflicting results, the worst counts"


@pytest.fixture(scope="module")
def lib():
    return load_library()


def _review(lib, drug, rows, *, sex="m", dob=D(1970, 1, 1), start=START, today=DAY):
    course = ChartCourse(7, 1, drug, "active", start, lib.get(drug))
    chart = Chart(1, "P1", sex, "no", dob, courses=(course,), results=build_results(rows))
    return review(chart, today, AlertSettings(restart_repeat_days=7), Algorithm(), lib.vocabulary)


def _thresholds(outcome):
    return [a for a in outcome.alerts if a.kind == "threshold"]


def neutrophils(id, value, on=DAY):
    return Result(id, "neutrophils", value, on, unit="10^9/L")


@pytest.mark.parametrize("order", [(0.8, 3), (3, 0.8)])
def test_a_breach_counts_whichever_of_a_days_results_was_entered_last(lib, order):
    rows = [neutrophils(1, order[0]), neutrophils(2, order[1])]
    [alert] = _thresholds(_review(lib, "upadacitinib", rows))
    low = 1 if order[0] == 0.8 else 2
    assert alert.condition_key == f"threshold:course7:neutrophils<1:result{low}" and alert.result_id == low
    assert alert.severity == "critical" and alert.value == "0.8 10^9/L"
    assert alert.message.startswith(
        f"Upadacitinib: neutrophils 0.8 10^9/L on {DAY} (same day also: neutrophils 3 10^9/L; {NOTE}): "
        "< 1 10^9/L -> interrupt")


def test_both_orders_give_the_same_alert_text_and_one_repeat(lib):
    outcomes = [_review(lib, "upadacitinib", [neutrophils(1, a), neutrophils(2, b)]) for a, b in ((0.8, 3), (3, 0.8))]
    [first], [second] = map(_thresholds, outcomes)
    assert first.message == second.message
    for outcome in outcomes:
        [(_, repeat)] = outcome.follow_ups
        assert repeat.due == DAY + dt.timedelta(days=7) and repeat.tests == ("neutrophils",)


def test_the_deepest_of_a_days_breaching_results_counts_and_an_earlier_day_does_not(lib):
    rows = [neutrophils(1, 0.2, DAY - dt.timedelta(days=3)), neutrophils(2, 0.9), neutrophils(3, 0.6),
            neutrophils(4, 2.5)]
    [alert] = _thresholds(_review(lib, "upadacitinib", rows))
    assert alert.result_id == 3 and alert.value == "0.6 10^9/L"  # the 0.2 of an earlier day is not read
    assert f"(same day also: neutrophils 0.9 10^9/L, 2.5 10^9/L; {NOTE})" in alert.message
    # A later normal day supersedes the day before, as before.
    assert _thresholds(_review(lib, "upadacitinib", [*rows, neutrophils(5, 3, DAY + dt.timedelta(days=1))],
                               today=DAY + dt.timedelta(days=1))) == []


def test_equal_values_the_same_day_are_one_alert_without_a_note(lib):
    [alert] = _thresholds(_review(lib, "upadacitinib", [neutrophils(1, 0.8), neutrophils(2, 0.8)]))
    assert alert.result_id == 1 and "same day also" not in alert.message


def test_a_more_severe_rule_breached_by_one_result_leads_and_names_the_others(lib):
    # Methotrexate ALT: > 100 U/L (withhold, critical) and x ULN rules; 130 and 45 the same day, either order.
    for values in ((130, 45), (45, 130)):
        rows = [Result(i, "alt", v, DAY, unit="U/L", ref_high=40) for i, v in enumerate(values, 1)]
        [alert] = _thresholds(_review(lib, "methotrexate", rows))
        assert alert.limit_text == "> 100 U/L" and alert.value.startswith("130 U/L")
        assert f"(same day also: alt 45 U/L; {NOTE})" in alert.message
        assert "Also breached: > 3 x ULN (120 U/L) -> repeat to confirm, then stop" in alert.message


def test_a_confirming_repeat_reads_the_worst_of_the_earlier_day(lib):
    # Methotrexate "stop if confirmed ALT > 3 x ULN": the earlier day held 150 (entered first) and 30.
    before = DAY - dt.timedelta(days=7)
    rows = [Result(1, "alt", 150, before, unit="U/L", ref_high=40), Result(2, "alt", 30, before, unit="U/L", ref_high=40),
            Result(3, "alt", 130, DAY, unit="U/L", ref_high=40)]
    [alert] = _thresholds(_review(lib, "methotrexate", rows))
    assert f"> 3 x ULN (120 U/L) -> stop (confirmed: also {before})" in alert.message


def test_a_still_low_egfr_repeat_reads_the_worst_of_the_earlier_day(lib):
    # Methotrexate: eGFR < 60 repeated still < 60 and > 30% below the pre-start value: withhold and discuss.
    first = DAY - dt.timedelta(days=7)
    rows = [Result(1, "egfr", 90, START - dt.timedelta(days=10)), Result(2, "egfr", 50, first),
            Result(3, "egfr", 75, first), Result(4, "egfr", 55, DAY)]
    alerts = _thresholds(_review(lib, "methotrexate", rows))
    assert [a.severity for a in alerts] == ["critical"] and "withhold and discuss" in alerts[0].message


def test_a_change_from_baseline_reads_every_result_of_the_day(lib):
    # Ciclosporin: creatinine > 30% above the mean of the two pre-start readings.
    rows = [Result(1, "creatinine", 80, START - dt.timedelta(days=20)), Result(2, "creatinine", 80, START - dt.timedelta(days=5)),
            Result(3, "creatinine", 120, DAY, unit="umol/L"), Result(4, "creatinine", 85, DAY, unit="umol/L")]
    alerts = [a for a in _thresholds(_review(lib, "ciclosporin", rows)) if "creatinine" in a.message]
    assert [a.result_id for a in alerts] == [3] and "+50%" in alerts[0].message
    assert f"(same day also: creatinine 85 umol/L; {NOTE})" in alerts[0].message


def test_a_clearance_estimated_from_creatinine_reads_every_creatinine_of_the_day(lib):
    # Baricitinib doses by CrCl (Cockcroft-Gault from creatinine when none is recorded): a low estimate from
    # the first creatinine of the day counts when a normal one was entered after it.
    rows = [Result(1, "weight", 70, D(2026, 1, 1)), Result(2, "creatinine", 400, DAY, unit="umol/L"),
            Result(3, "creatinine", 70, DAY, unit="umol/L")]
    alerts = [a for a in _thresholds(_review(lib, "baricitinib", rows, dob=D(1950, 1, 1))) if "crcl" in a.condition_key]
    assert alerts and all(a.result_id == 2 for a in alerts)
    assert "Cockcroft-Gault from creatinine 400 umol/L" in alerts[0].message


# --- through the CLI -------------------------------------------------------------------------------------


def _upadacitinib_patient(tracker, mrn):
    tracker(f"patient add {mrn} --name 'U {mrn}' --dob 1970-01-01 --sex m --childbearing-potential no")
    tracker(f"therapy start {mrn} upadacitinib --on 2026-09-01 --override-gate 'bloods drawn'")


def _threshold_alerts(tracker, mrn=None):
    return [a for a in tracker.json("alerts") if a["kind"] == "threshold" and mrn in (None, a["mrn"])]


@freeze_time("2026-10-21")
def test_neutrophils_0_8_and_3_the_same_day_give_the_same_interrupt_alert_in_either_order(tracker):
    messages = {}
    for mrn, values in (("U1", ("0.8", "3")), ("U2", ("3", "0.8"))):
        _upadacitinib_patient(tracker, mrn)
        for value in values:
            tracker(f"result add {mrn} neutrophils {value} --on 2026-10-20")
        [alert] = _threshold_alerts(tracker, mrn)
        assert alert["severity"] == "critical" and alert["value"] == "0.8 10^9/L"
        assert "neutrophils 0.8 10^9/L on 2026-10-20 (same day also: neutrophils 3 10^9/L; " \
               f"{NOTE}): < 1 10^9/L -> interrupt" in alert["message"]
        messages[mrn] = alert["message"]
    assert messages["U1"] == messages["U2"]
    # The nightly (the whole clinic, through the SQL prefilter) keeps both as they are.
    before = {a["id"]: a["message"] for a in _threshold_alerts(tracker)}
    tracker("nightly")
    assert {a["id"]: a["message"] for a in _threshold_alerts(tracker)} == before


@freeze_time("2026-10-21")
def test_a_laboratory_correction_replaces_the_breaching_value_it_is_not_a_second_result(tracker, tmp_path):
    # ALT 30 by hand, then the laboratory's ALT 130 the same day (methotrexate: > 100 U/L withhold).
    methotrexate_patient(tracker)
    tracker("result add M1 alt 30 --on 2026-01-19")
    first, correction = tmp_path / "oru1.hl7", tmp_path / "oru2.hl7"
    first.write_text(oru(alt="130"))
    correction.write_text(oru(id="MSG00002", obx=["OBR|1|ORD2|FIL2|24323-8^CMP^LN|||20260119083000",
                                                  "OBX|1|NM|1742-6^ALT^LN||35|U/L|0-40|N|||C|||20260119083000"]))
    with freeze_time("2026-01-20"):
        tracker(["result", "import", str(first)])
        [alert] = _threshold_alerts(tracker)
        assert alert["limit"] == "> 100 U/L" and f"(same day also: alt 30 U/L; {NOTE})" in alert["message"]
        assert "1 corrected" in tracker(["result", "import", str(correction)]).stdout
        assert sorted(r["value"] for r in tracker.json(["result", "list", "M1", "--test", "alt"])) == [30, 35]
        [waiting] = _threshold_alerts(tracker)  # 130 is gone: nothing breaches; a person acknowledges
        assert (waiting["id"], waiting["state"]) == (alert["id"], "cleared, awaiting acknowledgement")


@freeze_time("2026-10-21")
def test_a_normal_result_entered_after_a_breach_the_same_day_adds_its_value_to_the_open_alert(tracker):
    _upadacitinib_patient(tracker, "U1")
    tracker("result add U1 neutrophils 0.8 --on 2026-10-20")
    [alert] = _threshold_alerts(tracker)
    assert "same day also" not in alert["message"]
    tracker("result add U1 neutrophils 3 --on 2026-10-20")
    [after] = _threshold_alerts(tracker)
    assert after["id"] == alert["id"] and after["state"] == "open"
    assert f"(same day also: neutrophils 3 10^9/L; {NOTE})" in after["message"]


@freeze_time("2026-10-21")
def test_the_prefilter_admits_a_patient_whose_breach_was_not_the_last_entered(tracker, db_url):
    from tracker.db.charts import ProtocolsOfCourses, breaching_patients, versions_in_use
    from tracker.db.engine import open_engine

    for mrn, values in (("U1", ("0.8", "3")), ("U2", ("3", "0.8")), ("U3", ("3", "2.5"))):
        _upadacitinib_patient(tracker, mrn)
        for value in values:
            tracker(f"result add {mrn} neutrophils {value} --on 2026-10-20")
    # A change from baseline (ciclosporin: creatinine > 30% above the mean of two pre-start readings): 82
    # then 70 the same day, below the ULN (the relative rules' own SQL).
    for mrn, values in (("C1", ("82", "70")), ("C2", ("70", "72"))):
        tracker(f"patient add {mrn} --name 'C {mrn}' --dob 1970-01-01 --sex m --childbearing-potential no")
        for on in ("2026-08-10", "2026-08-25"):
            tracker(f"result add {mrn} creatinine 60 --on {on}")
        tracker(f"therapy start {mrn} ciclosporin --on 2026-09-01 --override-gate 'bloods drawn'")
        for value in values:
            tracker(f"result add {mrn} creatinine {value} --on 2026-10-20")
    assert any("+37%" in a["message"] for a in _threshold_alerts(tracker, "C1"))
    library = load_library()
    engine = open_engine(db_url)
    with Session(engine) as session:
        ids = dict(session.exec(select(Patient.mrn, Patient.id)).all())
        chosen = breaching_patients(session, versions_in_use(session), ProtocolsOfCourses(session, library),
                                    library.vocabulary)
    engine.dispose()
    assert {ids["U1"], ids["U2"], ids["C1"]} <= chosen and not {ids["U3"], ids["C2"]} & chosen


@freeze_time("2026-12-02")
def test_a_rule_newly_breached_by_a_same_day_result_reaches_the_stored_alert(tracker):
    # Session 20's second reading: ALT 110 with ULN 40, then ALT 110 with ULN 30 the same day (3.7 x ULN):
    # the stored alert kept "Also breached: > 1 x ULN (40 U/L)" (its same-day note, empty both times, did not
    # change) while a what-if and a fresh evaluation named the 3 x ULN rule.
    tracker("patient add M1 --name 'M One' --dob 1970-01-01 --sex m --childbearing-potential no")
    tracker("therapy start M1 methotrexate --on 2026-09-01 --override-gate 'bloods drawn'")
    tracker("result add M1 alt 110 --on 2026-12-01 --ref-high 40")
    tracker("result add M1 alt 110 --on 2026-12-01 --ref-high 30")
    [stored] = _threshold_alerts(tracker, "M1")
    [what_if] = [a for a in tracker.json("alerts --as-of 2026-12-02") if a["kind"] == "threshold"]
    assert "3 x ULN" in what_if["message"]
    assert stored["message"] == what_if["message"]  # before: the stored text lacked the 3 x ULN rule
