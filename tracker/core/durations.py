"""Durations and dates: parsing and calendar arithmetic (pure; the clock is in tracker/dates.py).

Schedules are in calendar days (`datetime.date`). Month steps clamp to the month end, exactly as pendulum does
(Jan 31 + 1 month = Feb 28/29), and every occurrence is computed from its anchor, never chained, so a
Jan 31 anchor gives Feb 29, Mar 31, Apr 30 rather than drifting to the 29th.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass

from tracker.errors import InputError

_DURATION = re.compile(r"^\s*(\d+)\s*([dwmy])\s*$", re.ASCII)
_UNIT_WORDS = {"d": "day", "w": "week", "m": "month", "y": "year"}


@dataclass(frozen=True, order=True)
class Duration:
    """A count of days, weeks, months or years, written `14d`, `2w`, `3m`, `1y`."""

    count: int
    unit: str  # d | w | m | y

    @classmethod
    def parse(cls, text: object, field: str = "duration") -> "Duration":
        if isinstance(text, Duration):
            return text
        match = _DURATION.match(str(text))
        if not match:
            raise InputError(field, text, "expected a duration like 14d, 2w, 3m or 1y")
        return cls(int(match.group(1)), match.group(2))

    def after(self, anchor: dt.date, times: int = 1) -> dt.date:
        """The date `times` steps of this duration after `anchor`, computed from the anchor.

        Months and years clamp to the month's last day, as pendulum's `add(months=...)` does
        (Jan 31 + 1 month = Feb 29 in a leap year). Plain arithmetic: this is the planner's hot path.
        """
        n = self.count * times
        if self.unit == "d":
            return anchor + dt.timedelta(days=n)
        if self.unit == "w":
            return anchor + dt.timedelta(weeks=n)
        months = n if self.unit == "m" else 12 * n
        index = anchor.month - 1 + months
        year, month = anchor.year + index // 12, index % 12 + 1
        return dt.date(year, month, min(anchor.day, calendar.monthrange(year, month)[1]))

    def approx_days(self) -> int:
        return self.count * {"d": 1, "w": 7, "m": 30, "y": 365}[self.unit]

    def __str__(self) -> str:
        return f"{self.count}{self.unit}"

    def words(self) -> str:
        word = _UNIT_WORDS[self.unit]
        return f"{self.count} {word}{'' if self.count == 1 else 's'}"


def parse_date(value: object, field: str = "date") -> dt.date:
    """Parse an ISO date (YYYY-MM-DD), rejecting impossible dates with a one-line error."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = str(value).strip()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise InputError(field, value, "expected a date as YYYY-MM-DD")
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise InputError(field, value, f"not a real date ({exc})") from None
