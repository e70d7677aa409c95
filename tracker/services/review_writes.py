"""Set-shaped writes of what a review changes in rows that exist (issue 19): checkpoint items judged, alerts
resolved, cleared, re-opened or rewritten, each with its audit row.

The rows are read as plain rows, changed as dicts, written back with one UPDATE per chunk
(`db/bulk.py: update_rows`; PostgreSQL `UPDATE ... FROM unnest(...)`), and their audit rows are chained in
one pass and inserted in bulk (`audit.insert_rows`; PostgreSQL one COPY) when the review's changes are
applied: no ORM object per row, no flush of per-row objects. The audit rows say what `audit.record` would
have said for each change (before and after as snapshots of the row).
"""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

from sqlalchemy import select

from tracker.db.bulk import update_rows
from tracker.db.rows import narrowed
from tracker.db.tables import Alert, Item
from tracker.services import audit

A = Alert.__table__
I = Item.__table__
ALERT_FIELDS = tuple(Alert.model_fields)  # what an alert's audit snapshot holds (audit.snapshot's fields)
# The columns the nightly's review may change on a live alert; written back whole, under the write lock.
ALERT_CHANGEABLE = ("status", "message", "value", "result_id", "snoozed_until", "reopened_on", "resolved_on",
                    "resolution", "cleared_on", "updated_at")
JUDGED_FIELDS = ("status", "done_on", "done_note")  # what a checkpoint's audit row shows before and after


class WrittenAlert(SimpleNamespace):
    """An alert's columns as this run left them (a plain row, not an ORM object): what callers of evaluate
    read of the alerts it re-opened or resolved (id, kind, severity, message, resolution...)."""


class AuditRows:
    """The audit rows of one application of reviews, written together at its end (`write`)."""

    def __init__(self, user: str, now: dt.datetime) -> None:
        self.user, self.now = user, now
        self.rows: list[dict] = []

    def add(self, action: str, entity: str, entity_id: int, mrn: str | None, before: dict | None,
            after: dict | None) -> None:
        self.rows.append(audit.row_values(self.now, self.user, action, entity, entity_id, mrn, before, after))

    def write(self, session) -> None:
        if not self.rows:
            return
        session.flush()  # rows pending in the session are chained first (audit.link_rows)
        audit.insert_rows(session.connection(), self.rows)
        self.rows = []


def _expire_loaded(session, model, ids) -> None:
    """Rows written here by id behind the session's back: any copy the session holds is re-read on use."""
    identity_map = session.identity_map
    for row_id in ids:
        loaded = identity_map.get(session.identity_key(model, row_id))
        if loaded is not None:
            session.expire(loaded)


def _plain(session, query, column, ids) -> list[dict]:
    session.flush()
    conn = session.connection()
    return [dict(row) for narrow in narrowed(session, query, column, ids) for row in conn.execute(narrow).mappings()]


# --- checkpoints judged ----------------------------------------------------------------------------------


def mark_judged(session, judged: list, audit_rows: AuditRows, mrns: dict, outcomes: list) -> None:
    """Mark the items of `judged` ((review, Judgement) pairs) done with their outcome: one UPDATE per chunk,
    an audit row each; an item judged again on the same assessment is left alone."""
    if not judged:
        return
    items = {row["id"]: row for row in _plain(
        session, select(I.c.id, I.c.drug, I.c.sequence, *(I.c[f] for f in JUDGED_FIELDS)), I.c.id,
        {j.item_id for _, j in judged})}
    changed: dict[int, dict] = {}
    for r, j in judged:
        item = items[j.item_id]
        note = f"{j.status}: assessment #{j.assessment_id}"
        if item["status"] == "done" and item["done_note"] == note:
            continue  # judged again on the same assessment: nothing changed
        before = audit.snapshot_values(item, JUDGED_FIELDS)
        item.update(status="done", done_on=j.done_on, done_note=note, sequence=item["sequence"] + 1,
                    last_modified=audit_rows.now)
        changed[item["id"]] = item
        audit_rows.add(f"checkpoint.{j.status}", "item", item["id"], mrns.get(r.patient_id), before,
                       {**audit.snapshot_values(item, JUDGED_FIELDS), "response": j.summary, "missing": list(j.missing)})
        outcomes.append(f"{mrns.get(r.patient_id)} {item['drug']}: {j.summary}")
    update_rows(session.connection(), I, [
        {"id": item["id"], **{f: item[f] for f in (*JUDGED_FIELDS, "sequence", "last_modified")}}
        for item in changed.values()])
    _expire_loaded(session, Item, changed)


# --- alerts changed --------------------------------------------------------------------------------------


def resolved_values(on: dt.date, reason: str) -> dict:
    """What resolving an alert sets, by the nightly review (AlertChanges.resolve) or a person
    (review_apply.resolve_alert): one definition for both."""
    return {"status": "resolved", "resolved_on": on, "resolution": reason}


class AlertChanges:
    """Changes to live alerts, audited as they are made and written back together (`write`)."""

    def __init__(self, session, audit_rows: AuditRows) -> None:
        self.session, self.audit_rows = session, audit_rows
        self.changed: dict[int, dict] = {}

    def load(self, ids) -> dict[int, dict]:
        """The alerts of `ids` as plain rows (every column), as changed so far by this run."""
        wanted = [i for i in dict.fromkeys(ids) if i not in self.changed]
        loaded = {row["id"]: row for row in _plain(self.session, select(A), A.c.id, wanted)}
        return {i: self.changed.get(i) or loaded[i] for i in ids}

    def change(self, row: dict, action: str, mrn: str | None, values: dict, why: str | None = None) -> WrittenAlert:
        """Set `values` on `row` and audit it as `action` (after: the row, and `why` when given)."""
        before = audit.snapshot_values(row, ALERT_FIELDS)
        row.update(values, updated_at=self.audit_rows.now)
        after = audit.snapshot_values(row, ALERT_FIELDS)
        self.audit_rows.add(action, "alert", row["id"], mrn, before, after if why is None else {**after, "why": why})
        self.changed[row["id"]] = row
        return WrittenAlert(**row)

    def resolve(self, row: dict, on: dt.date, reason: str, mrn: str | None) -> WrittenAlert:
        """Resolved on `on` for `reason` (resolved_values)."""
        return self.change(row, "alert.resolve", mrn, resolved_values(on, reason))

    def write(self) -> None:
        update_rows(self.session.connection(), A, [
            {"id": row["id"], **{c: row[c] for c in ALERT_CHANGEABLE}} for row in self.changed.values()])
        _expire_loaded(self.session, Alert, self.changed)
        self.changed = {}
