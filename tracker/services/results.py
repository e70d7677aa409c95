"""Lab results: recording them, and completing the items they answer."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlmodel import Session, select

from tracker.dates import utcnow
from tracker.db.tables import Course, Item, LabResult, Patient, codes
from tracker.errors import InputError
from tracker.core.protocol import ProtocolLibrary
from tracker.services import audit
from tracker.services.context import Clinic
from tracker.services.plan_sync import absorbed_into, baseline_satisfied_by, course_protocol
from tracker.services.patients import get_patient
from tracker.core.vocabulary import Vocabulary

# A draw up to this many days before its due date still counts for it.
LAB_EARLY_DAYS = 7


@dataclass
class RecordedResult:
    result: LabResult
    patient: Patient
    completed: list[Item] = field(default_factory=list)
    evaluation: object | None = None  # alerts raised/resolved as the result landed (services.alerts)


def validate_result(vocabulary: Vocabulary, test: str, value: str, taken_on: dt.date, patient: Patient,
                    today: dt.date, ref_low: float | None = None, ref_high: float | None = None):
    code = vocabulary.get(test).code
    value_num, value_text = vocabulary.check_value(code, value)
    if taken_on > today:
        raise InputError("on", taken_on.isoformat(), "is in the future")
    if taken_on < patient.dob:
        raise InputError("on", taken_on.isoformat(), f"is before the patient's date of birth {patient.dob}")
    if ref_low is not None and ref_high is not None and ref_low > ref_high:
        raise InputError("ref_low", ref_low, f"is above ref_high {ref_high}")
    return code, value_num, value_text


def record_result(
    clinic: Clinic,
    *,
    mrn: str,
    test: str,
    value: str,
    taken_on: dt.date,
    unit: str | None,
    ref_low: float | None = None,
    ref_high: float | None = None,
    patient: Patient | None = None,
) -> RecordedResult:
    session, library, today, user = clinic.session, clinic.library, clinic.today, clinic.user
    vocabulary = library.vocabulary
    patient = patient or get_patient(session, mrn)
    code, value_num, value_text = validate_result(vocabulary, test, value, taken_on, patient, today,
                                                  ref_low, ref_high)
    result = LabResult(
        patient_id=patient.id,
        test=code,
        value_num=value_num,
        value_text=value_text,
        unit=unit or vocabulary.get(code).unit,
        taken_on=taken_on,
        ref_low=ref_low,
        ref_high=ref_high,
        created_at=utcnow(),
    )
    session.add(result)
    session.flush()
    completed = complete_items(session, library, patient, result)
    audit.record(session, user, "result.add", "lab_result", result.id, patient.mrn, None,
                 {**audit.snapshot(result), "completed_items": [i.id for i in completed]})
    from tracker.services.alerts import after_result

    evaluation = after_result(session, library, patient, result, completed, today, user, clinic.settings)
    return RecordedResult(result, patient, completed, evaluation)


def complete_items(session: Session, library: ProtocolLibrary, patient: Patient, result: LabResult) -> list[Item]:
    """Complete the open items this result answers.

    A result for a test, or for an analyte of a panel, answers baseline items for that test (taken within
    the rule's validity window, if any) and, per course, the one open lab item whose due date is nearest
    to the draw among those whose window has opened (due - 7 days).
    """
    covered = library.vocabulary.covers(result.test)
    taken = result.taken_on
    open_items = session.exec(
        select(Item).where(
            Item.patient_id == patient.id,
            Item.status == "planned",
            Item.kind.in_(("baseline", "lab")),
            Item.due <= taken + dt.timedelta(days=LAB_EARLY_DAYS),
        )
    ).all()
    completed: list[Item] = []
    best_lab: dict[int, Item] = {}
    for item in open_items:
        if not covered.intersection(codes(item.tests)):
            continue
        if item.kind == "baseline":
            course = session.get(Course, item.course_id)
            protocol = course_protocol(session, library, course)
            if baseline_satisfied_by(session, patient, protocol, item, library.vocabulary) is not None:
                completed.append(item)
            continue
        current = best_lab.get(item.course_id)
        distance = abs((item.due - taken).days)
        if current is None or distance < abs((current.due - taken).days) or (
            distance == abs((current.due - taken).days) and item.due < current.due
        ):
            best_lab[item.course_id] = item
    completed += best_lab.values()
    # A merged draw answers every course whose draw was absorbed into it (tracker/core/merge.py).
    completed += absorbed_into(session, [i.id for i in best_lab.values()])
    now = utcnow()
    for item in completed:
        item.status = "done"
        item.done_on = taken
        item.done_note = f"result #{result.id} ({result.test})"
        item.sequence += 1
        item.last_modified = now
        session.add(item)
    return completed
