"""The nightly job: roll calendars forward, evaluate alerts, emit reminders once, deliver them.

Idempotent and catching up: the last day completed is kept in the `setting` table; a run covers every day
since then in one digest, and `reminder.dedupe_key` (unique) means a condition is reminded once.

Crash safety (why the job commits in several steps instead of one command transaction):
  1. a `nightly_run` row is committed first, so `nightly status` shows a run that was killed;
  2. new reminders, their pending deliveries (one per channel) and the new last-completed day are
     committed together, so a re-run either redoes all of it or none of it;
  3. each channel then delivers whatever is pending or failed for it (from any run) and marks it sent in
     small committed batches. Batched channels are exactly-once (jsonl skips ids already in the file;
     webhook sends an Idempotency-Key); stdout is resent only if killed in the instant between writing
     and marking; e-mail keeps one delivery row per recipient (`email:<hash>`), sends each recipient its
     own digest and marks it in the same breath, so a kill re-sends one message to one recipient and a
     refused recipient is retried alone.
A failing channel is recorded and skipped; the others carry on, and its reminders are retried next run.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

from sqlalchemy import String, and_, case, cast, exists, func, insert, literal, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tracker.core.panels import describe_missing, missing
from tracker.core.settings import Settings
from tracker.core.worklist import due_window, is_due, overdue_window, reminds_overdue
from tracker.dates import utcnow
from tracker.db.tables import (
    Alert,
    Item,
    NightlyRun,
    Patient,
    Reminder,
    ReminderDelivery,
    codes,
    setting_value,
    store_setting,
)
from tracker.db.windows import item_where
from tracker.errors import DeliveryError
from tracker.locks import nightly_lock
from tracker.services.patients import patient_label

LAST_COMPLETED = "nightly.last_completed"
JSONL_MARK = "nightly.jsonl_marked"  # {"path": ..., "size": ...}: every line before `size` is marked sent
INSERT_CHUNK = 5000
from tracker.core.terms import SEVERITY_ORDER as SEVERITY_RANK
KIND_RANK = {"alert": 0, "overdue": 1, "due": 2}

R = Reminder.__table__
D = ReminderDelivery.__table__


@dataclass
class NightlyReport:
    run_id: int
    from_day: dt.date
    as_of: dt.date
    new_days: int = 0
    created: dict = field(default_factory=dict)  # kind -> count of new reminders
    delivered: dict = field(default_factory=dict)  # channel -> count sent this run
    undelivered: dict = field(default_factory=dict)  # channel -> count still pending/failed
    failures: dict = field(default_factory=dict)  # channel -> error text

    @property
    def reminders(self) -> int:
        return sum(self.created.values())


# --- selecting what to remind -----------------------------------------------------------------------------


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
    For "overdue", the store fact "an open alert is about this item" (overdue past grace, checkpoint
    missed: the item is reminded once, as the alert) stays an anti-join here, so every row returned has no
    open alert; `_reminds` then asks the core (`reminds_overdue`) with that fact."""
    key = _key(f"{kind}:", Item.id, Item.due)
    if kind == "due":
        narrowing = (item_where(due_window(as_of, lead_days)),)
    else:
        narrowing = (item_where(overdue_window(as_of)),
                     ~exists().where(Alert.item_id == Item.id, Alert.status == "open"),
                     # a course's overdue baseline set is one alert (core/review.py), about all its items
                     # (the key built in SQL, core/review.py baseline_overdue_key: one seek on the key's index)
                     ~((Item.kind == "baseline") & exists().where(
                         Alert.condition_key == literal("overdue:course", String) + cast(Item.course_id, String)
                         + literal(":baseline", String),
                         # status through a function: the planner seeks the key, not every open alert
                         func.coalesce(Alert.status, "") == "open")))
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
    return reminds_overdue(row, as_of, has_open_alert=False)  # the query's anti-join kept no alerted item


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


def _insert_reminders(conn, rows, run_id: int, as_of: dt.date, patient_ids: dict) -> int:
    from tracker.db.bulk import bulk_insert

    now = utcnow()
    encode = json.JSONEncoder(sort_keys=True).encode  # = json.dumps(..., sort_keys=True), built once
    batch, count = [], 0
    for payload in rows:
        batch.append({
            "dedupe_key": payload["dedupe_key"], "run_id": run_id, "as_of": as_of, "kind": payload["kind"],
            "severity": payload["severity"], "patient_id": patient_ids[payload["dedupe_key"]],
            "item_id": payload["item_id"], "alert_id": payload["alert_id"],
            "payload": encode(payload), "created_at": now,
        })
        if len(batch) >= INSERT_CHUNK:
            bulk_insert(conn, R, batch)
            count += len(batch)
            batch = []
    bulk_insert(conn, R, batch)
    return count + len(batch)


