"""Emitting reminders: the due and overdue tasks and the new or re-opened alerts not reminded yet, each
once (`reminder.dedupe_key` is unique), with a pending delivery per channel. Step 2 of the nightly job
(tracker/services/nightly.py)."""

from __future__ import annotations

import datetime as dt
import itertools
import json

from sqlalchemy import String, cast, exists, func, insert, literal, select
from sqlmodel import Session

from tracker.core.panels import describe_missing, missing
from tracker.core.review import BASELINE_OVERDUE_KEY
from tracker.core.worklist import due_window, is_due, overdue_window, reminds_overdue
from tracker.dates import utcnow
from tracker.db.bulk import analyze_if_outdated
from tracker.db.charts import LIVE_ALERT
from tracker.db.tables import (
    Alert,
    Item,
    Patient,
    Reminder,
    ReminderDelivery,
    codes,
    setting_value,
    store_setting,
)
from tracker.db.windows import item_where
from tracker.services.patients import patient_label

INSERT_CHUNK = 5000
# The database's reminder epoch: a random token that, with the row id, names a reminder outside the database
# (`reminder_uid` = "<epoch>-<id>" in jsonl lines and webhook bodies). A restore (`tracker db restore`)
# draws a new one, so the reminders emitted after it never share a name with those of the undone run,
# whose row ids the restored database hands out again; reminders already in the backup keep theirs.
EPOCH_KEY = "reminders.epoch"

R = Reminder.__table__
D = ReminderDelivery.__table__


def _key(prefix: str, *parts):
    """SQL for a dedupe key like 'due:<id>:<date>' (|| works on SQLite and PostgreSQL)."""
    out = literal(prefix, String)
    for n, part in enumerate(parts):
        out = out + (":" if n else "") + cast(part, String)
    return out


def _not_reminded(key_sql):
    return ~exists().where(R.c.dedupe_key == key_sql)


def _item_query(kind: str, as_of: dt.date, lead_days: int):
    """Candidates for the `kind` ("due" or "overdue") reminders not sent yet: the core's window as SQL.
    For "overdue", the store fact "a live alert is about this item" (overdue past grace, checkpoint
    missed: the item is reminded once, as the alert) stays an anti-join here, so every row returned has no
    live alert; `_reminds` then asks the core (`reminds_overdue`) with that fact."""
    key = _key(f"{kind}:", Item.id, Item.due)
    if kind == "due":
        narrowing = (item_where(due_window(as_of, lead_days)),)
    else:
        narrowing = (item_where(overdue_window(as_of)),
                     ~exists().where(Alert.item_id == Item.id, Alert.status.in_(LIVE_ALERT)),
                     # a course's overdue baseline set is one alert (core/review.py), about all its items
                     # (the key built in SQL, core/review.py baseline_overdue_key: one seek on the key's index)
                     ~((Item.kind == "baseline") & exists().where(
                         Alert.condition_key == literal(BASELINE_OVERDUE_KEY[0], String)
                         + cast(Item.course_id, String) + literal(BASELINE_OVERDUE_KEY[1], String),
                         # status through a function: the planner seeks the key, not every live alert
                         func.coalesce(Alert.status, "").in_(LIVE_ALERT))))
    return (
        select(Item.id, Item.due, Item.kind, Item.status, Item.drug, Item.merged_drugs, Item.tests, Item.title,
               Item.sources, Item.received, Item.patient_id, Patient.mrn, Patient.name, key.label("dedupe_key"))
        .join(Patient, Patient.id == Item.patient_id)
        .where(*narrowing, _not_reminded(key))
        .order_by(Item.due, Patient.mrn, Item.id)
    )


def _reminds(kind: str, row, as_of: dt.date, lead_days: int) -> bool:
    """The core's judgement of one `_item_query` row: the digest reminds of it as `kind`."""
    if kind == "due":
        return is_due(row, as_of, lead_days)
    return reminds_overdue(row, as_of, has_live_alert=False)  # the query's anti-join kept no alerted item


