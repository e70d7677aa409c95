"""`tracker export ics`: structure, identity across re-exports, audiences, alarms, golden files, and a
property test that every stored item appears exactly once."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections import Counter
from pathlib import Path

import pytest
from freezegun import freeze_time
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Tracker, dump_database
from tests.ics_support import (
    EXPORT_AT,
    GOLDEN_STEPS,
    RANGE,
    build_golden_clinic,
    copy_database,
    empty_database,
    events_by_uid,
    export,
    golden_database,
    normalise_uids,
    on_postgres,
    parse_checked,
)

GOLDEN = Path(__file__).parent / "golden" / "ics"


@pytest.fixture(scope="module")
def golden_db(tmp_path_factory, migrated_template) -> str:
    return golden_database(tmp_path_factory.mktemp("golden"), migrated_template)


@pytest.fixture
def clinic(golden_db, tmp_path) -> Tracker:
    """The golden clinic (tests/ics_support.py), in this test's own copy of the database."""
    return Tracker(copy_database(golden_db, tmp_path))


def test_the_golden_clinic_is_on_the_database_the_suite_runs_on(clinic, golden_db):
    """Issue 6: with TRACKER_TEST_PG these tests must exercise PostgreSQL, not a prepared SQLite file."""
    assert ("://" in golden_db) == ("://" in clinic.db) == on_postgres()
    assert clinic.db != golden_db  # each test has its own copy


def db_items(tracker, mrn: str) -> list[dict]:
    return tracker.json(["calendar", mrn, "--all"])


# --- structure ------------------------------------------------------------------------------------------


def test_every_item_is_an_all_day_transparent_event_with_its_stored_uid(clinic):
    data = export(clinic, "--patient", "P001")
    calendar = parse_checked(data)
    text = data.decode()

    assert text.count("BEGIN:VCALENDAR") == 1 and "VERSION:2.0\r\n" in text
    assert "PRODID:-//tracker//monitoring calendar//EN\r\n" in text
    # Issue 16: no METHOD (a feed is not an iTIP message; PUBLISH would need an ORGANIZER, RFC 5546) and no
    # calendar-level UID (vdirsyncer 0.21 collapses every event into one, pimutils/vdirsyncer#1222).
    assert "METHOD:" not in text and "ORGANIZER" not in text
    assert [line for line in text.split("\r\n") if line.startswith("UID:")] == [f"UID:{e['UID']}"
                                                                            for e in calendar.events]
    assert calendar["NAME"] == calendar["X-WR-CALNAME"] == "Monitoring: P001 AB"
    assert all(len(line.encode()) <= 75 for line in text.split("\r\n"))

    stored = {row["uid"]: row for row in db_items(clinic, "P001")}
    events = events_by_uid(calendar)
    assert set(events) == set(stored)  # planned, done and cancelled items, each once
    for uid, event in events.items():
        row = stored[uid]
        assert event["start"] == dt.date.fromisoformat(row["due"])
        assert event["end"] == event["start"] + dt.timedelta(days=1)  # exclusive DTEND
        assert event["sequence"] == row["sequence"]
        assert event["status"] == ("CANCELLED" if row["status"] == "cancelled" else "CONFIRMED")
    for event in calendar.events:
        assert event["TRANSP"] == "TRANSPARENT"
        assert "DTSTART;VALUE=DATE:" in event.to_ical().decode()
        assert event.stamp == dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone.utc)  # the frozen clock
        assert event.last_modified.tzinfo is not None


def test_description_lists_tests_by_vocabulary_name_and_the_protocol_sources(clinic):
    calendar = parse_checked(export(clinic, "--patient", "P001", *RANGE))
    lab = next(e for e in calendar.events if "monitoring: CBC" in str(e["SUMMARY"]))
    description = str(lab["DESCRIPTION"])
    assert "- cbc: Full blood count (CBC/FBC)" in description
    assert "- cmp: Liver and kidney chemistry (CMP/U&E/LFT)" in description
    assert "Sources:" in description
    assert "[CKS-MTX]" in description and "<https://" in description  # citation, URL and key
    done = [e for e in calendar.events if "(done)" in str(e["SUMMARY"])]
    assert done and all("Status: done on 2026-01-19" in str(e["DESCRIPTION"]) for e in done)


