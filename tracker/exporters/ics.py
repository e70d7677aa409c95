"""Monitoring calendars as iCalendar (RFC 5545): one all-day VEVENT per stored item.

Pure: takes plain `CalendarItem`s and returns iCalendar text (or, for callers that want objects, an
`icalendar.Calendar` parsed from it); no session, clock or click. Identity and change tracking come from
the item's stored uid, sequence and last_modified, so a re-export updates subscribers' events instead of
duplicating them. DTSTAMP is passed in, so output is deterministic.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from dataclasses import dataclass

from icalendar import Calendar, Event

from tracker.core.coded import DrugCoding, TestCoding

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
    # Standard codes (core/coded.py), staff text and X-TRACKER-* properties only: a patient calendar is
    # plain language, and a LOINC number tells a patient nothing their test's name does not.
    test_codes: tuple[TestCoding, ...] = ()
    drug_codes: tuple[DrugCoding, ...] = ()


def calendar_uid(scope: str, patient_id: int | None, audience: str) -> str:
    """A stable id for a calendar (no longer written into calendars: see `calendar_header`)."""
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
    codes = [c.line() for c in item.test_codes] + [line for d in item.drug_codes for line in d.lines()]
    if codes:
        lines.append("Codes:")
        lines += [f"- {line}" for line in codes]
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
    # No protocol sources: their citations and URLs (some of them mirrors) are for staff, not patients.
    return "\n".join(lines)


def _status_line(item: CalendarItem) -> str:
    if item.status == "done":
        return f"Status: done{f' on {item.done_on.isoformat()}' if item.done_on else ''}"
    if item.status == "cancelled":
        return "Status: cancelled (no longer needed)"
    return "Status: planned"


def escape_text(value: str) -> str:
    """An RFC 5545 TEXT value (3.3.11): backslash, semicolon and comma escaped, line breaks as \\n."""
    return (value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n"))


def fold(line: str) -> str:
    """A content line folded to at most 75 octets a line (RFC 5545 3.1), never inside a UTF-8 character
    nor between a backslash and the character it escapes; the same folding as icalendar's."""
    if len(line) < 75 and (line.isascii() or len(line.encode()) < 75):
        return line
    if line.isascii():
        parts, start, size = [], 0, len(line)
        while size - start >= 75:
            end = start + 74
            if line[end - 1] in "\\^" and end - 1 > start:  # keep an escape with what it escapes
                end -= 1
            parts.append(line[start:end])
            start = end
        parts.append(line[start:])
        return "\r\n ".join(parts)
    parts, current, count = [], [], 0
    for char in line:
        width = len(char.encode())
        if current and count + width >= 75:
            if len(current) > 1 and current[-1] in "\\^":
                carried = current.pop()
                parts.append("".join(current))
                current, count = [carried], 1
            else:
                parts.append("".join(current))
                current, count = [], 0
        current.append(char)
        count += width
    parts.append("".join(current))
    return "\r\n ".join(parts)


def format_duration(value: dt.timedelta) -> str:
    """An RFC 5545 DURATION (3.3.6): PT12H, P1DT12H, -PT15H."""
    sign = "-" if value < dt.timedelta(0) else ""
    value = abs(value)
    days, seconds = value.days, value.seconds
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    time = "".join(f"{n}{unit}" for n, unit in ((hours, "H"), (minutes, "M"), (seconds, "S")) if n)
    if days and not time:
        return f"{sign}P{days}D"
    return f"{sign}P{f'{days}D' if days else ''}T{time or '0S'}"


@functools.lru_cache(maxsize=4096)  # a clinic's month has a few dozen dates and many thousands of events
def _date(day: dt.date) -> str:
    return f"{day.year:04d}{day.month:02d}{day.day:02d}"


@functools.lru_cache(maxsize=65536)  # timestamps repeat: items changed together share one
def _stamp(value: dt.datetime) -> str:
    value = _utc(value)
    return f"{value.year:04d}{value.month:02d}{value.day:02d}T{value.hour:02d}{value.minute:02d}{value.second:02d}Z"


def render_event(item: CalendarItem, audience: str, stamp: str, alarm_lead: str | None = None) -> str:
    """One VEVENT as text (CRLF line ends, folded); `stamp` is the DTSTAMP already formatted (_stamp)
    and `alarm_lead` the VALARM trigger (format_duration of the negative lead), or None for no alarm."""
    patient = audience == "patient"
    summary = patient_summary(item) if patient else staff_summary(item)
    description = patient_description(item) if patient else staff_description(item)
    lines = [
        "BEGIN:VEVENT",
        fold("SUMMARY:" + escape_text(summary)),
        f"DTSTART;VALUE=DATE:{_date(item.due)}",
        f"DTEND;VALUE=DATE:{_date(item.due + ONE_DAY)}",  # DTEND of an all-day event is exclusive
        f"DTSTAMP:{stamp}",
        fold(f"UID:{item.uid}"),
        f"SEQUENCE:{item.sequence}",
        fold("CATEGORIES:" + escape_text(item.kind)),
        fold("DESCRIPTION:" + escape_text(description)),
        f"LAST-MODIFIED:{_stamp(item.last_modified)}",
        "STATUS:CANCELLED" if item.status == "cancelled" else "STATUS:CONFIRMED",
        "TRANSP:TRANSPARENT",
    ]
    if not patient:
        lines += code_properties(item)
    if alarm_lead is not None and item.status == "planned":
        # On an all-day event the trigger counts back from local midnight of the day.
        lines += ["BEGIN:VALARM", "ACTION:DISPLAY", fold("DESCRIPTION:" + escape_text(f"Reminder: {summary}")),
                  f"TRIGGER:{alarm_lead}", "END:VALARM"]
    lines.append("END:VEVENT\r\n")
    return "\r\n".join(lines)


