"""Baseline gates through the CLI on a real database (issue 13): gates read the value, results expire,
spacing, childbearing potential, initiation limits only at a start; every refusal is one line with exit
code 5 and leaves the database exactly as it was."""

from __future__ import annotations

import json

from freezegun import freeze_time

from tests.conftest import dump_database


def refused(tracker, command: str) -> str:
    """Run a start that must be refused: exit 5, one line, nothing written. Returns the line."""
    before = dump_database(tracker.db)
    result = tracker(command, ok=False)
    assert result.exit_code == 5, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: drug: "), result.stderr
    assert dump_database(tracker.db) == before
    return result.stderr


def jak_ready(tracker, mrn: str, on: str, tb="negative", hbv="negative", hcv="negative") -> None:
    for test, value in [("tb", tb), ("hbv", hbv), ("hcv", hcv), ("lymphocytes", "1.8"), ("neutrophils", "3.1"),
                        ("hb", "135"), ("platelets", "250")]:
        tracker(f"result add {mrn} {test} {value} --on {on}")


@freeze_time("2026-03-02")
def test_mycophenolate_needs_two_pregnancy_tests_8_to_10_days_apart(tracker):
    tracker("patient add P1 --name 'Eva Moss' --dob 1992-02-01 --sex f --childbearing-potential")
    tracker("result add P1 pregnancy negative --on 2026-02-20")
    line = refused(tracker, "therapy start P1 mycophenolate --on 2026-03-02")
    assert "pregnancy negative on 2026-02-20 is more than 3 days before the start on 2026-03-02" in line
    tracker("patient add P2 --name 'Ann Moss' --dob 1992-02-01 --sex f --childbearing-potential")
    tracker("result add P2 pregnancy negative --on 2026-02-27")
    tracker("result add P2 pregnancy negative --on 2026-02-28")
    line = refused(tracker, "therapy start P2 mycophenolate --on 2026-03-02")
    assert "on 2026-02-27 and 2026-02-28 are 1 day apart, need 8 days to 10 days" in line
    tracker("result add P2 pregnancy negative --on 2026-02-19")
    tracker("therapy start P2 mycophenolate --on 2026-03-02")  # 2026-02-19 and 2026-02-28: 9 days apart
    baseline = [r for r in tracker.json("calendar P2") if r["tests"] == ["pregnancy"]]
    assert [(r["status"], r["done_on"]) for r in baseline] == [("done", "2026-02-28")]


@freeze_time("2026-03-02")
def test_two_positive_pregnancy_tests_refuse_mycophenolate(tracker):
    tracker("patient add P1 --name 'Eva Moss' --dob 1992-02-01 --sex f --childbearing-potential yes")
    tracker("result add P1 pregnancy positive --on 2026-02-20")
    tracker("result add P1 pregnancy positive --on 2026-03-01")
    line = refused(tracker, "therapy start P1 mycophenolate --on 2026-03-02")
    assert "Mycophenolate mofetil cannot start: pregnancy positive on 2026-03-01 does not pass" in line
    assert "repeat the test or refer" in line


@freeze_time("2026-03-02")
def test_jak_inhibitor_is_refused_on_a_low_neutrophil_count_even_with_an_override(tracker):
    tracker("patient add P2 --name 'Raj Bose' --dob 1970-06-01 --sex m")
    for test, value in [("tb", "negative"), ("hbv", "negative"), ("hcv", "negative"), ("neutrophils", "0.8"),
                        ("lymphocytes", "1.5"), ("hb", "130")]:
        tracker(f"result add P2 {test} {value} --on 2026-02-25")
    line = refused(tracker, "therapy start P2 upadacitinib --on 2026-03-02 --override-gate 'missing CBC parts'")
    assert "upadacitinib" in line and "neutrophils 0.8 10^9/L on 2026-02-25" in line and "< 1" in line
    tracker("result add P2 neutrophils 2.4 --on 2026-03-01")
    tracker("therapy start P2 upadacitinib --on 2026-03-02")


