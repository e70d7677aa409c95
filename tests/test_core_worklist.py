"""Issue 12: the worklist predicates on plain data, and their SQL windows never dropping an accepted item."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from tracker.core import worklist

TODAY = dt.date(2026, 12, 3)


@dataclass
class Row:
    kind: str
    status: str
    due: dt.date


items = st.builds(Row, st.sampled_from(["baseline", "lab", "checkpoint", "limit"]),
                  st.sampled_from(["planned", "done", "cancelled"]),
                  st.dates(dt.date(2026, 9, 1), dt.date(2027, 3, 1)))


def test_a_limit_item_is_never_due_nor_overdue():
    limit = Row("limit", "planned", TODAY)
    assert not worklist.is_due(limit, TODAY, 7) and not worklist.is_overdue(Row("limit", "planned",
                                                                                 TODAY - dt.timedelta(1)), TODAY)


def test_a_limit_item_is_upcoming_as_a_date_to_know():
    assert worklist.is_upcoming(Row("limit", "planned", TODAY), TODAY)
    assert not worklist.is_upcoming(Row("lab", "planned", TODAY - dt.timedelta(1)), TODAY)
    assert not worklist.is_upcoming(Row("lab", "done", TODAY), TODAY)


def test_overdue_alert_only_past_the_grace_period():
    lab = Row("lab", "planned", TODAY - dt.timedelta(days=7))
    assert not worklist.needs_overdue_alert(lab, TODAY, 7)
    assert worklist.needs_overdue_alert(lab, TODAY + dt.timedelta(days=1), 7)
    assert not worklist.needs_overdue_alert(Row("checkpoint", "planned", lab.due), TODAY + dt.timedelta(9), 7)


@given(items, st.integers(0, 60), st.integers(0, 30))
def test_windows_admit_everything_their_predicate_accepts(item, days, grace):
    if worklist.is_due(item, TODAY, days):
        assert worklist.due_window(TODAY, days).admits(item)
    if worklist.is_overdue(item, TODAY):
        assert worklist.overdue_window(TODAY).admits(item)
    if worklist.needs_overdue_alert(item, TODAY, grace):
        assert worklist.overdue_alert_window(TODAY, grace).admits(item)
    # and the windows are exact: nothing admitted that the predicate refuses
    assert worklist.due_window(TODAY, days).admits(item) == worklist.is_due(item, TODAY, days)
    assert worklist.overdue_window(TODAY).admits(item) == worklist.is_overdue(item, TODAY)
    assert worklist.overdue_alert_window(TODAY, grace).admits(item) == worklist.needs_overdue_alert(item, TODAY, grace)
    assert worklist.upcoming_window(TODAY).admits(item) == worklist.is_upcoming(item, TODAY)
