"""Issue 12: each worklist window, as the SQL tracker/db/windows.py writes, selects exactly the stored items
its core predicate accepts, on a real database through the real migrations (SQLite, or PostgreSQL with
TRACKER_TEST_PG). One database per test; each example inserts its items in a transaction rolled back after."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select

from tracker.core import worklist
from tracker.core.plan import KINDS
from tracker.db.tables import Item
from tracker.db.windows import item_where

STAMP = dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc)

items = st.lists(st.tuples(st.sampled_from(KINDS), st.sampled_from(["planned", "done", "cancelled"]),
                           st.integers(-70, 70)), max_size=40)  # due = today + offset: boundaries are hit


@pytest.fixture
def store(tracker):
    """A migrated database holding one patient on one course (and that course's own planned items)."""
    from tracker.db.engine import open_engine

    tracker("patient add P1 --name 'Ada Byron' --dob 1980-01-01")
    tracker("therapy start P1 ciclosporin --on 2026-01-05")
    engine = open_engine(tracker.db)
    with engine.connect() as conn:
        course_id, patient_id = conn.exec_driver_sql("SELECT id, patient_id FROM course").one()
    yield engine, course_id, patient_id
    engine.dispose()


def _windows(today: dt.date, days: int, grace: int):
    """(window, predicate) for each worklist notion."""
    return {
        "due": (worklist.due_window(today, days), lambda i: worklist.is_due(i, today, days)),
        "overdue": (worklist.overdue_window(today), lambda i: worklist.is_overdue(i, today)),
        "overdue alert": (worklist.overdue_alert_window(today, grace),
                          lambda i: worklist.needs_overdue_alert(i, today, grace)),
        "upcoming": (worklist.upcoming_window(today), lambda i: worklist.is_upcoming(i, today)),
    }


def _stored(conn, items, today, course_id, patient_id) -> list:
    """Insert the generated (kind, status, day offset) items; the table's rows as the predicates read them."""
    if items:
        conn.execute(insert(Item.__table__), [
            {"uid": f"prop-{n}", "course_id": course_id, "patient_id": patient_id, "drug": "ciclosporin",
             "kind": kind, "status": status, "due": today + dt.timedelta(days=offset), "tests": "",
             "title": f"item {n}", "sources": "", "adjusted": False, "origin": "plan", "sequence": 0,
             "created_at": STAMP, "last_modified": STAMP}
            for n, (kind, status, offset) in enumerate(items)])
    return conn.execute(select(Item.id, Item.kind, Item.status, Item.due)).all()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=items, today=st.dates(dt.date(2026, 1, 1), dt.date(2026, 6, 30)), days=st.integers(0, 60),
       grace=st.integers(0, 30))
def test_each_window_selects_exactly_what_its_predicate_accepts(store, items, today, days, grace):
    engine, course_id, patient_id = store
    with engine.connect() as conn:
        trans = conn.begin()
        try:
            stored = _stored(conn, items, today, course_id, patient_id)
            for name, (window, accepts) in _windows(today, days, grace).items():
                selected = set(conn.execute(select(Item.id).where(item_where(window))).scalars())
                assert selected == {row.id for row in stored if accepts(row)}, name
        finally:
            trans.rollback()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=items, today=st.dates(dt.date(2026, 1, 1), dt.date(2026, 6, 30)))
def test_each_review_window_selects_exactly_what_it_admits(store, items, today):
    """The review's windows (core/review.py), one kind among them written as a literal (the limit items'
    partial index, migration 0019), select what `ItemWindow.admits` accepts."""
    from tracker.core.review import review_windows
    from tracker.core.settings import Settings

    engine, course_id, patient_id = store
    with engine.connect() as conn:
        trans = conn.begin()
        try:
            stored = _stored(conn, items, today, course_id, patient_id)
            for window in review_windows(today, Settings().alerts):
                selected = set(conn.execute(select(Item.id).where(item_where(window))).scalars())
                assert selected == {row.id for row in stored if window.admits(row)}, window
        finally:
            trans.rollback()


def test_the_limit_window_is_answered_by_the_limit_items_index_on_sqlite(store):
    """Limit items have no date bound: without the partial index (migration 0019) SQLite walks every planned
    item of the clinic through `item (status, due)` to find them."""
    from tracker.core.worklist import ItemWindow

    engine, _, _ = store
    if engine.dialect.name != "sqlite":
        pytest.skip("a SQLite query plan")
    query = select(Item.patient_id).where(item_where(ItemWindow(("limit",))))
    sql = str(query.compile(engine, compile_kwargs={"render_postcompile": True}))
    with engine.connect() as conn:
        plan = " ".join(str(row[-1]) for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, ("planned",)))
    assert "ix_item_limit_status" in plan, plan