def _alert_query(as_of: dt.date):
    since = func.coalesce(Alert.reopened_on, Alert.raised_on)
    key = _key("alert:", Alert.id, since)
    return (
        select(Alert.id, Alert.kind, Alert.severity, Alert.drug, Alert.message, Alert.sources,
               Alert.item_id, since.label("since"), Alert.patient_id, Patient.mrn, Patient.name,
               key.label("dedupe_key"))
        .join(Patient, Patient.id == Alert.patient_id)
        .where(Alert.status == "open", since <= as_of, _not_reminded(key))
        .order_by(Patient.mrn, Alert.id)
    )


def _item_payload(kind: str, row, label_style: str, vocabulary=None) -> dict:
    """A due or overdue reminder; a partial draw names what is still missing (core/panels.py)."""
    needs = missing(codes(row.tests), codes(row.received), vocabulary) if row.received and vocabulary else ()
    return {
        "dedupe_key": row.dedupe_key,
        "kind": kind,
        "severity": "warning" if kind == "overdue" else "info",
        "patient": patient_label(row.mrn, row.name, label_style),
        "drug": row.drug,
        "drugs": [row.drug, *codes(row.merged_drugs)],
        "due": row.due.isoformat(),
        "item_id": row.id,
        "item_kind": row.kind,
        "title": row.title,
        "tests": codes(row.tests),
        "missing": [need.text() for need in needs],
        "missing_text": describe_missing(needs, vocabulary) if needs else None,
        "alert_id": None,
        "alert_kind": None,
        "message": None,
        "sources": codes(row.sources),
    }


def _alert_payload(row, label_style: str) -> dict:
    return {
        "dedupe_key": row.dedupe_key,
        "kind": "alert",
        "severity": row.severity,
        "patient": patient_label(row.mrn, row.name, label_style),
        "drug": row.drug,
        "drugs": [row.drug] if row.drug else [],
        "due": row.since.isoformat() if hasattr(row.since, "isoformat") else str(row.since),
        "item_id": row.item_id,
        "item_kind": None,
        "title": None,
        "tests": [],
        "missing": [],
        "missing_text": None,
        "alert_id": row.id,
        "alert_kind": row.kind,
        "message": row.message,
        "sources": codes(row.sources),
    }


def reminder_epoch(session: Session) -> str:
    """The database's reminder epoch, drawn at the first emission."""
    return setting_value(session, EPOCH_KEY) or new_reminder_epoch(session)


def new_reminder_epoch(session: Session) -> str:
    import secrets

    epoch = secrets.token_hex(6)
    store_setting(session, EPOCH_KEY, epoch)
    return epoch


def reminder_uid(reminder_id: int, payload: dict) -> str:
    """A reminder's name outside the database; a reminder emitted before epochs existed is its plain id."""
    epoch = payload.get("epoch")
    return f"{epoch}-{reminder_id}" if epoch else str(reminder_id)


# The columns of a reminder row, in the order `_reminder_rows` gives them.
_COLUMNS = ["dedupe_key", "run_id", "as_of", "kind", "severity", "patient_id", "item_id", "alert_id", "payload",
            "created_at"]


def _reminder_rows(payloads, run_id: int, as_of: dt.date, patient_ids: dict, epoch: str):
    """Each payload's reminder row (a tuple in `_COLUMNS` order), made as it is asked for."""
    from tracker.core.audit_chain import reusable_encoder

    now = utcnow()
    encode = reusable_encoder(json.JSONEncoder(sort_keys=True))  # = json.dumps(..., sort_keys=True), set up once
    for payload in payloads:
        payload["epoch"] = epoch
        yield (payload["dedupe_key"], run_id, as_of, payload["kind"], payload["severity"],
               patient_ids[payload["dedupe_key"]], payload["item_id"], payload["alert_id"], encode(payload), now)


