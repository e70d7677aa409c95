"""`tracker export fhir` and `tracker schedules export-fhir`: what is stored, as FHIR R4 (tracker/exporters/fhir.py).

A whole clinic is read and written per chunk of patients, so its bundle streams out without being held in
memory. Read-only: the caller opens the clinic with write=False.
"""

from __future__ import annotations

from typing import IO, Iterator

from sqlmodel import select

from tracker.db.tables import Course, Item, Patient
from tracker.errors import InputError
from tracker.services.context import Clinic

CHUNK = 500  # patients read per query round


def fhir_scope(clinic: Clinic, *, mrn: str | None, whole_clinic: bool) -> list[int]:
    """The patients a bundle covers: one (`mrn`), or every patient with a live course, by MRN. A bad scope
    or an unknown MRN fails here, before any output is opened."""
    from tracker.services.patients import get_patient

    if bool(mrn) == bool(whole_clinic):
        raise InputError("scope", mrn or "", "give exactly one of --patient MRN or --clinic")
    if mrn:
        return [get_patient(clinic.session, mrn).id]
    # A live course: not stopped (tables.LIVE_COURSE_SQL, the one-live-course index's predicate).
    live = select(Course.patient_id).where(Course.status != "stopped").distinct()
    return list(clinic.session.exec(select(Patient.id).where(Patient.id.in_(live)).order_by(Patient.mrn)))


def write_fhir_bundle(clinic: Clinic, out: IO[str], patient_ids: list[int], *, validate: bool = True) -> int:
    """Write the transaction Bundle of these patients to `out`; the number of entries."""
    from tracker.exporters.fhir import write_bundle

    return write_bundle(out, _resources(clinic, patient_ids, validate))


def _resources(clinic: Clinic, patient_ids: list[int], validate: bool) -> Iterator[dict]:
    from tracker.exporters.fhir import course_resources, patient_resource, validated

    session, settings = clinic.session, clinic.settings
    with_name = settings.privacy.patient_label == "name"  # the site's choice to name patients in exports
    check = validated if validate else (lambda resource: resource)
    for start in range(0, len(patient_ids), CHUNK):
        chunk = patient_ids[start:start + CHUNK]
        patients = {p.id: p for p in session.exec(select(Patient).where(Patient.id.in_(chunk)))}
        courses: dict[int, list[Course]] = {}
        for course in session.exec(select(Course).where(Course.patient_id.in_(chunk)).order_by(Course.id)):
            courses.setdefault(course.patient_id, []).append(course)
        items: dict[int, list[Item]] = {}
        for item in session.exec(select(Item).where(Item.patient_id.in_(chunk)).order_by(Item.due, Item.id)):
            items.setdefault(item.course_id, []).append(item)
        for patient_id in chunk:
            patient = check(patient_resource(patients[patient_id], settings.fhir.mrn_system, with_name))
            yield patient
            for course in courses.get(patient_id, []):
                for resource in course_resources(course, _protocol(clinic, course), items.get(course.id, []),
                                                 clinic.library.vocabulary, patient, clinic.today):
                    yield check(resource)
        session.expunge_all()  # this chunk's rows are written: let them go


def _protocol(clinic: Clinic, course: Course):
    """The protocol the course was planned with (its snapshot if the file changed since), or None when
    neither is to be had (the drug is still named by tracker's code)."""
    from tracker.db.snapshots import course_protocol

    try:
        return course_protocol(clinic.session, clinic.library, course)
    except Exception:  # a protocol file removed since and no snapshot: codes from the course alone
        return None


def protocol_plan_definition(clinic_library, drug: str) -> dict:
    """A protocol of the library as a validated PlanDefinition."""
    from tracker.exporters.fhir import plan_definition, validated

    protocol = clinic_library.get(drug)
    return validated(plan_definition(protocol, clinic_library.vocabulary))
