"""The audit log: who changed (or read) what, when, with before/after; kept as a hash chain.

Every row is linked into the chain as it is inserted (tracker/core/audit_chain.py): an ORM row added with
`record()` gets its `seq`, `prev_hash` and `hash` when the session flushes it (a mapper event, so rows are
chained in the order they are written), and bulk inserts go through `link_rows`. Appending reads and moves
the chain's head (`audit_head`), which the appender locks: PostgreSQL `SELECT ... FOR UPDATE`, SQLite the
database's write lock (writers take it up front, `db/engine.py: for_writing`; a writer that did not would
fail with "database is locked" rather than fork the chain). The unique `seq` holds the total order even
for a writer that forgets both.
"""

from __future__ import annotations

import datetime as dt
import json
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import event, func, insert, select, update
from sqlalchemy.orm import object_session
from sqlmodel import Session

from tracker.core.audit_chain import HASHED_FIELDS, Head, Problem, Verdict, chain_rows, check_chain
from tracker.dates import utcnow
from tracker.db.tables import AuditEvent, AuditHead

EVENT = AuditEvent.__table__
HEAD = AuditHead.__table__
HEAD_ID = 1
_FLUSH_KEY = "tracker.audit_chain"  # session.info: the chain's head during one flush

# Who the system's own changes are recorded as (the alert engine, the nightly ending a course on its day).
SYSTEM_USER = "tracker"


def json_ready(value):
    """A column's value as an audit row shows it: dates and times in ISO form, anything else as it is."""
    return value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else value


def json_default(value) -> str:
    """`default=` for encoding audit rows of plain values: what json cannot encode, as text."""
    return str(json_ready(value))


def snapshot(row, *fields: str) -> dict:
    """A JSON-ready view of a row (all columns, or the named ones)."""
    names = fields or tuple(row.__class__.model_fields)
    return {name: json_ready(getattr(row, name)) for name in names}


def snapshot_values(values, fields) -> dict:
    """As `snapshot`, of a plain row (a mapping of column to value)."""
    return {name: json_ready(values[name]) for name in fields}


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
    event_ = AuditEvent(**row_values(utcnow(), user, action, entity, entity_id, mrn, before, after))
    session.add(event_)
    return event_


def row_values(at: dt.datetime, user: str, action: str, entity: str, entity_id: int | None, mrn: str | None = None,
               before: dict | None = None, after: dict | None = None) -> dict:
    """An audit row's columns as `record` writes them (before and after as JSON with sorted keys), for
    `insert_rows`."""
    return {"at": at, "user": user, "action": action, "entity": entity, "entity_id": entity_id, "mrn": mrn,
            "before": json.dumps(before, sort_keys=True, default=str) if before is not None else None,
            "after": json.dumps(after, sort_keys=True, default=str) if after is not None else None}


def insert_rows(conn, rows: list[dict]) -> None:
    """Chain `rows` (`row_values` dicts, in this order) and insert them in bulk on `conn` (PostgreSQL: one
    COPY): what `record` does row by row through the session, in a few statements. Flush the session first
    (see `link_rows`)."""
    from tracker.db.bulk import bulk_insert

    link_rows(conn, rows)
    bulk_insert(conn, EVENT, rows)


# --- the chain's head ------------------------------------------------------------------------------------


@dataclass
class _Appending:
    head: Head
    stored: bool  # the head row exists (else it is created when written back)
    moved: bool = False


def _lock_head(conn) -> _Appending:
    """The chain's head, locked for this transaction. A missing head row (deleted by hand) is rebuilt from
    the newest chained row; `audit verify` still reports its absence until then."""
    row = conn.execute(select(HEAD.c.seq, HEAD.c.hash).where(HEAD.c.id == HEAD_ID).with_for_update()).first()
    if row is not None:
        return _Appending(Head(row.seq, row.hash), stored=True)
    last = conn.execute(select(EVENT.c.seq, EVENT.c.hash).where(EVENT.c.seq.is_not(None))
                        .order_by(EVENT.c.seq.desc()).limit(1)).first()
    return _Appending(Head(last.seq, last.hash) if last else Head(), stored=False)


def _store_head(conn, appending: _Appending) -> None:
    if not appending.moved:
        return
    values = {"seq": appending.head.seq, "hash": appending.head.hash}
    if appending.stored:
        conn.execute(update(HEAD).where(HEAD.c.id == HEAD_ID).values(**values))
    else:
        conn.execute(insert(HEAD).values(id=HEAD_ID, **values))


def _append(appending: _Appending, fields: dict) -> tuple[int, str, str]:
    seq, prev_hash, hash_ = appending.head.link(fields)
    appending.head, appending.moved = Head(seq, hash_), True
    return seq, prev_hash, hash_


def link_rows(conn, rows: list[dict]) -> None:
    """Give `rows` (audit_event dicts about to be bulk-inserted, in this order, on `conn`) their place in
    the chain, and move the head past them. Flush the session first: ORM rows pending in it would else be
    chained after these yet inserted before them."""
    if not rows:
        return
    appending = _lock_head(conn)
    appending.head, appending.moved = chain_rows(appending.head, rows), True
    _store_head(conn, appending)


