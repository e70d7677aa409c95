"""SQLModel tables. Portable: nothing here is SQLite-only (PostgreSQL runs the same schema).

Conventions: dates are `datetime.date`; timestamps are timezone-aware UTC (`tracker.dates.utcnow`);
lists of codes (tests, sources, drugs, suggestions) are stored as space-separated text so that worklist
queries stay plain SQL on both databases.
"""

# No `from __future__ import annotations` here: the columns' annotations are then objects already, where as
# strings pydantic and SQLAlchemy would each evaluate every one of them again (~10 ms of every command's
# start-up).
import datetime as dt

from pydantic import ConfigDict
from sqlalchemy import Column, Index, MetaData, Table, Text, UniqueConstraint, event, literal_column, text
from sqlmodel import Field, SQLModel

# Named constraints, so Alembic batch mode on SQLite can alter them later.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata: MetaData = SQLModel.metadata


# The partial unique indexes' conditions (migration 0007 creates them with the same text).
LIVE_ALERT_SQL = "status IN ('open', 'acknowledged', 'snoozed')"
LIVE_COURSE_SQL = "status != 'stopped'"
# Live courses with a stop date announced (migration 0023): the nightly ends them when it comes.
ANNOUNCED_STOP_SQL = "status != 'stopped' AND stop_on IS NOT NULL"
# Planned items that received part of what they need, and (as a superset) any other status but done and
# cancelled: the partial index of migration 0015 (see there why not `status = 'planned'`).
PARTIAL_ITEM_SQL = "received IS NOT NULL AND status NOT IN ('done', 'cancelled')"
# The course-limit items' partial index (migration 0019, same text).
LIMIT_ITEM_SQL = "kind = 'limit'"
# The deliveries not yet sent (pending or failed): migration 0022's partial index, same text.
UNSENT_SQL = "state <> 'sent'"


# The key of a partial index's condition in `Index.info` (see partial_index).
WHERE = "tracker_where"


def partial_index(name: str, *columns: str, where: str, unique: bool = False) -> Index:
    """An index of the rows where the condition `where` holds (SQLite and PostgreSQL take the same text).

    SQLite's DDL is given it as `sqlite_where`; PostgreSQL's gets it as the table is created there
    (`_postgresql_partial_indexes`), not as a `postgresql_where` keyword here: checking that keyword makes
    SQLAlchemy import its whole PostgreSQL dialect, in every command's start-up, a SQLite clinic's too. The
    migrations, which make the real schema, name both."""
    return Index(name, *columns, unique=unique, sqlite_where=text(where), info={WHERE: where})


@event.listens_for(Table, "before_create")
def _postgresql_partial_indexes(table: Table, connection, **_kw) -> None:
    if connection.dialect.name == "postgresql":
        for index in table.indexes:
            if WHERE in index.info:
                index.dialect_options["postgresql"]["where"] = text(index.info[WHERE])


def codes(text: str | None) -> list[str]:
    """Split a stored code list."""
    return text.split() if text else []


def join_codes(items) -> str:
    return " ".join(items)


class _Table(SQLModel):
    """The base of every table: pydantic builds a table's validator when one is first needed, not as this
    module is imported (rows are read and written through SQLAlchemy; a command uses a few of the tables,
    and building all twenty validators was ~20 ms of every command's start-up)."""

    model_config = ConfigDict(defer_build=True)


class Patient(_Table, table=True):
    __tablename__ = "patient"

    id: int | None = Field(default=None, primary_key=True)
    mrn: str = Field(index=True, unique=True, max_length=64)
    name: str = Field(max_length=200)
    dob: dt.date
    sex: str | None = Field(default=None, max_length=1)  # f | m | x
    weight_kg: float | None = None
    # Childbearing potential as recorded: yes | no | unknown (never asked). Whether pregnancy rules apply is
    # decided by the core (tracker.core.gates.may_conceive): unknown counts as yes for a female patient of
    # childbearing age. Migration 0003 replaced the yes/no boolean `childbearing_potential`.
    childbearing: str = Field(default="unknown", max_length=7)
    created_at: dt.datetime
    updated_at: dt.datetime
    # The responsible clinician's name, as written (migration 0014); the worklists filter by it.
    clinician: str | None = Field(default=None, max_length=200, index=True)


