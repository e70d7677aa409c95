"""The reminder step ANALYZEs a table only when this run changed it by at least 1,000 rows and by more than half
of what its statistics count (tracker/db/bulk.py `analyze_if_outdated`, PostgreSQL; skipped without
TRACKER_TEST_PG): a cold night's alerts into an empty table are analyzed, a typical night's few percent are not."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from tracker.db.bulk import analyze_if_outdated

pytestmark = pytest.mark.skipif(not os.environ.get("TRACKER_TEST_PG"), reason="PostgreSQL only")


def _add_patients(conn, first: int, count: int) -> None:
    conn.exec_driver_sql(
        "INSERT INTO patient (mrn, name, dob, childbearing, created_at, updated_at) SELECT 'M' || g, 'N', "
        "DATE '1980-01-01', 'unknown', now(), now() FROM generate_series(%s::int, %s::int) AS g", (first, first + count - 1))


def _counted(conn) -> float:
    return conn.exec_driver_sql("SELECT reltuples FROM pg_class WHERE oid = 'patient'::regclass").scalar()


def test_only_a_table_changed_by_over_half_its_counted_rows_is_analyzed():
    from tests.pg import fresh_database

    # A connection per step, as a nightly run has: a backend's counts of earlier transactions it has not yet
    # reported (PostgreSQL 15 reports at most once a second) show in pg_stat_xact_user_tables too.
    engine = create_engine(fresh_database(), poolclass=NullPool)
    try:
        with engine.begin() as conn:  # autovacuum would analyze on its own schedule: only the rule may here
            conn.exec_driver_sql("ALTER TABLE patient SET (autovacuum_enabled = false)")
        with engine.begin() as conn:  # never analyzed: 1,500 new rows are analyzed
            _add_patients(conn, 1, 1500)
            analyze_if_outdated(conn, ("patient",))
            assert _counted(conn) == 1500
        with engine.begin() as conn:  # 1,200 more than the 1,500 counted: over half, analyzed
            _add_patients(conn, 1501, 1200)
            analyze_if_outdated(conn, ("patient",))
            assert _counted(conn) == 2700
        with engine.begin() as conn:  # 1,000 more than 2,700: under half, left to autovacuum
            _add_patients(conn, 2701, 1000)
            analyze_if_outdated(conn, ("patient",))
            assert _counted(conn) == 2700
        with engine.begin() as conn:  # under 1,000 rows: never, however small the table
            conn.exec_driver_sql("DELETE FROM patient")
        with engine.begin() as conn:
            analyze_if_outdated(conn, ("patient",))
            assert _counted(conn) == 2700
    finally:
        engine.dispose()


def test_a_table_analyzed_in_this_transaction_counts_its_changes_from_that_analyze():
    """A cold night analyzes its alerts after each review group: the reminders' check, with no alert added since,
    does not analyze them a third time (the transaction's counts run from its start, the rule from the last
    ANALYZE of the table it ran)."""
    from tests.pg import fresh_database

    engine = create_engine(fresh_database(), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("ALTER TABLE patient SET (autovacuum_enabled = false)")
        with engine.begin() as conn:
            _add_patients(conn, 1, 1500)
            analyze_if_outdated(conn, ("patient",))
            assert _counted(conn) == 1500
            _add_patients(conn, 1501, 800)  # 2,300 since the transaction began, 800 since its ANALYZE: left
            analyze_if_outdated(conn, ("patient",))
            assert _counted(conn) == 1500
            _add_patients(conn, 2301, 700)  # 1,500 since its ANALYZE, over half the 1,500 counted: analyzed
            analyze_if_outdated(conn, ("patient",))
            assert _counted(conn) == 3000
        with engine.begin() as conn:  # a new transaction starts from its own counts again
            _add_patients(conn, 3001, 1600)
            analyze_if_outdated(conn, ("patient",))
            assert _counted(conn) == 4600
    finally:
        engine.dispose()