def emit_reminders(session: Session, run_id: int, as_of: dt.date, lead_days: int, label_style: str,
                   channels: list[str], vocabulary=None) -> dict:
    """Insert the reminders not emitted yet (set-based selects, bulk inserts) and a pending delivery per
    channel for each. Returns counts by kind."""
    conn = session.connection()
    counts = {}
    for kind in ("overdue", "due"):
        patient_ids: dict = {}

        def rows(kind=kind, patient_ids=patient_ids):
            for row in conn.execute(_item_query(kind, as_of, lead_days)):
                if not _reminds(kind, row, as_of, lead_days):
                    continue
                patient_ids[row.dedupe_key] = row.patient_id
                yield _item_payload(kind, row, label_style, vocabulary)

        counts[kind] = _insert_reminders(conn, _materialise(rows()), run_id, as_of, patient_ids)
    patient_ids = {}
    alert_rows = []
    for row in conn.execute(_alert_query(as_of)):
        patient_ids[row.dedupe_key] = row.patient_id
        alert_rows.append(_alert_payload(row, label_style))
    counts["alert"] = _insert_reminders(conn, alert_rows, run_id, as_of, patient_ids)
    for channel in channels:
        conn.execute(
            insert(D).from_select(
                ["reminder_id", "channel", "state", "attempts"],
                select(R.c.id, literal(channel, String), literal("pending", String), literal(0))
                .where(R.c.run_id == run_id),
            )
        )
    return counts


def _materialise(rows):
    """Read a select fully before inserting into the table it anti-joins (SQLite cursor stability)."""
    return list(rows)


# --- delivering ------------------------------------------------------------------------------------------


def _pending(channel: str):
    return and_(D.c.channel == channel, D.c.state != "sent")


def _digest_query(channel: str):
    order_severity = case(SEVERITY_RANK, value=R.c.severity, else_=9)
    order_kind = case(KIND_RANK, value=R.c.kind, else_=9)
    return (
        select(R.c.id, R.c.payload)
        .select_from(D.join(R, R.c.id == D.c.reminder_id).outerjoin(Patient, Patient.id == R.c.patient_id))
        .where(_pending(channel))
        .order_by(order_severity, Patient.mrn, order_kind, R.c.id)
    )


def _row(reminder_id: int, payload: str) -> dict:
    row = json.loads(payload)
    row["reminder_id"] = reminder_id
    return row


def _mark(engine: Engine, channel: str, reminder_ids: list[int], *, error: str | None = None,
          extra=None) -> None:
    """Mark deliveries sent (or failed, with the error) in one committed transaction."""
    values = {"attempts": D.c.attempts + 1}
    if error is None:
        values.update(state="sent", delivered_at=utcnow(), last_error=None)
    else:
        values.update(state="failed", last_error=error[:2000])
    with Session(engine) as session:
        for start in range(0, len(reminder_ids), 900):  # stay under bound-parameter limits
            chunk = reminder_ids[start:start + 900]
            session.connection().execute(
                update(D).where(D.c.channel == channel, D.c.reminder_id.in_(chunk)).values(**values))
        if extra:
            extra(session)
        session.commit()


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


def _deliver_digest(engine: Engine, channel, as_of, from_day, batch_size: int) -> tuple[int, str | None]:
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(D).where(_pending(channel.name))).scalar()
        if count == 0 and channel.name != "stdout":
            return 0, None  # no empty e-mails; stdout still says "nothing new"
        sent_ids: list[int] = []

        def rows():
            for reminder_id, payload in conn.execution_options(yield_per=1000).execute(_digest_query(channel.name)):
                sent_ids.append(reminder_id)
                yield _row(reminder_id, payload)

        try:
            channel.send_digest(rows(), count, as_of, from_day)
        except Exception as exc:
            error = _error_text(exc)
            failed = list(conn.execute(select(D.c.reminder_id).where(_pending(channel.name))).scalars())
            conn.rollback()
            _mark(engine, channel.name, failed, error=error)
            return 0, error
    for start in range(0, len(sent_ids), batch_size):
        _mark(engine, channel.name, sent_ids[start:start + batch_size])
    return len(sent_ids), None


def _adopt_legacy_email_rows(engine: Engine, channel) -> None:
    """Deliveries kept under the plain `email` channel (before per-recipient tracking) become one row per
    configured recipient, in one transaction, so nothing pending is lost or sent twice."""
    with Session(engine) as session:
        conn = session.connection()
        legacy = list(conn.execute(select(D.c.reminder_id).where(_pending("email"))).scalars())
        if not legacy:
            return
        for key in channel.delivery_keys:
            already = set(conn.execute(select(D.c.reminder_id).where(D.c.channel == key,
                                                                      D.c.reminder_id.in_(legacy))).scalars())
            rows = [{"reminder_id": rid, "channel": key, "state": "pending", "attempts": 0}
                    for rid in legacy if rid not in already]
            if rows:
                conn.execute(insert(D), rows)
        conn.execute(D.delete().where(_pending("email")))
        session.commit()


