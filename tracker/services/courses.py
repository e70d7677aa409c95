"""Therapy courses: start, dose change, pause, resume, stop, switch. Each re-plans and is audited."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from tracker.core.durations import Duration
from tracker.dates import utcnow
from tracker.db.engine import lock_conflict
from tracker.db.tables import Course, CoursePause, DoseChange, Patient
from tracker.core import inputs
from tracker.errors import ConflictError, GateError, InputError, NotFoundError
from tracker.core.plan import applicable_baseline
from tracker.core.protocol import Protocol, ProtocolLibrary
from tracker.core.gates import gate_findings, patient_facts, refusal_line, refusing_results
from tracker.core.terms import STOP_CATEGORIES
from tracker.db.charts import results_chart
from tracker.services import audit
from tracker.services.context import Clinic
from tracker.db.snapshots import course_protocol, remember_protocol
from tracker.core.worklist import course_has_ended
from tracker.services.plan_sync import SyncResult, end_course, sync_course
from tracker.services.patients import get_patient



@dataclass
class CourseChange:
    course: Course
    patient: Patient
    protocol: Protocol
    sync: SyncResult
    consider: list[str] = field(default_factory=list)  # at-risk baseline tests to consider
    missing_gates: list[str] = field(default_factory=list)  # overridden hard gates
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # warnings about the input (an event long past)


def live_course(session: Session, patient: Patient, protocol_id: str) -> Course | None:
    return session.exec(
        select(Course).where(Course.patient_id == patient.id, Course.drug == protocol_id,
                             Course.status != "stopped")
    ).first()


def find_course(session: Session, library: ProtocolLibrary, mrn: str, drug: str) -> tuple[Patient, Course]:
    patient = get_patient(session, mrn)
    protocol = library.get(drug)
    course = live_course(session, patient, protocol.id)
    if course is None:
        active = session.exec(
            select(Course.drug).where(Course.patient_id == patient.id, Course.status != "stopped")
        ).all()
        raise NotFoundError("drug", drug, list(active))
    return patient, course


def start_course(
    clinic: Clinic,
    *,
    mrn: str,
    drug: str,
    on: dt.date,
    dose: str | None,
    override_gate: str | None,
    switched_from: Course | None = None,
    historic: bool = False,
) -> CourseChange:
    session, library, today, user = clinic.session, clinic.library, clinic.today, clinic.user
    dose = inputs.clean_text(dose, "dose", required=False) or None
    override_gate = inputs.clean_text(override_gate, "override-gate", required=False) or None
    patient = get_patient(session, mrn)
    protocol = library.get(drug)
    if on < patient.dob:
        raise InputError("on", on.isoformat(), f"is before the patient's date of birth {patient.dob}")
    note = inputs.event_date(on, today, "on", clinic.settings.dates, start=True, historic=historic)
    if live_course(session, patient, protocol.id) is not None:
        raise ConflictError(f"drug: {protocol.id!r}: {mrn} is already on {protocol.id} (stop it first)")
    chart = results_chart(session, patient)
    # Initiation limits (a low neutrophil count) refuse outright; unmet gates (a missing, old, positive or
    # indeterminate screen) refuse unless overridden with a reason. Nothing is written before this point.
    refusals = refusing_results(chart, protocol, on, library.vocabulary)
    if refusals:
        raise GateError(f"drug: {protocol.id!r}: {protocol.name} refused: {'; '.join(refusals)}")
    findings = gate_findings(chart, protocol, on, library.vocabulary, clinic.childbearing_ages)
    overridden = bool(override_gate and override_gate.strip())
    if findings and not overridden:
        raise GateError(refusal_line(protocol, findings, mrn))
    missing = [f.test for f in findings]
    remember_protocol(session, protocol)
    course = Course(
        patient_id=patient.id,
        drug=protocol.id,
        dose=dose,
        start_on=on,
        status="active",
        gate_override=override_gate.strip() if missing and override_gate else None,
        protocol_version=protocol.version,
        protocol_hash=protocol.content_hash,
        protocol_origin=protocol.origin,
        switched_from_id=switched_from.id if switched_from else None,
        created_at=utcnow(),
    )
    session.add(course)
    try:
        session.flush()
    except IntegrityError as exc:  # the database's one-live-course index (0007): another start won the race
        if lock_conflict(exc) is None:
            raise
        raise ConflictError(f"drug: {protocol.id!r}: {mrn} is already on {protocol.id} (stop it first)") from None
    sync = sync_course(session, course, patient, protocol, today, merge_window=clinic.merge_window,
                       childbearing_ages=clinic.childbearing_ages)
    after = audit.snapshot(course)
    if findings:
        after["overridden_gates"] = [f.why for f in findings]
    audit.record(session, user, "therapy.start", "course", course.id, mrn, None, after)
    _, consider = applicable_baseline(protocol, patient_facts(chart, on, clinic.childbearing_ages))
    from tracker.services.alerts import after_start

    raised = after_start(session, library, patient, today, user, clinic.settings).raised
    return CourseChange(
        course, patient, protocol, sync,
        consider=[t for rule in consider for t in rule.tests],
        missing_gates=[f.why for f in findings],
        warnings=[f"alert #{a.id} ({a.kind}, {a.severity}): {a.message}" for a in raised],
        notes=[note] if note else [],
    )


def _event_on(clinic: Clinic, on: dt.date | None) -> list[str]:
    """A course event's date within the clinic's window ([dates]); the warning for one long past."""
    if on is None:
        return []
    note = inputs.event_date(on, clinic.today, "on", clinic.settings.dates)
    return [note] if note else []


def _check_on(course: Course, on: dt.date, what: str) -> None:
    if on < course.start_on:
        raise InputError("on", on.isoformat(), f"{what} before the course started on {course.start_on}")


def change_dose(clinic: Clinic, *, mrn: str, drug: str, on: dt.date, dose: str) -> CourseChange:
    session, library, today, user = clinic.session, clinic.library, clinic.today, clinic.user
    notes = _event_on(clinic, on)
    patient, course = find_course(session, library, mrn, drug)
    _check_on(course, on, "dose change")
    if not dose.strip():
        raise InputError("dose", dose, "must not be empty")
    before = audit.snapshot(course)
    session.add(DoseChange(course_id=course.id, changed_on=on, dose=dose, previous_dose=course.dose,
                           created_at=utcnow()))
    course.dose = dose
    session.add(course)
    session.flush()
    protocol = course_protocol(session, library, course)
    sync = sync_course(session, course, patient, protocol, today, merge_window=clinic.merge_window,
                       childbearing_ages=clinic.childbearing_ages, moves=True)
    audit.record(session, user, "therapy.dose", "course", course.id, mrn, before,
                 {**audit.snapshot(course), "changed_on": on.isoformat()})
    return CourseChange(course, patient, protocol, sync, notes=notes)


def pause_course(clinic: Clinic, *, mrn: str, drug: str, on: dt.date, reason: str | None) -> CourseChange:
    session, library, today, user = clinic.session, clinic.library, clinic.today, clinic.user
    notes = _event_on(clinic, on)
    patient, course = find_course(session, library, mrn, drug)
    _check_on(course, on, "pause")
    if course.status == "paused":
        raise ConflictError(f"drug: {course.drug!r}: {mrn}'s {course.drug} course is already paused")
    last = session.exec(select(CoursePause).where(CoursePause.course_id == course.id)
                        .order_by(CoursePause.paused_on.desc())).first()
    if last is not None and last.resumed_on and on < last.resumed_on:
        raise InputError("on", on.isoformat(), f"is before the last resume on {last.resumed_on}")
    before = audit.snapshot(course)
    session.add(CoursePause(course_id=course.id, paused_on=on, reason=reason))
    course.status = "paused"
    session.add(course)
    session.flush()
    protocol = course_protocol(session, library, course)
    sync = sync_course(session, course, patient, protocol, today, merge_window=clinic.merge_window,
                       childbearing_ages=clinic.childbearing_ages, moves=True)
    audit.record(session, user, "therapy.pause", "course", course.id, mrn, before,
                 {**audit.snapshot(course), "paused_on": on.isoformat(), "reason": reason})
    return CourseChange(course, patient, protocol, sync, notes=notes)


def resume_course(clinic: Clinic, *, mrn: str, drug: str, on: dt.date, reason: str | None) -> CourseChange:
    session, library, today, user = clinic.session, clinic.library, clinic.today, clinic.user
    notes = _event_on(clinic, on)
    patient, course = find_course(session, library, mrn, drug)
    if course.status != "paused":
        raise ConflictError(f"drug: {course.drug!r}: {mrn}'s {course.drug} course is not paused")
    pause = session.exec(select(CoursePause).where(CoursePause.course_id == course.id,
                                                   CoursePause.resumed_on.is_(None))).first()
    if on < pause.paused_on:
        raise InputError("on", on.isoformat(), f"is before the pause on {pause.paused_on}")
    before = audit.snapshot(course)
    pause.resumed_on = on
    pause.resume_reason = reason
    course.status = "active"
    session.add(pause)
    session.add(course)
    session.flush()
    protocol = course_protocol(session, library, course)
    sync = sync_course(session, course, patient, protocol, today, merge_window=clinic.merge_window,
                       childbearing_ages=clinic.childbearing_ages, moves=True)
    audit.record(session, user, "therapy.resume", "course", course.id, mrn, before,
                 {**audit.snapshot(course), "resumed_on": on.isoformat(), "reason": reason})
    return CourseChange(course, patient, protocol, sync, notes=notes)


def stop_course(clinic: Clinic, *, mrn: str, drug: str, on: dt.date, reason: str,
                category: str | None) -> CourseChange:
    session, library, today, user = clinic.session, clinic.library, clinic.today, clinic.user
    notes = _event_on(clinic, on)
    patient, course = find_course(session, library, mrn, drug)
    _check_on(course, on, "stop")
    if not reason or not reason.strip():
        raise InputError("reason", reason, "a stop needs a reason")
    reason = inputs.clean_text(reason, "reason")
    if category is not None and category not in STOP_CATEGORIES:
        raise InputError("category", category, f"expected one of {', '.join(STOP_CATEGORIES)}")
    before = audit.snapshot(course)
    course.stop_on = on
    course.stop_reason = reason.strip()
    course.stop_category = category
    if course_has_ended(on, today):
        end_course(session, course)
    # else a stop announced for a later day: the course stays live (reviewed, alerted on, one per drug) until
    # then, and the nightly (roll_forward) ends it on that day.
    session.add(course)
    session.flush()
    protocol = course_protocol(session, library, course)
    sync = sync_course(session, course, patient, protocol, today, merge_window=clinic.merge_window,
                       childbearing_ages=clinic.childbearing_ages)
    audit.record(session, user, "therapy.stop", "course", course.id, mrn, before, audit.snapshot(course))
    return CourseChange(course, patient, protocol, sync, notes=notes)


def switch_course(clinic: Clinic, *, mrn: str, from_drug: str, to_drug: str, on: dt.date, reason: str,
                  category: str | None, dose: str | None,
                  override_gate: str | None, historic: bool = False) -> tuple[CourseChange, CourseChange]:
    """Stop one drug and start another on the same date, linked; both or neither happen."""
    target = clinic.library.get(to_drug)
    if target.id == clinic.library.get(from_drug).id:
        raise InputError("to", to_drug, "is the same drug as the one being stopped")
    stopped = stop_course(clinic, mrn=mrn, drug=from_drug, on=on, reason=reason, category=category)
    started = start_course(clinic, mrn=mrn, drug=to_drug, on=on, dose=dose, override_gate=override_gate,
                           switched_from=stopped.course, historic=historic)
    return stopped, started


def parse_every(text: str) -> Duration:
    """A per-patient interval, 1 week to 2 years (tracker.core.inputs.interval)."""
    return inputs.interval(text, "every")


def protocol_changes(clinic: Clinic) -> list[dict]:
    """Live courses whose protocol in effect differs from the one they were planned with."""
    session, library = clinic.session, clinic.library
    rows = []
    courses = session.exec(
        select(Course, Patient).join(Patient, Patient.id == Course.patient_id)
        .where(Course.status != "stopped").order_by(Patient.mrn, Course.drug, Course.id)
    ).all()
    for course, patient in courses:
        current = library.protocols.get(course.drug)
        if current is not None and current.content_hash == course.protocol_hash:
            continue
        rows.append({
            "mrn": patient.mrn,
            "drug": course.drug,
            "course_id": course.id,
            "planned_version": course.protocol_version,
            "planned_hash": course.protocol_hash,
            "planned_origin": course.protocol_origin,
            "current_version": current.version if current else None,
            "current_hash": current.content_hash if current else None,
            "current_origin": current.origin if current else None,
        })
    return rows


def replan_course(clinic: Clinic, *, mrn: str, drug: str) -> CourseChange:
    """Adopt the protocol now in effect for a course: done items stay, the rest follows the new version."""
    session, library, today, user = clinic.session, clinic.library, clinic.today, clinic.user
    patient, course = find_course(session, library, mrn, drug)
    protocol = library.protocols.get(course.drug)
    if protocol is None:
        raise NotFoundError("drug", course.drug, sorted(library.protocols))
    before = audit.snapshot(course, "protocol_version", "protocol_hash", "protocol_origin")
    remember_protocol(session, protocol)
    course.protocol_version = protocol.version
    course.protocol_hash = protocol.content_hash
    course.protocol_origin = protocol.origin
    session.add(course)
    session.flush()
    sync = sync_course(session, course, patient, protocol, today, merge_window=clinic.merge_window,
                       childbearing_ages=clinic.childbearing_ages)
    after = {**audit.snapshot(course, "protocol_version", "protocol_hash", "protocol_origin"),
             "items_added": len(sync.added), "items_cancelled": len(sync.cancelled),
             "items_changed": len(sync.changed)}
    audit.record(session, user, "therapy.replan", "course", course.id, mrn, before, after)
    return CourseChange(course, patient, protocol, sync)


def adjust_course(clinic: Clinic, *, mrn: str, drug: str, every: str, reason: str | None,
                  on: dt.date | None) -> CourseChange:
    """Set this course's interval for the open-ended (maintenance) phase, from a date on."""
    session, library, today, user = clinic.session, clinic.library, clinic.today, clinic.user
    from tracker.core.plan import adjustable_phase

    patient, course = find_course(session, library, mrn, drug)
    duration = parse_every(every)
    if not reason or not reason.strip():
        raise InputError("reason", reason, "an adjustment needs a reason")
    on = on or today
    notes = [n for n in [inputs.event_date(on, today, "from", clinic.settings.dates)] if n]
    reason = inputs.clean_text(reason, "reason")
    if on < course.start_on:
        raise InputError("from", on.isoformat(), f"adjustment before the course started on {course.start_on}")
    protocol = course_protocol(session, library, course)
    tracks = protocol.monitoring.tracks if protocol.monitoring else []
    if not any(adjustable_phase(track) for track in tracks):
        raise InputError("drug", course.drug, "its protocol has no open-ended monitoring phase to adjust")
    before = audit.snapshot(course, "adjust_every", "adjust_from", "adjust_reason")
    course.adjust_every = str(duration)
    course.adjust_from = on
    course.adjust_reason = reason.strip()
    session.add(course)
    session.flush()
    sync = sync_course(session, course, patient, protocol, today, merge_window=clinic.merge_window,
                       childbearing_ages=clinic.childbearing_ages)
    audit.record(session, user, "therapy.adjust", "course", course.id, mrn, before,
                 audit.snapshot(course, "adjust_every", "adjust_from", "adjust_reason"))
    return CourseChange(course, patient, protocol, sync, notes=notes)