@freeze_time("2026-03-02")
def test_positive_tb_and_hepatitis_screens_refuse_a_jak_start(tracker):
    tracker("patient add P1 --name 'Raj Bose' --dob 1970-06-01 --sex m")
    jak_ready(tracker, "P1", "2026-02-25", tb="positive", hbv="positive", hcv="positive")
    line = refused(tracker, "therapy start P1 upadacitinib --on 2026-03-02")
    assert "drug: 'upadacitinib': Upadacitinib cannot start: tb positive on 2026-02-25 does not pass" in line
    assert "hbv positive on 2026-02-25" in line and "hcv positive on 2026-02-25" in line


@freeze_time("2026-03-02")
def test_an_indeterminate_igra_asks_to_repeat_or_refer(tracker):
    tracker("patient add P1 --name 'Raj Bose' --dob 1970-06-01 --sex m")
    jak_ready(tracker, "P1", "2026-02-25", tb="indeterminate", hbv="immune")
    line = refused(tracker, "therapy start P1 baricitinib --on 2026-03-02")
    assert "tb indeterminate on 2026-02-25: repeat or refer" in line and "hbv" not in line


@freeze_time("2026-03-02")
def test_a_2019_tb_screen_and_cbc_are_too_old_for_a_2026_start(tracker):
    tracker("patient add P1 --name 'Raj Bose' --dob 1970-06-01 --sex m")
    jak_ready(tracker, "P1", "2019-05-01")
    line = refused(tracker, "therapy start P1 abrocitinib --on 2026-03-02")
    assert "tb negative on 2019-05-01 is older than 3 months (clinic default)" in line
    assert "platelets 250 10^9/L on 2019-05-01 is older than 4 weeks (clinic default)" in line
    jak_ready(tracker, "P1", "2026-02-25")
    tracker("therapy start P1 abrocitinib --on 2026-03-02")


@freeze_time("2026-03-02")
def test_one_mcv_does_not_satisfy_a_jak_cbc_gate(tracker):
    tracker("patient add P1 --name 'Raj Bose' --dob 1970-06-01 --sex m")
    for test in ("tb", "hbv", "hcv"):
        tracker(f"result add P1 {test} negative --on 2026-02-25")
    tracker("result add P1 mcv 90 --on 2026-02-25")
    line = refused(tracker, "therapy start P1 upadacitinib --on 2026-03-02")
    assert "cbc incomplete for the initiation limits: no neutrophils, lymphocytes, hb result" in line


def test_an_override_keeps_a_critical_gate_alert_until_a_passing_result_and_a_positive_alerts(tracker):
    with freeze_time("2026-03-02"):
        tracker("patient add P1 --name 'Raj Bose' --dob 1970-06-01 --sex m")
        jak_ready(tracker, "P1", "2026-02-25")
        tracker("result add P1 tb indeterminate --on 2026-02-26")
        out = tracker("therapy start P1 baricitinib --on 2026-03-02 --override-gate 'IGRA repeat pending'")
        assert "gate overridden (IGRA repeat pending): tb indeterminate on 2026-02-26: repeat or refer" in out.stderr
        [gate] = [a for a in tracker.json("alerts") if a["kind"] == "gate"]
        assert gate["severity"] == "critical" and "tb" in gate["message"]
        [start] = [json.loads(e[8]) for e in dump_database(tracker.db)["audit_event"] if e[3] == "therapy.start"]
        assert start["overridden_gates"] == ["tb indeterminate on 2026-02-26: repeat or refer"]
        assert start["gate_override"] == "IGRA repeat pending"
    with freeze_time("2026-03-12"):
        tracker("result add P1 tb positive --on 2026-03-11")
        # One problem, one live alert: the positive is the gate's alert now, naming it.
        [live] = [a for a in tracker.json("alerts") if a["kind"] == "gate"]
        assert live["id"] != gate["id"] and live["status"] == "open"  # news: a new alert, the pending one resolved
        assert "tb positive on 2026-03-11 does not pass (passes: negative); during treatment: review whether " \
               "to continue" in live["message"] and "indeterminate" not in live["message"]
    with freeze_time("2026-03-20"):
        tracker("result add P1 tb negative --on 2026-03-19")
        assert [a for a in tracker.json("alerts") if a["kind"] == "gate"] == []
        resolved = {a["id"]: a for a in tracker.json("alerts --all")}
        assert resolved[gate["id"]]["status"] == "resolved"


