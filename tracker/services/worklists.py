"""Worklists and calendars: what is due, overdue, or planned, as plain rows for rendering or JSON.

What "due", "overdue" and "upcoming" mean is tracker/core/worklist.py; the SQL narrowing to those items
is tracker/db/windows.py. Here: which window a listing uses, its order, and the row shape.
"""

from __future__ import annotations

import datetime as dt
from collections import namedtuple

from sqlalchemy import select

from tracker.core.panels import describe_missing, item_state, missing
from tracker.core.vocabulary import Vocabulary
from tracker.core.worklist import due_window, is_due, is_overdue, is_upcoming, overdue_window, upcoming_window
from tracker.db.tables import Item, Patient, codes
from tracker.db.windows import item_where

# The item columns a calendar row shows, in the order item_values takes them.
ROW_COLUMNS = ("id", "uid", "drug", "merged_drugs", "kind", "due", "tests", "status", "title", "detail", "sources",
               "gate", "week", "measure", "target", "done_on", "adjusted", "sequence", "received")


def item_values(values: tuple, mrn: str, name: str | None, overdue: bool, vocabulary: Vocabulary | None = None) -> dict:
    """The stable JSON shape of a calendar item, from the ROW_COLUMNS values as a tuple (what a worklist
    query returns; unpacking a tuple is much cheaper per row than attribute access on thousands of rows). `overdue` is the core's
    judgement (`worklist.is_overdue`) of the same item. A planned item that has received part of what it
    needs shows `status: partial` with the `missing` requirements (core/panels.py; needs `vocabulary`)."""
    (id_, uid, drug, merged_drugs, kind, due, tests, status, title, detail, sources, gate, week, measure, target,
     done_on, adjusted, sequence, received) = values
    needs = ()
    if received and status == "planned" and vocabulary is not None:
        needs = missing(codes(tests), codes(received), vocabulary)
        status = item_state(status, codes(tests), codes(received), vocabulary)
    return {
        "id": id_,
        "uid": uid,
        "mrn": mrn,
        "patient": name,
        "drug": drug,
        "drugs": [drug, *codes(merged_drugs)],
        "kind": kind,
        "due": due.isoformat(),
        "tests": codes(tests),
        "status": status,
        "overdue": overdue,
        "title": title,
        "detail": detail,
        "sources": codes(sources),
        "gate": gate,
        "week": week,
        "measure": measure,
        "target": target,
        "done_on": done_on.isoformat() if done_on else None,
        "adjusted": adjusted,
        "sequence": sequence,
        "received": codes(received),
        "missing": [need.text() for need in needs],
        "missing_text": describe_missing(needs, vocabulary) if needs else None,
    }


# What the core's predicates read of an item, taken from a row's tuple (attribute access on a result row
# costs several times more per row than building this).
_Facts = namedtuple("_Facts", "kind status due")
_KIND, _STATUS, _DUE = (ROW_COLUMNS.index(name) for name in _Facts._fields)


def _rows(session, query, today: dt.date, accept=None, vocabulary: Vocabulary | None = None) -> list[dict]:
    """The rows of `query` (ROW_COLUMNS, then mrn and name) that `accept(item, today)` keeps (a core
    predicate, the final judge after the SQL window), each with the core's overdue flag."""
    return list(_streamed_rows(session, query, today, accept, vocabulary))


# Rows fetched from the cursor per batch by a streamed listing (PostgreSQL: a server-side cursor's FETCH).
STREAM_BATCH = 1000


def _streamed_rows(session, query, today: dt.date, accept=None, vocabulary: Vocabulary | None = None,
                   batch: int | None = None):
    """`_rows` as a generator. With `batch`, the cursor is read `batch` rows at a time, so a whole-clinic
    listing holds one batch, not the clinic's list (PostgreSQL: a server-side cursor; SQLite reads its
    cursor as it goes). Core rows, not the ORM's: the ORM would buffer them all and costs more per row."""
    session.flush()  # as Session.execute would (autoflush): a what-if's rolled-forward plans must be seen
    width = len(ROW_COLUMNS)
    result = session.connection().execute(query, execution_options={"yield_per": batch} if batch else {})
    try:
        for row in result:
            values = row[:width]
            facts = _Facts(values[_KIND], values[_STATUS], values[_DUE])
            if accept is None or accept(facts, today):
                yield item_values(values, row[width], row[width + 1], is_overdue(facts, today), vocabulary)
    finally:
        result.close()


