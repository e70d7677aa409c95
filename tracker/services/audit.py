"""The audit log: who changed what, when, with before/after."""

from __future__ import annotations

import datetime as dt
import json

from sqlmodel import Session

from tracker.dates import utcnow
from tracker.db.tables import AuditEvent


def snapshot(row, *fields: str) -> dict:
    """A JSON-ready view of a row (all columns, or the named ones)."""
    names = fields or tuple(row.__class__.model_fields)
    out = {}
    for name in names:
        value = getattr(row, name)
        out[name] = value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else value
    return out


def record(
    session: Session,
    user: str,
    action: str,
    entity: str,
    entity_id: int | None,
    mrn: str | None = None,
    before: dict | None = None,
    after: dict | None = None,
) -> AuditEvent:
    event = AuditEvent(
        at=utcnow(),
        user=user,
        action=action,
        entity=entity,
        entity_id=entity_id,
        mrn=mrn,
        before=json.dumps(before, sort_keys=True, default=str) if before is not None else None,
        after=json.dumps(after, sort_keys=True, default=str) if after is not None else None,
    )
    session.add(event)
    return event
