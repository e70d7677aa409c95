"""The clock: today in the site's time zone, and now in UTC. The only place that reads the time; calendar
arithmetic is pure and lives in tracker/core/durations.py."""

from __future__ import annotations

import datetime as dt

import pendulum


def today(timezone: str | None = None) -> dt.date:
    """Today in the site timezone (frozen by freezegun in tests)."""
    now = pendulum.now(timezone or "UTC")
    return dt.date(now.year, now.month, now.day)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
