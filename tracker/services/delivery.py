"""Delivering reminders: each channel takes what is pending or failed for it (from any run) and marks
only what it delivered: batched channels in small committed batches, a digest as one. Step 4 of the nightly
job (tracker/services/nightly.py)."""

from __future__ import annotations

import json

from sqlalchemy import and_, case, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tracker.core.terms import SEVERITY_ORDER as SEVERITY_RANK
from tracker.dates import utcnow
from tracker.db.rows import narrowed
from tracker.db.tables import (
    Patient,
    Reminder,
    ReminderDelivery,
    Setting,
    setting_value,
    store_setting,
    unsent_delivery,
)

JSONL_MARK = "nightly.jsonl_marked"  # {"path": ..., "size": ...}: every line before `size` is marked sent
# {"key": ..., "ids": [[first, last], ...]}: the webhook batch last POSTed (or about to be) and not known
# delivered; the next run sends it again, unchanged, before anything else.
WEBHOOK_BATCH = "nightly.webhook_batch"
KIND_RANK = {"alert": 0, "overdue": 1, "due": 2}

R = Reminder.__table__
D = ReminderDelivery.__table__


# --- delivering ------------------------------------------------------------------------------------------


def _pending(channel: str):
    return and_(D.c.channel == channel, unsent_delivery())


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
    from tracker.services.reminders import reminder_uid

    row = json.loads(payload)
    row["reminder_id"] = reminder_id
    row["reminder_uid"] = reminder_uid(reminder_id, row)
    row.pop("epoch", None)
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
        for narrow in narrowed(session, update(D).where(D.c.channel == channel).values(**values), D.c.reminder_id,
                               reminder_ids):  # PostgreSQL: one statement; else under parameter limits
            session.connection().execute(narrow)
        if extra:
            extra(session)
        session.commit()


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


def deliver_digest(engine: Engine, channel, as_of, from_day) -> tuple[int, str | None]:
    """The pending reminders as one digest, marked sent together once it is out (one message: a run killed
    before the mark sends it again whole, never a part of it)."""
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
            error = error_text(exc)
            failed = list(conn.execute(select(D.c.reminder_id).where(_pending(channel.name))).scalars())
            conn.rollback()
            _mark(engine, channel.name, failed, error=error)
            return 0, error
    _mark(engine, channel.name, sent_ids)
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


def deliver_email(engine: Engine, channel, as_of, from_day) -> tuple[int, str | None, str | None]:
    """Each configured recipient gets its own pending reminders as one message, marked sent right after
    the server accepted it. A refused recipient is marked failed and the others carry on; a broken
    connection marks every recipient still waiting failed. Returns (sent, error, warning): the warning is a
    failure after every message was answered (QUIT), which leaves nothing to deliver again."""
    from tracker.channels.email import RecipientRefused

    _adopt_legacy_email_rows(engine, channel)
    waiting = {}
    with engine.connect() as conn:
        for key, address in channel.recipients.items():
            ids = list(conn.execute(select(D.c.reminder_id).where(_pending(key))).scalars())
            if ids:
                waiting[key] = (address, ids)
    if not waiting:
        return 0, None, None  # no empty e-mails
    sent: set[int] = set()
    errors: list[str] = []
    warning = None
    try:
        with channel.session() as smtp:
            for key, (address, ids) in list(waiting.items()):
                with engine.connect() as conn:
                    rows = [_row(rid, payload) for rid, payload in conn.execute(_digest_query(key))]
                try:
                    channel.send_to(smtp, address, rows, len(rows), as_of, from_day)
                except RecipientRefused as exc:
                    errors.append(error_text(exc))
                    _mark(engine, key, ids, error=errors[-1])
                else:
                    _mark(engine, key, [row["reminder_id"] for row in rows])  # at once: a kill re-sends one
                    sent.update(row["reminder_id"] for row in rows)
                del waiting[key]
            warning = channel.quit(smtp)
    except Exception as exc:
        errors.append(error_text(exc))
        for key, (_address, ids) in waiting.items():
            _mark(engine, key, ids, error=errors[-1])
    return len(sent), "; ".join(errors) or None, warning


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


def _id_ranges(ids: list[int]) -> list[list[int]]:
    ranges: list[list[int]] = []
    for reminder_id in sorted(ids):
        if ranges and reminder_id == ranges[-1][1] + 1:
            ranges[-1][1] = reminder_id
        else:
            ranges.append([reminder_id, reminder_id])
    return ranges


def _webhook_batch(engine: Engine) -> tuple[str, list[int]] | None:
    with Session(engine) as session:
        value = setting_value(session, WEBHOOK_BATCH)
    if value is None:
        return None
    batch = json.loads(value)
    return batch["key"], [i for first, last in batch["ids"] for i in range(first, last + 1)]


