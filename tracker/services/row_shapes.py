"""The stable JSON shapes of an alert and a lab result, for listings and `patient show`: plain functions of a
row, in a module of their own so that a listing that shows alerts or results need not load the services
that raise and review them (services/alerts.py, services/results.py import them from here)."""

from __future__ import annotations

from tracker.db.tables import codes

# What a listing says of an alert whose condition cleared but that awaits a clinician's acknowledgement.
CLEARED_STATE = "cleared, awaiting acknowledgement"


def alert_text(row: dict) -> str:
    """An alert's message (an `alert_row`) with the drugs it suggests considering, named once: a checkpoint
    failure's message names them already ("; consider: ..."), another gets them added the same way."""
    named = ", ".join(row["suggestions"])
    if not named or f"consider: {named}" in row["message"]:
        return row["message"]
    return f"{row['message']}; consider: {named}"


def alert_row(row, mrn: str | None) -> dict:
    """The stable JSON shape of an alert."""
    return {
        "id": row.id,
        "mrn": mrn,
        "drug": row.drug,
        "kind": row.kind,
        "severity": row.severity,
        "status": row.status,
        "raised_on": row.raised_on.isoformat(),
        "message": row.message,
        "suggestions": codes(row.suggestions),
        "sources": codes(row.sources),
        "value": row.value,
        "limit": row.limit_text,
        "note": row.note,
        "snoozed_until": row.snoozed_until.isoformat() if row.snoozed_until else None,
        "reopened_on": row.reopened_on.isoformat() if row.reopened_on else None,
        "resolved_on": row.resolved_on.isoformat() if row.resolved_on else None,
        "resolution": row.resolution,
        "cleared_on": row.cleared_on.isoformat() if row.cleared_on else None,
        "state": alert_state(row.status, row.cleared_on),
        "condition_key": row.condition_key,
        "course_id": row.course_id,
        "item_id": row.item_id,
        "result_id": row.result_id,
    }


def alert_state(status: str, cleared_on) -> str:
    """What a listing says of an alert: its status, or "cleared, awaiting acknowledgement"."""
    return CLEARED_STATE if cleared_on is not None and status != "resolved" else status


def result_row(result) -> dict:
    """A result for listings and JSON: the value in the vocabulary's unit and, beside it, as reported."""
    numeric = result.value_num is not None
    return {
        "id": result.id,
        "taken_on": result.taken_on.isoformat(),
        "test": result.test,
        "value": result.value_num if numeric else result.value_text,
        "unit": result.unit if numeric else None,
        "reported_value": result.reported_value,
        "reported_unit": result.reported_unit,
        "ref_low": result.ref_low,
        "ref_high": result.ref_high,
    }


def as_reported(row: dict) -> str:
    """`800 cells/uL` when a result was converted from another unit, else ``."""
    if row["reported_value"] is None or row["reported_unit"] in (None, row["unit"]):
        return ""
    return f"{row['reported_value']:g} {row['reported_unit']}"


