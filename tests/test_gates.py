"""Baseline gates: results needed on several days, and "do not initiate" limits on numeric results."""

from __future__ import annotations

from freezegun import freeze_time


@freeze_time("2026-03-02")
def test_mycophenolate_needs_two_pregnancy_tests_on_different_days(tracker):
    tracker("patient add P1 --name 'Eva Moss' --dob 1992-02-01 --sex f --childbearing-potential")
    tracker("result add P1 pregnancy negative --on 2026-02-20")
    refused = tracker("therapy start P1 mycophenolate --on 2026-03-02", ok=False)
    assert refused.exit_code == 5
    assert "pregnancy (2 results needed, 1 on record)" in refused.stderr
    tracker("result add P1 pregnancy negative --on 2026-03-01")
    tracker("therapy start P1 mycophenolate --on 2026-03-02")
    baseline = [r for r in tracker.json("calendar P1") if r["tests"] == ["pregnancy"]]
    assert [(r["status"], r["done_on"]) for r in baseline] == [("done", "2026-03-01")]


@freeze_time("2026-03-02")
def test_jak_inhibitor_is_refused_on_a_low_neutrophil_count(tracker):
    tracker("patient add P2 --name 'Raj Bose' --dob 1970-06-01 --sex m")
    for test, value in [("tb", "negative"), ("hbv", "negative"), ("hcv", "negative"), ("neutrophils", "0.8")]:
        tracker(f"result add P2 {test} {value} --on 2026-02-25")
    refused = tracker("therapy start P2 upadacitinib --on 2026-03-02 --override-gate 'missing CBC parts'",
                      ok=False)
    assert refused.exit_code == 5 and "neutrophils 0.8" in refused.stderr and "< 1" in refused.stderr
    tracker("result add P2 neutrophils 2.4 --on 2026-03-01")
    tracker("therapy start P2 upadacitinib --on 2026-03-02")


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
        tracker("patient add P5 --name 'Ida Holm' --dob 1975-01-01 --sex f")
        tracker("therapy start P5 methotrexate --on 2026-01-05")
    with freeze_time("2026-01-20"):
        tracker("result add P5 egfr 52 --on 2026-01-19")  # eGFR < 60: the protocol books a repeat in 1 week
        repeat = [r for r in tracker.json("calendar P5") if r["due"] == "2026-01-26"]
        assert repeat and repeat[0]["status"] == "planned"
        tracker("therapy stop P5 methotrexate --on 2026-01-21 --reason 'moved away'")
        after = [r for r in tracker.json("calendar P5 --all") if r["uid"] == repeat[0]["uid"]]
        assert after[0]["status"] == "cancelled" and after[0]["sequence"] > repeat[0]["sequence"]
