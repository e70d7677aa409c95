"""Issue 3 items 3 and 4: clinic overrides and protocol versions.

A clinic directory ($TRACKER_SCHEDULES) replaces the built-in methotrexate protocol with a next version that
draws every 8 weeks (instead of 12) in the maintenance phase. Courses keep the protocol they were planned
with until `tracker therapy replan` adopts the new one explicitly.

Methotrexate from Mon 2026-01-05: 2-weekly 01-19, 02-02, 02-16; monthly 03-16, 04-16, 05-16; then
v1: every 12 weeks 08-08, 10-31, 2027-01-23; v2: every 8 weeks 07-11, 09-05, 10-31, 12-26.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from freezegun import freeze_time

from tests.conftest import record_panels
from tracker.resources import schedules_dir

# The built-in version (whatever it is now) and the clinic's next one.
V1 = int(re.search(r"^version: (\d+)$", (schedules_dir() / "methotrexate.yaml").read_text(), re.M).group(1))
V2 = V1 + 1
V1_MAINTENANCE = ["2026-08-08", "2026-10-31"]
V2_MAINTENANCE = ["2026-07-11", "2026-09-05", "2026-10-31", "2026-12-26"]


@pytest.fixture
def clinic(tmp_path) -> dict:
    """A clinic directory whose methotrexate is version 2 (8-weekly maintenance); env to use it."""
    text = (schedules_dir() / "methotrexate.yaml").read_text()
    assert text.count(f"\nversion: {V1}\n") == 1 and text.count("        - every: 12w\n") == 1
    text = text.replace(f"\nversion: {V1}\n", f"\nversion: {V2}\n")
    text = text.replace("        - every: 12w\n", "        - every: 8w\n")
    directory = tmp_path / "clinic-schedules"
    directory.mkdir()
    (directory / "methotrexate.yaml").write_text(text)
    return {"TRACKER_SCHEDULES": str(directory)}


def lab_dates(tracker, mrn, env=None, to="2026-12-31", start="2026-06-01"):
    rows = tracker.json(["calendar", mrn, "--from", start, "--to", to], env=env)
    return [r["due"] for r in rows if r["kind"] == "lab"]


def course(tracker, mrn, env=None):
    return tracker.json(["patient", "show", mrn], env=env)["courses"][0]


def audit_events(db: str, action: str) -> list[dict]:
    from sqlalchemy import text

    from tracker.db.engine import make_engine, resolve_url

    engine = make_engine(resolve_url(db))
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT \"user\", before, after, entity_id, mrn FROM audit_event WHERE action = :a "
                                 "ORDER BY id"), {"a": action}).all()
    engine.dispose()
    return [{"user": u, "before": json.loads(b) if b else None, "after": json.loads(a) if a else None,
             "entity_id": entity_id, "mrn": mrn}
            for u, b, a, entity_id, mrn in rows]


@pytest.fixture
def two_courses(tracker, clinic):
    """P1 planned with the built-in v1, P2 with the clinic's v2."""
    with freeze_time("2026-01-02"):
        tracker("patient add P1 --name 'Ada Byron' --dob 1980-01-01")
        tracker("patient add P2 --name 'Bo Chan' --dob 1975-05-05")
        tracker("therapy start P1 methotrexate --on 2026-01-05")
        out = tracker("therapy start P2 methotrexate --on 2026-01-05", env=clinic)
    assert f"protocol v{V2}" in out.stdout
    return tracker


def test_a_clinic_override_replaces_the_built_in_and_schedules_list_says_where_it_comes_from(tracker, clinic):
    builtin = {r["id"]: r for r in tracker.json("schedules list")}
    overridden = {r["id"]: r for r in tracker.json("schedules list", env=clinic)}
    assert builtin["methotrexate"]["origin"] == "built-in" and builtin["methotrexate"]["version"] == V1
    assert overridden["methotrexate"]["version"] == V2
    assert overridden["methotrexate"]["origin"].startswith("clinic (")
    assert clinic["TRACKER_SCHEDULES"] in overridden["methotrexate"]["origin"]
    assert overridden["azathioprine"]["origin"] == "built-in"
    assert set(builtin) == set(overridden)


def test_the_override_is_used_for_new_courses_only(two_courses, clinic):
    tracker = two_courses
    with freeze_time("2026-01-02"):
        assert lab_dates(tracker, "P1", clinic) == V1_MAINTENANCE
        assert lab_dates(tracker, "P2", clinic) == V2_MAINTENANCE
        # ...and without the clinic directory, P2 keeps the version it was planned with.
        assert lab_dates(tracker, "P2") == V2_MAINTENANCE
    assert (course(tracker, "P1")["protocol_version"], course(tracker, "P2")["protocol_version"]) == (V1, V2)