def test_stdout_and_out_file_are_identical_and_deterministic(clinic, tmp_path):
    first = export(clinic, "--patient", "P001")
    out = tmp_path / "p001.ics"
    with freeze_time(EXPORT_AT):
        result = clinic(["export", "ics", "--patient", "P001", "--out", str(out)])
    assert result.stdout == ""
    assert "events to" in result.stderr
    assert out.read_bytes() == first == export(clinic, "--patient", "P001")


def test_range_limits_the_events(clinic):
    calendar = parse_checked(export(clinic, "--patient", "P001", "--from", "2026-02-01", "--to", "2026-03-31"))
    starts = [e.start for e in calendar.events]
    assert starts and all(dt.date(2026, 2, 1) <= s <= dt.date(2026, 3, 31) for s in starts)


# --- identity across re-exports ---------------------------------------------------------------------------


def test_reexport_after_dose_change_moves_items_keeping_their_uids(tracker):
    """Issue 16 item 5: a draw the dose change shifts is the same planned item on a new date (same UID, new
    DTSTART, SEQUENCE + 1), not a cancelled event plus a new one."""
    build_golden_clinic(tracker, [s for s in GOLDEN_STEPS if not s[1].startswith(("therapy dose", "therapy stop"))])
    before = events_by_uid(parse_checked(export(tracker, "--patient", "P001", at="2026-02-01 08:00:00")))
    with freeze_time("2026-02-16 11:00:00"):
        tracker("therapy dose P001 methotrexate --on 2026-02-16 --dose '15 mg weekly'")
    after = events_by_uid(parse_checked(export(tracker, "--patient", "P001", at="2026-02-17 08:00:00")))

    assert set(before) <= set(after)  # no UID lost or regenerated
    moved = [u for u in before if after[u]["start"] != before[u]["start"]]
    assert len(moved) >= 5, "the dose change shifts the old schedule's later draws"
    for uid in moved:
        assert after[uid]["status"] == "CONFIRMED" and not after[uid]["summary"].startswith("Cancelled: ")
        assert after[uid]["sequence"] == before[uid]["sequence"] + 1
        assert after[uid]["end"] == after[uid]["start"] + dt.timedelta(days=1)
    assert not [u for u in before if before[u]["status"] == "CONFIRMED" and after[u]["status"] == "CANCELLED"]
    for uid, old in before.items():
        new = after[uid]
        visible = ("start", "summary", "description", "status")
        if any(old[k] != new[k] for k in visible):
            assert new["sequence"] > old["sequence"], f"{uid} changed without a SEQUENCE bump"
        else:
            assert new["sequence"] == old["sequence"], f"{uid} bumped without a visible change"
    # The new schedule restarts every 2 weeks from the dose change: its first draw is the old next draw, moved.
    assert any(after[u]["start"] == dt.date(2026, 3, 2) for u in moved)
    added = set(after) - set(before)
    assert all(after[u]["sequence"] == 0 for u in added)
    # The calendar's open draws are exactly the re-plan's (what is due did not change by keeping rows).
    planned = {r["due"] for r in db_items(tracker, "P001") if r["status"] == "planned" and r["kind"] == "lab"}
    shown = {str(e["start"]) for e in after.values()
             if e["status"] == "CONFIRMED" and "monitoring" in e["summary"] and "(done)" not in e["summary"]}
    assert shown == planned


