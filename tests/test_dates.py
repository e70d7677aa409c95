"""Duration arithmetic is plain Python for speed; it must agree with pendulum exactly."""

from __future__ import annotations

import datetime as dt

import pendulum
from hypothesis import given
from hypothesis import strategies as st

from tracker.core.durations import Duration


@given(
    anchor=st.dates(min_value=dt.date(1990, 1, 1), max_value=dt.date(2090, 12, 31)),
    count=st.integers(1, 30),
    unit=st.sampled_from("dwmy"),
    times=st.integers(0, 60),
)
def test_duration_after_agrees_with_pendulum(anchor, count, unit, times):
    base = pendulum.Date(anchor.year, anchor.month, anchor.day)
    n = count * times
    expected = {"d": base.add(days=n), "w": base.add(weeks=n), "m": base.add(months=n),
                "y": base.add(years=n)}[unit]
    assert Duration(count, unit).after(anchor, times) == dt.date(expected.year, expected.month, expected.day)


def test_month_end_and_leap_day_examples():
    assert Duration(1, "m").after(dt.date(2024, 1, 31)) == dt.date(2024, 2, 29)
    assert Duration(1, "m").after(dt.date(2023, 1, 31)) == dt.date(2023, 2, 28)
    assert Duration(1, "m").after(dt.date(2024, 1, 31), 2) == dt.date(2024, 3, 31)
    assert Duration(1, "y").after(dt.date(2024, 2, 29)) == dt.date(2025, 2, 28)