def _store_webhook_batch(engine: Engine, key: str, ids: list[int]) -> None:
    """Committed before the POST: from then on the batch may reach the receiver."""
    with Session(engine) as session:
        store_setting(session, WEBHOOK_BATCH, json.dumps({"key": key, "ids": _id_ranges(ids)}))
        session.commit()


def _forget_webhook_batch(session: Session) -> None:
    """In the transaction that marks the batch sent."""
    row = session.get(Setting, WEBHOOK_BATCH)
    if row is not None:
        session.delete(row)


def _replay_webhook_batch(engine: Engine, channel) -> tuple[int, str | None]:
    """The batch a run POSTed without seeing its 2xx (a timeout, a kill, a 5xx after the receiver stored it)
    may have reached the receiver: it is sent again as it was (the same reminders, the same Idempotency-Key)
    before any other reminder, so a receiver that drops a key it already has loses nothing and doubles
    nothing."""
    batch = _webhook_batch(engine)
    if batch is None:
        return 0, None
    key, ids = batch
    with Session(engine) as session:
        found = [row for narrow in narrowed(session, select(R.c.id, R.c.payload), R.c.id, ids)
                 for row in session.connection().execute(narrow)]
    rows = [_row(reminder_id, payload) for reminder_id, payload in sorted(found)]
    error = _send_webhook_batch(engine, channel, rows, ids, key)
    return (0, error) if error else (len(rows), None)


def _send_webhook_batch(engine: Engine, channel, rows: list[dict], ids: list[int], key: str, *,
                        record: bool = False) -> str | None:
    """POST one webhook batch under `key` (`record`: recorded first, a new batch) and mark its deliveries:
    sent, the record forgotten; or failed, the record kept unless the receiver refused it. The error, or
    None."""
    try:
        if record:
            _store_webhook_batch(engine, key, ids)
        if rows:
            channel.send(rows, key=key)
    except Exception as exc:
        error = error_text(exc)
        _mark(engine, channel.name, ids, error=error, extra=_forget_webhook_batch if _refused(exc) else None)
        return error
    _mark(engine, channel.name, ids, extra=_forget_webhook_batch)
    return None


def _refused(exc: BaseException) -> bool:
    """The webhook's receiver answered and did not take the batch (tracker/channels/webhook.py): nothing to
    send again unchanged. Kept, a batch it will never take (413 after `batch_size` was lowered, a new
    receiver's 400) would be replayed ahead of every other reminder for good (session 20's second reading)."""
    return bool(getattr(exc, "refused", False))


def deliver_batches(engine: Engine, channel, batch_size: int) -> tuple[int, str | None]:
    """Pending reminders in batches of `batch_size` by id, each marked sent once delivered. jsonl skips the
    lines a killed run wrote but did not mark; the webhook first re-sends, unchanged, a batch that may have
    reached its receiver, and records each batch (its reminders and Idempotency-Key) before POSTing it."""
    webhook = channel.name == "webhook"
    sent = 0
    if webhook:
        sent, error = _replay_webhook_batch(engine, channel)
        if error:
            return sent, error
    already: set[str] = set()
    if channel.name == "jsonl":
        since = _jsonl_mark_reader(engine, channel.path)
        if since > channel.size():  # the file was rotated or truncated: scan it all
            since = 0
        already = channel.written_ids(since)
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
        rows = [row for row in (_row(reminder_id, payload) for reminder_id, payload in batch)
                if row["reminder_uid"] not in already]  # by uid: a restored database reuses row ids
        if webhook:
            error = _send_webhook_batch(engine, channel, rows, ids, channel.batch_key(rows), record=True)
            if error:
                return sent, error
            sent += len(rows)
            continue
        try:
            if rows:
                channel.send(rows)
        except Exception as exc:
            error = error_text(exc)
            _mark(engine, channel.name, ids, error=error)
            return sent, error
        extra = _jsonl_mark_writer(channel.path, channel.size()) if channel.name == "jsonl" else None
        _mark(engine, channel.name, ids, extra=extra)
        sent += len(rows)


def undelivered(engine: Engine, channel) -> int:
    """Reminders not yet delivered on a channel (e-mail: to some configured recipient)."""
    from tracker.channels import delivery_keys

    keys = delivery_keys([channel])
    with engine.connect() as conn:
        return conn.execute(select(func.count(func.distinct(D.c.reminder_id)))
                            .where(D.c.channel.in_(keys), unsent_delivery())).scalar()


# --- the run ---------------------------------------------------------------------------------------------
