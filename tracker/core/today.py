"""The staff web view's Today page: which stored tasks each of its sections holds for a due-date range.

Overdue is `worklist.is_overdue` and due is `worklist.is_due` (the same definitions as `tracker overdue`
and `tracker due`), each narrowed to the range asked for; the windows are `ItemWindow`s, so the shell's SQL
is `db/windows.item_where` and a section can be counted and paged in the database."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from tracker.core.inputs import date_range
from tracker.core.worklist import TASK_KINDS, ItemWindow
from tracker.errors import InputError

LOOK_AHEAD_DAYS = 7  # the due section's default reach (the digest's lead is 3 days; a week plans a clinic)
MAX_AHEAD_DAYS = 366  # plans reach about 13 months ahead (plan_sync.EXTEND_TO): a later `to` finds nothing


@dataclass(frozen=True)
class TodayWindows:
    overdue: ItemWindow | None  # None: the range lies wholly from today on, so nothing in it is overdue
    due: ItemWindow | None  # None: the range ends before today
    due_to: dt.date  # the last day the due section reaches (inclusive)


def today_windows(today: dt.date, due_from: dt.date | None = None, due_to: dt.date | None = None,
                  look_ahead: int = LOOK_AHEAD_DAYS) -> TodayWindows:
    """The overdue and due windows for tasks due between `due_from` and `due_to` (inclusive; open ends:
    everything overdue, due up to `look_ahead` days ahead). A bad range is an InputError naming the field."""
    date_range(due_from, due_to)
    last = due_to if due_to is not None else today + dt.timedelta(days=look_ahead)
    if (last - today).days > MAX_AHEAD_DAYS:
        raise InputError("to", last.isoformat(), f"is more than {MAX_AHEAD_DAYS} days ahead (plans end sooner)")
    overdue = None
    if due_from is None or due_from < today:
        overdue = ItemWindow(TASK_KINDS, due_from=due_from, due_before=min(today, last + dt.timedelta(days=1)))
    due = None
    if last >= today:
        start = today if due_from is None else max(today, due_from)
        due = ItemWindow(TASK_KINDS, due_from=start, due_before=last + dt.timedelta(days=1))
    return TodayWindows(overdue, due, last)
