"""Helpers for tests that rewind a SQLite file's schema by hand (they stamp an earlier revision)."""

from __future__ import annotations


def undo_0011(conn) -> None:
    """What migration 0011 added (the audit hash chain), removed with plain SQL on a sqlite3 connection,
    so that an upgrade from an earlier stamp can add it again."""
    conn.execute("DROP INDEX uq_audit_event_seq")
    for column in ("seq", "prev_hash", "hash"):
        conn.execute(f"ALTER TABLE audit_event DROP COLUMN {column}")
    conn.execute("DROP TABLE audit_head")


def undo_0008_onwards(conn) -> None:
    """What migrations 0008 to 0020 added, removed with plain SQL on a sqlite3 connection, so that a test
    can stamp the database as an earlier revision and let the upgrade add it all again (0015, 0017 and
    0019 create their indexes only where absent). A new migration's additions belong here, once."""
    conn.execute("ALTER TABLE alert DROP COLUMN cleared_on")  # 0008
    conn.execute("DROP TABLE caldav_object")  # 0009
    conn.execute("DROP INDEX uq_lab_result_source_id")  # 0010
    conn.execute("ALTER TABLE lab_result DROP COLUMN source_id")
    undo_0011(conn)
    conn.execute("DROP TABLE staff_user")  # 0013
    conn.execute("DROP INDEX ix_patient_clinician")  # 0014
    conn.execute("ALTER TABLE patient DROP COLUMN clinician")
    conn.execute("DROP TABLE replaced_lab_source")  # 0016
    conn.execute("DROP TABLE lab_inbox_file")  # 0018
    conn.execute("ALTER TABLE lab_result DROP COLUMN reported_at")  # 0020
