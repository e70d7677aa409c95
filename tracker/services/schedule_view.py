"""Protocols as readable timelines (`tracker schedules show`) and summaries (`schedules list`)."""

from __future__ import annotations

import datetime as dt

from tracker.core.defaults import item_clinic_defaults
from tracker.core.plan import CourseFacts, PatientFacts, plan_course
from tracker.core.protocol import Protocol, ProtocolLibrary
from tracker.resources import schedules_dir

# A nominal Monday to lay a protocol out on; only offsets from it are shown.
NOMINAL_START = dt.date(2024, 1, 1)


def protocol_timeline(protocol: Protocol, weeks: int = 52, start: dt.date = NOMINAL_START) -> list[dict]:
    """Every item of a course started on `start`, for a patient every baseline rule applies to."""
    facts = CourseFacts(start=start, patient=PatientFacts(sex="f", childbearing_potential=True))
    horizon = start + dt.timedelta(weeks=weeks)
    rows = []
    for item in plan_course(protocol, facts, horizon):
        offset = (item.due - start).days
        rows.append(
            {
                "week": round(offset / 7, 1),
                "day": offset,
                "date": item.due.isoformat(),
                "kind": item.kind,
                "tests": list(item.tests),
                "gate": item.gate,
                "measure": item.measure,
                "target": item.target,
                "title": item.title,
                "detail": item.detail,
                "sources": list(item.sources),
                "clinic_default": list(item_clinic_defaults(protocol, item.kind, item.tests, item.week)),
            }
        )
    return rows


def protocol_origin(protocol: Protocol) -> str:
    builtin = str(schedules_dir())
    return "built-in" if protocol.origin.startswith(builtin) else f"clinic ({protocol.origin})"


def protocol_summaries(library: ProtocolLibrary) -> list[dict]:
    return [
        {
            "id": p.id,
            "name": p.name,
            "class": p.drug_class,
            "version": p.version,
            "hash": p.content_hash,
            "sources": len(p.sources),
            "aliases": [*p.aliases, *p.brands],
            "origin": protocol_origin(p),
        }
        for p in library
    ]