class Course(_Table, table=True):
    """One patient on one drug, from start to stop."""

    __tablename__ = "course"
    __table_args__ = (
        Index("ix_course_status_drug", "status", "drug"),
        # Whether any live course's plan falls short of a date (the web view's Today page; migration 0015).
        partial_index("ix_course_live_planned_through", "planned_through", where=LIVE_COURSE_SQL),
        # The live courses whose announced stop has come, which the nightly ends (migration 0023).
        partial_index("ix_course_live_stop_on", "stop_on", where=ANNOUNCED_STOP_SQL),
        # One live (active or paused) course per patient and drug, held by the database (migration 0007).
        partial_index("uq_course_live_patient_drug", "patient_id", "drug", unique=True, where=LIVE_COURSE_SQL),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id", index=True)
    drug: str = Field(max_length=64)  # protocol id
    dose: str | None = Field(default=None, max_length=200)
    start_on: dt.date
    stop_on: dt.date | None = None
    stop_reason: str | None = Field(default=None, sa_column=Column(Text))
    # Why a stop happened, for treatment-algorithm suggestions: failure | adverse_event | other
    stop_category: str | None = Field(default=None, max_length=20)
    status: str = Field(default="active", max_length=10)  # active | paused | stopped
    gate_override: str | None = Field(default=None, sa_column=Column(Text))
    protocol_version: int
    protocol_hash: str = Field(max_length=32)
    protocol_origin: str | None = Field(default=None, sa_column=Column(Text))
    planned_through: dt.date | None = None  # horizon of the last plan
    adjust_every: str | None = Field(default=None, max_length=10)  # per-course interval, e.g. "8w"
    adjust_from: dt.date | None = None
    adjust_reason: str | None = Field(default=None, sa_column=Column(Text))
    switched_from_id: int | None = Field(default=None, foreign_key="course.id")
    created_at: dt.datetime


class DoseChange(_Table, table=True):
    __tablename__ = "dose_change"

    id: int | None = Field(default=None, primary_key=True)
    course_id: int = Field(foreign_key="course.id", index=True)
    changed_on: dt.date
    dose: str = Field(max_length=200)
    previous_dose: str | None = Field(default=None, max_length=200)
    created_at: dt.datetime


class CoursePause(_Table, table=True):
    __tablename__ = "course_pause"

    id: int | None = Field(default=None, primary_key=True)
    course_id: int = Field(foreign_key="course.id", index=True)
    paused_on: dt.date
    resumed_on: dt.date | None = None
    reason: str | None = Field(default=None, sa_column=Column(Text))
    resume_reason: str | None = Field(default=None, sa_column=Column(Text))


class Item(_Table, table=True):
    """A scheduled item: baseline test, lab draw, response checkpoint or course limit."""

    __tablename__ = "item"
    __table_args__ = (
        Index("ix_item_status_due", "status", "due"),
        Index("ix_item_patient_due", "patient_id", "due"),
        Index("ix_item_course_status", "course_id", "status"),
        # One patient's open items (patient show, calendars): equality on both, then the date range.
        Index("ix_item_patient_status_due", "patient_id", "status", "due"),
        # The latest change of any item: a whole-clinic feed's validators, one seek (migration 0012).
        Index("ix_item_last_modified", "last_modified"),
        # The web view's Today page (migration 0015): a section's count from the index alone, and the planned
        # items that have received part of what they need (partial draws).
        Index("ix_item_status_kind_due", "status", "kind", "due"),
        partial_index("ix_item_partial_due", "due", where=PARTIAL_ITEM_SQL),
        # The quality report's read of a period's draws and checkpoints, from the index alone (migration 0017).
        Index("ix_item_kind_due_quality", "kind", "due", "status", "done_on", "drug", "merged_drugs", "course_id"),
        # The course-limit items alone (migration 0019): the review window of limits has no date bound, and
        # `item (status, due)` would walk every planned item to find them (tracker/db/windows.py).
        partial_index("ix_item_limit_status", "kind", "status", where=LIMIT_ITEM_SQL),
    )

    id: int | None = Field(default=None, primary_key=True)
    uid: str = Field(unique=True, max_length=64)  # random, for ICS; never derived from patient data
    course_id: int = Field(foreign_key="course.id")
    patient_id: int = Field(foreign_key="patient.id")
    drug: str = Field(max_length=64)
    # Other drugs whose draws were merged into this one (space-separated protocol ids).
    merged_drugs: str | None = Field(default=None, max_length=200)
    # A lab draw absorbed into another course's draw of the same patient (status cancelled while merged).
    merged_into_id: int | None = Field(default=None, foreign_key="item.id")
    # The tests this item's own plan asked for (its identity); `tests` may be a merged union. None = `tests`.
    plan_tests: str | None = Field(default=None, max_length=400)
    kind: str = Field(max_length=12)  # baseline | lab | checkpoint | limit
    due: dt.date
    tests: str = Field(default="", max_length=400)
    title: str = Field(sa_column=Column(Text, nullable=False))
    detail: str | None = Field(default=None, sa_column=Column(Text))
    sources: str = Field(default="", sa_column=Column(Text, nullable=False))
    gate: str | None = Field(default=None, max_length=10)  # hard | advisory
    week: int | None = None
    measure: str | None = Field(default=None, max_length=40)
    target: str | None = Field(default=None, max_length=200)
    status: str = Field(default="planned", max_length=10)  # planned | done | cancelled
    # Codes whose results have counted towards this planned item so far (a partial draw: core/panels.py).
    received: str | None = Field(default=None, max_length=400)
    # Reading k of a baseline rule with `times: N`, planned one item per reading; None otherwise.
    reading: int | None = None
    done_on: dt.date | None = None
    done_note: str | None = Field(default=None, sa_column=Column(Text))
    adjusted: bool = False  # produced by a per-course interval adjustment
    origin: str = Field(default="plan", max_length=12)  # plan | threshold | partial
    sequence: int = 0
    created_at: dt.datetime
    last_modified: dt.datetime


class LabResult(_Table, table=True):
    __tablename__ = "lab_result"
    __table_args__ = (
        Index("ix_lab_result_patient_test_taken", "patient_id", "test", "taken_on"),
        Index("ix_lab_result_created", "created_at"),  # the nightly threshold pass: results since the last
        # One result per message result or FHIR Observation: a re-import stores nothing twice (migration 0010).
        Index("uq_lab_result_source_id", "source_id", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id")
    test: str = Field(max_length=40)
    value_num: float | None = None
    value_text: str | None = Field(default=None, max_length=100)
    unit: str | None = Field(default=None, max_length=40)
    taken_on: dt.date
    ref_low: float | None = None
    ref_high: float | None = None
    created_at: dt.datetime
    # A numeric result as the laboratory reported it; value_num/unit (and the reference range) are in the
    # vocabulary's unit, converted from these (tracker/units.py).
    reported_value: float | None = None
    reported_unit: str | None = Field(default=None, max_length=40)
    # Where an imported result was read (`hl7:<facility>|<MSH-10>|<OBX-1>`, `fhir:<Observation id>`); None for
    # results typed or read from CSV (migration 0010).
    source_id: str | None = Field(default=None, max_length=200)
    # When the laboratory reported these values (HL7 OBR-22 or MSH-7, FHIR issued or meta.lastUpdated; UTC,
    # as written where the lab gave no offset): a correction reported earlier is not applied (migration 0020).
    reported_at: dt.datetime | None = None


class WithdrawnResult(_Table, table=True):
    """A lab result withdrawn from the record (`tracker result withdraw`: the laboratory retracted it, entered in
    error): its row as it was, moved out of `lab_result` so that no clinical read (a chart, a gate, the nightly's
    scan) can meet it again, with who withdrew it, when and why (migration 0025). It keeps the id it had."""

    __tablename__ = "withdrawn_result"

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    patient_id: int = Field(foreign_key="patient.id", index=True)
    test: str = Field(max_length=40)
    value_num: float | None = None
    value_text: str | None = Field(default=None, max_length=100)
    unit: str | None = Field(default=None, max_length=40)
    taken_on: dt.date
    ref_low: float | None = None
    ref_high: float | None = None
    created_at: dt.datetime
    reported_value: float | None = None
    reported_unit: str | None = Field(default=None, max_length=40)
    source_id: str | None = Field(default=None, max_length=200)
    reported_at: dt.datetime | None = None
    withdrawn_at: dt.datetime
    withdrawn_by: str = Field(max_length=100)
    reason: str = Field(sa_column=Column(Text, nullable=False))


class WithdrawnLabSource(_Table, table=True):
    """Every source id a withdrawn result carried (its own and those its corrections replaced): the message or
    Observation imported again is recognised as withdrawn, not stored again (migration 0025)."""

    __tablename__ = "withdrawn_lab_source"

    source_id: str = Field(primary_key=True, max_length=200)
    result_id: int = Field(foreign_key="withdrawn_result.id", index=True)


class ReplacedLabSource(_Table, table=True):
    """A source id whose values a correction replaced (an HL7 OBX-11 `C` result in a later message): the
    result now carries the correction's source id, and this one is kept so that the first message, imported
    again, is recognised as on record and changes nothing (migration 0016)."""

    __tablename__ = "replaced_lab_source"

    source_id: str = Field(primary_key=True, max_length=200)
    result_id: int = Field(foreign_key="lab_result.id", index=True)
    replaced_at: dt.datetime


class Assessment(_Table, table=True):
    __tablename__ = "assessment"
    __table_args__ = (Index("ix_assessment_patient_on", "patient_id", "assessed_on"),)

    id: int | None = Field(default=None, primary_key=True)
    patient_id: int = Field(foreign_key="patient.id")
    assessed_on: dt.date
    easi: float | None = None
    iga: int | None = None
    itch_nrs: float | None = None
    dlqi: int | None = None
    poem: int | None = None
    created_at: dt.datetime


class Alert(_Table, table=True):
    """A condition that needs a decision. One condition (condition_key) = at most one live alert."""

    __tablename__ = "alert"
    __table_args__ = (
        Index("ix_alert_status", "status"),
        Index("ix_alert_condition_key", "condition_key"),
        Index("ix_alert_patient", "patient_id"),
        Index("ix_alert_item", "item_id"),  # the nightly reminder query skips items with an open alert
        # One live alert per condition, held by the database (migration 0007); inserts skip a conflict.
        partial_index("uq_alert_live_condition", "condition_key", unique=True, where=LIVE_ALERT_SQL),
    )

    id: int | None = Field(default=None, primary_key=True)
    condition_key: str = Field(max_length=200)
    patient_id: int = Field(foreign_key="patient.id")
    course_id: int | None = Field(default=None, foreign_key="course.id")
    item_id: int | None = Field(default=None, foreign_key="item.id")
    result_id: int | None = Field(default=None, foreign_key="lab_result.id")
    drug: str | None = Field(default=None, max_length=64)
    kind: str = Field(max_length=24)  # checkpoint_failed | checkpoint_missed | threshold | gate | limit | overdue
    severity: str = Field(max_length=10)  # info | warning | critical
    status: str = Field(default="open", max_length=12)  # open | acknowledged | snoozed | resolved
    raised_on: dt.date
    message: str = Field(sa_column=Column(Text, nullable=False))
    suggestions: str = Field(default="", sa_column=Column(Text, nullable=False))
    sources: str = Field(default="", sa_column=Column(Text, nullable=False))
    value: str | None = Field(default=None, sa_column=Column(Text))
    limit_text: str | None = Field(default=None, sa_column=Column(Text))
    note: str | None = Field(default=None, sa_column=Column(Text))
    snoozed_until: dt.date | None = None
    reopened_on: dt.date | None = None
    resolved_on: dt.date | None = None
    resolution: str | None = Field(default=None, sa_column=Column(Text))
    # A critical alert whose condition cleared before anyone acknowledged it: still open, "cleared, awaiting
    # acknowledgement" (services/review_apply.py), until a person acknowledges it.
    cleared_on: dt.date | None = None
    created_at: dt.datetime
    updated_at: dt.datetime


class AuditEvent(_Table, table=True):
    __tablename__ = "audit_event"
    __table_args__ = (Index("uq_audit_event_seq", "seq", unique=True),)

    id: int | None = Field(default=None, primary_key=True)
    at: dt.datetime
    user: str = Field(max_length=100)
    action: str = Field(max_length=60)
    entity: str = Field(max_length=40)
    entity_id: int | None = None
    mrn: str | None = Field(default=None, max_length=64, index=True)
    before: str | None = Field(default=None, sa_column=Column(Text))  # JSON
    after: str | None = Field(default=None, sa_column=Column(Text))  # JSON
    # The hash chain (tracker/core/audit_chain.py, migration 0011): position, previous row's hash, own hash.
    # Set when the row is inserted (services/audit.py); unique seq: two writers can never fork the chain.
    seq: int | None = None
    prev_hash: str | None = Field(default=None, max_length=64)
    hash: str | None = Field(default=None, max_length=64)


class AuditHead(_Table, table=True):
    """One row (id 1): where the audit chain ends, so that deleting its newest rows shows (audit verify).
    Writers lock it (PostgreSQL: FOR UPDATE) to append, in one total order."""

    __tablename__ = "audit_head"

    id: int | None = Field(default=None, primary_key=True)
    seq: int = 0
    hash: str = Field(max_length=64)


class StaffUser(_Table, table=True):
    """A person who signs in to the web view (migration 0013). `role`: clinician (may act on alerts) or
    readonly. Only an argon2 hash of the password is kept; a disabled account stays for the audit trail."""

    __tablename__ = "staff_user"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, max_length=64)
    role: str = Field(max_length=10)
    password_hash: str = Field(sa_column=Column(Text, nullable=False))
    disabled: bool = False
    failed_logins: int = 0  # failed sign-ins in a row (reset by a good one)
    locked_until: dt.datetime | None = None
    created_at: dt.datetime


class WebSession(_Table, table=True):
    """A signed-in session of the web view (migration 0024). The cookie holds a random session id; only its
    SHA-256 is kept here. Signing out ends the row, so a copy of the cookie kept from before is refused."""

    __tablename__ = "web_session"

    id: int | None = Field(default=None, primary_key=True)
    sid_hash: str = Field(unique=True, max_length=64)
    user_id: int = Field(foreign_key="staff_user.id", index=True)
    started_at: dt.datetime
    ended_at: dt.datetime | None = None


class NightlyRun(_Table, table=True):
    __tablename__ = "nightly_run"

    id: int | None = Field(default=None, primary_key=True)
    from_day: dt.date
    as_of: dt.date
    started_at: dt.datetime
    finished_at: dt.datetime | None = None
    status: str = Field(default="running", max_length=12)  # running | ok | failed
    counts: str | None = Field(default=None, sa_column=Column(Text))  # JSON
    failures: str | None = Field(default=None, sa_column=Column(Text))


class Reminder(_Table, table=True):
    """One reminder, emitted once per condition and day; `dedupe_key` makes re-runs emit nothing new."""

    __tablename__ = "reminder"
    __table_args__ = (UniqueConstraint("dedupe_key"),)

    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(max_length=200)
    run_id: int | None = Field(default=None, foreign_key="nightly_run.id")
    as_of: dt.date
    kind: str = Field(max_length=24)  # due | overdue | alert
    severity: str = Field(default="info", max_length=10)
    patient_id: int | None = Field(default=None, foreign_key="patient.id")
    item_id: int | None = Field(default=None, foreign_key="item.id")
    alert_id: int | None = Field(default=None, foreign_key="alert.id")
    payload: str = Field(sa_column=Column(Text, nullable=False))  # JSON
    created_at: dt.datetime


class ReminderDelivery(_Table, table=True):
    __tablename__ = "reminder_delivery"
    __table_args__ = (
        UniqueConstraint("reminder_id", "channel"),
        partial_index("ix_reminder_delivery_unsent", "channel", "reminder_id", where=UNSENT_SQL),
    )

    id: int | None = Field(default=None, primary_key=True)
    reminder_id: int = Field(foreign_key="reminder.id")
    channel: str = Field(max_length=20)
    state: str = Field(default="pending", max_length=10)  # pending | sent | failed
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=Column(Text))
    delivered_at: dt.datetime | None = None


def unsent_delivery():
    """The deliveries not yet sent (UNSENT_SQL) as a condition that reaches their partial index: 'sent' as a
    literal, since SQLite uses a partial index only when the query's own terms imply its condition."""
    return ReminderDelivery.__table__.c.state != literal_column("'sent'")


class Feed(_Table, table=True):
    __tablename__ = "feed"

    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(unique=True, max_length=64)
    scope: str = Field(max_length=10)  # patient | clinic
    patient_id: int | None = Field(default=None, foreign_key="patient.id")
    audience: str = Field(default="staff", max_length=10)  # staff | patient
    created_at: dt.datetime
    revoked_at: dt.datetime | None = None


class ProtocolSnapshot(_Table, table=True):
    """The exact protocol a course was planned with, stored once per content hash, so that editing a
    protocol file never silently rewrites an existing course's calendar."""

    __tablename__ = "protocol_snapshot"

    content_hash: str = Field(primary_key=True, max_length=32)
    protocol_id: str = Field(max_length=64, index=True)
    version: int
    origin: str | None = Field(default=None, sa_column=Column(Text))
    content: str = Field(sa_column=Column(Text, nullable=False))  # JSON of the validated protocol
    created_at: dt.datetime


class CalDavObject(_Table, table=True):
    """What `tracker calendar push` last put in a CalDAV collection, per event UID (migration 0009)."""

    __tablename__ = "caldav_object"
    __table_args__ = (UniqueConstraint("collection", "uid"),)

    id: int | None = Field(default=None, primary_key=True)
    collection: str = Field(max_length=500)  # the collection URL, without credentials
    uid: str = Field(max_length=64)
    content_hash: str = Field(max_length=64)  # SHA-256 of the event as sent, DTSTAMP left out
    etag: str | None = Field(default=None, max_length=200)  # as the server answered the PUT
    pushed_at: dt.datetime


class LabInboxFile(_Table, table=True):
    """A file the lab inbox imported, by the SHA-256 of its bytes (migration 0018): never imported twice."""

    __tablename__ = "lab_inbox_file"
    __table_args__ = (UniqueConstraint("sha256"),)

    id: int | None = Field(default=None, primary_key=True)
    sha256: str = Field(max_length=64)
    name: str = Field(max_length=500)  # the file's name in the inbox when it was imported
    format: str = Field(max_length=8)  # hl7 | fhir | csv
    results: int  # how many results it stored
    imported_at: dt.datetime


class Setting(_Table, table=True):
    """Small key/value state (e.g. the last day the nightly job completed)."""

    __tablename__ = "setting"

    key: str = Field(primary_key=True, max_length=100)
    value: str = Field(sa_column=Column(Text, nullable=False))


def setting_value(session, key: str) -> str | None:
    row = session.get(Setting, key)
    return row.value if row else None


def store_setting(session, key: str, value: str) -> None:
    """Insert or update one Setting (part of the caller's transaction)."""
    row = session.get(Setting, key)
    if row is None:
        session.add(Setting(key=key, value=value))
    else:
        row.value = value
        session.add(row)
