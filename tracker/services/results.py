"""Lab results: recording them, and completing the items they answer."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlmodel import Session, select

from tracker.dates import utcnow
from tracker.db.tables import Course, Item, LabResult, Patient, codes, join_codes
from tracker.errors import InputError
from tracker.core.panels import LAB_EARLY_DAYS, counts_towards, is_complete, nearest_draw
from tracker.core.protocol import ProtocolLibrary
from tracker.services import audit
from tracker.services.context import Clinic
from tracker.services.plan_sync import absorbed_into, baseline_satisfied_by, course_protocol
from tracker.services.patients import get_patient
from tracker.core.vocabulary import Vocabulary


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

    evaluation = after_result(session, library, patient, result, completed, today, user)
    return RecordedResult(result, patient, completed, evaluation)


def complete_items(session: Session, library: ProtocolLibrary, patient: Patient, result: LabResult) -> list[Item]:
    """Record what this result answers, and complete the items it makes whole (rules: core/panels.py).

    A result for a test, or for an analyte of a panel, counts for the baseline items asking for that test
    and, per course, for the one open lab draw `nearest_draw` picks. Each such item adds the result's code to
    what it has received; it is done once nothing it needs is missing (a baseline item: when the gate's
    `baseline_result` says so), else it stays planned and shows as partial.
    """
    vocabulary = library.vocabulary
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
    labs: dict[int, list[Item]] = {}
    touched: list[Item] = []
    for item in open_items:
        if not counts_towards(codes(item.tests), result.test, vocabulary):
            continue
        if item.kind == "baseline":
            if item.reading is None:  # a later reading waits for a day of its own, not for analytes
                touched.append(item)
            course = session.get(Course, item.course_id)
            protocol = course_protocol(session, library, course)
            if baseline_satisfied_by(session, patient, protocol, item, vocabulary) is not None:
                completed.append(item)
            continue
        labs.setdefault(item.course_id, []).append(item)
    done_labs = []
    for draws in labs.values():
        draw = nearest_draw(draws, taken)
        touched.append(draw)
        if is_complete(codes(draw.tests), [*codes(draw.received), result.test], vocabulary):
            done_labs.append(draw)
    completed += done_labs
    # A merged draw answers every course whose draw was absorbed into it (tracker/core/merge.py).
    completed += absorbed_into(session, [i.id for i in done_labs])
    for item in touched:
        if result.test not in codes(item.received):
            item.received = join_codes([*codes(item.received), result.test])
            session.add(item)
    now = utcnow()
    for item in completed:
        item.status = "done"
        item.done_on = taken
        item.done_note = f"result #{result.id} ({result.test})"
        item.sequence += 1
        item.last_modified = now
        session.add(item)
    return completed
