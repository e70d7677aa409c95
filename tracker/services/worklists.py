"""Worklists and calendars: what is due, overdue, or planned, as plain rows for rendering or JSON."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import and_, select

from tracker.db.tables import Item, Patient, codes

# Items that are tasks for staff; a limit item marks a date, it is not something to complete.
TASK_KINDS = ("baseline", "lab", "checkpoint")


def item_row(item: Item, mrn: str, name: str | None, as_of: dt.date) -> dict:
    """The stable JSON shape of a calendar item."""
    drugs = [item.drug, *codes(item.merged_drugs)]
    return {
        "id": item.id,
        "uid": item.uid,
        "mrn": mrn,
        "patient": name,
        "drug": item.drug,
        "drugs": drugs,
        "kind": item.kind,
        "due": item.due.isoformat(),
        "tests": codes(item.tests),
        "status": item.status,
        "overdue": item.status == "planned" and item.kind in TASK_KINDS and item.due < as_of,
        "title": item.title,
        "detail": item.detail,
        "sources": codes(item.sources),
        "gate": item.gate,
        "week": item.week,
        "measure": item.measure,
        "target": item.target,
        "done_on": item.done_on.isoformat() if item.done_on else None,
        "adjusted": item.adjusted,
        "sequence": item.sequence,
    }


def _rows(session, query, as_of: dt.date) -> list[dict]:
    return [item_row(row, row.mrn, row.name, as_of) for row in session.execute(query)]


def _base():
    # Plain rows (the item's columns plus the patient's MRN and name), not ORM objects: a clinic's worklist
    # can be thousands of rows, and item_row only reads them.
    return select(*Item.__table__.c, Patient.mrn, Patient.name).join(Patient, Patient.id == Item.patient_id)


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
