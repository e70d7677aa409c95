"""Disease-severity assessments (EASI, IGA, itch NRS, DLQI, POEM) and response against each course's
baseline. Recording one judges the patient's due response checkpoints at once."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlmodel import Session, select

from tracker.dates import utcnow
from tracker.db.tables import Assessment, Course
from tracker.errors import ConflictError, InputError
from tracker.core.assessment_days import same_day_plan
from tracker.core.protocol import MEASURE_RANGES
from tracker.core.response import choose_baseline, improvement
from tracker.services import audit
from tracker.services.context import Clinic
from tracker.services.patients import get_patient

WHOLE_NUMBERS = ("iga", "dlqi", "poem")


@dataclass
class RecordedAssessment:
    assessment: Assessment
    mrn: str
    responses: list[dict] = field(default_factory=list)  # per live course: baseline and change
    evaluation: object | None = None  # services.alerts.EvaluationSummary
    replaced: tuple = ()  # ids of the same-day assessments this one replaced (`--replace`)


def check_measures(values: dict) -> dict:
    """Range checks, one-line errors naming the measure (`--itch-nrs` is `itch_nrs`)."""
    given = {k: v for k, v in values.items() if v is not None}
    if not given:
        raise InputError("measures", "", f"give at least one of {', '.join('--' + m.replace('_', '-') for m in MEASURE_RANGES)}")
    for name, value in given.items():
        if name not in MEASURE_RANGES:
            raise InputError("measure", name, f"expected one of {', '.join(MEASURE_RANGES)}")
        low, high = MEASURE_RANGES[name]
        if not low <= value <= high:
            raise InputError(name.replace("_", "-"), value, f"must be between {low} and {high}")
        if name in WHOLE_NUMBERS and value != int(value):
            raise InputError(name.replace("_", "-"), value, "must be a whole number")
    return {k: (int(v) if k in WHOLE_NUMBERS else float(v)) for k, v in given.items()}


def record_assessment(clinic: Clinic, *, mrn: str, on: dt.date, values: dict,
                      replace: bool = False) -> RecordedAssessment:
    from tracker.services.alerts import evaluate_clinic

    session, today, user = clinic.session, clinic.today, clinic.user

    measures = check_measures(values)
    patient = get_patient(session, mrn)
    if on > today:
        raise InputError("on", on.isoformat(), "is in the future")
    if on < patient.dob:
        raise InputError("on", on.isoformat(), f"is before the patient's date of birth {patient.dob}")
    same_day = session.exec(select(Assessment).where(Assessment.patient_id == patient.id,
                                                     Assessment.assessed_on == on)).all()
    plan = same_day_plan(same_day, on, measures)
    if plan.conflicts and not replace:
        names = ", ".join(m.replace("_", "-") for m in plan.measures)
        raise ConflictError(f"on: {on.isoformat()!r}: {patient.mrn} already has {names} recorded that day "
                            f"(assessment #{plan.conflicts[0].id}); give --replace to replace it")
    if plan.conflicts:
        # A replacement is a new row carrying the replaced rows' other measures, inserted before the old
        # rows go (SQLite reuses the highest id once it is deleted): its id is past the incremental
        # nightly's mark, so the next pass re-judges the patient. The audit keeps the old rows.
        before = {"replaced": [audit.snapshot(old) for old in plan.conflicts]}
        row = Assessment(patient_id=patient.id, assessed_on=on, created_at=utcnow(), **plan.merged)
        session.add(row)
        session.flush()
        for old in plan.conflicts:
            session.delete(old)
        session.flush()
        audit.record(session, user, "assessment.replace", "assessment", row.id, patient.mrn, before,
                     audit.snapshot(row))
    else:
        row = Assessment(patient_id=patient.id, assessed_on=on, created_at=utcnow(), **measures)
        session.add(row)
        session.flush()
        audit.record(session, user, "assessment.add", "assessment", row.id, patient.mrn, None, audit.snapshot(row))
    recorded = RecordedAssessment(row, patient.mrn, responses_of(session, patient.id, row, clinic.settings.alerts),
                                  replaced=tuple(old.id for old in plan.conflicts))
    recorded.evaluation = evaluate_clinic(session, clinic.library, today, clinic.settings,
                                          patient_ids=[patient.id],
                                          kinds=("checkpoint_failed", "checkpoint_missed"), user=user)
    return recorded


def responses_of(session: Session, patient_id: int, current: Assessment, settings) -> list[dict]:
    """Change from each live course's baseline assessment (courses started on or before `current`)."""
    assessments = session.exec(select(Assessment).where(Assessment.patient_id == patient_id)).all()
    courses = session.exec(select(Course).where(Course.patient_id == patient_id, Course.status != "stopped",
                                                Course.start_on < current.assessed_on)
                           .order_by(Course.start_on, Course.id)).all()
    out = []
    for course in courses:
        baseline = choose_baseline(assessments, course.start_on, settings.baseline_window_days)
        out.append({
            "drug": course.drug,
            "start": course.start_on.isoformat(),
            "week": (current.assessed_on - course.start_on).days // 7,
            "baseline_on": baseline.assessed_on.isoformat() if baseline else None,
            "change": improvement(baseline, current) if baseline else {},
        })
    return out
