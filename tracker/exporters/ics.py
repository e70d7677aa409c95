"""Monitoring calendars as iCalendar (RFC 5545): one all-day VEVENT per stored item.

Pure: takes plain `CalendarItem`s and returns an `icalendar.Calendar`; no session, clock or click.
Identity and change tracking come from the item's stored uid, sequence and last_modified, so a
re-export updates subscribers' events instead of duplicating them. Every value that would otherwise
default to "now" or to a random value (DTSTAMP, calendar UID) is passed in, so output is deterministic.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from icalendar import Alarm, Calendar, Event

PRODID = "-//tracker//monitoring calendar//EN"
AUDIENCES = ("staff", "patient")

# Fixed namespace for calendar UIDs: uuid5(namespace, scope) is stable across exports and carries no
# patient data (RFC 7986 5.3); only internal row ids go in.
CALENDAR_NAMESPACE = uuid.UUID("6f1d7c0e-3a52-4b8e-9d4f-2c7a1e5b9a30")

# Wording only (patient-facing summaries say "Blood test: ..."): vocabulary codes taken as a blood
# sample. Anything else (blood pressure, X-ray, screening reviews, unknown codes) is named on its own.
BLOOD_TESTS = frozenset({
    "cbc", "cmp", "lipids", "wbc", "neutrophils", "lymphocytes", "eosinophils", "platelets", "hb", "mcv",
    "alt", "ast", "alp", "albumin", "bilirubin", "creatinine", "egfr", "urea", "sodium", "potassium",
    "glucose", "magnesium", "urate", "total_cholesterol", "ldl", "hdl", "triglycerides", "tpmt", "nudt15",
    "hbv", "hcv", "hiv", "vzv", "ciclosporin_level",
})

KIND_WORDS = {"baseline": "baseline test", "lab": "lab draw", "checkpoint": "response checkpoint",
              "limit": "course limit"}


@dataclass(frozen=True)
class TestName:
    code: str
    name: str  # the vocabulary's name, for staff
    plain: str  # the vocabulary's plain wording, for patients


@dataclass(frozen=True)
class SourceRef:
    key: str
    citation: str
    url: str | None = None


@dataclass(frozen=True)
class CalendarItem:
    """One stored item, with everything the calendar text needs already looked up."""

    uid: str
    due: dt.date
    kind: str  # baseline | lab | checkpoint | limit
    status: str  # planned | done | cancelled
    sequence: int
    last_modified: dt.datetime
    title: str
    drugs: tuple[str, ...]  # display names; the item's own drug first, then drugs merged into it
    tests: tuple[TestName, ...] = ()
    sources: tuple[SourceRef, ...] = ()
    patient: str | None = None  # staff label (MRN and initials by default); never used for patients
    detail: str | None = None
    target: str | None = None
    week: int | None = None
    done_on: dt.date | None = None
    clinic_defaults: tuple[str, ...] = ()  # what of the rule no clinical source gives (staff text only)


def calendar_uid(scope: str, patient_id: int | None, audience: str) -> str:
    return str(uuid.uuid5(CALENDAR_NAMESPACE, f"{scope}:{patient_id or ''}:{audience}"))


def _and(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _drug_list(item: CalendarItem) -> str:
    return _and(list(item.drugs))


def _patient_tests(item: CalendarItem) -> str:
    """'Blood test: full blood count and liver and kidney tests', 'Blood pressure check', ..."""
    blood = [t.plain.removesuffix(" blood test") for t in item.tests if t.code in BLOOD_TESTS]
    other = [_capital(t.plain) for t in item.tests if t.code not in BLOOD_TESTS]
    parts = ([f"Blood test: {_and(blood)}"] if blood else []) + other
    return "; ".join(parts) or "Test"


def patient_summary(item: CalendarItem) -> str:
    if item.kind == "checkpoint":
        text = "Clinic review: how is your eczema?"
    elif item.kind == "limit":
        text = f"Clinic review: next steps after {_drug_list(item)}"
    elif item.kind == "baseline":
        text = f"{_patient_tests(item)} (before starting {_drug_list(item)})"
    else:
        text = _patient_tests(item)
    return _status_words(item, text)


def staff_summary(item: CalendarItem) -> str:
    text = item.title
    merged = [d for d in item.drugs[1:] if d.lower() not in text.lower()]
    if merged:
        text += f" (also for {_and(merged)})"
    if item.patient:
        text = f"{item.patient}: {text}"
    return _status_words(item, text)


def _status_words(item: CalendarItem, text: str) -> str:
    if item.status == "cancelled":
        return f"Cancelled: {text}"
    if item.status == "done":
        return f"{text} (done)"
    return text


def _sources_block(item: CalendarItem) -> list[str]:
    if not item.sources:
        return []
    lines = ["", "Sources:"]
    for source in item.sources:
        lines.append(f"- {source.citation}" + (f" <{source.url}>" if source.url else "") + f" [{source.key}]")
    return lines


def staff_description(item: CalendarItem) -> str:
    lines = []
    if item.patient:
        lines.append(f"Patient: {item.patient}")
    lines.append(f"{'Drugs' if len(item.drugs) > 1 else 'Drug'}: {', '.join(item.drugs)}")
    lines.append(f"Kind: {KIND_WORDS.get(item.kind, item.kind)}")
    if item.tests:
        lines.append("Tests:")
        lines += [f"- {t.code}: {t.name}" for t in item.tests]
    if item.target:
        lines.append(f"Target: {item.target}")
    if item.detail:
        lines.append(f"Why: {item.detail}")
    if item.clinic_defaults:
        lines.append(f"Clinic default: {'; '.join(item.clinic_defaults)} (set by the clinic: no clinical source "
                     f"gives it)")
    lines.append(_status_line(item))
    return "\n".join(lines + _sources_block(item))


def patient_description(item: CalendarItem) -> str:
    lines = [patient_summary(item) + "."]
    if item.kind == "checkpoint":
        week = f" (week {item.week} of treatment)" if item.week else ""
        lines.append(f"Your team will check how well {_drug_list(item)} is working for your eczema{week}.")
    elif item.kind == "limit":
        lines.append(f"Your {_drug_list(item)} course reaches its planned length; "
                     "your team will talk with you about what comes next.")
    else:
        lines.append(f"For your {_drug_list(item)} treatment.")
    if item.tests:
        lines.append("Tests:")
        lines += [f"- {t.plain}" for t in item.tests]
    if item.status != "planned":
        lines.append(_status_line(item))
    return "\n".join(lines + _sources_block(item))


def _status_line(item: CalendarItem) -> str:
    if item.status == "done":
        return f"Status: done{f' on {item.done_on.isoformat()}' if item.done_on else ''}"
    if item.status == "cancelled":
        return "Status: cancelled (no longer needed)"
    return "Status: planned"


def _alarm(lead: dt.timedelta, summary: str) -> Alarm:
    alarm = Alarm()
    alarm.add("action", "DISPLAY")
    # On an all-day event the trigger counts back from local midnight of the day.
    alarm.add("trigger", -lead)
    alarm.add("description", f"Reminder: {summary}")
    return alarm


def build_event(item: CalendarItem, audience: str, stamp: dt.datetime,
                alarm_lead: dt.timedelta | None = None) -> Event:
    summary = patient_summary(item) if audience == "patient" else staff_summary(item)
    description = patient_description(item) if audience == "patient" else staff_description(item)
    event = Event.new(
        uid=item.uid,
        summary=summary,
        description=description,
        start=item.due,
        end=item.due + dt.timedelta(days=1),  # DTEND of an all-day event is exclusive
        stamp=stamp,
        sequence=item.sequence,
        last_modified=_utc(item.last_modified),
        status="CANCELLED" if item.status == "cancelled" else "CONFIRMED",
        transparency="TRANSPARENT",
        categories=[item.kind],
    )
    if alarm_lead is not None and item.status == "planned":
        event.add_component(_alarm(alarm_lead, summary))
    return event


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:  # stored timestamps are UTC; some drivers hand them back naive
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).replace(microsecond=0)


def build_calendar(
    items: list[CalendarItem],
    audience: str,
    *,
    name: str,
    uid: str,
    stamp: dt.datetime,
    alarm_lead: dt.timedelta | None = None,
    refresh: dt.timedelta | None = None,
) -> Calendar:
    """A METHOD:PUBLISH calendar of `items` for `audience` (staff | patient); `stamp` is the DTSTAMP."""
    if audience not in AUDIENCES:
        raise ValueError(f"audience must be one of {AUDIENCES}, not {audience!r}")
    stamp = _utc(stamp)
    calendar = Calendar.new(prodid=PRODID, uid=uid, method="PUBLISH", name=name,
                            refresh_interval=refresh)
    if refresh is not None:
        calendar.add("x-published-ttl", refresh)  # the older spelling of REFRESH-INTERVAL (Outlook)
    for item in items:
        calendar.add_component(build_event(item, audience, stamp, alarm_lead))
    return calendar