def test_a_positive_pregnancy_test_on_methotrexate_is_a_critical_alert(tracker):
    with freeze_time("2026-03-02"):
        tracker("patient add P1 --name 'Eva Moss' --dob 1992-02-01 --sex f")  # childbearing never asked
        line = refused(tracker, "therapy start P1 methotrexate --on 2026-03-02")
        assert "no pregnancy result on record" in line
        tracker("result add P1 pregnancy negative --on 2026-02-28")
        tracker("therapy start P1 methotrexate --on 2026-03-02")
    with freeze_time("2026-04-10"):
        out = tracker("result add P1 pregnancy positive --on 2026-04-09").stdout
        assert "pregnancy positive on 2026-04-09 during treatment" in out
        [alert] = [a for a in tracker.json("alerts") if a["kind"] == "gate"]
        assert alert["severity"] == "critical" and alert["drug"] == "methotrexate"


@freeze_time("2026-03-02")
def test_childbearing_potential_yes_no_unknown_on_the_patient(tracker, tmp_path):
    tracker("patient add W1 --name 'Eva Moss' --dob 1996-01-01 --sex f")
    tracker("patient add W2 --name 'Ana Old' --dob 1960-01-01 --sex f")
    tracker("patient add W3 --name 'Una No' --dob 1996-01-01 --sex f --childbearing-potential no")
    rows = {p["mrn"]: (p["childbearing"], p["may_conceive"]) for p in tracker.json("patient list")}
    assert rows == {"W1": ("unknown", True), "W2": ("unknown", False), "W3": ("no", False)}
    assert "childbearing potential unknown (counts as yes" in tracker("patient show W1").stdout
    refused(tracker, "therapy start W1 mycophenolate --on 2026-03-02")
    tracker("therapy start W2 mycophenolate --on 2026-03-02")
    tracker("therapy start W3 mycophenolate --on 2026-03-02")
    tracker("patient update W1 --childbearing-potential no")
    tracker("therapy start W1 mycophenolate --on 2026-03-02")
    tracker("patient update W3 --childbearing-potential yes")
    assert tracker.json("patient show W3")["patient"]["childbearing"] == "yes"
    bad = tracker("patient update W3 --childbearing-potential maybe", ok=False)
    assert bad.exit_code == 2 and "maybe" in bad.stderr
    # The ages at which "unknown" counts as yes are a clinic setting.
    config = tmp_path / "clinic.toml"
    config.write_text("[alerts]\nchildbearing_age_to = 25\n")
    tracker("patient add W4 --name 'Ivy Young' --dob 1996-01-01 --sex f")
    assert tracker.json("patient show W4", env={"TRACKER_CONFIG": str(config)})["patient"]["may_conceive"] is False
    tracker("therapy start W4 methotrexate --on 2026-03-02", env={"TRACKER_CONFIG": str(config)})


@freeze_time("2026-03-02")
def test_start_prints_the_alerts_it_raises(tracker):
    tracker("patient add P3 --name 'Lin Wu' --dob 1985-01-01 --sex f")
    tracker("result add P3 tpmt intermediate --on 2026-02-20")
    out = tracker("therapy start P3 azathioprine --on 2026-03-02").stdout
    assert "raised alert #" in out and "tpmt" in out.lower()
    alerts = tracker.json("patient show P3")["alerts"]
    assert [(a["kind"], a["status"], a["severity"], a["drug"]) for a in alerts] == [
        ("threshold", "open", "warning", "azathioprine")]
    assert "Alerts" in tracker("patient show P3").stdout


