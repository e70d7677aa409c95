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
