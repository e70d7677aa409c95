"""The patient list (`tracker patient list`) and one patient's summary (`tracker patient show`)."""

from __future__ import annotations

from sqlmodel import select

from tracker.db.tables import Alert, Course, LabResult, Patient
from tracker.services.context import Clinic
from tracker.services.patients import get_patient
from tracker.services.worklists import open_and_upcoming


def patient_details(patient: Patient, today, childbearing_ages) -> dict:
    """`childbearing` as recorded (yes | no | unknown); `may_conceive`: whether pregnancy rules apply today."""
    from tracker.core.gates import may_conceive

    return {
        "mrn": patient.mrn,
        "name": patient.name,
        "dob": patient.dob.isoformat(),
        "sex": patient.sex,
        "weight_kg": patient.weight_kg,
        "childbearing": patient.childbearing,
        "clinician": patient.clinician,
        "may_conceive": may_conceive(patient.sex, patient.childbearing, patient.dob, today, childbearing_ages),
    }


def lab_baselines(clinic: Clinic, patient: Patient, courses) -> list[dict]:
    """Each live course's baseline for its change-from-baseline rules, where the protocol averages several
    pre-start readings (`lab_baseline: mean_of`; core: Chart.lab_baseline), e.g. ciclosporin's creatinine."""
    from tracker.core.chart import ChartCourse
    from tracker.db.charts import results_chart
    from tracker.db.snapshots import course_protocol

    rows, chart = [], None
    for course in courses:
        protocol = course_protocol(clinic.session, clinic.library, course)
        if protocol.lab_baseline is None:
            continue
        chart = chart or results_chart(clinic.session, patient)
        entry = ChartCourse(course.id, course.patient_id, course.drug, course.status, course.start_on, protocol)
        tests = dict.fromkeys(t.analyte for t in protocol.thresholds if t.rise_pct or t.fall_pct)
        for test in tests:
            if not protocol.lab_baseline.applies_to(test):
                continue
            baseline = chart.lab_baseline(entry, test)
            rows.append({
                "drug": course.drug, "test": test, "wanted": protocol.baseline_readings(test),
                "value": round(baseline.value_num, 4) if baseline else None,
                "readings": [{"taken_on": r.taken_on.isoformat(), "value": r.value_num}
                             for r in (baseline.readings if baseline else ())],
                "text": baseline.describe() if baseline else "no pre-start result on record",
            })
    return rows


def patient_rows(clinic: Clinic) -> list[dict]:
    """Every patient (by MRN) with their live courses (`drug`, or `drug (paused)`)."""
    session = clinic.session
    patients = session.exec(select(Patient).order_by(Patient.mrn)).all()
    live: dict[int, list[str]] = {}
    for patient_id, drug, status in session.exec(
        select(Course.patient_id, Course.drug, Course.status).where(Course.status != "stopped")
    ).all():
        live.setdefault(patient_id, []).append(drug if status == "active" else f"{drug} (paused)")
    return [{**patient_details(p, clinic.today, clinic.childbearing_ages), "courses": sorted(live.get(p.id, []))} for p in patients]


def patient_summary(clinic: Clinic, mrn: str, recent: int = 10, upcoming: int = 10) -> dict:
    session, today = clinic.session, clinic.today
    patient = get_patient(session, mrn)
    courses = session.exec(select(Course).where(Course.patient_id == patient.id)
                           .order_by(Course.start_on, Course.id)).all()
    results = session.exec(select(LabResult).where(LabResult.patient_id == patient.id)
                           .order_by(LabResult.taken_on.desc(), LabResult.id.desc()).limit(recent)).all()
    from tracker.services.row_shapes import alert_row, result_row

    alerts = session.exec(select(Alert).where(Alert.patient_id == patient.id, Alert.status != "resolved")
                          .order_by(Alert.raised_on, Alert.id)).all()
    from tracker.services.coded_rows import alert_codes, course_codes, item_codes, result_codes

    library = clinic.library
    return {
        "patient": patient_details(patient, today, clinic.childbearing_ages),
        "baselines": lab_baselines(clinic, patient, [c for c in courses if c.status != "stopped"]),
        "courses": course_codes([
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
        ], library),
        "results": result_codes([result_row(r) for r in results], library),
        "alerts": alert_codes(session, [alert_row(a, patient.mrn) for a in alerts], library),
        # Overdue tasks, then the next planned items (`tracker.core.worklist`: is_overdue, is_upcoming).
        "next_items": item_codes(open_and_upcoming(session, patient.id, today, upcoming, library.vocabulary),
                                 library),
    }