def test_builtin_ciclosporin_alerts_on_creatinine_35_percent_above_baseline(tracker):
    with freeze_time("2026-01-05"):
        tracker("patient add P4 --name 'Tom Ray' --dob 1975-01-01 --sex m")
        tracker("result add P4 creatinine 80 --on 2026-01-02")
        tracker("therapy start P4 ciclosporin --on 2026-01-05")
    with freeze_time("2026-01-20"):
        out = tracker("result add P4 creatinine 108 --on 2026-01-19").stdout
    assert "creatinine" in out and "30%" in out
    alerts = tracker.json("alerts --as-of 2026-01-20")
    assert any(a["kind"] == "threshold" and a["severity"] == "critical" and "SPS-MMF" in a["sources"]
               for a in alerts)


def test_stopping_a_course_cancels_its_booked_repeat_draws(tracker):
    with freeze_time("2026-01-05"):
        tracker("patient add P5 --name 'Ida Holm' --dob 1975-01-01 --sex f --childbearing-potential no")
        tracker("therapy start P5 methotrexate --on 2026-01-05")
    with freeze_time("2026-01-20"):
        tracker("result add P5 egfr 52 --on 2026-01-19")  # eGFR < 60: the protocol books a repeat in 1 week
        repeat = [r for r in tracker.json("calendar P5") if r["due"] == "2026-01-26"]
        assert repeat and repeat[0]["status"] == "planned"
        tracker("therapy stop P5 methotrexate --on 2026-01-21 --reason 'moved away'")
        after = [r for r in tracker.json("calendar P5 --all") if r["uid"] == repeat[0]["uid"]]
        assert after[0]["status"] == "cancelled" and after[0]["sequence"] > repeat[0]["sequence"]


def test_abrocitinib_platelets_120_at_week_4_raise_no_do_not_give_alert(tracker):
    with freeze_time("2026-03-02"):
        tracker("patient add P1 --name 'Raj Bose' --dob 1970-06-01 --sex m")
        jak_ready(tracker, "P1", "2026-02-25")
        tracker("therapy start P1 abrocitinib --on 2026-03-02")
    with freeze_time("2026-03-31"):
        out = tracker("result add P1 platelets 120 --on 2026-03-30").stdout
        assert "raised" not in out
        assert [a for a in tracker.json("alerts") if a["kind"] == "threshold"] == []
        tracker("result add P1 platelets 40 --on 2026-03-31")
        [alert] = [a for a in tracker.json("alerts") if a["kind"] == "threshold"]
        assert alert["severity"] == "critical" and "discontinue" in alert["message"]
        assert "do not give" not in alert["message"]


@freeze_time("2026-03-02")
def test_a_switch_onto_a_refused_drug_changes_nothing(tracker):
    tracker("patient add P1 --name 'Raj Bose' --dob 1970-06-01 --sex m")
    tracker("therapy start P1 dupilumab --on 2026-01-05")
    jak_ready(tracker, "P1", "2026-02-25", tb="positive")
    line = refused(tracker, "therapy switch P1 dupilumab upadacitinib --on 2026-03-02 "
                            "--reason 'no response'")
    assert line.count("\n") == 1 and "tb positive on 2026-02-25" in line


