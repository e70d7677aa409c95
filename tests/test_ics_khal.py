"""A real calendar client reads the export: khal imports it into a vdir and lists the events by date."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import Tracker
from tests.ics_support import RANGE, events_by_uid, export, golden_database, parse_checked

KHAL = Path(sys.executable).parent / "khal"

KHAL_CONFIG = """\
[calendars]
[[monitoring]]
path = {vdir}
type = calendar

[locale]
timeformat = %H:%M
dateformat = %Y-%m-%d
longdateformat = %Y-%m-%d
datetimeformat = %Y-%m-%d %H:%M
longdatetimeformat = %Y-%m-%d %H:%M
local_timezone = UTC
default_timezone = UTC

[sqlite]
path = {cache}
"""


@pytest.fixture
def khal(tmp_path):
    if not KHAL.exists() and shutil.which("khal") is None:
        pytest.skip("khal is not installed (pip install -e '.[test]')")
    vdir = tmp_path / "khal" / "monitoring"
    vdir.mkdir(parents=True)
    config = tmp_path / "khal" / "config"
    config.write_text(KHAL_CONFIG.format(vdir=vdir, cache=tmp_path / "khal" / "cache.db"))
    command = str(KHAL) if KHAL.exists() else "khal"

    def run(*args: str) -> str:
        done = subprocess.run([command, "-c", str(config), *args], capture_output=True, text=True, timeout=120,
                              env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "TZ": "UTC", "LANG": "C.UTF-8"})
        assert done.returncode == 0, f"khal {' '.join(args)}: {done.stderr}"
        return done.stdout

    run.vdir = vdir
    return run


def test_khal_imports_the_export_and_lists_events_on_their_dates(khal, tmp_path, migrated_template):
    tracker = Tracker(golden_database(tmp_path, migrated_template))  # on the suite's backend
    data = export(tracker, *RANGE)  # the whole clinic: P002's stop cancelled its later items
    expected = events_by_uid(parse_checked(data))
    ics = tmp_path / "p001.ics"
    ics.write_bytes(data)

    khal("import", "--batch", "-a", "monitoring", str(ics))
    assert len(list(khal.vdir.glob("*.ics"))) == len(expected)  # one file per UID, none merged or lost

    listed = khal("list", "2026-01-01", "2026-07-01", "--day-format", "", "--format", "{start-date}|{title}")
    seen = [tuple(line.split("|", 1)) for line in listed.splitlines() if "|" in line]
    wanted = sorted((e["start"].isoformat(), e["summary"]) for e in expected.values())
    assert sorted(seen) == wanted

    # The days a user would look at: the first draw after the dose change, and a cancelled one.
    day = khal("list", "2026-03-02", "2026-03-02", "--day-format", "", "--format", "{start-date}|{title}")
    assert "2026-03-02|P001 AB: Methotrexate monitoring: CBC, CMP" in day.splitlines()
    cancelled = [e for e in expected.values() if e["status"] == "CANCELLED"]
    assert cancelled
    first = min(cancelled, key=lambda e: e["start"])
    day = khal("list", first["start"].isoformat(), first["start"].isoformat(), "--day-format", "",
               "--format", "{start-date}|{title}|{cancelled}")
    assert any(line.startswith(f"{first['start']}|Cancelled: P002 BC") and "CANCELLED" in line
               for line in day.splitlines())


def test_khal_reimport_after_a_dose_change_updates_events_in_place(khal, tmp_path, tracker):
    """Same UIDs on re-export: khal replaces the events (moved draws on their new dates, SEQUENCE + 1), keeps
    no stale copy on the old dates and adds no duplicates."""
    from freezegun import freeze_time

    from tests.ics_support import GOLDEN_STEPS, build_golden_clinic

    build_golden_clinic(tracker, [s for s in GOLDEN_STEPS if not s[1].startswith("therapy dose")])
    first = tmp_path / "first.ics"
    first.write_bytes(export(tracker, "--patient", "P001", at="2026-02-01 08:00:00"))
    before = events_by_uid(parse_checked(first.read_bytes()))
    khal("import", "--batch", "-a", "monitoring", str(first))

    with freeze_time("2026-02-16 11:00:00"):
        tracker("therapy dose P001 methotrexate --on 2026-02-16 --dose '15 mg weekly'")
    data = export(tracker, "--patient", "P001", at="2026-02-17 08:00:00")
    expected = events_by_uid(parse_checked(data))
    second = tmp_path / "second.ics"
    second.write_bytes(data)
    khal("import", "--batch", "-a", "monitoring", str(second))

    assert len(list(khal.vdir.glob("*.ics"))) == len(expected)
    moved = [uid for uid in before if expected[uid]["start"] != before[uid]["start"]]
    assert moved
    listed = khal("list", "2026-01-01", "2028-01-01", "--day-format", "", "--format", "{start-date}|{title}")
    seen = sorted(tuple(line.split("|", 1)) for line in listed.splitlines() if "|" in line)
    assert seen == sorted((e["start"].isoformat(), e["summary"]) for e in expected.values())
