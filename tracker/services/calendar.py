"""Keeping each course's stored items in step with its plan.

`sync_course` re-plans a course and reconciles the result with what is stored: done items are never
touched, planned items that still apply keep their row (and uid), items that no longer apply are
cancelled (kept, so calendar subscribers see STATUS:CANCELLED), new items get a fresh random uid.
An item's identity across re-plans is its key: (kind, due, tests, week).
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from sqlmodel import Session, select

from tracker.dates import Duration, utcnow
from tracker.db.tables import Course, CoursePause, DoseChange, Item, LabResult, Patient, codes, join_codes
from tracker.planner import (
    CourseFacts,
    IntervalAdjustment,
    Pause,
    PatientFacts,
    PlannedItem,
    default_horizon,
    plan_course,
)
from tracker.protocols import Protocol, ProtocolLibrary

# The plan is extended when it reaches less than 12 months ahead, to 13 months, so each course is
# re-planned about once a month rather than every night.
KEEP_AHEAD = Duration(12, "m")
EXTEND_TO = Duration(13, "m")


@dataclass
class SyncResult:
    added: list[Item] = field(default_factory=list)
    cancelled: list[Item] = field(default_factory=list)
    changed: list[Item] = field(default_factory=list)
    kept: int = 0


def course_facts(session: Session, course: Course, patient: Patient) -> CourseFacts:
    changes = session.exec(select(DoseChange.changed_on).where(DoseChange.course_id == course.id)).all()
    pauses = session.exec(select(CoursePause).where(CoursePause.course_id == course.id)).all()
    adjustment = None
    if course.adjust_every and course.adjust_from:
        adjustment = IntervalAdjustment(Duration.parse(course.adjust_every), course.adjust_from)
    return CourseFacts(
        start=course.start_on,
        stop=course.stop_on,
        dose_changes=tuple(sorted(changes)),
        pauses=tuple(Pause(p.paused_on, p.resumed_on) for p in sorted(pauses, key=lambda p: p.paused_on)),
        patient=PatientFacts(sex=patient.sex, childbearing_potential=patient.childbearing_potential),
        adjustment=adjustment,
    )


def item_key(item: Item) -> tuple:
    return (item.kind, item.due, tuple(sorted(codes(item.tests))), item.week)


def _fields(planned: PlannedItem, protocol: Protocol) -> dict:
    return {
        "title": planned.title,
        "detail": planned.detail,
        "sources": join_codes(planned.sources),
        "gate": planned.gate,
        "measure": planned.measure,
        "target": planned.target,
        "adjusted": "adjusted for this course" in (planned.detail or ""),
    }


def bump(item: Item, now: dt.datetime) -> None:
    """Record a material change (ICS SEQUENCE and LAST-MODIFIED)."""
    item.sequence += 1
    item.last_modified = now


def sync_course(
    session: Session,
    course: Course,
    patient: Patient,
    protocol: Protocol,
    today: dt.date,
    horizon: dt.date | None = None,
) -> SyncResult:
    horizon = horizon or EXTEND_TO.after(max(today, course.start_on))
    # The horizon never shrinks: items already planned further ahead stay valid.
    if course.planned_through and course.planned_through > horizon:
        horizon = course.planned_through
    facts = course_facts(session, course, patient)
    planned = plan_course(protocol, facts, horizon)
    now = utcnow()
    result = SyncResult()

    stored = session.exec(select(Item).where(Item.course_id == course.id, Item.origin == "plan")).all()
    by_key: dict[tuple, Item] = {}
    for item in stored:
        # Prefer a live row over a cancelled twin with the same key.
        if item_key(item) not in by_key or by_key[item_key(item)].status == "cancelled":
            by_key[item_key(item)] = item

    wanted = set()
    for plan_item in planned:
        wanted.add(plan_item.key)
        values = _fields(plan_item, protocol)
        item = by_key.get(plan_item.key)
        if item is None:
            item = Item(
                uid=str(uuid.uuid4()),
                course_id=course.id,
                patient_id=patient.id,
                drug=protocol.id,
                kind=plan_item.kind,
                due=plan_item.due,
                tests=join_codes(plan_item.tests),
                week=plan_item.week,
                status="planned",
                created_at=now,
                last_modified=now,
                **values,
            )
            session.add(item)
            result.added.append(item)
            continue
        if item.status == "done":
            result.kept += 1
            continue
        changed = item.status == "cancelled" or any(getattr(item, k) != v for k, v in values.items())
        if changed:
            for key, value in values.items():
                setattr(item, key, value)
            item.status = "planned"
            bump(item, now)
            session.add(item)
            result.changed.append(item)
        else:
            result.kept += 1

    for key, item in by_key.items():
        if key not in wanted and item.status == "planned" and item.due <= horizon:
            item.status = "cancelled"
            bump(item, now)
            session.add(item)
            result.cancelled.append(item)

    course.planned_through = horizon
    session.add(course)
    session.flush()
    if result.added:
        complete_from_results(session, patient.id, [i for i in result.added if i.kind == "baseline"], protocol)
    return result


def baseline_window_start(protocol: Protocol, test: str, due: dt.date) -> dt.date | None:
    for rule in protocol.baseline:
        if test in rule.tests and rule.valid_for is not None:
            return due - dt.timedelta(days=rule.valid_for.approx_days())
    return None


def complete_from_results(session: Session, patient_id: int, items: list[Item], protocol: Protocol) -> None:
    """Mark new baseline items done when a result on record already satisfies them."""
    from tracker.vocabulary import load_vocabulary

    vocabulary = load_vocabulary()
    for item in items:
        wanted = set()
        for test in codes(item.tests):
            wanted |= vocabulary.members(test)
        query = select(LabResult).where(LabResult.patient_id == patient_id, LabResult.test.in_(wanted))
        since = baseline_window_start(protocol, codes(item.tests)[0], item.due)
        if since is not None:
            query = query.where(LabResult.taken_on >= since)
        result = session.exec(query.order_by(LabResult.taken_on.desc())).first()
        if result is not None:
            item.status = "done"
            item.done_on = result.taken_on
            item.done_note = f"result #{result.id}"
            session.add(item)


def roll_forward(session: Session, library: ProtocolLibrary, today: dt.date, needed: dt.date | None = None) -> int:
    """Extend every live course whose plan reaches less than 12 months (or `needed`) ahead."""
    threshold = max(KEEP_AHEAD.after(today), needed or today)
    stale = session.exec(
        select(Course, Patient)
        .join(Patient, Patient.id == Course.patient_id)
        .where(Course.status != "stopped", Course.planned_through < threshold)
    ).all()
    for course, patient in stale:
        horizon = max(EXTEND_TO.after(today), needed or today)
        sync_course(session, course, patient, course_protocol(session, library, course), today, horizon)
    return len(stale)


__all__ = ["sync_course", "roll_forward", "course_facts", "SyncResult", "default_horizon", "bump"]


_SNAPSHOTS: dict[str, Protocol] = {}


def remember_protocol(session: Session, protocol: Protocol) -> None:
    """Store the protocol's content under its hash (once) so courses can be re-planned with it later."""
    import json

    from tracker.db.tables import ProtocolSnapshot

    if session.get(ProtocolSnapshot, protocol.content_hash) is None:
        session.add(
            ProtocolSnapshot(
                content_hash=protocol.content_hash,
                protocol_id=protocol.id,
                version=protocol.version,
                origin=protocol.origin,
                content=json.dumps(protocol.model_dump(by_alias=True, mode="json"), sort_keys=True),
                created_at=utcnow(),
            )
        )
        session.flush()


def course_protocol(session: Session, library: ProtocolLibrary, course: Course) -> Protocol:
    """The protocol a course was planned with: the current file if unchanged, else its stored snapshot."""
    import json

    from tracker.db.tables import ProtocolSnapshot

    current = library.protocols.get(course.drug)
    if current is not None and current.content_hash == course.protocol_hash:
        return current
    if course.protocol_hash not in _SNAPSHOTS:
        snapshot = session.get(ProtocolSnapshot, course.protocol_hash)
        if snapshot is None:
            if current is None:
                return library.get(course.drug)
            return current
        protocol = Protocol.model_validate(json.loads(snapshot.content))
        protocol.origin = snapshot.origin or ""
        protocol.content_hash = snapshot.content_hash
        _SNAPSHOTS[course.protocol_hash] = protocol
    return _SNAPSHOTS[course.protocol_hash]
