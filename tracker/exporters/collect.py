"""Reading stored items into `CalendarItem`s (the export settings are `Settings.export`, core/settings.py).

Shell side of the ICS export (it takes a Session); shared by `tracker export ics` and the feed server.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlmodel import Session

from tracker.db.tables import Course, Item, Patient, codes
from tracker.errors import InputError
from tracker.exporters.ics import AUDIENCES, CalendarItem, SourceRef, TestName, render_calendar
from tracker.core.coded import DrugCoding, TestCoding, drug_coding, test_codings
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
    """Per-export caches: each course's protocol (snapshot-aware, by drug and protocol hash), display
    names, test names, sources and clinic-default wording. A clinic has a few protocol versions and
    many thousands of items, so every lookup is made once per distinct value, not once per item."""

    def __init__(self, session: Session, library: ProtocolLibrary):
        self.session = session
        self.library = library
        self.vocabulary = library.vocabulary
        self._protocols: dict[tuple[str, str], Protocol | None] = {}
        self._tests: dict[str, tuple[TestName, ...]] = {}
        self._drugs: dict[tuple, tuple[str, ...]] = {}
        self._sources: dict[tuple, tuple[SourceRef, ...]] = {}
        self._defaults: dict[tuple, tuple[str, ...]] = {}
        self._labels: dict[tuple, str] = {}
        self._test_codes: dict[str | None, tuple[TestCoding, ...]] = {}
        self._drug_codes: dict[tuple, tuple[DrugCoding, ...]] = {}

    def label(self, mrn: str, name: str, style: str) -> str:
        key = (mrn, name, style)
        if key not in self._labels:
            from tracker.services.patients import patient_label

            self._labels[key] = patient_label(mrn, name, style)
        return self._labels[key]

    def protocol(self, drug: str, protocol_hash: str) -> Protocol | None:
        key = (drug, protocol_hash)
        if key not in self._protocols:
            from types import SimpleNamespace

            from tracker.db.snapshots import course_protocol

            course = SimpleNamespace(drug=drug, protocol_hash=protocol_hash)
            try:
                self._protocols[key] = course_protocol(self.session, self.library, course)
            except Exception:  # a protocol file removed since: fall back to stored codes
                self._protocols[key] = None
        return self._protocols[key]

    def course_protocol(self, course_id: int) -> Protocol | None:
        course = self.session.get(Course, course_id)
        return self.protocol(course.drug, course.protocol_hash)

    def drug_name(self, drug: str, own: Protocol | None) -> str:
        if own is not None and own.id == drug:
            return own.name
        protocol = self.library.protocols.get(drug)
        return protocol.name if protocol else drug

    def drugs(self, drug: str, merged: str | None, own: Protocol | None) -> tuple[str, ...]:
        key = (drug, merged, id(own))
        if key not in self._drugs:
            self._drugs[key] = tuple(self.drug_name(d, own) for d in [drug, *codes(merged)])
        return self._drugs[key]

    def test(self, code: str) -> TestName:
        spec = self.vocabulary.tests.get(code)
        return TestName(code, spec.name, spec.plain) if spec else TestName(code, code, code)

    def tests(self, stored: str | None) -> tuple[TestName, ...]:
        if stored not in self._tests:
            self._tests[stored] = tuple(self.test(c) for c in codes(stored))
        return self._tests[stored]

    def test_codes(self, stored: str | None) -> tuple[TestCoding, ...]:
        if stored not in self._test_codes:
            self._test_codes[stored] = test_codings(codes(stored), self.vocabulary)
        return self._test_codes[stored]

    def drug_codes(self, drug: str, merged: str | None, own: Protocol | None) -> tuple[DrugCoding, ...]:
        """The item's own drug coded from the protocol its course was planned with; merged drugs from the
        library's current protocols."""
        key = (drug, merged, id(own))
        if key not in self._drug_codes:
            found = []
            for name in dict.fromkeys([drug, *codes(merged)]):
                protocol = own if own is not None and own.id == name else self.library.protocols.get(name)
                found.append(drug_coding(name, protocol))
            self._drug_codes[key] = tuple(found)
        return self._drug_codes[key]

    def source(self, key: str, protocols: list[Protocol]) -> SourceRef:
        for protocol in protocols:
            found = protocol.sources.get(key)
            if found is not None:
                return SourceRef(key, found.citation, found.url)
        return SourceRef(key, key, None)

    def sources(self, stored: str | None, own: Protocol | None, merged: str | None) -> tuple[SourceRef, ...]:
        key = (stored, id(own), merged)
        if key not in self._sources:
            protocols = [p for p in [own, *(self.library.protocols.get(d) for d in codes(merged))]
                         if p is not None]
            self._sources[key] = tuple(self.source(k, protocols) for k in codes(stored))
        return self._sources[key]

    def clinic_defaults(self, own: Protocol | None, kind: str, tests: str | None, week: int | None,
                        origin: str | None) -> tuple[str, ...]:
        if own is None:
            return ()
        key = (id(own), kind, tests, week, origin)
        if key not in self._defaults:
            self._defaults[key] = item_clinic_defaults(own, kind, codes(tests), week, origin)
        return self._defaults[key]


