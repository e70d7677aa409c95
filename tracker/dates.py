"""The clock: today in the site's time zone, and now in UTC. The only place that reads the time; calendar
arithmetic is pure and lives in tracker/core/durations.py."""

from __future__ import annotations

import datetime as dt

import pendulum


def local_zone() -> str:
    """The machine's IANA time zone (the site's when its config names none); UTC when the machine's cannot
    be named (a bare offset), so the scheduler and `today` agree on one zone."""
    import zoneinfo

    name = getattr(pendulum.local_timezone(), "name", None)
    try:
        zoneinfo.ZoneInfo(name)
    except (TypeError, ValueError, zoneinfo.ZoneInfoNotFoundError):
        return "UTC"
    return name


def today(timezone: str | None = None) -> dt.date:
    """Today in the site timezone, else the machine's (frozen by freezegun in tests)."""
    now = pendulum.now(timezone or local_zone())
    return dt.date(now.year, now.month, now.day)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
