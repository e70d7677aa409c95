"""Issue 19: on PostgreSQL a nightly run writes set-shaped (no statement per row on a path that scales) and
leaves the audit chain intact: a cold nightly on a synthetic clinic, a day on which alerts resolve, snoozes
end and checkpoints are judged, then `tracker audit verify`. Needs TRACKER_TEST_PG (skipped without)."""

from __future__ import annotations

import os
from collections import Counter

import pytest
from freezegun import freeze_time
from sqlalchemy import event
from sqlalchemy.engine import Engine

from tests.conftest import Tracker

pytestmark = pytest.mark.skipif(not os.environ.get("TRACKER_TEST_PG"), reason="needs TRACKER_TEST_PG")

DAY, NEXT = "2026-03-02", "2026-03-03"
# The statements that were one per row before (ORM flushes and executemany): now one per chunk, if at all.
PER_ROW = ("INSERT INTO audit_event", "UPDATE item", "UPDATE alert")


class Executed:
    """Every statement the engines of this process execute: parameter sets per statement shape (an
    executemany counts one per row; a multi-row INSERT ... VALUES batch counts once)."""

    def __init__(self) -> None:
        self.rows: Counter = Counter()

    def __call__(self, _conn, _cursor, statement, parameters, context, executemany) -> None:
        many = executemany and "INSERTMANYVALUES" not in str(getattr(context, "execute_style", ""))
        self.rows[statement.split(" SET ")[0].split(" (")[0][:40]] += len(parameters) if many else 1

    def __enter__(self) -> "Executed":
        event.listen(Engine, "before_cursor_execute", self)
        return self

    def __exit__(self, *_exc) -> None:
        event.remove(Engine, "before_cursor_execute", self)

    def per_row(self) -> dict:
        """The shapes of PER_ROW executed more than twice (one clinic chunk: one set-shaped statement each,
        and the run's own `nightly.run` audit row)."""
        return {shape: n for shape, n in self.rows.items() if shape.startswith(PER_ROW) and n > 2}


def test_a_cold_nightly_and_the_next_day_write_set_shaped_and_keep_the_chain(db_url):
    tracker = Tracker(db_url)
    with freeze_time(DAY):
        tracker(f"synth --patients 400 --seed 5 --as-of {DAY}")
        with Executed() as cold:
            tracker(f"nightly --as-of {DAY}")
        alerts = tracker.json("alerts")
    assert len(alerts) > 50  # a cold run raises the clinic's alerts
    assert cold.per_row() == {}, cold.per_row()
    assert sum(cold.rows.values()) < 400  # statements per chunk of 500 patients, not per alert or audit row

    # The next day, after a snooze that ends and a course stopped with its overdue alert open: the runs
    # re-open and resolve rows that exist.
    overdue = next(a for a in alerts if a["kind"] == "overdue")
    snoozed = next(a for a in alerts if a["mrn"] != overdue["mrn"])
    with freeze_time(DAY):
        tracker(f"alert snooze {snoozed['id']} --until {NEXT} --reason later")
        tracker(f"therapy stop {overdue['mrn']} {overdue['drug']} --on {DAY} --reason switched")
    with freeze_time(NEXT), Executed() as next_day:
        tracker(f"nightly --as-of {NEXT}")
    assert next_day.per_row() == {}, next_day.per_row()
    actions = Counter(row["action"] for row in tracker.json("audit --limit 0"))
    assert actions["alert.raise"] and actions["nightly.run"] == 2 and actions["checkpoint.met"]
    assert actions["alert.reopen"] >= 1 and actions["alert.resolve"] >= 1
    verified = tracker("audit verify")
    assert verified.exit_code == 0 and "chain intact" in verified.stdout


def test_postgresql_sessions_run_without_jit_unless_the_url_says(db_url):
    # JIT compiling the whole-clinic prefilter's scans took longer than it saved (db/engine.py).
    from tracker.db.engine import make_engine, resolve_url

    for url, expected in ((db_url, "off"), (f"{db_url}?options=-cjit%3Don", "on")):
        engine = make_engine(resolve_url(url))
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW jit").scalar() == expected
        engine.dispose()
