"""Issue 14 item 2 on a real database through the CLI: renal decline is never silent."""

from __future__ import annotations

from freezegun import freeze_time


def threshold_alerts(tracker, *extra):
    return [r for r in tracker.json(["alerts", *extra]) if r["kind"] == "threshold"]


def test_methotrexate_still_low_repeat_withholds_and_the_floor_alerts_at_once(tracker):
    with freeze_time("2026-01-05"):
        tracker("patient add M1 --name 'Max Test' --dob 1970-01-01")
        tracker("result add M1 egfr 80 --on 2026-01-02")
        tracker("therapy start M1 methotrexate --on 2026-01-05")
    with freeze_time("2026-03-02"):
        tracker("result add M1 egfr 50 --on 2026-03-02")
        assert threshold_alerts(tracker) == []  # the first low result books the repeat only
        assert any("Repeat egfr" in r["title"] for r in tracker.json("due --days 14"))
    with freeze_time("2026-03-09"):
        out = tracker("result add M1 egfr 48 --on 2026-03-09").stdout
        assert "threshold, critical" in out
        [alert] = threshold_alerts(tracker)
        assert alert["severity"] == "critical" and "on a repeat still < 60" in alert["limit"]
        assert "withhold and discuss" in alert["message"] and "SPS-MMF" in alert["sources"]
    with freeze_time("2026-03-16"):
        tracker("result add M1 egfr 25 --on 2026-03-16")
        # One result, one problem (issue 14 item 1): the still-low rule leads, the floor is named in it.
        [alert] = threshold_alerts(tracker)
        assert alert["condition_key"].split(":")[2] == "egfr-30%!repeat<60"
        assert "Also breached: < 30 mL/min/1.73m2 (clinic default)" in alert["message"]


def test_ciclosporin_without_pre_start_renal_values_alerts_on_absolute_limits(tracker):
    with freeze_time("2026-01-19"):
        tracker("patient add C1 --name 'Cy Test' --dob 1970-01-01")
        tracker("therapy start C1 ciclosporin --on 2026-01-05 --override-gate 'renal baselines not drawn'")
        tracker("result add C1 egfr 40 --on 2026-01-19")
        tracker("result add C1 creatinine 250 --on 2026-01-19")
        keys = sorted(r["condition_key"].split(":")[2] for r in threshold_alerts(tracker))
        assert keys == ["creatinine>1xULN!nobaseline", "egfr<60!nobaseline"]


def test_baricitinib_estimates_clearance_in_the_nightly_and_for_one_patient(tracker):
    with freeze_time("2026-01-05"):
        tracker("patient add B1 --name 'Bea Test' --dob 1946-01-01 --sex f --childbearing-potential no")
        tracker("result add B1 weight 50 --on 2026-01-02")
        tracker("therapy start B1 baricitinib --on 2026-01-05 --override-gate 'screens on paper'")
    with freeze_time("2026-03-02"):
        tracker("result add B1 creatinine 120 --on 2026-03-02")
        messages = [r["message"] for r in threshold_alerts(tracker)]
        assert any("crcl 26.1 mL/min" in m and "Cockcroft-Gault" in m for m in messages), messages
    with freeze_time("2026-03-03"):
        tracker("nightly")  # the whole-clinic pass loads the weight and keeps the alert
        keys = sorted(r["condition_key"].split(":")[2] for r in threshold_alerts(tracker))
        assert keys == ["crcl<30"]  # one result, one problem: the < 60 rule is named inside it
        assert "Also breached: < 60" in threshold_alerts(tracker)[0]["message"]


def test_baricitinib_estimate_reads_the_weight_given_with_patient_add(tracker):
    """Found exploring (A3): `--weight-kg 50` on the patient record was not read, so an 80-year-old woman's
    creatinine of 120 (CrCl 26.1 mL/min, < 30: not recommended [OLU-MIMS-HK]) raised nothing."""
    with freeze_time("2026-01-05"):
        tracker("patient add B1 --name 'Bea Test' --dob 1946-01-01 --sex f --childbearing-potential no "
                "--weight-kg 50")
        tracker("therapy start B1 baricitinib --on 2026-01-05 --override-gate 'screens on paper'")
    with freeze_time("2026-03-02"):
        tracker("result add B1 creatinine 120 --on 2026-03-02")
        [alert] = threshold_alerts(tracker)
        assert alert["severity"] == "critical" and "crcl 26.1 mL/min" in alert["message"]
        assert "weight 50 kg (patient record)" in alert["message"]
    with freeze_time("2026-03-03"):
        tracker("nightly")  # the whole-clinic pass loads the record's weight too and keeps the alert
        assert [r["condition_key"].split(":")[2] for r in threshold_alerts(tracker)] == ["crcl<30"]