@freeze_time("2026-03-02")
def test_the_refusal_names_each_code_to_record_a_panel_by_its_analytes(tracker):
    # The hint named only the first unmet test, and for an incomplete CBC suggested `result add ... cbc VALUE`
    # (a panel has no single value): it now lists every code a result would meet, the CBC's by its analytes.
    tracker("patient add J1 --name 'Jo Kay' --dob 1980-01-01 --sex m")
    tracker("result add J1 tb negative --on 2026-02-25")
    tracker("result add J1 hb 135 --on 2026-02-25")
    line = refused(tracker, "therapy start J1 upadacitinib --on 2026-03-02")
    assert ("record each of hbv, hcv, neutrophils, lymphocytes with `tracker result add J1 TEST VALUE --on DATE`, "
            "or give --override-gate REASON)") in line
    tracker("result add J1 hbv negative --on 2026-02-25")
    tracker("result add J1 hcv negative --on 2026-02-25")
    tracker("result add J1 neutrophils 3.1 --on 2026-02-25")
    line = refused(tracker, "therapy start J1 upadacitinib --on 2026-03-02")
    assert "(record it with `tracker result add J1 lymphocytes VALUE --on DATE`, or give" in line


def _alerts_of(tracker, mrn: str, kind: str = "gate") -> list[dict]:
    return [a for a in tracker.json(f"alerts --mrn {mrn} --all") if a["kind"] == kind]


def _live_of(tracker, mrn: str, kind: str = "gate") -> list[dict]:
    return [a for a in _alerts_of(tracker, mrn, kind) if a["status"] != "resolved"]


def _on_upadacitinib(tracker, mrn: str, *, screened_on: str, start: str) -> None:
    """A patient screened (negative TB and hepatitis, a normal CBC) and started on upadacitinib."""
    with freeze_time(start):
        tracker(f"patient add {mrn} --name 'J one' --dob 1970-01-01 --sex m --childbearing-potential no")
        jak_ready(tracker, mrn, screened_on)
        tracker(f"therapy start {mrn} upadacitinib --on {start}")


def test_an_overridden_abrocitinib_cbc_gate_stays_open_on_platelets_below_the_initiation_limit(tracker):
    # A2: a pre-start CBC with platelets 120 (a normal start refuses them) closed the override alert.
    with freeze_time("2026-11-05"):
        tracker("patient add L2 --name 'L two' --dob 1970-01-01 --sex m --childbearing-potential no")
        for value in ("tb negative", "hbv negative", "hcv negative"):
            tracker(f"result add L2 {value} --on 2026-11-01")
        tracker("therapy start L2 abrocitinib --on 2026-11-05 --override-gate 'bloods drawn, results pending'")
    with freeze_time("2026-11-06"):
        for value in ("wbc 6", "neutrophils 3", "lymphocytes 1.5", "platelets 120", "hb 140"):
            tracker(f"result add L2 {value} --on 2026-11-04")
        tracker("evaluate")
        [gate] = _live_of(tracker, "L2")
        assert gate["status"] == "open" and "platelets 120 10^9/L on 2026-11-04 (< 150 10^9/L)" in gate["message"]
    with freeze_time("2026-11-13"):
        for value in ("wbc 6", "neutrophils 3", "lymphocytes 1.5", "platelets 190", "hb 140"):
            tracker(f"result add L2 {value} --on 2026-11-12")
        assert _live_of(tracker, "L2") == [] and _alerts_of(tracker, "L2")


def test_an_absent_tpmt_after_an_azathioprine_start_is_a_critical_alert(tracker):
    # A1: recorded after an overridden start it closed the gate alert; after a passed gate it raised nothing.
    with freeze_time("2026-11-05"):
        tracker("patient add T1 --name 'T one' --dob 1970-01-01 --sex m --childbearing-potential no")
        tracker("therapy start T1 azathioprine --on 2026-11-05 --override-gate 'TPMT sent, urgent start'")
        tracker("patient add T3 --name 'T three' --dob 1970-01-01 --sex m --childbearing-potential no")
        tracker("result add T3 tpmt normal --on 2026-10-01")
        tracker("therapy start T3 azathioprine --on 2026-11-05")
    with freeze_time("2026-11-21"):
        tracker("result add T1 tpmt absent --on 2026-11-20")
        tracker("result add T3 tpmt absent --on 2026-11-20")
        tracker("evaluate")
        [gate] = _live_of(tracker, "T1")
        assert gate["status"] == "open" and gate["severity"] == "critical"
        assert "tpmt absent on 2026-11-20" in gate["message"] and "should not receive thiopurines" in gate["message"]
        [screen] = _alerts_of(tracker, "T3")
        assert screen["status"] == "open" and screen["severity"] == "critical"
        assert "tpmt absent on 2026-11-20 during treatment" in screen["message"]


