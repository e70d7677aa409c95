"""Issue 4: `tracker assess`: range checks, baseline within the window, improvement from baseline."""

from __future__ import annotations

from freezegun import freeze_time

from tests.conftest import dump_database


@freeze_time("2026-03-02")
def test_out_of_range_values_are_one_line_errors_and_change_nothing(tracker, db_url):
    tracker("patient add P1 --name 'Pat Test' --dob 1980-01-01")
    before = dump_database(db_url)
    for args, field in (("--easi 73", "easi"), ("--iga 5", "iga"), ("--itch-nrs 11", "itch-nrs"),
                        ("--dlqi 31", "dlqi"), ("--poem -1", "poem"), ("--iga 2.5", "iga")):
        result = tracker(f"assess P1 --on 2026-03-01 {args}", ok=False)
        assert result.exit_code == 2, args
        assert result.stderr.startswith(f"error: {field}:") and result.stderr.count("\n") == 1, result.stderr
    assert tracker("assess P1 --on 2026-03-01", ok=False).exit_code == 2  # no measure at all
    assert tracker("assess P1 --on 2026-03-03 --easi 10", ok=False).exit_code == 2  # future
    assert tracker("assess NOPE --on 2026-03-01 --easi 10", ok=False).exit_code == 3
    assert dump_database(db_url) == before


def test_improvement_against_baseline_within_the_window(tracker, tmp_path):
    config = tmp_path / "clinic.toml"
    config.write_text("[alerts]\nbaseline_window_days = 10\n")
    with freeze_time("2026-01-05"):
        tracker("patient add P1 --name 'Pat Test' --dob 1980-01-01")
        tracker("assess P1 --on 2025-12-01 --easi 40 --dlqi 20")  # too old with a 10-day window
        tracker("assess P1 --on 2025-12-30 --easi 32 --dlqi 18 --itch-nrs 8")
        tracker("therapy start P1 dupilumab --on 2026-01-05")
    with freeze_time("2026-03-02"):
        out = tracker(["--config", str(config), "assess", "P1", "--on", "2026-03-02", "--easi", "6",
                       "--dlqi", "9", "--itch-nrs", "3"]).stdout
    assert "baseline 2025-12-30" in out
    assert "EASI 32 -> 6 (81.2% better, EASI-50/EASI-75)" in out
    assert "DLQI 18 -> 9 (-9)" in out and "itch NRS 8 -> 3 (-5)" in out
    with freeze_time("2026-03-02"):
        out = tracker(["--config", str(config), "assess", "P1", "--on", "2026-03-02", "--easi", "3",
                       "--replace"]).stdout
    assert "EASI-90" in out


def test_no_baseline_in_window_is_said(tracker, tmp_path):
    config = tmp_path / "clinic.toml"
    config.write_text("[alerts]\nbaseline_window_days = 3\n")
    with freeze_time("2026-01-05"):
        tracker("patient add P1 --name 'Pat Test' --dob 1980-01-01")
        tracker("assess P1 --on 2025-12-01 --easi 40")
        tracker("therapy start P1 dupilumab --on 2026-01-05")
    with freeze_time("2026-02-02"):
        out = tracker(["--config", str(config), "assess", "P1", "--on", "2026-02-02", "--easi", "20"]).stdout
    assert "dupilumab (week 4): no baseline assessment" in out
    bad = tmp_path / "bad.toml"
    bad.write_text("[alerts]\nbaseline_window_days = 'a month'\n")
    with freeze_time("2026-02-02"):
        result = tracker(["--config", str(bad), "assess", "P1", "--on", "2026-02-02", "--easi", "20"], ok=False)
    assert result.exit_code == 8 and "alerts.baseline_window_days" in result.stderr
