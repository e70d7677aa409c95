"""The scan of every result (a full pass's prefilter, tracker/db/charts.py `latest_breach_candidates`) is a CASE
of bounds on the result's test, which compares each result's test with the WHENs in turn: the clinic's
commonest tests come first (counted in an even sample of its results), on either engine. The order changes
no result (the WHENs are distinct tests; tests/test_review_differential.py checks what the scan selects)."""

from __future__ import annotations

import re
from collections import Counter

from freezegun import freeze_time
from sqlalchemy import event, text
from sqlmodel import Session

from tracker.db.charts import ProtocolsOfCourses, breaching_patients, versions_in_use
from tracker.db.engine import open_engine
from tracker.protocol_files import load_library


def _when_order(statement: str, parameters) -> list[str]:
    """The tests of a CASE's WHENs, in the statement's order."""
    if isinstance(parameters, dict):  # psycopg: named parameters
        return [parameters[name] for name in re.findall(r"WHEN %\((\w+)\)s(?:::VARCHAR)? THEN", statement)]
    # sqlite3: positional; a WHEN's is the one after as many as come before it
    return [parameters[statement[:m.start()].count("?")] for m in re.finditer(r"WHEN \? THEN", statement)]


def test_the_scan_asks_a_result_about_the_commonest_tests_first(tracker, db_url):
    with freeze_time("2026-11-02"):
        tracker("synth --patients 200 --seed 5")
    library = load_library()
    engine = open_engine(db_url)
    with engine.connect() as conn:
        share = Counter(dict(conn.execute(text("SELECT test, count(*) FROM lab_result GROUP BY test")).all()))
    scans = []

    @event.listens_for(engine, "before_cursor_execute")
    def scan_seen(conn, cursor, statement, parameters, context, executemany):
        if "CASE r.test" in statement:
            scans.append(_when_order(statement, parameters))

    with Session(engine) as session:
        assert breaching_patients(session, versions_in_use(session), ProtocolsOfCourses(session, library),
                                  library.vocabulary)
    engine.dispose()
    [order] = scans
    # The blood count's five, ALT, creatinine and albumin: each about a tenth of the results, the next a
    # fiftieth. Among themselves and among the rest the sample's counts decide.
    by_share = sorted(order, key=lambda test: -share[test])
    assert len(order) > 10 and share[by_share[7]] > 3 * share[by_share[8]]
    assert set(order[:8]) == set(by_share[:8]), (order, share)
