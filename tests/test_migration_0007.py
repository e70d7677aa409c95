"""Issue 15 item 1: migration 0007 settles the duplicates a database already holds (keeps the oldest live
course per patient and drug and the oldest live alert per condition, stops/resolves the others with an
audited reason), then the partial unique indexes hold the invariants."""

from __future__ import annotations

import json
import sqlite3

import pytest
from freezegun import freeze_time

from tests.test_migrations import downgrade_sqlite
from tracker.db.engine import SCHEMA_HEAD, current_revision, make_engine, open_engine, resolve_url


def _columns(conn, table: str, leave_out: tuple) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})") if row[1] not in leave_out]


def _copy(conn, table: str, row_id: int, **changes) -> int:
    """Insert a copy of one row with some columns changed; the new id."""
    columns = _columns(conn, table, ("id", *changes))
    names = ", ".join(f'"{c}"' for c in [*columns, *changes])
    marks = ", ".join(["?"] * len(changes))
    cursor = conn.execute(f'INSERT INTO {table} ({names}) SELECT {", ".join(chr(34) + c + chr(34) for c in columns)}'
                          f'{", " if changes else ""}{marks} FROM {table} WHERE id = ?', [*changes.values(), row_id])
    return cursor.lastrowid


def test_0007_settles_duplicate_live_courses_and_alerts_then_refuses_new_ones(tracker, tmp_path):
    db = str(tmp_path / "old.db")
    tracker.db = db
    with freeze_time("2026-01-05"):
        tracker("patient add P1 --name 'Ada Byron' --dob 1980-01-01")
        tracker("therapy start P1 methotrexate --on 2026-01-05")
    with freeze_time("2026-03-02"):
        tracker("alerts")  # overdue draws raise alerts
    downgrade_sqlite(db, "0006")
    with sqlite3.connect(db) as conn:
        (course_id,) = conn.execute("SELECT id FROM course").fetchone()
        # What a double-click made before 0007: the same course twice, with its own calendar and alerts.
        twin = _copy(conn, "course", course_id)
        for (item_id,) in conn.execute("SELECT id FROM item WHERE course_id = ?", (course_id,)).fetchall():
            _copy(conn, "item", item_id, course_id=twin, uid=f"twin-{item_id}")
        kept_alert, key = conn.execute("SELECT id, condition_key FROM alert WHERE status = 'open' ORDER BY id").fetchone()
        conn.execute("UPDATE alert SET status = 'acknowledged', note = 'called the patient' WHERE id = ?", (kept_alert,))
        copies = [_copy(conn, "alert", kept_alert, status="open", note=None) for _ in range(2)]
        twin_alert = _copy(conn, "alert", kept_alert, status="open", course_id=twin,
                           condition_key=f"overdue:twin{twin}")
        live_before = conn.execute("SELECT COUNT(*) FROM alert WHERE status != 'resolved'").fetchone()[0]
        planned_before = conn.execute("SELECT COUNT(*) FROM item WHERE course_id = ? AND status = 'planned'",
                                      (course_id,)).fetchone()[0]

    open_engine(db).dispose()  # the upgrade, as any command would run it
    assert current_revision(make_engine(resolve_url(db))) == SCHEMA_HEAD
    with sqlite3.connect(db) as conn:
        courses = conn.execute("SELECT id, status, stop_reason, stop_category FROM course ORDER BY id").fetchall()
        assert courses[0][:2] == (course_id, "active")
        assert courses[1][:2] == (twin, "stopped") and f"duplicate of course #{course_id}" in courses[1][2]
        assert courses[1][3] == "other"
        assert conn.execute("SELECT COUNT(*) FROM item WHERE course_id = ? AND status = 'planned'",
                            (twin,)).fetchone()[0] == 0  # the twin's calendar is cancelled
        assert conn.execute("SELECT COUNT(*) FROM item WHERE course_id = ? AND status = 'planned'",
                            (course_id,)).fetchone()[0] == planned_before  # the kept one is untouched
        alerts = {row[0]: row[1:] for row in conn.execute("SELECT id, status, resolution, note FROM alert")}
        assert alerts[kept_alert] == ("acknowledged", None, "called the patient")  # the clinic's decision stays
        for copy in copies:
            assert alerts[copy][0] == "resolved" and f"duplicate of alert #{kept_alert}" in alerts[copy][1]
        assert alerts[twin_alert][0] == "resolved" and f"course #{twin} stopped" in alerts[twin_alert][1]
        assert conn.execute("SELECT COUNT(*) FROM alert WHERE status != 'resolved'").fetchone()[0] == live_before - 3
        events = conn.execute("SELECT action, entity_id, after FROM audit_event WHERE user = 'migration 0007' "
                              "ORDER BY id").fetchall()
        assert sorted((action, entity_id) for action, entity_id, _ in events) == sorted(
            [("therapy.stop", twin), ("alert.resolve", copies[0]), ("alert.resolve", copies[1]),
             ("alert.resolve", twin_alert)])
        assert all(json.loads(after)["resolution" if action == "alert.resolve" else "stop_reason"]
                   for action, _, after in events)
        # From now on the database itself refuses a second live alert or course.
        with pytest.raises(sqlite3.IntegrityError):
            _copy(conn, "alert", kept_alert, status="open")
        with pytest.raises(sqlite3.IntegrityError):
            _copy(conn, "course", course_id)
        _copy(conn, "alert", kept_alert, status="resolved")  # resolved history is not limited
        conn.rollback()
    with freeze_time("2026-03-02"):
        result = tracker("therapy start P1 methotrexate --on 2026-03-02", ok=False)
    assert result.exit_code == 4 and "already on methotrexate" in result.stderr


def test_0007_downgrade_drops_only_the_indexes(tmp_path):
    db = str(tmp_path / "new.db")
    open_engine(db).dispose()
    downgrade_sqlite(db, "0006")
    with sqlite3.connect(db) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "uq_alert_live_condition" not in names and "uq_course_live_patient_drug" not in names
    open_engine(db).dispose()
    with sqlite3.connect(db) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"uq_alert_live_condition", "uq_course_live_patient_drug"} <= names
