"""benchmarks/run.py's `autovacuum_due`: before the figures (after `synth`, after the cold night) the benchmark
does at once what PostgreSQL's autovacuum would do within its first minute, by the server's own thresholds,
so that no night races autovacuum on the same cores (benchmarks/RESULTS.md, session 15)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from sqlalchemy import create_engine

pytestmark = pytest.mark.skipif(not os.environ.get("TRACKER_TEST_PG"), reason="needs TRACKER_TEST_PG")

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def _run_module():
    spec = importlib.util.spec_from_file_location("bench_run", BENCHMARKS / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def flush_counts(conn) -> None:
    """This session's row counts into pg_stat_user_tables now (a session sends them as it goes idle, at most
    once a second): the flush is asked for, and done before the session's next statement returns."""
    conn.exec_driver_sql("SELECT pg_stat_force_next_flush()")
    conn.exec_driver_sql("SELECT 1")


def test_each_table_gets_what_autovacuum_would_give_it(db_url):
    engine = create_engine(db_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        # Thresholds at the defaults: VACUUM past 1,000 + 20 % rows inserted (or 50 + 20 % dead), ANALYZE
        # past 50 + 10 % changed; a table never analyzed counts as empty.
        conn.exec_driver_sql("CREATE TABLE many (n int)")  # 5,000 new rows: both
        conn.exec_driver_sql("INSERT INTO many SELECT generate_series(1, 5000)")
        conn.exec_driver_sql("CREATE TABLE few (n int)")  # 10 new rows: neither
        conn.exec_driver_sql("INSERT INTO few SELECT generate_series(1, 10)")
        conn.exec_driver_sql("CREATE TABLE changed (n int)")  # 3,000 rows counted, 400 updated: ANALYZE only
        conn.exec_driver_sql("INSERT INTO changed SELECT generate_series(1, 3000)")
        flush_counts(conn)  # before the VACUUM: it resets the counts, then they would arrive
        conn.exec_driver_sql("VACUUM ANALYZE changed")
        conn.exec_driver_sql("UPDATE changed SET n = -n WHERE n <= 400")
        flush_counts(conn)
    engine.dispose()

    done = _run_module().autovacuum_due(db_url)["tables"]

    assert done == {"many": "VACUUM ANALYZE", "changed": "ANALYZE"}