def _insert_reminders(conn, payloads, run_id: int, as_of: dt.date, patient_ids: dict, epoch: str) -> int:
    """Insert a reminder for each of `payloads`; returns how many. PostgreSQL: one COPY, its rows made while
    it streams, so that the server writes the first rows while the client makes the next (a cold night's
    23,059 reminders at 100,000 patients: the step 1.61-1.76 -> 1.40-1.46 s; the foreign keys, two thirds of
    the server's part, are still checked after the last row); `payloads` may fill `patient_ids` as it goes.
    Elsewhere in chunks (`bulk_insert`)."""
    from tracker.db.bulk import bulk_insert, copy_rows

    rows = _reminder_rows(payloads, run_id, as_of, patient_ids, epoch)
    if conn.dialect.name == "postgresql":
        first = next(rows, None)
        if first is None:
            return 0  # no COPY of nothing
        made = 0

        def counted():
            nonlocal made
            for row in itertools.chain((first,), rows):
                made += 1
                yield row
        copy_rows(conn, R, _COLUMNS, counted(), binary=True)
        return made
    count = 0
    while batch := [dict(zip(_COLUMNS, row)) for row in itertools.islice(rows, INSERT_CHUNK)]:
        bulk_insert(conn, R, batch)
        count += len(batch)
    return count


def emit_reminders(session: Session, run_id: int, as_of: dt.date, lead_days: int, label_style: str,
                   channels: list[str], vocabulary=None) -> dict:
    """Insert the reminders not emitted yet (set-based selects, bulk inserts) and a pending delivery per
    channel for each. Returns counts by kind."""
    epoch = reminder_epoch(session)
    session.flush()
    conn = session.connection()
    postgresql = conn.dialect.name == "postgresql"
    # This run's reminders get ids above those on record (the nightly lock: no other run emits meanwhile).
    newest_before = conn.execute(select(func.max(R.c.id))).scalar() or 0
    if postgresql:
        # The anti-joins below are planned on the statistics of before this run: on a cold night `alert`
        # and `reminder` were empty then, though this transaction has just filled `alert`, and PostgreSQL
        # compared every overdue item with every row (2.4 s at 100,000 patients, over 6 minutes at
        # 1,000,000). ANALYZE in the transaction sees its own rows; it samples, so it stays cheap.
        analyze_if_outdated(conn, ("alert", "reminder"))
    counts = {}
    for kind in ("overdue", "due"):
        patient_ids: dict = {}
        if postgresql and counts.get("overdue", 0) > 1000:  # the due query anti-joins those just written
            analyze_if_outdated(conn, ("reminder",))

        # Read whole before the inserts begin: SQLite's cursor would see the rows inserted into the table
        # the select anti-joins; PostgreSQL's connection is busy with the COPY while the payloads are made.
        found = conn.execute(_item_query(kind, as_of, lead_days)).all()

        def payloads(kind=kind, found=found, patient_ids=patient_ids):
            for row in found:
                if not _reminds(kind, row, as_of, lead_days):
                    continue
                patient_ids[row.dedupe_key] = row.patient_id
                yield _item_payload(kind, row, label_style, vocabulary)

        counts[kind] = _insert_reminders(conn, payloads(), run_id, as_of, patient_ids, epoch)
    patient_ids = {}
    found = conn.execute(_alert_query(as_of)).all()

    def alert_payloads():
        for row in found:
            patient_ids[row.dedupe_key] = row.patient_id
            yield _alert_payload(row, label_style)

    counts["alert"] = _insert_reminders(conn, alert_payloads(), run_id, as_of, patient_ids, epoch)
    for channel in channels:
        conn.execute(deliveries_of_run(channel, run_id, newest_before))
    return counts


def deliveries_of_run(channel: str, run_id: int, newest_before: int):
    """A pending delivery on `channel` for each reminder of run `run_id`, whose ids are above `newest_before`:
    a range of the primary key, not a scan of every reminder ever emitted (the table grows every night)."""
    return insert(D).from_select(
        ["reminder_id", "channel", "state", "attempts"],
        select(R.c.id, literal(channel, String), literal("pending", String), literal(0))
        .where(R.c.id > newest_before, R.c.run_id == run_id))