def _base():
    columns = Item.__table__.c
    return select(*(columns[name] for name in ROW_COLUMNS), Patient.mrn, Patient.name).join(
        Patient, Patient.id == Item.patient_id)


def calendar(session, patient_id: int, start: dt.date | None, end: dt.date | None, today: dt.date,
             include_cancelled: bool = False, vocabulary: Vocabulary | None = None) -> list[dict]:
    """Every item of a patient's calendar (limits included), by date."""
    query = _base().where(Item.patient_id == patient_id)
    if start:
        query = query.where(Item.due >= start)
    if end:
        query = query.where(Item.due <= end)
    if not include_cancelled:
        query = query.where(Item.status != "cancelled")
    return _rows(session, query.order_by(Item.due, Item.kind, Item.id), today, vocabulary=vocabulary)


def due(session, today: dt.date, days: int, vocabulary: Vocabulary | None = None,
        clinician: str | None = None) -> list[dict]:
    """Tasks due from `today` to `today + days` inclusive (`worklist.is_due`), by patient then date: the
    items the nightly digest with that lead time reminds of (of one clinician's patients, when given)."""
    return list(due_rows(session, today, days, vocabulary, clinician))


def due_rows(session, today: dt.date, days: int, vocabulary: Vocabulary | None = None,
             clinician: str | None = None):
    """`due` as a generator of its rows, read from the cursor as they are consumed."""
    query = _base().where(item_where(due_window(today, days)))
    if clinician is not None:
        query = query.where(Patient.clinician == clinician)
    return _streamed_rows(session, query.order_by(Patient.mrn, Item.due, Item.id), today,
                          lambda row, today: is_due(row, today, days), vocabulary, STREAM_BATCH)


def overdue(session, today: dt.date, vocabulary: Vocabulary | None = None) -> list[dict]:
    """Tasks whose due date has passed (`worklist.is_overdue`), by patient then date."""
    return list(overdue_rows(session, today, vocabulary))


def overdue_rows(session, today: dt.date, vocabulary: Vocabulary | None = None):
    """`overdue` as a generator of its rows, read from the cursor as they are consumed."""
    query = _base().where(item_where(overdue_window(today)))
    return _streamed_rows(session, query.order_by(Patient.mrn, Item.due, Item.id), today, is_overdue, vocabulary,
                          STREAM_BATCH)


def open_and_upcoming(session, patient_id: int, today: dt.date, upcoming: int,
                      vocabulary: Vocabulary | None = None) -> list[dict]:
    """One patient's overdue tasks, then the next `upcoming` planned items (`worklist.is_upcoming`)."""
    late = _base().where(Item.patient_id == patient_id, item_where(overdue_window(today)))
    coming = _base().where(Item.patient_id == patient_id, item_where(upcoming_window(today)))
    return (_rows(session, late.order_by(Item.due, Item.id), today, is_overdue, vocabulary)
            + _rows(session, coming.order_by(Item.due, Item.id).limit(upcoming), today, is_upcoming, vocabulary))


def mark_clinic_defaults(session, library, rows: list[dict]) -> list[dict]:
    """Add `clinic_default` to each row: what of the rule behind the item no clinical source gives, in
    words, read from the protocol its course was planned with (core: defaults.item_clinic_defaults)."""
    from tracker.core.defaults import item_clinic_defaults
    from tracker.db.charts import COURSE_COLUMNS, ProtocolsOfCourses
    from tracker.db.tables import Course

    ids = [row["id"] for row in rows]
    if not ids:
        return rows
    protocol_of = ProtocolsOfCourses(session, library)
    facts = {}
    for start in range(0, len(ids), 500):
        query = (select(Item.id, Item.origin, *COURSE_COLUMNS).join(Course, Course.id == Item.course_id)
                 .where(Item.id.in_(ids[start:start + 500])))
        for row in session.execute(query):
            facts[row[0]] = row
    for row in rows:
        fact = facts.get(row["id"])
        labels = () if fact is None else item_clinic_defaults(protocol_of(fact), row["kind"], row["tests"],
                                                              row["week"], fact.origin)
        row["clinic_default"] = list(labels)
    return rows
