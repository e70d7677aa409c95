"""Reading stored items into `CalendarItem`s (the export settings are `Settings.export`, core/settings.py).

Shell side of the ICS export (it takes a Session); shared by `tracker export ics` and the feed server.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select
from sqlmodel import Session

from tracker.db.tables import Course, Item, Patient, codes
from tracker.errors import InputError
from tracker.exporters.ics import AUDIENCES, CalendarItem, SourceRef, TestName, build_calendar, calendar_uid
from tracker.core.defaults import item_clinic_defaults
from tracker.core.protocol import Protocol, ProtocolLibrary
from tracker.core.settings import ExportSettings

# Not a clinical number: `--alarm` without `[calendar] alarm_lead_hours` reminds at 09:00 the day before
# (an all-day event's trigger counts back from its local midnight). clinic_default: true
DEFAULT_ALARM_LEAD_HOURS = 15
PATIENT_CALENDAR_NAME = "My monitoring tests and reviews"


def check_audience(audience: str, patient_id: int | None) -> None:
    if audience not in AUDIENCES:
        raise InputError("audience", audience, f"expected one of {', '.join(AUDIENCES)}")
    if audience == "patient" and patient_id is None:
        raise InputError("audience", audience, "a patient calendar needs one patient (--patient MRN): "
                                               "it must hold no other patient's data")


class _Lookup:
    """Per-export caches: each course's protocol (snapshot-aware) and display names."""

    def __init__(self, session: Session, library: ProtocolLibrary):
        self.session = session
        self.library = library
        self.vocabulary = library.vocabulary
        self._courses: dict[int, Protocol] = {}

    def course_protocol(self, course_id: int) -> Protocol | None:
        from tracker.db.snapshots import course_protocol

        if course_id not in self._courses:
            course = self.session.get(Course, course_id)
            try:
                self._courses[course_id] = course_protocol(self.session, self.library, course)
            except Exception:  # a protocol file removed since: fall back to stored codes
                self._courses[course_id] = None
        return self._courses[course_id]

    def drug_name(self, drug: str, own: Protocol | None) -> str:
        if own is not None and own.id == drug:
            return own.name
        protocol = self.library.protocols.get(drug)
        return protocol.name if protocol else drug

    def test(self, code: str) -> TestName:
        spec = self.vocabulary.tests.get(code)
        return TestName(code, spec.name, spec.plain) if spec else TestName(code, code, code)

    def source(self, key: str, protocols: list[Protocol]) -> SourceRef:
        for protocol in protocols:
            found = protocol.sources.get(key)
            if found is not None:
                return SourceRef(key, found.citation, found.url)
        return SourceRef(key, key, None)


def calendar_item(lookup: _Lookup, item: Item, patient: Patient, label_style: str) -> CalendarItem:
    from tracker.services.patients import patient_label

    own = lookup.course_protocol(item.course_id)
    merged = codes(item.merged_drugs)
    protocols = [p for p in [own, *(lookup.library.protocols.get(d) for d in merged)] if p is not None]
    return CalendarItem(
        uid=item.uid,
        due=item.due,
        kind=item.kind,
        status=item.status,
        sequence=item.sequence,
        last_modified=item.last_modified,
        title=item.title,
        drugs=tuple(lookup.drug_name(d, own) for d in [item.drug, *merged]),
        tests=tuple(lookup.test(c) for c in codes(item.tests)),
        sources=tuple(lookup.source(k, protocols) for k in codes(item.sources)),
        patient=patient_label(patient.mrn, patient.name, label_style),
        detail=item.detail,
        target=item.target,
        week=item.week,
        done_on=item.done_on,
        clinic_defaults=(item_clinic_defaults(own, item.kind, codes(item.tests), item.week, item.origin)
                         if own is not None else ()),
    )


def collect_items(session: Session, library: ProtocolLibrary, *, patient_id: int | None,
                  start: dt.date | None = None, end: dt.date | None = None,
                  label_style: str = "mrn_initials") -> list[CalendarItem]:
    """Every stored item in range, planned, done and cancelled (so subscribers drop cancelled ones)."""
    query = select(Item, Patient).join(Patient, Patient.id == Item.patient_id)
    if patient_id is not None:
        query = query.where(Item.patient_id == patient_id)
    if start is not None:
        query = query.where(Item.due >= start)
    if end is not None:
        query = query.where(Item.due <= end)
    query = query.order_by(Item.due, Patient.mrn, Item.kind, Item.id)
    lookup = _Lookup(session, library)
    return [calendar_item(lookup, item, patient, label_style) for item, patient in session.execute(query)]


def latest_change(session: Session, patient_id: int | None) -> dt.datetime | None:
    """When anything a calendar shows last changed: an item, or the patient (their label)."""
    items = select(func.max(Item.last_modified))
    patients = select(func.max(Patient.updated_at))
    if patient_id is not None:
        items = items.where(Item.patient_id == patient_id)
        patients = patients.where(Patient.id == patient_id)
    values = [session.execute(items).scalar(), session.execute(patients).scalar()]
    values = [_aware(v) for v in values if v is not None]
    return max(values) if values else None


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def calendar_name(audience: str, patient: Patient | None, settings: ExportSettings) -> str:
    from tracker.services.patients import patient_label

    if audience == "patient":
        return PATIENT_CALENDAR_NAME
    if patient is None:
        return settings.clinic_name
    return f"Monitoring: {patient_label(patient.mrn, patient.name, settings.patient_label)}"


def export_calendar(session: Session, library: ProtocolLibrary, settings: ExportSettings, *,
                    patient: Patient | None, audience: str, stamp: dt.datetime,
                    start: dt.date | None = None, end: dt.date | None = None, alarm: bool | None = None,
                    alarm_lead_hours: float | None = None, refresh: dt.timedelta | None = None):
    """The icalendar.Calendar for one patient (or the whole clinic) and one audience."""
    patient_id = patient.id if patient is not None else None
    check_audience(audience, patient_id)
    if start and end and start > end:
        raise InputError("from", start.isoformat(), f"is after --to {end.isoformat()}")
    items = collect_items(session, library, patient_id=patient_id, start=start, end=end,
                          label_style=settings.patient_label)
    lead_hours = alarm_lead_hours if alarm_lead_hours is not None else settings.alarm_lead_hours
    if alarm is None:
        alarm = lead_hours is not None
    lead = dt.timedelta(hours=lead_hours if lead_hours is not None else DEFAULT_ALARM_LEAD_HOURS) if alarm else None
    return build_calendar(
        items, audience,
        name=calendar_name(audience, patient, settings),
        uid=calendar_uid("patient" if patient_id else "clinic", patient_id, audience),
        stamp=stamp, alarm_lead=lead, refresh=refresh,
    )
