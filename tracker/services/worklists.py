"""Worklists and calendars: what is due, overdue, or planned, as plain rows for rendering or JSON."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, select

from tracker.db.tables import Item, Patient, codes

# Items that are tasks for staff; a limit item marks a date, it is not something to complete.
TASK_KINDS = ("baseline", "lab", "checkpoint")


# The item columns a calendar row shows, in the order item_values takes them.
ROW_COLUMNS = ("id", "uid", "drug", "merged_drugs", "kind", "due", "tests", "status", "title", "detail", "sources",
               "gate", "week", "measure", "target", "done_on", "adjusted", "sequence")


def item_row(item: Item, mrn: str, name: str | None, as_of: dt.date) -> dict:
    """The stable JSON shape of a calendar item."""
    return item_values(tuple(getattr(item, column) for column in ROW_COLUMNS), mrn, name, as_of)


def item_values(values: tuple, mrn: str, name: str | None, as_of: dt.date) -> dict:
    """item_row from the ROW_COLUMNS values as a tuple (what a worklist query returns; unpacking a tuple
    is much cheaper per row than attribute access on thousands of result rows)."""
    (id_, uid, drug, merged_drugs, kind, due, tests, status, title, detail, sources, gate, week, measure, target,
     done_on, adjusted, sequence) = values
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
        "overdue": status == "planned" and kind in TASK_KINDS and due < as_of,
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
    }


def _rows(session, query, as_of: dt.date) -> list[dict]:
    width = len(ROW_COLUMNS)
    return [item_values(row[:width], row[width], row[width + 1], as_of) for row in session.execute(query)]


def _base():
    columns = Item.__table__.c
    return select(*(columns[name] for name in ROW_COLUMNS), Patient.mrn, Patient.name).join(
        Patient, Patient.id == Item.patient_id)


def calendar(session, patient_id: int, start: dt.date | None, end: dt.date | None, as_of: dt.date,
             include_cancelled: bool = False) -> list[dict]:
    query = _base().where(Item.patient_id == patient_id)
    if start:
        query = query.where(Item.due >= start)
    if end:
        query = query.where(Item.due <= end)
    if not include_cancelled:
        query = query.where(Item.status != "cancelled")
    return _rows(session, query.order_by(Item.due, Item.kind, Item.id), as_of)


def due(session, as_of: dt.date, days: int) -> list[dict]:
    """Planned items due from `as_of` to `as_of + days` inclusive, by patient then date."""
    query = _base().where(
        and_(Item.status == "planned", Item.due >= as_of, Item.due <= as_of + dt.timedelta(days=days))
    )
    return _rows(session, query.order_by(Patient.mrn, Item.due, Item.id), as_of)


def overdue(session, as_of: dt.date) -> list[dict]:
    """Planned tasks whose due date has passed."""
    query = _base().where(Item.status == "planned", Item.due < as_of, Item.kind.in_(TASK_KINDS))
    return _rows(session, query.order_by(Patient.mrn, Item.due, Item.id), as_of)
