"""Issue 15 item 3: `nightly --as-of` never runs ahead of today, and "today" is the clinic's day: in the
configured time zone, else in the machine's local zone (not UTC)."""

from __future__ import annotations

import pendulum
from freezegun import freeze_time

from tests.conftest import dump_database
from tests.nightly_support import small_clinic, write_config


def _config(tmp_path, zone_line: str = "") -> None:
    write_config(tmp_path / "site.toml", f"""{zone_line}
[reminders]
channels = ["jsonl"]
[reminders.jsonl]
path = "reminders.jsonl"
""")


def test_a_future_as_of_is_refused_in_one_line_and_changes_nothing(tracker, tmp_path):
    small_clinic(tracker)
    _config(tmp_path, 'timezone = "Europe/London"')
    before = dump_database(tracker.db)
    with freeze_time("2026-01-16T12:00:00Z"):
        refused = tracker("nightly --as-of 2027-06-01", ok=False)
    assert refused.exit_code == 2
    assert refused.stderr.splitlines() == [
        "error: as-of: '2027-06-01': is after today (2026-01-16 in Europe/London); "
        "for a what-if use `tracker alerts --as-of`"]
    assert dump_database(tracker.db) == before  # no run row, nothing stored as "last completed"
    assert not (tmp_path / "reminders.jsonl").exists()
    with freeze_time("2026-01-16T12:00:00Z"):
        later = tracker("nightly")  # the next real run is not "already done"
    assert "nightly 2026-01-16 (" in later.stderr and "already done" not in later.stderr
    assert tracker.json("nightly status")[0]["as_of"] == "2026-01-16"


def test_today_and_a_past_day_are_accepted(tracker, tmp_path):
    small_clinic(tracker)
    _config(tmp_path, 'timezone = "Europe/London"')
    with freeze_time("2026-01-20T09:00:00Z"):
        tracker("nightly --as-of 2026-01-16")  # catching up a past day is allowed
        tracker("nightly --as-of 2026-01-20")
    assert [run["as_of"] for run in tracker.json("nightly status")] == ["2026-01-20", "2026-01-16"]


def test_today_is_taken_in_the_configured_zone(tracker, tmp_path):
    small_clinic(tracker)
    # 23:30 UTC on the 16th is already the 17th in Tokyo and still the 16th in Los Angeles.
    _config(tmp_path, 'timezone = "America/Los_Angeles"')
    with freeze_time("2026-01-16T23:30:00Z"):
        assert tracker("nightly --as-of 2026-01-17", ok=False).exit_code == 2
    _config(tmp_path, 'timezone = "Asia/Tokyo"')
    with freeze_time("2026-01-16T23:30:00Z"):
        tracker("nightly --as-of 2026-01-17")


def test_without_a_configured_zone_today_is_the_machines_local_day(tracker, tmp_path):
    small_clinic(tracker)
    _config(tmp_path)  # no timezone key
    pendulum.set_local_timezone(pendulum.timezone("Pacific/Auckland"))  # UTC+13 in January
    with freeze_time("2026-01-16T12:30:00Z"):
        assert tracker.json("config show")["timezone"] == "Pacific/Auckland"
        tracker("nightly")
        refused = tracker("nightly --as-of 2026-01-18", ok=False)
    assert tracker.json("nightly status")[0]["as_of"] == "2026-01-17"  # not UTC's 16th
    assert "today (2026-01-17 in Pacific/Auckland)" in refused.stderr