def test_dose_change_pause_and_resume_leave_few_cancelled_events(clinic):
    """The issue's measurement: after a dose change, a pause and a resume, one patient's next three months
    were 11 cancelled events of 15. Draws and the checkpoint that only move keep their events."""
    with freeze_time("2026-03-05 10:00:00"):
        clinic("therapy pause P001 methotrexate --on 2026-03-05 --reason 'chest infection'")
    with freeze_time("2026-03-19 10:00:00"):
        clinic("therapy resume P001 methotrexate --on 2026-03-19")
    window = ["--from", "2026-03-19", "--to", "2026-06-19"]
    events = events_by_uid(parse_checked(export(clinic, "--patient", "P001", *window, at="2026-03-19 11:00:00")))
    cancelled = [e for e in events.values() if e["status"] == "CANCELLED"]
    assert len(events) >= 4 and len(cancelled) <= 1, [(e["start"], e["summary"]) for e in events.values()]


def test_renaming_a_patient_resends_their_staff_events(clinic):
    """The label (MRN and initials) is in every SUMMARY, so a rename must bump SEQUENCE to reach clients."""
    before = events_by_uid(parse_checked(export(clinic, "--patient", "P002")))
    with freeze_time("2026-03-03 09:00:00"):
        clinic("patient update P002 --name 'Ben Chen-Okafor'")
    after = events_by_uid(parse_checked(export(clinic, "--patient", "P002", at="2026-03-04 09:00:00")))
    assert set(after) == set(before)
    for uid, event in after.items():
        assert event["sequence"] == before[uid]["sequence"] + 1
        assert event["summary"].removeprefix("Cancelled: ").startswith("P002 BCO: ")


# --- audiences --------------------------------------------------------------------------------------------


def test_patient_audience_is_plain_language_and_holds_no_other_patients_data(clinic):
    data = export(clinic, "--patient", "P001", "--audience", "patient")
    calendar = parse_checked(data)
    text = data.decode()
    for other in ("P002", "Ben", "Chen", "BC", "Dupilumab"):
        assert other not in text
    assert "P001" not in text and "Ada" not in text  # not even the patient's own identifiers
    other_uids = {row["uid"] for row in db_items(clinic, "P002")}
    assert not other_uids & set(events_by_uid(calendar))
    summaries = {str(e["SUMMARY"]) for e in calendar.events}
    assert "Blood test: full blood count and liver and kidney tests" in summaries
    assert "Blood pressure check (before starting Methotrexate)" in summaries
    assert calendar["X-WR-CALNAME"] == "My monitoring tests and reviews"


def test_patient_checkpoint_wording(tracker):
    build_golden_clinic(tracker, [
        ("2026-01-05 09:00:00", "patient add P002 --name 'Ben Chen' --dob 1975-06-07 --sex m"),
        ("2026-01-05 09:20:00", "therapy start P002 dupilumab --on 2026-01-05"),
    ])
    calendar = parse_checked(export(tracker, "--patient", "P002", "--audience", "patient"))
    review = [e for e in calendar.events if str(e["SUMMARY"]) == "Clinic review: how is your eczema?"]
    assert [e.start for e in review] == [dt.date(2026, 4, 27)]  # week 16
    assert "how well Dupilumab is working for your eczema (week 16 of treatment)" in str(review[0]["DESCRIPTION"])


def test_patient_audience_needs_one_patient_and_changes_nothing(clinic):
    before = dump_database(clinic.db)
    result = clinic(["export", "ics", "--audience", "patient"], ok=False)
    assert result.exit_code == 2
    assert "audience: 'patient'" in result.stderr and "--patient" in result.stderr
    assert dump_database(clinic.db) == before


def test_unknown_patient_is_a_one_line_error(clinic):
    result = clinic(["export", "ics", "--patient", "P999"], ok=False)
    assert result.exit_code == 3 and result.stderr.startswith("error: mrn: 'P999': not found")


def test_clinic_export_names_patients_by_mrn_and_initials(clinic):
    calendar = parse_checked(export(clinic, *RANGE))
    summaries = [str(e["SUMMARY"]) for e in calendar.events]
    assert any(s.startswith("P001 AB: ") for s in summaries)
    assert any(s.startswith("P002 BC: ") or s.startswith("Cancelled: P002 BC: ") for s in summaries)
    assert not any("Ada" in s or "Baker" in s for s in summaries)
    assert calendar["X-WR-CALNAME"] == "Clinic monitoring"