def calendar_item(lookup: _Lookup, item, patient, label_style: str, own: Protocol | None = None) -> CalendarItem:
    """One item (an `Item` or a plain row with its columns) as the calendar shows it; `patient` has `mrn`
    and `name`; `own` is the course's protocol (looked up from the course when not given)."""
    if own is None:
        own = lookup.course_protocol(item.course_id)
    return CalendarItem(
        uid=item.uid,
        due=item.due,
        kind=item.kind,
        status=item.status,
        sequence=item.sequence,
        last_modified=item.last_modified,
        title=item.title,
        drugs=lookup.drugs(item.drug, item.merged_drugs, own),
        tests=lookup.tests(item.tests),
        sources=lookup.sources(item.sources, own, item.merged_drugs),
        patient=lookup.label(patient.mrn, patient.name, label_style),
        detail=item.detail,
        target=item.target,
        week=item.week,
        done_on=item.done_on,
        clinic_defaults=lookup.clinic_defaults(own, item.kind, item.tests, item.week, item.origin),
        test_codes=lookup.test_codes(item.tests),
        drug_codes=lookup.drug_codes(item.drug, item.merged_drugs, own),
    )


# Every status an item can have: naming them lets a date range use the (status, due) index.
STATUSES = ("planned", "done", "cancelled")


def collect_items(session: Session, library: ProtocolLibrary, *, patient_id: int | None,
                  start: dt.date | None = None, end: dt.date | None = None,
                  label_style: str = "mrn_initials",
                  cancelled_since: dt.datetime | None = None) -> list[CalendarItem]:
    """Every stored item in range, planned, done and cancelled (so subscribers drop cancelled ones); with
    `cancelled_since`, only the cancelled items changed since then (a feed's grace period). Read as plain
    rows in one query (tracker/db/rows.py): a whole clinic's month is tens of thousands of items."""
    from tracker.db.rows import plain_rows

    columns = [Item.id, Item.uid, Item.course_id, Item.due, Item.kind, Item.status, Item.sequence,
               Item.last_modified, Item.title, Item.drug, Item.merged_drugs, Item.tests, Item.sources,
               Item.detail, Item.target, Item.week, Item.done_on, Item.origin, Course.drug.label("course_drug"), Course.protocol_hash,
               Patient.mrn, Patient.name]
    query = (select(*columns).join(Patient, Patient.id == Item.patient_id)
             .join(Course, Course.id == Item.course_id))
    if patient_id is not None:
        query = query.where(Item.patient_id == patient_id)
    elif start is not None or end is not None:
        query = query.where(Item.status.in_(STATUSES))
    if start is not None:
        query = query.where(Item.due >= start)
    if end is not None:
        query = query.where(Item.due <= end)
    if cancelled_since is not None:
        query = query.where(or_(Item.status != "cancelled", Item.last_modified >= cancelled_since))
    query = query.order_by(Item.due, Patient.mrn, Item.kind, Item.id)
    lookup = _Lookup(session, library)
    out = []
    for row in plain_rows(session, query):
        own = lookup.protocol(row.course_drug, row.protocol_hash)
        out.append(calendar_item(lookup, row, row, label_style, own))
    return out


def latest_change(session: Session, patient_id: int | None) -> dt.datetime | None:
    """When anything a calendar shows last changed: an item, or the patient (their label). For the whole
    clinic only items are read (one index seek, ix_item_last_modified): a rename bumps the patient's
    items anyway (plan_sync.bump_patient_items), and a scan of every patient would cost a 304 its speed."""
    items = select(func.max(Item.last_modified))
    queries = [items]
    if patient_id is not None:
        queries = [items.where(Item.patient_id == patient_id),
                   select(Patient.updated_at).where(Patient.id == patient_id)]
    values = [session.execute(query).scalar() for query in queries]
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


@dataclass(frozen=True)
class CalendarText:
    text: str  # iCalendar, CRLF line ends
    events: int

    def encode(self) -> bytes:
        return self.text.encode("utf-8")


def calendar_text(session: Session, library: ProtocolLibrary, settings: ExportSettings, *,
                  patient: Patient | None, audience: str, stamp: dt.datetime,
                  start: dt.date | None = None, end: dt.date | None = None, alarm: bool | None = None,
                  alarm_lead_hours: float | None = None, refresh: dt.timedelta | None = None,
                  cancelled_since: dt.datetime | None = None) -> CalendarText:
    """The calendar for one patient (or the whole clinic) and one audience, as text."""
    patient_id = patient.id if patient is not None else None
    check_audience(audience, patient_id)
    if start and end and start > end:
        raise InputError("from", start.isoformat(), f"is after --to {end.isoformat()}")
    items = collect_items(session, library, patient_id=patient_id, start=start, end=end,
                          label_style=settings.patient_label, cancelled_since=cancelled_since)
    lead_hours = alarm_lead_hours if alarm_lead_hours is not None else settings.alarm_lead_hours
    if alarm is None:
        alarm = lead_hours is not None
    lead = dt.timedelta(hours=lead_hours if lead_hours is not None else DEFAULT_ALARM_LEAD_HOURS) if alarm else None
    text = render_calendar(items, audience, name=calendar_name(audience, patient, settings), stamp=stamp,
                           alarm_lead=lead, refresh=refresh)
    return CalendarText(text, len(items))


def export_calendar(session: Session, library: ProtocolLibrary, settings: ExportSettings, **options):
    """The same calendar as an icalendar.Calendar (for callers that walk or edit its events)."""
    from icalendar import Calendar

    return Calendar.from_ical(calendar_text(session, library, settings, **options).text)