def _deliver_email(engine: Engine, channel, as_of, from_day) -> tuple[int, str | None]:
    """Each configured recipient gets its own pending reminders as one message, marked sent right after
    the server accepted it. A refused recipient is marked failed and the others carry on; a broken
    connection marks every recipient still waiting failed."""
    from tracker.channels.email import RecipientRefused

    _adopt_legacy_email_rows(engine, channel)
    waiting = {}
    with engine.connect() as conn:
        for key, address in channel.recipients.items():
            ids = list(conn.execute(select(D.c.reminder_id).where(_pending(key))).scalars())
            if ids:
                waiting[key] = (address, ids)
    if not waiting:
        return 0, None  # no empty e-mails
    sent: set[int] = set()
    errors: list[str] = []
    try:
        with channel.session() as smtp:
            for key, (address, ids) in list(waiting.items()):
                with engine.connect() as conn:
                    rows = [_row(rid, payload) for rid, payload in conn.execute(_digest_query(key))]
                try:
                    channel.send_to(smtp, address, rows, len(rows), as_of, from_day)
                except RecipientRefused as exc:
                    errors.append(_error_text(exc))
                    _mark(engine, key, ids, error=errors[-1])
                else:
                    _mark(engine, key, [row["reminder_id"] for row in rows])  # at once: a kill re-sends one
                    sent.update(row["reminder_id"] for row in rows)
                del waiting[key]
    except Exception as exc:
        errors.append(_error_text(exc))
        for key, (_address, ids) in waiting.items():
            _mark(engine, key, ids, error=errors[-1])
    return len(sent), "; ".join(errors) or None


def _jsonl_mark_reader(engine: Engine, path: str) -> int:
    with Session(engine) as session:
        value = setting_value(session, JSONL_MARK)
        if value is None:
            return 0
        mark = json.loads(value)
        return mark["size"] if mark.get("path") == path else 0


def _jsonl_mark_writer(path: str, size: int):
    def write(session: Session) -> None:
        store_setting(session, JSONL_MARK, json.dumps({"path": path, "size": size}))
    return write


def _deliver_batches(engine: Engine, channel, batch_size: int) -> tuple[int, str | None]:
    already: set[int] = set()
    if channel.name == "jsonl":
        since = _jsonl_mark_reader(engine, channel.path)
        if since > channel.size():  # the file was rotated or truncated: scan it all
            since = 0
        already = channel.written_ids(since)
    sent = 0
    last_id = 0
    while True:
        with engine.connect() as conn:
            batch = conn.execute(
                select(R.c.id, R.c.payload).select_from(D.join(R, R.c.id == D.c.reminder_id))
                .where(_pending(channel.name), R.c.id > last_id).order_by(R.c.id).limit(batch_size)
            ).all()
        if not batch:
            return sent, None
        last_id = batch[-1][0]
        ids = [reminder_id for reminder_id, _ in batch]
        rows = [_row(reminder_id, payload) for reminder_id, payload in batch if reminder_id not in already]
        try:
            if rows:
                channel.send(rows)
        except Exception as exc:
            error = _error_text(exc)
            _mark(engine, channel.name, ids, error=error)
            return sent, error
        extra = _jsonl_mark_writer(channel.path, channel.size()) if channel.name == "jsonl" else None
        _mark(engine, channel.name, ids, extra=extra)
        sent += len(rows)


def _undelivered(engine: Engine, channel) -> int:
    """Reminders not yet delivered on a channel (e-mail: to some configured recipient)."""
    keys = getattr(channel, "delivery_keys", [channel.name])
    with engine.connect() as conn:
        return conn.execute(select(func.count(func.distinct(D.c.reminder_id)))
                            .where(D.c.channel.in_(keys), D.c.state != "sent")).scalar()


# --- the run ---------------------------------------------------------------------------------------------


def last_completed(session: Session) -> dt.date | None:
    value = setting_value(session, LAST_COMPLETED)
    return dt.date.fromisoformat(value) if value else None


def _start(engine: Engine, as_of: dt.date) -> tuple[int, dt.date, bool]:
    with Session(engine) as session:
        # Under the lock, a run still marked running was killed: say so instead of leaving it running.
        session.connection().execute(
            update(NightlyRun.__table__).where(NightlyRun.status == "running")
            .values(status="interrupted", finished_at=utcnow()))
        last = last_completed(session)
        from_day = last + dt.timedelta(days=1) if last else as_of
        new = from_day <= as_of
        run = NightlyRun(from_day=from_day if new else as_of, as_of=as_of, started_at=utcnow(), status="running")
        session.add(run)
        session.commit()
        return run.id, run.from_day, new


