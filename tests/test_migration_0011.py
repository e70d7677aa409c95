"""Migration 0011: the audit rows a database already holds are chained in id order, and the chain verifies;
new rows continue it. SQLite, and PostgreSQL with TRACKER_TEST_PG."""

from __future__ import annotations

import datetime as dt
import os

import sqlalchemy as sa

from tests.conftest import Tracker
from tracker.db.engine import current_revision, make_engine, resolve_url, upgrade_schema

UTC = dt.timezone.utc
audit_event = sa.table("audit_event", sa.column("at", sa.DateTime(timezone=True)), sa.column("user", sa.String),
                       sa.column("action", sa.String), sa.column("entity", sa.String),
                       sa.column("entity_id", sa.Integer), sa.column("mrn", sa.String),
                       sa.column("before", sa.Text), sa.column("after", sa.Text))


def empty_database(tmp_path) -> str:
    if os.environ.get("TRACKER_TEST_PG"):
        from tests.pg import fresh_database

        return fresh_database(migrated=False)
    return str(tmp_path / "old.db")


def test_existing_audit_rows_are_chained_in_id_order(tmp_path):
    db = empty_database(tmp_path)
    engine = make_engine(resolve_url(db))
    upgrade_schema(engine, "0010")  # the revision before the chain
    old_rows = [
        {"at": dt.datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), "user": "ann", "action": "patient.add",
         "entity": "patient", "entity_id": 1, "mrn": "P1", "before": None, "after": '{"name": "Zoë Ñ"}'},
        {"at": dt.datetime(2025, 1, 3, tzinfo=UTC), "user": "migration 0007", "action": "alert.resolve",
         "entity": "alert", "entity_id": 7, "mrn": None, "before": '{"status": "open"}',
         "after": '{"status": "resolved"}'},
        {"at": dt.datetime(2025, 1, 4, 12, tzinfo=UTC), "user": "bob", "action": "nightly.run",
         "entity": "nightly_run", "entity_id": None, "mrn": None, "before": None, "after": None},
    ]
    with engine.begin() as conn:
        conn.execute(audit_event.insert(), old_rows)
    before, after = upgrade_schema(engine, "0011")
    assert (before, after) == ("0010", "0011") and current_revision(engine) == "0011"
    with engine.connect() as conn:
        chained = conn.execute(sa.text("SELECT id, seq, prev_hash, hash FROM audit_event ORDER BY id")).all()
        head = conn.execute(sa.text("SELECT id, seq, hash FROM audit_head")).all()
    engine.dispose()
    assert [(r.id, r.seq) for r in chained] == [(1, 1), (2, 2), (3, 3)]
    assert chained[0].prev_hash == "0" * 64 and chained[1].prev_hash == chained[0].hash
    assert head == [(1, 3, chained[2].hash)]

    upgrade_schema(make_engine(resolve_url(db)))  # the later migrations (no db.migrate row without a recorder)
    tracker = Tracker(db)
    assert tracker("audit verify").stdout.startswith("ok: 3 rows, chain intact")
    tracker("patient add P2 --name 'New Row' --dob 1990-01-01")  # the chain goes on from the migrated head
    assert tracker("audit verify").stdout.startswith("ok: 4 rows, chain intact")
    [row] = tracker.json("audit --action patient.add --user tester")
    assert row["seq"] == 4


def test_an_empty_log_gets_an_empty_head(tmp_path):
    db = empty_database(tmp_path)
    engine = make_engine(resolve_url(db))
    upgrade_schema(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT id, seq, hash FROM audit_head")).all() == [(1, 0, "0" * 64)]
    engine.dispose()
    assert Tracker(db)("audit verify").stdout.startswith("ok: 0 rows, chain intact")