@freeze_time("2026-09-10")
def test_conflicting_same_day_screens_refuse_a_start_whatever_the_entry_order(tracker):
    # A4: a negative IGRA entered after a positive one the same day let upadacitinib start, no alert.
    for mrn, order in (("U1", ("positive", "negative")), ("U2", ("negative", "positive"))):
        tracker(f"patient add {mrn} --name 'U one' --dob 1980-01-01 --sex m --childbearing-potential no")
        for value in order:
            tracker(f"result add {mrn} tb {value} --on 2026-09-01")
        jak_ready(tracker, mrn, "2026-09-01", tb="negative")  # a third, negative, the same day: still refused
        line = refused(tracker, f"therapy start {mrn} upadacitinib --on 2026-09-10")
        assert "tb positive on 2026-09-01 does not pass (passes: negative) (same day also: tb negative; " \
               "conflicting results, the worst counts)" in line
    tracker("patient add U3 --name 'U three' --dob 1980-01-01 --sex m --childbearing-potential no")
    jak_ready(tracker, "U3", "2026-09-01")
    tracker("result add U3 neutrophils 0.8 --on 2026-09-01")
    tracker("result add U3 neutrophils 3 --on 2026-09-01")
    line = refused(tracker, "therapy start U3 upadacitinib --on 2026-09-10 --override-gate 'lab error'")
    assert "neutrophils 0.8 10^9/L on 2026-09-01" in line and "same day also: neutrophils 3.1 10^9/L, 3 10^9/L" in line
    tracker("patient add U4 --name 'U four' --dob 1980-01-01 --sex m --childbearing-potential no")
    tracker("result add U4 tpmt absent --on 2026-09-01")
    tracker("result add U4 tpmt normal --on 2026-09-01")
    line = refused(tracker, "therapy start U4 azathioprine --on 2026-09-10")
    assert "tpmt absent on 2026-09-01" in line and "same day also: tpmt normal" in line


def test_a_positive_igra_during_treatment_stays_alerted_after_a_later_indeterminate(tracker):
    # A7: the indeterminate resolved the positive's alert, and the positive was in no open alert. Now the
    # indeterminate's day is a new alert (news for a person), which leads with the positive.
    _on_upadacitinib(tracker, "J1", screened_on="2026-10-01", start="2026-10-05")
    with freeze_time("2026-11-02"):
        tracker("result add J1 tb positive --on 2026-11-01")
        [first] = _live_of(tracker, "J1")
    with freeze_time("2026-11-11"):
        tracker("result add J1 tb indeterminate --on 2026-11-10")
        tracker("evaluate")
        [alert] = _live_of(tracker, "J1")
        assert alert["id"] != first["id"] and alert["status"] == "open" and alert["severity"] == "critical"
        assert "tb positive on 2026-11-01 during treatment" in alert["message"]
        assert "not passed either: tb indeterminate on 2026-11-10: repeat or refer" in alert["message"]
    with freeze_time("2026-11-21"):
        tracker("result add J1 tb negative --on 2026-11-20")
        assert _live_of(tracker, "J1") == []