@pytest.mark.parametrize("style, expected", [("mrn", "P001: "), ("initials", "AB: "), ("name", "P001 Ada Baker: ")])
def test_patient_label_is_configurable(clinic, tmp_path, style, expected):
    config = tmp_path / "label.toml"
    config.write_text(f'[privacy]\npatient_label = "{style}"\n')
    with freeze_time(EXPORT_AT):
        data = clinic(["--config", str(config), "export", "ics", "--patient", "P001"]).stdout_bytes
    summaries = [str(e["SUMMARY"]) for e in parse_checked(data).events]
    assert all(s.removeprefix("Cancelled: ").startswith(expected) for s in summaries)


def test_bad_label_style_is_a_config_error(clinic, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[privacy]\npatient_label = "full"\n')
    result = clinic(["--config", str(config), "export", "ics"], ok=False)
    assert result.exit_code == 8 and "privacy.patient_label: 'full'" in result.stderr


# --- alarms -----------------------------------------------------------------------------------------------


def _alarms(calendar):
    return {str(e["UID"]): [a for a in e.walk("VALARM")] for e in calendar.events}


def test_no_alarm_unless_configured_or_asked(clinic, tmp_path):
    assert not any(_alarms(parse_checked(export(clinic, "--patient", "P001"))).values())

    asked = parse_checked(export(clinic, "--patient", "P001", "--alarm"))
    for event in asked.events:
        alarms = list(event.walk("VALARM"))
        if event["STATUS"] == "CANCELLED" or "(done)" in str(event["SUMMARY"]):
            assert alarms == []
            continue
        (alarm,) = alarms
        assert alarm["ACTION"] == "DISPLAY" and str(alarm["DESCRIPTION"]).startswith("Reminder: ")
        assert alarm["TRIGGER"].dt == -dt.timedelta(hours=15)  # 09:00 the day before

    config = tmp_path / "alarm.toml"
    config.write_text("[calendar]\nalarm_lead_hours = 24\n")
    with freeze_time(EXPORT_AT):
        data = clinic(["--config", str(config), "export", "ics", "--patient", "P001"]).stdout_bytes
    assert "TRIGGER:-P1D" in data.decode()
    with freeze_time(EXPORT_AT):
        data = clinic(["--config", str(config), "export", "ics", "--patient", "P001", "--no-alarm"]).stdout_bytes
    assert "VALARM" not in data.decode()


# --- merged draws -----------------------------------------------------------------------------------------


def test_a_draw_merged_from_two_drugs_lists_both(tracker):
    build_golden_clinic(tracker, [
        ("2026-01-05 09:00:00", "patient add P003 --name 'Cara Dlamini' --dob 1970-01-01 --sex f"),
        ("2026-01-05 09:00:00", "result add P003 tpmt normal --on 2026-01-02"),
        ("2026-01-05 09:10:00", "therapy start P003 methotrexate --on 2026-01-05"),
        ("2026-01-05 09:20:00", "therapy start P003 azathioprine --on 2026-01-05"),
    ])
    merged = [r for r in db_items(tracker, "P003") if len(r["drugs"]) > 1 and r["status"] == "planned"]
    assert merged, "methotrexate and azathioprine draws on the same days are merged"
    events = events_by_uid(parse_checked(export(tracker, "--patient", "P003")))
    for row in merged:
        event = events[row["uid"]]
        assert "methotrexate" in event["summary"].lower() and "azathioprine" in event["summary"].lower()
        assert "Drugs: Methotrexate, Azathioprine" in event["description"] or \
               "Drugs: Azathioprine, Methotrexate" in event["description"]
    patient = events_by_uid(parse_checked(export(tracker, "--patient", "P003", "--audience", "patient")))
    for row in merged:
        assert "Methotrexate and Azathioprine" in patient[row["uid"]]["description"] or \
               "Azathioprine and Methotrexate" in patient[row["uid"]]["description"]


# --- golden files -----------------------------------------------------------------------------------------

GOLDEN_CASES = {
    "clinic-staff.ics": RANGE,
    "p001-staff.ics": ["--patient", "P001", *RANGE],
    "p001-patient-alarm.ics": ["--patient", "P001", "--audience", "patient", "--alarm", *RANGE],
    "p002-staff.ics": ["--patient", "P002"],
}


def test_golden_files(clinic):
    """Exports of a fixed clinic under a frozen clock. Item UIDs are random, so they are renamed by order
    of appearance (item-001, ...); regenerate with UPDATE_GOLDEN=1 and review the diff."""
    update = os.environ.get("UPDATE_GOLDEN") == "1"
    for name, args in GOLDEN_CASES.items():
        data = export(clinic, *args)
        parse_checked(data)
        text = normalise_uids(data.decode())
        path = GOLDEN / name
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(text.encode())
            continue
        assert path.exists(), f"missing {path}; run UPDATE_GOLDEN=1 pytest {__file__}"
        assert text == path.read_bytes().decode(), f"{name} differs from the golden file"


# --- property: every stored item exactly once -------------------------------------------------------------

DRUGS = ["methotrexate", "dupilumab", "azathioprine"]


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(
    drugs=st.lists(st.sampled_from(DRUGS), min_size=1, max_size=2, unique=True),
    start=st.integers(0, 120),
    dose_changes=st.lists(st.integers(7, 200), max_size=2, unique=True),
    stop_after=st.one_of(st.none(), st.integers(20, 300)),
)
def test_every_planned_item_appears_exactly_once(migrated_template, drugs, start, dose_changes, stop_after):
    with tempfile.TemporaryDirectory() as tmp:
        tracker = Tracker(empty_database(tmp, migrated_template))  # one per example, on the suite's backend
        begin = dt.date(2026, 1, 1) + dt.timedelta(days=start)
        with freeze_time(begin.isoformat()):
            tracker("patient add P100 --name 'Dev Evans' --dob 1985-05-05 --sex m")
            for drug in drugs:
                tracker(f"therapy start P100 {drug} --on {begin} --override-gate 'property test'")
        main = drugs[0]
        changes = sorted(begin + dt.timedelta(days=d) for d in dose_changes)
        for day in changes:
            if stop_after is not None and day >= begin + dt.timedelta(days=stop_after):
                break
            with freeze_time(day.isoformat()):
                tracker(f"therapy dose P100 {main} --on {day} --dose 'dose {day}'")
        if stop_after is not None:
            stop = max([begin + dt.timedelta(days=stop_after), *changes])
            with freeze_time(stop.isoformat()):
                tracker(f"therapy stop P100 {main} --on {stop} --reason 'property test'")
        with freeze_time("2027-01-01"):
            data = tracker(["export", "ics", "--patient", "P100"]).stdout_bytes
            stored = tracker.json(["calendar", "P100", "--all"])
        calendar = parse_checked(data)
        counts = Counter(str(e["UID"]) for e in calendar.events)
        assert counts == Counter({row["uid"]: 1 for row in stored})
        events = events_by_uid(calendar)
        for row in stored:
            if row["status"] == "planned":
                event = events[row["uid"]]
                assert event["status"] == "CONFIRMED" and event["start"] == dt.date.fromisoformat(row["due"])


def test_the_exporter_core_is_free_of_click_and_the_database():
    import subprocess
    import sys

    code = ("import sys, tracker.exporters.ics; "
            "assert not {'click', 'sqlmodel', 'sqlalchemy'} & set(sys.modules), sorted(sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).returncode == 0


def test_an_empty_clinic_exports_an_empty_but_valid_calendar(tracker):
    calendar = parse_checked(export(tracker))
    assert calendar.events == [] and "METHOD" not in calendar and "UID" not in calendar
