"""Issue 16 item 5: the calendar text itself is exact. Pure tests of tracker/exporters/ics.py on plain
CalendarItems (no database): durations, escaping, folding, no METHOD, no calendar UID, no source URLs for
patients; and every rendering parsed by icalendar, vobject and ics-py."""

from __future__ import annotations

import datetime as dt

import pytest

from tracker.exporters.ics import (
    CalendarItem,
    SourceRef,
    TestName as Named,  # (a Test* name would be collected by pytest)
    escape_text,
    fold,
    format_duration,
    render_calendar,
)

STAMP = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.timezone.utc)


def item(uid="a1b2c3d4-0000-4000-8000-000000000001", **changes) -> CalendarItem:
    values = dict(
        uid=uid, due=dt.date(2026, 3, 9), kind="lab", status="planned", sequence=2,
        last_modified=dt.datetime(2026, 2, 16, 11, 0), title="Methotrexate monitoring: CBC, CMP",
        drugs=("Methotrexate",), tests=(Named("cbc", "Full blood count (CBC/FBC)", "full blood count"),),
        sources=(SourceRef("SPS-MTX", "Methotrexate monitoring - SPS", "https://sps.nhs.uk/m"),
                 SourceRef("MIRROR", "A mirror of a guideline", "http://mirror.example/guideline.pdf")),
        patient="P001 AB", detail="Monitoring: every 1 month thereafter",
    )
    values.update(changes)
    return CalendarItem(**values)


def lines(text: str) -> list[str]:
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    return text.split("\r\n")[:-1]


def test_refresh_is_a_duration_in_both_spellings():
    text = render_calendar([item()], "staff", name="Clinic", stamp=STAMP, refresh=dt.timedelta(hours=12))
    assert "REFRESH-INTERVAL;VALUE=DURATION:PT12H" in lines(text)  # RFC 7986 5.7
    assert "X-PUBLISHED-TTL:PT12H" in lines(text)  # was 12:00:00
    assert "X-PUBLISHED-TTL:12:00:00" not in text


@pytest.mark.parametrize("value", [dt.timedelta(hours=12), dt.timedelta(hours=-15), dt.timedelta(days=1),
                                   dt.timedelta(hours=36), dt.timedelta(hours=-1.5), dt.timedelta(seconds=90),
                                   dt.timedelta(0), dt.timedelta(weeks=-2)])
def test_durations_read_back_as_the_same_timedelta(value):
    from icalendar.prop import vDuration

    assert vDuration.from_ical(format_duration(value)) == value


def test_calendar_name_is_escaped():
    name = r"Derm, ward 3; C:\shared"
    text = render_calendar([], "staff", name=name, stamp=STAMP)
    assert r"NAME:Derm\, ward 3\; C:\\shared" in lines(text)
    assert r"X-WR-CALNAME:Derm\, ward 3\; C:\\shared" in lines(text)
    for parsed in parse_everywhere(text):
        assert parsed["name"] == name


def test_no_method_no_organizer_no_calendar_uid():
    text = render_calendar([item()], "staff", name="Clinic", stamp=STAMP)
    assert not any(line.startswith(("METHOD", "ORGANIZER")) for line in lines(text))
    uids = [line for line in lines(text) if line.startswith("UID")]
    assert uids == ["UID:a1b2c3d4-0000-4000-8000-000000000001"]  # the event's own, none for the calendar


def test_patient_events_carry_no_source_urls_staff_events_do():
    patient = render_calendar([item()], "patient", name="Mine", stamp=STAMP)
    staff = render_calendar([item()], "staff", name="Clinic", stamp=STAMP)
    unfolded = patient.replace("\r\n ", "")
    assert "http" not in unfolded and "mirror" not in unfolded and "Sources" not in unfolded
    assert "https://sps.nhs.uk/m" in staff.replace("\r\n ", "")


def test_text_values_are_escaped_and_folded_at_75_octets():
    weird = item(title="Dose; 10 mg, weekly \\ note\nsecond line " + "é" * 60, detail="x" * 300)
    text = render_calendar([weird], "staff", name="Clinic", stamp=STAMP)
    assert all(len(line.encode()) <= 75 for line in lines(text))
    (event,) = parse_everywhere(text)[0]["events"]
    assert event["summary"] == "P001 AB: Dose; 10 mg, weekly \\ note\nsecond line " + "é" * 60


def test_fold_never_splits_an_escape_or_a_character():
    for line in ["DESCRIPTION:" + "a" * 61 + "\\,b" * 10, "X:" + "ü" * 80, "X:" + "a" * 71 + "\\;" + "b" * 9]:
        parts = fold(line).split("\r\n ")
        assert "".join(parts) == line and all(len(p.encode()) <= 74 for p in parts)
        assert all(not p.endswith("\\") for p in parts[:-1])  # an escape stays with what it escapes
    assert fold("X:" + "a" * 72) == "X:" + "a" * 72  # 74 octets: one line
    assert escape_text("a,b;c\\d\ne") == "a\\,b\\;c\\\\d\\ne"


def parse_everywhere(text: str) -> list[dict]:
    """The calendar as icalendar, vobject and ics-py read it: name and events (uid, summary, start)."""
    import ics
    import vobject
    from icalendar import Calendar

    out = []
    first = Calendar.from_ical(text)
    assert [c.errors for c in first.walk()] == [[] for _ in first.walk()]
    out.append({"name": text_value(str(first["X-WR-CALNAME"])),
                "events": [{"uid": str(e["UID"]), "summary": str(e["SUMMARY"]), "start": e.start}
                           for e in first.events]})
    second = vobject.readOne(text)
    out.append({"name": second.x_wr_calname.value,
                "events": [{"uid": e.uid.value, "summary": e.summary.value, "start": e.dtstart.value}
                           for e in getattr(second, "vevent_list", [])]})
    third = ics.Calendar(text)
    third_events = sorted(third.events, key=lambda e: [x["uid"] for x in out[0]["events"]].index(e.uid))
    name = next((str(x.value) for x in third.extra if x.name == "X-WR-CALNAME"), None)
    out.append({"name": text_value(name),
                "events": [{"uid": e.uid, "summary": e.name, "start": e.begin.date()} for e in third_events]})
    assert out[0] == out[1] and out[0]["events"] == out[2]["events"]
    return out


def text_value(value: str | None) -> str | None:
    """icalendar and ics-py keep NAME and X-WR-CALNAME as written, escapes included (vobject reads them as
    TEXT): read them as RFC 5545 TEXT here."""
    if value is None:
        return None
    return value.replace("\\n", "\n").replace("\\,", ",").replace("\\;", ";").replace("\\\\", "\\")