def test_an_overridden_tb_gate_and_a_positive_igra_are_one_alert_with_current_text(tracker):
    # A6: the override alert kept saying "no tb result on record" beside a second critical alert. Now one live
    # alert at a time: the positive is a new alert (news for a person), the pending one resolves.
    with freeze_time("2026-10-05"):
        tracker("patient add J3 --name 'J three' --dob 1970-01-01 --sex m --childbearing-potential no")
        for value in ("hbv negative", "hcv negative", "neutrophils 3", "lymphocytes 1.5", "hb 140"):
            tracker(f"result add J3 {value} --on 2026-10-01")
        tracker("result add J3 tb negative --on 2025-01-01")  # too old to count
        tracker("therapy start J3 upadacitinib --on 2026-10-05 --override-gate 'TB test pending'")
        [gate] = _live_of(tracker, "J3")
    with freeze_time("2026-10-21"):
        tracker("result add J3 tb positive --on 2026-10-20")
        tracker("evaluate")
        [alert] = _live_of(tracker, "J3")
        assert alert["status"] == "open" and alert["severity"] == "critical"
        assert "tb positive on 2026-10-20 does not pass" in alert["message"]
        assert "older than" not in alert["message"] and alert["value"] == "positive"
    with freeze_time("2026-10-29"):
        tracker("result add J3 tb negative --on 2026-10-28")
        assert _live_of(tracker, "J3") == []


def _acknowledged_then(tracker, mrn: str, note: str) -> dict:
    [alert] = _live_of(tracker, mrn)
    tracker(["alert", "ack", str(alert["id"]), "--note", note])
    return alert


def test_a_positive_after_an_acknowledged_override_reaches_a_person(tracker):
    # Session 20's second reading of A6: the positive was folded into the acknowledged override alert,
    # its text rewritten unaudited, and no alert was open ("IGRA sent, awaiting result" seemed to ack it).
    with freeze_time("2026-10-05"):
        tracker("patient add J3 --name 'J three' --dob 1970-01-01 --sex m --childbearing-potential no")
        for value in ("hbv negative", "hcv negative", "wbc 6", "neutrophils 3", "lymphocytes 1.5",
                      "platelets 250", "hb 140"):
            tracker(f"result add J3 {value} --on 2026-10-01")
        tracker("therapy start J3 upadacitinib --on 2026-10-05 --override-gate 'TB test pending'")
        pending = _acknowledged_then(tracker, "J3", "IGRA sent, awaiting result")
    with freeze_time("2026-11-21"):
        tracker("result add J3 tb positive --on 2026-11-20")
        tracker("evaluate")
        [alert] = _live_of(tracker, "J3")
        assert alert["status"] == "open" and alert["id"] != pending["id"]
        assert "tb positive on 2026-11-20 does not pass" in alert["message"]


def test_a_later_positive_after_an_acknowledged_screen_alert_reaches_a_person(tracker):
    # Session 20's second reading of A7: keyed by the run's first result, a positive six weeks on only
    # rewrote the acknowledged alert.
    _on_upadacitinib(tracker, "J1", screened_on="2026-09-01", start="2026-09-05")
    with freeze_time("2026-10-02"):
        tracker("result add J1 tb positive --on 2026-10-01")
        first = _acknowledged_then(tracker, "J1", "seen; CXR booked")
    with freeze_time("2026-11-21"):
        tracker("result add J1 tb positive --on 2026-11-20")
        tracker("evaluate")
        [alert] = _live_of(tracker, "J1")
        assert alert["status"] == "open" and alert["id"] != first["id"]
        assert "2026-11-20" in alert["message"]


def test_a_screen_dated_earlier_entered_late_keeps_the_acknowledged_alert(tracker):
    # Session 20's second reading of A7: an older sample entered late changed the run's first result, so
    # the acknowledged alert was resolved and the same problem raised again, the acknowledgement lost.
    _on_upadacitinib(tracker, "J1", screened_on="2026-09-01", start="2026-09-05")
    with freeze_time("2026-11-11"):
        tracker("result add J1 tb positive --on 2026-11-10")
        first = _acknowledged_then(tracker, "J1", "seen, chest x-ray booked")
    with freeze_time("2026-11-12"):
        tracker("result add J1 tb indeterminate --on 2026-10-20")  # the older sample, entered late
        tracker("evaluate")
        [alert] = _live_of(tracker, "J1")
        assert alert["id"] == first["id"] and alert["status"] == "acknowledged"
