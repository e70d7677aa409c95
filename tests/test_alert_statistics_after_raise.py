"""PostgreSQL: a pass that raises many alerts refreshes the alert table's statistics inside its transaction
(tracker/services/review_apply.py: _insert_alerts). A cold nightly's first review group looked its condition
keys up while `alert` was empty, so the cached plan of that lookup was a sequential scan; the next group's
lookups then scanned every alert just raised, per 500 keys (about 10 s each at 1,000,000 patients). ANALYZE
sees the transaction's own rows and invalidates the cached plans (the plans themselves: benchmarks/RESULTS.md,
"Session 8: growth"). It reads only the columns the night's later statements filter or join on
(tracker/db/bulk.py ANALYZED_COLUMNS), not the long texts."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from sqlmodel import Session

from tracker.db.bulk import ANALYZED_COLUMNS
from tracker.db.engine import open_engine
from tracker.db.tables import Patient, metadata
from tracker.services.review_apply import _insert_alerts

ANALYZE_AFTER_RAISED = 1000  # analyze_if_outdated: a change of 1,000 rows or more (and over half the table)

needs_postgresql = pytest.mark.skipif(not os.environ.get("TRACKER_TEST_PG"), reason="needs TRACKER_TEST_PG")

NOW = dt.datetime(2026, 11, 2, 8, 0, tzinfo=dt.timezone.utc)


def _alert(n: int, patient_id: int) -> dict:
    return {"condition_key": f"threshold:test:{n}", "patient_id": patient_id, "course_id": None, "item_id": None,
            "result_id": None, "drug": "methotrexate", "kind": "threshold", "severity": "warning", "status": "open",
            "raised_on": NOW.date(), "message": f"alert {n}", "suggestions": "", "sources": "", "value": None,
            "limit_text": None, "created_at": NOW, "updated_at": NOW}


def test_the_columns_analyzed_in_a_nightly_are_the_tables_own():
    """A column named there that a migration renamed or dropped would make the ANALYZE, and the night, fail."""
    for table, columns in ANALYZED_COLUMNS.items():
        assert set(columns) <= set(metadata.tables[table].columns.keys()), table


@needs_postgresql
def test_raising_many_alerts_refreshes_the_alert_tables_statistics_in_the_transaction(db_url):
    engine = open_engine(db_url)
    with Session(engine) as session:
        patient = Patient(mrn="P1", name="P", dob=dt.date(1980, 1, 1), created_at=NOW, updated_at=NOW)
        session.add(patient)
        session.flush()
        raised = _insert_alerts(session, [_alert(n, patient.id) for n in range(ANALYZE_AFTER_RAISED + 500)], "tester",
                                {patient.id: "P1"}, NOW)
        assert len(raised) == ANALYZE_AFTER_RAISED + 500
        reltuples = session.connection().exec_driver_sql(
            "SELECT reltuples FROM pg_class WHERE relname = 'alert'").scalar()
        assert reltuples >= ANALYZE_AFTER_RAISED  # this transaction's rows, not the empty table's
        analyzed = set(session.connection().exec_driver_sql(
            "SELECT attname FROM pg_stats WHERE schemaname = current_schema() AND tablename = 'alert'").scalars())
        assert analyzed == set(ANALYZED_COLUMNS["alert"])  # the message, sources and the rest: not read
        session.rollback()
    engine.dispose()
