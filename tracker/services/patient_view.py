"""One patient's summary for `tracker patient show`."""

from __future__ import annotations

import datetime as dt

from sqlmodel import Session, select

from tracker.db.tables import Alert, Course, LabResult
from tracker.services.patients import get_patient
from tracker.services.worklists import open_and_upcoming


def patient_summary(session: Session, mrn: str, today: dt.date, recent: int = 10, upcoming: int = 10) -> dict:
    patient = get_patient(session, mrn)
    courses = session.exec(select(Course).where(Course.patient_id == patient.id)
                           .order_by(Course.start_on, Course.id)).all()
    results = session.exec(select(LabResult).where(LabResult.patient_id == patient.id)
                           .order_by(LabResult.taken_on.desc(), LabResult.id.desc()).limit(recent)).all()
    from tracker.services.alerts import alert_row

    alerts = session.exec(select(Alert).where(Alert.patient_id == patient.id, Alert.status != "resolved")
                          .order_by(Alert.raised_on, Alert.id)).all()
    return {
        "patient": {
            "mrn": patient.mrn,
            "name": patient.name,
            "dob": patient.dob.isoformat(),
            "sex": patient.sex,
            "weight_kg": patient.weight_kg,
            "childbearing_potential": patient.childbearing_potential,
        },
        "courses": [
            {
                "id": c.id,
                "drug": c.drug,
                "status": c.status,
                "start": c.start_on.isoformat(),
                "stop": c.stop_on.isoformat() if c.stop_on else None,
                "stop_reason": c.stop_reason,
                "dose": c.dose,
                "protocol_version": c.protocol_version,
                "protocol_hash": c.protocol_hash,
                "gate_override": c.gate_override,
                "adjust_every": c.adjust_every,
            }
            for c in courses
        ],
        "results": [
            {
                "taken_on": r.taken_on.isoformat(),
                "test": r.test,
                "value": r.value_num if r.value_num is not None else r.value_text,
                "unit": r.unit,
            }
            for r in results
        ],
        "alerts": [alert_row(a, patient.mrn) for a in alerts],
        # Overdue tasks, then the next planned items (`tracker.core.worklist`: is_overdue, is_upcoming).
        "next_items": open_and_upcoming(session, patient.id, today, upcoming),
    }
