"""The scan of every result (a full pass's prefilter, tracker/db/charts.py latest_breach_candidates) is planned
on PostgreSQL with rows from parallel workers costed cheap, and only it: the planner takes the scan's CASE of
bounds for half the table, and at 1,000,000 patients that made one process scan alone (benchmarks/RESULTS.md,
session 14). The setting is in force for that statement, and the transaction's own value is back after it."""

from __future__ import annotations

import datetime as dt
import os

import pytest
from freezegun import freeze_time
from sqlalchemy import event, text
from sqlmodel import Session

from tracker.db.charts import SCAN_PARALLEL_TUPLE_COST, ProtocolsOfCourses, breaching_patients, versions_in_use
from tracker.db.engine import open_engine
from tracker.protocol_files import load_library

pytestmark = pytest.mark.skipif(not os.environ.get("TRACKER_TEST_PG"), reason="needs TRACKER_TEST_PG")

TODAY = dt.date(2026, 11, 2)


def test_the_scan_of_results_alone_runs_with_cheap_rows_from_workers(tracker, db_url):
    with freeze_time(TODAY.isoformat()):
        tracker("synth --patients 200 --seed 5")
    library = load_library()
    engine = open_engine(db_url)
    seen = []  # (statement, parallel_tuple_cost as it ran)

    @event.listens_for(engine, "after_cursor_execute")
    def setting_as_run(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().startswith("SELECT") and "set_config" not in statement and "current_setting" not in statement:
            seen.append((statement, cursor.connection.execute("SHOW parallel_tuple_cost").fetchone()[0]))

    with Session(engine) as session:
        session.execute(text("SET LOCAL parallel_tuple_cost = 0.2"))  # the site's own value, say
        protocol_of = ProtocolsOfCourses(session, library)
        chosen = breaching_patients(session, versions_in_use(session), protocol_of, library.vocabulary)
        assert chosen  # synth's clinic has out-of-range results
        after = session.execute(text("SHOW parallel_tuple_cost")).scalar_one()
    engine.dispose()
    scans, others = [], []
    for statement, cost in seen:
        (scans if "OFFSET" in statement and "CASE" in statement else others).append(cost)
    assert scans == [SCAN_PARALLEL_TUPLE_COST]
    assert others and set(others) == {"0.2"}
    assert after == "0.2"