@event.listens_for(Session, "before_flush")
def _flush_begins(session, _context, _instances) -> None:
    session.info.pop(_FLUSH_KEY, None)  # a head read by an earlier (failed) flush is stale


@event.listens_for(AuditEvent, "before_insert")
def _link_event(_mapper, connection, target: AuditEvent) -> None:
    session = object_session(target)
    appending = session.info.get(_FLUSH_KEY) if session is not None else None
    if appending is None:
        appending = _lock_head(connection)
        if session is not None:
            session.info[_FLUSH_KEY] = appending
    fields = {name: getattr(target, name) for name in HASHED_FIELDS}
    target.seq, target.prev_hash, target.hash = _append(appending, fields)
    if session is None:
        _store_head(connection, appending)


@event.listens_for(Session, "after_flush")
def _flush_ends(session, _context) -> None:
    appending = session.info.pop(_FLUSH_KEY, None)
    if appending is not None:
        _store_head(session.connection(), appending)


# --- reading and verifying -------------------------------------------------------------------------------


@contextmanager
def snapshot_connection(engine):
    """A read-only connection that sees one state of the database for all its queries (the chain and its
    head must agree): SQLite a deferred BEGIN (the driver would run each SELECT on its own), PostgreSQL
    REPEATABLE READ. Takes no write lock."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN")
        else:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
        try:
            yield conn
        finally:
            conn.rollback()


def verify(conn) -> Verdict:
    """Walk the whole chain (tracker/core/audit_chain.py: check_chain) in batches."""
    head_row = conn.execute(select(HEAD.c.seq, HEAD.c.hash).where(HEAD.c.id == HEAD_ID)).first()
    stored = Head(head_row.seq, head_row.hash) if head_row is not None else None
    unchained = conn.execute(select(EVENT.c.id).where(EVENT.c.seq.is_(None)).order_by(EVENT.c.id)
                             .limit(10)).scalars().all()
    columns = [EVENT.c.id, EVENT.c.seq, EVENT.c.prev_hash, EVENT.c.hash, *(EVENT.c[n] for n in HASHED_FIELDS)]
    rows = conn.execution_options(yield_per=5000).execute(
        select(*columns).where(EVENT.c.seq.is_not(None)).order_by(EVENT.c.seq)).mappings()
    return check_chain(rows, stored, unchained=unchained)


def anchor_problem(conn, seq: int, hash_: str) -> Problem | None:
    """None if the chain still holds, at position `seq`, the row whose hash was noted as `hash_`."""
    row = conn.execute(select(EVENT.c.id, EVENT.c.hash).where(EVENT.c.seq == seq)).first()
    if row is None:
        return Problem(None, seq, "the anchored row is gone (the newest rows deleted, or the chain rewritten)")
    if row.hash != hash_:
        return Problem(row.id, seq, "differs from the anchor (the chain was recomputed since it was noted)")
    return None


@dataclass(frozen=True)
class AuditQuery:
    mrn: str | None = None
    since: dt.date | None = None  # UTC days, inclusive
    until: dt.date | None = None
    actions: tuple[str, ...] = ()  # exact names, or prefixes ending in "." or "*"
    user: str | None = None
    limit: int | None = 100  # None: every row
    include_clinic_reads: bool = True  # with mrn: also whole-clinic reads (they included the patient)


def _day_start(day: dt.date) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class Rename:
    """An MRN change on record: audit event `event_id` moved patient `patient_id` from MRN `old` to `new`."""

    event_id: int
    patient_id: int
    old: str
    new: str


@dataclass(frozen=True)
class MrnSpan:
    """The audit events of one patient under one MRN: those recorded under `mrn` with an id above `after`
    (None: from the start) and at most `until` (None: to now). The rename event itself is in both spans."""

    mrn: str
    after: int | None = None
    until: int | None = None


def renames_on_record(session) -> list[Rename]:
    """Every MRN change on record (`patient.update` events whose before and after MRNs differ), oldest first."""
    renames = []
    for event_id, entity_id, before, after in session.execute(
            select(AuditEvent.id, AuditEvent.entity_id, AuditEvent.before, AuditEvent.after)
            .where(AuditEvent.action == "patient.update", AuditEvent.entity == "patient")
            .order_by(AuditEvent.id)):
        before, after = _json(before), _json(after)
        if not (isinstance(before, dict) and isinstance(after, dict)):
            continue
        old, new = before.get("mrn"), after.get("mrn")
        if old and new and old != new and entity_id is not None:
            renames.append(Rename(event_id, entity_id, old, new))
    return renames


def holder_of(mrn: str, current_holder: int | None, renames: list[Rename]) -> int | None:
    """The patient an audit by `mrn` is about: the one who has it now, else the last one who had it."""
    if current_holder is not None:
        return current_holder
    left = [r.patient_id for r in renames if r.old == mrn]
    return left[-1] if left else None


def mrn_spans(patient_id: int, mrn_now: str, renames: list[Rename]) -> list[MrnSpan]:
    """Which audit events are the patient's, by the MRN they were recorded under and when: events are stored
    under the MRN of their day, and an MRN a patient gave up may since belong to another patient, whose
    events must not show in this one's audit (nor this one's in theirs). Plain data (tests/test_audit.py)."""
    own = [r for r in renames if r.patient_id == patient_id]
    spans = []
    first = own[0].old if own else mrn_now
    # Before its first change the patient held `first` since another patient last gave it up, if one did.
    ends = own[0].event_id if own else None
    given_up = [r.event_id for r in renames if r.old == first and r.patient_id != patient_id
                and (ends is None or r.event_id < ends)]
    spans.append(MrnSpan(first, max(given_up) if given_up else None, ends))
    for number, rename in enumerate(own):
        until = own[number + 1].event_id if number + 1 < len(own) else None
        spans.append(MrnSpan(rename.new, rename.event_id - 1, until))
    return spans


def mrns_of_patient(session, mrn: str) -> set[str]:
    """Every MRN the patient known by `mrn` (now, or before a change) has had."""
    from tracker.db.tables import Patient

    renames = renames_on_record(session)
    holder = holder_of(mrn, session.execute(select(Patient.id).where(Patient.mrn == mrn)).scalar(), renames)
    if holder is None:
        return {mrn}
    return {span.mrn for span in _spans_of(session, holder, renames)}


def _spans_of(session, patient_id: int, renames: list[Rename]) -> list[MrnSpan]:
    from tracker.db.tables import Patient

    mrn_now = session.execute(select(Patient.mrn).where(Patient.id == patient_id)).scalar()
    own = [r for r in renames if r.patient_id == patient_id]
    if mrn_now is None:  # the patient is gone: its last MRN on record
        mrn_now = own[-1].new if own else None
    return mrn_spans(patient_id, mrn_now, renames) if mrn_now is not None else []


def patient_events(session, mrn: str):
    """The condition on audit events that are the patient's known by `mrn` (mrn_spans); by the MRN alone
    when no patient is known by it. `tracker audit --patient` and the web view's patient page both ask it."""
    from sqlalchemy import and_, or_

    from tracker.db.tables import Patient

    renames = renames_on_record(session)
    holder = holder_of(mrn, session.execute(select(Patient.id).where(Patient.mrn == mrn)).scalar(), renames)
    spans = _spans_of(session, holder, renames) if holder is not None else []
    if not spans:
        return AuditEvent.mrn == mrn
    return or_(*(and_(AuditEvent.mrn == span.mrn,
                      *([AuditEvent.id > span.after] if span.after is not None else []),
                      *([AuditEvent.id <= span.until] if span.until is not None else []))
                 for span in spans))


