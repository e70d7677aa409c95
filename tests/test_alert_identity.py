"""Issue 12: an alert's identity is its rule's semantic id, never display text; migration 0002 rewrites the
keys of existing alerts so that no open, snoozed or hand-resolved alert changes state on upgrade."""

from __future__ import annotations

import importlib.util
import os
import pathlib

import pytest
from freezegun import freeze_time
from sqlalchemy import text

from tracker.core.protocol import Threshold
from tracker.db.engine import SCHEMA_HEAD
from tracker.protocol_files import load_library

MIGRATION = pathlib.Path(__file__).parents[1] / "migrations" / "versions" / "0002_alert_keys_by_rule_id.py"


def _migration():
    spec = importlib.util.spec_from_file_location("m0002", MIGRATION)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rule_id_ignores_unit_message_sources_and_severity():
    plain = Threshold(analyte="neutrophils", below=1.5, action="withhold", sources=["A"])
    reworded = Threshold(analyte="neutrophils", below=1.5, action="withhold", unit="x10^9/L", message="new text",
                         sources=["B"], severity="critical")
    assert plain.rule_id == reworded.rule_id == "neutrophils<1.5"
    assert plain.describe() != reworded.describe()  # the display text did change
    assert Threshold(analyte="neutrophils", below=1.0, action="withhold", sources=["A"]).rule_id != plain.rule_id
    assert Threshold(analyte="neutrophils", below=1.5, action="withhold", confirmed=True, sources=["A"]).rule_id != plain.rule_id


def test_the_migration_derives_every_built_in_rule_id_from_its_old_key():
    migration = _migration()
    # Rules with fields newer than revision 0002 (after_repeat_below, without_baseline: issue 14) never had a
    # display-text key: the code that wrote those keys could not load them.
    thresholds = [t for p in load_library().protocols.values() for t in p.thresholds
                  if t.after_repeat_below is None and not t.without_baseline]
    assert len(thresholds) > 40
    for t in thresholds:
        old = f"threshold:course7:{t.describe()}:result9"
        assert migration.new_key(old) == f"threshold:course7:{t.rule_id}:result9", old
    assert migration.new_key("gate:course3:pregnancy (2 results needed, 1 on record)") == "gate:course3:pregnancy"
    assert migration.new_key("overdue:item5") is None


@pytest.mark.skipif(bool(os.environ.get("TRACKER_TEST_PG")), reason="rewinds a SQLite file's schema stamp")
def test_upgrade_keeps_every_alert_state(tracker, db_url):
    with freeze_time("2026-03-01"):
        for mrn in ("M1", "M2", "M3"):
            tracker(f"patient add {mrn} --name 'Max Test' --dob 1970-01-01")
            tracker(f"therapy start {mrn} methotrexate --on 2026-01-05")
            tracker(f"result add {mrn} alt 130 --on 2026-03-01")
        rows = [r for r in tracker.json("alerts") if r["kind"] == "threshold"]
        assert len(rows) >= 3
        tracker(f"alert resolve {rows[0]['id']} --reason 'haemolysed sample'")
        tracker(f"alert snooze {rows[1]['id']} --until 2026-03-20 --reason 'repeat booked'")
        before = {r["id"]: (r["status"], r["condition_key"]) for r in tracker.json("alerts --all")}
    # Put the database back to revision 0001 with keys as that code wrote them (display text). Later
    # revisions are undone first, through their own downgrades, so that the upgrade below can redo them.
    from tests.test_migrations import downgrade_sqlite

    downgrade_sqlite(db_url, "0002")
    library = load_library()
    import sqlite3

    with sqlite3.connect(db_url) as conn:
        for alert_id, (status, key) in before.items():
            if key.startswith("threshold:"):
                rule = key.split(":")[2]
                old = next(t.describe() for p in library.protocols.values() for t in p.thresholds
                           if t.rule_id == rule)
                conn.execute("UPDATE alert SET condition_key = ? WHERE id = ?",
                             (key.replace(f":{rule}:", f":{old}:"), alert_id))
        conn.execute("UPDATE alembic_version SET version_num = '0001'")
    with freeze_time("2026-03-02"):
        after = {r["id"]: (r["status"], r["condition_key"]) for r in tracker.json("alerts --all")}
    assert after == before  # same alerts, same states, same keys as the new code writes; nothing new raised
    with sqlite3.connect(db_url) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()[0] == SCHEMA_HEAD
        raises = conn.execute(text("SELECT count(*) FROM audit_event WHERE action = 'alert.raise'").text).fetchone()
    assert raises[0] == len([k for _, k in before.values()])
