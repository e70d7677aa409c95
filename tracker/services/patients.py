"""The patient registry."""

from __future__ import annotations

import datetime as dt
import difflib
import unicodedata

from sqlmodel import Session, select

from sqlalchemy import func

from tracker.core import inputs
from tracker.dates import utcnow
from tracker.db.tables import Patient
from tracker.errors import ConflictError, InputError, NotFoundError
from tracker.services import audit
from tracker.services.context import Clinic

SEXES = ("f", "m", "x")
CHILDBEARING = ("yes", "no", "unknown")  # as recorded; tracker.core.gates.may_conceive reads it


def get_patient(session: Session, mrn: str) -> Patient:
    mrn = unicodedata.normalize("NFC", mrn).strip()
    if not inputs.encodable(mrn):  # undecodable bytes from the command line: no stored MRN has them (fuzz)
        raise NotFoundError("mrn", mrn)
    patient = session.exec(select(Patient).where(Patient.mrn == mrn)).first()
    if patient is None:
        # Suggest near MRNs from those sharing the first characters (cheap on large registries).
        prefix = mrn[:2]
        nearby = session.exec(select(Patient.mrn).where(Patient.mrn.startswith(prefix)).limit(2000)).all()
        raise NotFoundError("mrn", mrn, difflib.get_close_matches(mrn, nearby, n=3, cutoff=0.7))
    return patient


def _check(mrn: str | None, name: str | None, dob: dt.date | None, sex: str | None,
           weight_kg: float | None, today: dt.date, childbearing: str | None = None,
           clinician: str | None = None) -> dict:
    """The values as stored (MRN and name normalised), or a one-line InputError."""
    clean = {}
    if mrn is not None:
        clean["mrn"] = inputs.clean_mrn(mrn)
    if name is not None:
        clean["name"] = inputs.clean_text(name, "name", max_len=inputs.NAME_MAX)
    if clinician is not None:
        clean["clinician"] = clean_clinician(clinician)
    if dob is not None:
        if dob > today:
            raise InputError("dob", dob.isoformat(), "is in the future")
        if dob.year < 1900:
            raise InputError("dob", dob.isoformat(), "is before 1900")
    if sex is not None and sex not in SEXES:
        raise InputError("sex", sex, "expected f, m or x")
    if weight_kg is not None:
        # Physically possible body weights, not a clinical threshold: catches 0.000001 and grams-for-kg.
        inputs.finite_number(weight_kg, "weight-kg", low=0.2, high=500)
    if childbearing is not None and childbearing not in CHILDBEARING:
        raise InputError("childbearing-potential", childbearing, "expected yes, no or unknown")
    return clean


def clean_clinician(value: object) -> str:
    """A clinician's name as stored and as filtered by: the rules of a patient's name."""
    return inputs.clean_text(value, "clinician", max_len=inputs.NAME_MAX)


def known_clinician(session: Session, value: object) -> str:
    """A clinician filter's name as stored; a name no patient has is refused (a typo would otherwise show an
    empty worklist), with the near names on record."""
    name = clean_clinician(value)
    if session.exec(select(Patient.id).where(Patient.clinician == name).limit(1)).first() is None:
        names = session.exec(select(Patient.clinician).where(Patient.clinician.is_not(None)).distinct()
                             .limit(5000)).all()
        raise NotFoundError("clinician", name, difflib.get_close_matches(name, names, n=3, cutoff=0.6))
    return name


def _look_alike(session: Session, mrn: str, other_than: int | None = None) -> str | None:
    """An MRN on record that compares equal to `mrn` in normalised form (case, compatibility forms)."""
    key = inputs.mrn_key(mrn)
    query = select(Patient.mrn).where(func.upper(Patient.mrn) == key)
    if other_than is not None:
        query = query.where(Patient.id != other_than)
    return session.exec(query).first()


def add_patient(
    clinic: Clinic,
    *,
    mrn: str,
    name: str,
    dob: dt.date,
    sex: str | None,
    weight_kg: float | None,
    childbearing: str = "unknown",
    clinician: str | None = None,
) -> Patient:
    session, user = clinic.session, clinic.user
    clean = _check(mrn, name, dob, sex, weight_kg, clinic.today, childbearing, clinician)
    mrn, name = clean["mrn"], clean["name"]
    existing = _look_alike(session, mrn)
    if existing is not None:
        same = "" if existing == mrn else f" ({existing!r}, the same MRN when compared)"
        raise ConflictError(f"mrn: {mrn!r}: a patient with this MRN already exists{same}")
    now = utcnow()
    patient = Patient(
        mrn=mrn,
        name=name.strip(),
        dob=dob,
        sex=sex,
        weight_kg=weight_kg,
        childbearing=childbearing,
        clinician=clean.get("clinician"),
        created_at=now,
        updated_at=now,
    )
    session.add(patient)
    session.flush()
    audit.record(session, user, "patient.add", "patient", patient.id, mrn, None, audit.snapshot(patient))
    return patient


def update_patient(clinic: Clinic, mrn: str, changes: dict) -> Patient:
    session, user = clinic.session, clinic.user
    patient = get_patient(session, mrn)
    clean = _check(changes.get("mrn"), changes.get("name"), changes.get("dob"), changes.get("sex"),
                   changes.get("weight_kg"), clinic.today, changes.get("childbearing"), changes.get("clinician"))
    if not changes:
        raise InputError("update", "", "nothing to change (give at least one option)")
    changes = {**changes, **clean}
    new_mrn = changes.get("mrn")
    if new_mrn and new_mrn != patient.mrn and _look_alike(session, new_mrn, other_than=patient.id):
        raise ConflictError(f"mrn: {new_mrn!r}: a patient with this MRN already exists")
    if "dob" in changes:
        from tracker.db.tables import Course

        first = session.exec(select(Course.start_on).where(Course.patient_id == patient.id)
                             .order_by(Course.start_on)).first()
        if first is not None and changes["dob"] > first:
            raise InputError("dob", changes["dob"].isoformat(), f"is after the first course start {first}")
    before = audit.snapshot(patient)
    for key, value in changes.items():
        setattr(patient, key, value.strip() if isinstance(value, str) and key == "name" else value)
    patient.updated_at = utcnow()
    session.add(patient)
    if (before["mrn"], before["name"]) != (patient.mrn, patient.name):
        from tracker.services.plan_sync import bump_patient_items

        bump_patient_items(session, patient.id, patient.updated_at)
    audit.record(session, user, "patient.update", "patient", patient.id, patient.mrn, before,
                 audit.snapshot(patient))
    return patient


def initials(name: str) -> str:
    return "".join(part[0].upper() for part in name.replace("-", " ").split() if part)


def patient_label(mrn: str, name: str, style: str = "mrn_initials") -> str:
    """How reminders and staff calendars name a patient; MRN and initials by default (privacy)."""
    if style == "mrn":
        return mrn
    if style == "initials":
        return initials(name)
    if style == "name":
        return f"{mrn} {name}"
    return f"{mrn} {initials(name)}"


def audited_mrn(session, mrn: str) -> str:
    """The MRN to audit: a patient's (as stored), or one a patient had before an MRN change; else NotFoundError."""
    try:
        return get_patient(session, mrn).mrn
    except NotFoundError:
        if len(audit.mrns_of_patient(session, mrn)) > 1:
            return mrn
        raise