def list_events(session, query: AuditQuery) -> tuple[list[dict], bool]:
    """The rows matching `query`, newest first (by id); and whether more matched than the limit."""
    from sqlalchemy import and_, or_

    statement = select(AuditEvent)
    if query.mrn is not None:
        mine = patient_events(session, query.mrn)
        if query.include_clinic_reads:
            mine = or_(mine, and_(AuditEvent.action.startswith("access."), AuditEvent.entity == "clinic"))
        statement = statement.where(mine)
    if query.since is not None:
        statement = statement.where(AuditEvent.at >= _day_start(query.since))
    if query.until is not None:
        statement = statement.where(AuditEvent.at < _day_start(query.until + dt.timedelta(days=1)))
    if query.user is not None:
        statement = statement.where(AuditEvent.user == query.user)
    if query.actions:
        wanted = []
        for action in query.actions:
            if action.endswith("*"):
                wanted.append(AuditEvent.action.startswith(action[:-1], autoescape=True))
            elif action.endswith("."):
                wanted.append(AuditEvent.action.startswith(action, autoescape=True))
            else:
                wanted.append(AuditEvent.action == action)
        statement = statement.where(or_(*wanted))
    statement = statement.order_by(AuditEvent.id.desc())
    if query.limit is not None:
        statement = statement.limit(query.limit + 1)
    rows = session.execute(statement).scalars().all()
    more = query.limit is not None and len(rows) > query.limit
    return [event_row(e) for e in rows[:query.limit]], more


def _json(text: str | None):
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text  # written by hand: shown as stored


def event_row(e: AuditEvent) -> dict:
    """The stable JSON shape of an audit row."""
    return {"id": e.id, "seq": e.seq, "at": e.at.isoformat(), "user": e.user, "action": e.action,
            "entity": e.entity, "entity_id": e.entity_id, "mrn": e.mrn, "before": _json(e.before),
            "after": _json(e.after), "hash": e.hash}


def count_events(session) -> int:
    return session.execute(select(func.count()).select_from(EVENT)).scalar_one()