def test_changing_a_course_re_plans_with_its_own_version_never_the_edited_file(two_courses, clinic):
    tracker = two_courses
    with freeze_time("2026-01-02"):
        # Dose change in week 2 (restarts the 2-weekly phase), a pause and a resume, a roll forward.
        tracker("therapy dose P1 methotrexate --on 2026-01-19 --dose '15 mg weekly'", env=clinic)
        tracker("therapy pause P1 methotrexate --on 2026-02-10 --reason 'infection'", env=clinic)
        tracker("therapy resume P1 methotrexate --on 2026-02-17", env=clinic)
        tracker("therapy dose P2 methotrexate --on 2026-01-19 --dose '15 mg weekly'")
        tracker("therapy pause P2 methotrexate --on 2026-02-10 --reason 'infection'")
        tracker("therapy resume P2 methotrexate --on 2026-02-17")
        p1 = lab_dates(tracker, "P1", clinic, to="2028-06-30")
        p2 = lab_dates(tracker, "P2", to="2028-06-30")
    # Resumed 02-17: 2-weekly to 03-31, monthly 04-30, 05-31, 06-30, then every 12 (P1) or 8 (P2) weeks.
    assert p1[:4] == ["2026-06-30", "2026-09-22", "2026-12-15", "2027-03-09"]
    assert p2[:4] == ["2026-06-30", "2026-08-25", "2026-10-20", "2026-12-15"]
    assert course(tracker, "P1")["protocol_version"] == V1
    assert course(tracker, "P2")["protocol_version"] == V2
    with freeze_time("2026-01-02"):
        tracker("therapy stop P1 methotrexate --on 2026-09-01 --reason 'clear'", env=clinic)
        assert lab_dates(tracker, "P1", clinic, to="2028-06-30") == ["2026-06-30"]


def test_schedules_changed_lists_courses_planned_with_another_version(two_courses, clinic):
    tracker = two_courses
    changed = tracker.json("schedules changed", env=clinic)
    assert [(r["mrn"], r["drug"], r["planned_version"], r["current_version"]) for r in changed] == [
        ("P1", "methotrexate", V1, V2)]
    row = changed[0]
    assert row["planned_hash"] == course(tracker, "P1")["protocol_hash"]
    assert row["current_hash"] == course(tracker, "P2")["protocol_hash"] != row["planned_hash"]
    assert row["current_origin"].startswith(clinic["TRACKER_SCHEDULES"])
    # Seen from the built-in library it is the other way round.
    assert [(r["mrn"], r["planned_version"], r["current_version"]) for r in tracker.json("schedules changed")] \
        == [("P2", V2, V1)]
    assert "P1" in tracker("schedules changed", env=clinic).stdout


def test_replan_adopts_the_current_version_keeping_done_items(two_courses, clinic):
    tracker = two_courses
    with freeze_time("2026-02-03"):
        record_panels(tracker, "P1", "2026-02-02", "cbc", "cmp")
        before = tracker.json("calendar P1 --all", env=clinic)
        out = tracker("--user dr.who therapy replan P1 methotrexate", env=clinic)
        after = tracker.json("calendar P1 --all", env=clinic)
        assert tracker.json("schedules changed", env=clinic) == []
        assert lab_dates(tracker, "P1", clinic) == V2_MAINTENANCE
    assert f"re-planned methotrexate for P1 (protocol v{V2})" in out.stdout

    old = {r["uid"]: r for r in before}
    new = {r["uid"]: r for r in after}
    # Done items and the draws both versions agree on keep their rows; 12-weekly draws are cancelled.
    done = [r for r in before if r["status"] == "done" and r["kind"] == "lab"]
    assert [(r["due"], r["kind"]) for r in done] == [("2026-02-02", "lab")]
    assert all(new[r["uid"]]["status"] == "done" for r in done)
    for uid, row in old.items():
        if row["kind"] == "lab" and row["due"] <= "2026-05-16":
            assert new[uid]["status"] == row["status"]
    assert new[next(u for u, r in old.items() if r["due"] == "2026-08-08")]["status"] == "cancelled"
    live = [(r["kind"], r["due"], tuple(r["tests"])) for r in after if r["status"] != "cancelled"]
    assert len(live) == len(set(live))
    assert course(tracker, "P1")["protocol_version"] == V2

    [event] = audit_events(tracker.db, "therapy.replan")
    assert event["user"] == "dr.who"
    assert event["before"]["protocol_version"] == V1 and event["after"]["protocol_version"] == V2
    assert event["before"]["protocol_hash"] != event["after"]["protocol_hash"]
    assert event["after"]["protocol_origin"].startswith(clinic["TRACKER_SCHEDULES"])

    # The new version was stored: P1 keeps it after the clinic directory is removed.
    with freeze_time("2026-02-03"):
        tracker("therapy dose P1 methotrexate --on 2026-02-03 --dose '20 mg weekly'")
        assert course(tracker, "P1")["protocol_version"] == V2
        # From 02-03: 2-weekly to 03-17, monthly to 06-17, then every 8 weeks (v1 would give 09-09).
        assert lab_dates(tracker, "P1")[:3] == ["2026-06-17", "2026-08-12", "2026-10-07"]


def test_replan_of_an_unknown_course_changes_nothing(two_courses):
    from tests.conftest import dump_database

    snapshot = dump_database(two_courses.db)
    out = two_courses("therapy replan P1 dupilumab", ok=False)
    assert out.exit_code == 3 and "dupilumab" in out.stderr
    out = two_courses("therapy replan P9 methotrexate", ok=False)
    assert out.exit_code == 3 and "P9" in out.stderr
    assert dump_database(two_courses.db) == snapshot


def test_changed_is_empty_when_nothing_changed(tracker):
    assert tracker.json("schedules changed") == []
    assert Path(schedules_dir()).is_dir()


def test_every_protocol_survives_its_stored_snapshot_unchanged():
    from tracker.core.protocol import protocol_hash
    from tracker.protocol_files import load_library
    from tracker.db.snapshots import protocol_from_snapshot, snapshot_content

    for protocol in load_library():
        again = protocol_from_snapshot(snapshot_content(protocol))
        assert protocol_hash(again) == protocol.content_hash, protocol.id