ONE_DAY = dt.timedelta(days=1)

# The drug code properties, by DrugCoding field.
DRUG_CODE_PROPERTIES = (("atc", "X-TRACKER-ATC"), ("snomed", "X-TRACKER-SNOMED"), ("rxnorm", "X-TRACKER-RXNORM"))


def code_properties(item: CalendarItem) -> list[str]:
    """Machine-readable codes of a staff event (RFC 5545 3.8.8.2 X-properties; clients that do not know
    them keep or ignore them): one X-TRACKER-LOINC per planned test's LOINC code and the drugs'
    X-TRACKER-ATC (and SNOMED CT, RxNorm where known). The UCUM units are in the description's Codes block
    only: a whole-clinic feed carries a CBC and CMP's eighteen codes on many events, and bytes count there."""
    lines = [f"X-TRACKER-LOINC:{coding.loinc}" for coding in item.test_codes]
    for drug in item.drug_codes:
        lines += [f"{name}:{getattr(drug, field)}" for field, name in DRUG_CODE_PROPERTIES if getattr(drug, field)]
    return lines


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:  # stored timestamps are UTC; some drivers hand them back naive
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).replace(microsecond=0)


def calendar_header(name: str, refresh: dt.timedelta | None = None) -> str:
    """The VCALENDAR lines before the events.

    No METHOD: a published feed or file is not an iTIP message (RFC 5546), and METHOD:PUBLISH would need
    an ORGANIZER on every event, which a monitoring plan does not have (CalDAV forbids METHOD in stored
    objects too, RFC 4791 4.1). No calendar-level UID (RFC 7986 5.3 is optional): vdirsyncer 0.21 takes
    it for the UID of every event and collapses a feed into one (pimutils/vdirsyncer#1222)."""
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{PRODID}", fold("NAME:" + escape_text(name)),
             fold("X-WR-CALNAME:" + escape_text(name))]
    if refresh is not None:
        duration = format_duration(refresh)
        lines += [f"REFRESH-INTERVAL;VALUE=DURATION:{duration}",  # RFC 7986 5.7 requires VALUE=DURATION
                  f"X-PUBLISHED-TTL:{duration}"]  # the older spelling (Outlook), also a DURATION
    return "\r\n".join(lines) + "\r\n"


def render_calendar(items, audience: str, *, name: str, stamp: dt.datetime,
                    alarm_lead: dt.timedelta | None = None, refresh: dt.timedelta | None = None) -> str:
    """The calendar of `items` for `audience` (staff | patient) as iCalendar text; `stamp` is the DTSTAMP.
    Written with string templates (a whole clinic is tens of thousands of events); tests parse the output
    with icalendar, ical, vobject, ics-py and khal."""
    if audience not in AUDIENCES:
        raise ValueError(f"audience must be one of {AUDIENCES}, not {audience!r}")
    stamp_text = _stamp(stamp)
    lead = format_duration(-alarm_lead) if alarm_lead is not None else None
    parts = [calendar_header(name, refresh)]
    parts += [render_event(item, audience, stamp_text, lead) for item in items]
    parts.append("END:VCALENDAR\r\n")
    return "".join(parts)


def build_event(item: CalendarItem, audience: str, stamp: dt.datetime,
                alarm_lead: dt.timedelta | None = None) -> Event:
    """The event as an icalendar object (for callers that edit or send events one by one)."""
    text = render_event(item, audience, _stamp(stamp),
                        format_duration(-alarm_lead) if alarm_lead is not None else None)
    return Event.from_ical(text)


def build_calendar(
    items: list[CalendarItem],
    audience: str,
    *,
    name: str,
    stamp: dt.datetime,
    uid: str | None = None,  # no longer written (see calendar_header); accepted for existing callers
    alarm_lead: dt.timedelta | None = None,
    refresh: dt.timedelta | None = None,
) -> Calendar:
    """The calendar as an icalendar object: `render_calendar`, parsed."""
    return Calendar.from_ical(render_calendar(items, audience, name=name, stamp=stamp, alarm_lead=alarm_lead,
                                              refresh=refresh))
