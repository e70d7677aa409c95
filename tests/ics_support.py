"""Shared by the ICS, khal and feed tests: a fixed small clinic, and parsing with two independent parsers."""

from __future__ import annotations

import gc
import os
import re
import shlex
import shutil
from pathlib import Path

from freezegun import freeze_time
from icalendar import Calendar

# All synthetic. Times are frozen at each step so every timestamp (LAST-MODIFIED, DTSTAMP) is fixed.
GOLDEN_STEPS = [
    ("2026-01-05 09:00:00", "patient add P001 --name 'Ada Baker' --dob 1980-02-03 --sex f --childbearing-potential no"),
    ("2026-01-05 09:00:00", "patient add P002 --name 'Ben Chen' --dob 1975-06-07 --sex m"),
    ("2026-01-05 09:10:00", "therapy start P001 methotrexate --on 2026-01-05 --dose '10 mg weekly'"),
    ("2026-01-05 09:20:00", "therapy start P002 dupilumab --on 2026-01-05 --dose '300 mg every 2 weeks'"),
    ("2026-01-20 10:00:00", "result add P001 neutrophils 4.2 --on 2026-01-19"),
    # The rest of the CBC and CMP the draw needs (schedules/vocabulary.yaml `required`) completes it.
    *[("2026-01-20 10:00:00", f"result add P001 {code} {value} --on 2026-01-19")
      for code, value in (("wbc", 6.1), ("lymphocytes", 1.9), ("platelets", 240), ("hb", 132), ("alt", 22),
                          ("creatinine", 75), ("albumin", 41))],
    ("2026-02-16 11:00:00", "therapy dose P001 methotrexate --on 2026-02-16 --dose '15 mg weekly'"),
    ("2026-03-01 12:00:00", "therapy stop P002 dupilumab --on 2026-03-01 --reason 'clear skin' --category other"),
]
EXPORT_AT = "2026-03-02 09:00:00"
RANGE = ["--from", "2026-01-01", "--to", "2026-06-30"]


def build_golden_clinic(tracker, steps=GOLDEN_STEPS) -> None:
    for when, command in steps:
        with freeze_time(when):
            tracker(command)


ISOLATED_ENV = {"TRACKER_DB": None, "TRACKER_SCHEDULES": None, "USER": "tester"}


def on_postgres() -> bool:
    """As tests/conftest.py `db_url`: TRACKER_TEST_PG selects a real PostgreSQL server (issue 6)."""
    return bool(os.environ.get("TRACKER_TEST_PG"))


def empty_database(directory, migrated_template: str, name: str = "tracker.db") -> str:
    """A fresh database at the current schema on the backend the suite runs on (a path or URL for --db),
    for code that cannot take the function-scoped `db_url` fixture (module fixtures, hypothesis examples)."""
    if on_postgres():
        from tests.pg import fresh_database

        return fresh_database()
    path = Path(directory) / name
    shutil.copy(migrated_template, path)  # keeps the template's private mode (0600)
    return str(path)


def golden_database(directory, migrated_template: str) -> str:
    """The golden clinic, built once through the CLI; tests take their own copy (see `copy_database`)."""
    from tests.conftest import Tracker

    db = empty_database(directory, migrated_template, "golden.db")
    config = Path(directory) / "empty.toml"
    config.write_text("")
    tracker = Tracker(db)
    for when, command in GOLDEN_STEPS:
        with freeze_time(when):
            tracker(["--config", str(config), *shlex.split(command)], env=ISOLATED_ENV)
    del tracker
    gc.collect()  # each command's engine, and so its pooled connections, goes with its context
    if not on_postgres():
        _checkpoint(db)
    return db


def _checkpoint(db: str) -> None:
    """Fold the WAL into the main file, so that copying the file copies everything."""
    from tracker.db.engine import open_engine

    engine = open_engine(db)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()


def copy_database(source: str, directory) -> str:
    """A copy of `source` for one test: a file copy on SQLite; on PostgreSQL a new database made from
    it with CREATE DATABASE ... TEMPLATE (tests/pg.py drops it when the test process exits)."""
    if "://" not in source:
        target = str(Path(directory) / "tracker.db")
        shutil.copy(source, target)  # keeps the private mode (0600)
        return target
    from tests import pg

    base, name = source.rsplit("/", 1)
    # A template must have no other sessions. Only client sessions are ended here: an autovacuum
    # worker on the template runs as a superuser that this role may not terminate, and CREATE
    # DATABASE itself signals such workers to leave and waits for them.
    with pg._connect() as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = %s AND pid <> pg_backend_pid() "
                     "AND backend_type = 'client backend'", (name,))
    return f"{base}/{pg._create(name)}"


def export(tracker, *args: str, at: str = EXPORT_AT) -> bytes:
    with freeze_time(at):
        result = tracker(["export", "ics", *args])
    return result.stdout_bytes


def parse_checked(data: bytes) -> Calendar:
    """Parse with icalendar (no component may record an error) and with allenporter/ical."""
    from ical.calendar_stream import IcsCalendarStream

    calendar = Calendar.from_ical(data)
    assert [c.errors for c in calendar.walk()] == [[] for _ in calendar.walk()]
    second = IcsCalendarStream.calendar_from_ics(data.decode("utf-8"))
    assert sorted(e.uid for e in second.events) == sorted(str(e["UID"]) for e in calendar.events)
    for event in second.events:
        assert event.dtstart is not None and event.dtend is not None and event.dtend > event.dtstart
    return calendar


def events_by_uid(calendar: Calendar) -> dict[str, dict]:
    out = {}
    for event in calendar.events:
        out[str(event["UID"])] = {
            "start": event.start,
            "end": event.end,
            "summary": str(event["SUMMARY"]),
            "description": str(event["DESCRIPTION"]),
            "status": str(event["STATUS"]),
            "sequence": int(event["SEQUENCE"]),
        }
    return out


_ITEM_UID = re.compile(r"^UID:([0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12})\r$", re.M)


def normalise_uids(text: str) -> str:
    """Item UIDs are random uuid4s: rename them by order of appearance. The calendar UID (uuid5, stable by
    design) is kept, so the golden files also check that it does not change."""
    seen: dict[str, str] = {}

    def rename(match: re.Match) -> str:
        return f"UID:item-{seen.setdefault(match.group(1), f'{len(seen) + 1:03d}')}\r"

    return _ITEM_UID.sub(rename, text)


def cli_args(text: str) -> list[str]:
    return shlex.split(text)