def _finish(engine: Engine, run_id: int, report: NightlyReport, extra_counts: dict, error: str | None = None):
    with Session(engine) as session:
        run = session.get(NightlyRun, run_id)
        run.finished_at = utcnow()
        failures = dict(report.failures)
        if error:
            failures["run"] = error
        run.status = "failed" if failures else "ok"
        run.counts = json.dumps({
            "days": report.new_days, **{k: report.created.get(k, 0) for k in ("due", "overdue", "alert")},
            "reminders": report.reminders, "delivered": report.delivered, "undelivered": report.undelivered,
            **extra_counts,
        }, sort_keys=True)
        run.failures = json.dumps(failures, sort_keys=True) if failures else None
        session.add(run)
        session.commit()


def run_nightly(engine: Engine, library, site: Settings, as_of: dt.date, *, user: str, out=None) -> NightlyReport:
    """One nightly run under the single-runner lock. Raises LockedError if another run holds it and
    DeliveryError (after recording everything) if a channel failed."""
    from tracker.channels import build_channels
    from tracker.db.engine import for_writing
    from tracker.services import audit
    from tracker.services.alerts import evaluate_clinic
    from tracker.services.plan_sync import roll_forward

    settings = site.reminders
    channels = build_channels(settings, out)
    # A delivery row per channel, and per recipient for e-mail.
    delivery_keys = [key for channel in channels for key in getattr(channel, "delivery_keys", [channel.name])]
    with nightly_lock(engine):
        run_id, from_day, new = _start(engine, as_of)
        report = NightlyReport(run_id=run_id, from_day=from_day, as_of=as_of)
        extra: dict = {}
        try:
            if new:
                report.new_days = (as_of - from_day).days + 1
                # The write lock up front: a concurrent `tracker alerts` evaluates before or after, never
                # in between (its alerts would otherwise be raised twice).
                with Session(for_writing(engine)) as session:
                    extra["courses_rolled"] = roll_forward(
                        session, library, as_of, as_of + dt.timedelta(days=settings.lead_days),
                        merge_window=site.calendar.merge_window_days,
                        childbearing_ages=site.alerts.childbearing_ages)
                    summary = evaluate_clinic(session, library, as_of, site, incremental=True)
                    extra.update(alerts_raised=len(summary.raised), alerts_reopened=len(summary.reopened),
                                 alerts_resolved=len(summary.resolved))
                    session.flush()
                    report.created = emit_reminders(session, run_id, as_of, settings.lead_days,
                                                    site.privacy.patient_label, delivery_keys,
                                                    library.vocabulary)
                    store_setting(session, LAST_COMPLETED, as_of.isoformat())
                    audit.record(session, user, "nightly.run", "nightly_run", run_id, None, None,
                                 {"from_day": from_day.isoformat(), "as_of": as_of.isoformat(),
                                  **report.created, **extra})
                    session.commit()
            for channel in channels:
                if getattr(channel, "per_recipient", False):
                    sent, error = _deliver_email(engine, channel, as_of, from_day)
                elif channel.digest:
                    sent, error = _deliver_digest(engine, channel, as_of, from_day, settings.batch_size)
                else:
                    sent, error = _deliver_batches(engine, channel, settings.batch_size)
                report.delivered[channel.name] = sent
                report.undelivered[channel.name] = _undelivered(engine, channel)
                if error:
                    report.failures[channel.name] = error
        except BaseException as exc:
            _finish(engine, run_id, report, extra, error=_error_text(exc))
            raise
        _finish(engine, run_id, report, extra)
    if report.failures:
        detail = "; ".join(f"{name}: {error}" for name, error in report.failures.items())
        raise DeliveryError(f"nightly {as_of}: channel failed ({detail}); its reminders are kept for the next run")
    return report


def recent_runs(session: Session, limit: int = 10) -> list[dict]:
    runs = session.execute(select(NightlyRun).order_by(NightlyRun.id.desc()).limit(limit)).scalars().all()
    return [
        {
            "id": run.id,
            "from_day": run.from_day.isoformat(),
            "as_of": run.as_of.isoformat(),
            "started_at": run.started_at.isoformat(),
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            "status": run.status,
            "counts": json.loads(run.counts) if run.counts else {},
            "failures": json.loads(run.failures) if run.failures else {},
        }
        for run in runs
    ]


def pending_deliveries(session: Session) -> dict:
    """Undelivered reminders per channel (pending or failed); e-mail counts a reminder once however many
    recipients still wait for it."""
    channel = case((D.c.channel.like("email:%"), literal("email", String)), else_=D.c.channel)
    rows = session.execute(
        select(channel, func.count(func.distinct(D.c.reminder_id))).where(D.c.state != "sent")
        .group_by(channel)).all()
    return {name: count for name, count in rows}
