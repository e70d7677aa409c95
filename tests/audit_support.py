"""Helpers for tests that rewind a SQLite file's schema by hand (they stamp an earlier revision)."""

from __future__ import annotations


def undo_0011(conn) -> None:
    """What migration 0011 added (the audit hash chain), removed with plain SQL on a sqlite3 connection,
    so that an upgrade from an earlier stamp can add it again."""
    conn.execute("DROP INDEX uq_audit_event_seq")
    for column in ("seq", "prev_hash", "hash"):
        conn.execute(f"ALTER TABLE audit_event DROP COLUMN {column}")
    conn.execute("DROP TABLE audit_head")
