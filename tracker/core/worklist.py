"""What is due, overdue, or worth a reminder: the one definition of each, for `tracker due`, `tracker
overdue`, `patient show`, the nightly digest and the alert engine alike.

Each predicate takes an item (anything with `kind`, `status` and `due`) and `today`. Each comes with an
`ItemWindow`: the narrowest description of the stored items it can accept, which the shell turns into
SQL (tracker/db/windows.py, the only place that SQL is written) so a listing loads only candidate rows;
where rows come back to Python the predicate then decides. Tests check that each window admits exactly
what its predicate accepts, on plain data (tests/test_core_worklist.py) and as SQL on a real database
(tests/test_windows_sql.py).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from tracker.core.plan import KINDS

# Items that are tasks for staff. A limit item marks a date (the course's maximum); it is not something to
# complete, and its approach is an alert of its own.
TASK_KINDS = ("baseline", "lab", "checkpoint")
# Tasks whose lateness past the grace period is an `overdue` alert (a missed checkpoint has its own kind).
OVERDUE_ALERT_KINDS = ("baseline", "lab")


@dataclass(frozen=True)
class ItemWindow:
    """Stored items a predicate may accept: status, kinds and a due-date range (`due_before` exclusive)."""

    kinds: tuple[str, ...]
    status: str = "planned"
    due_from: dt.date | None = None
    due_before: dt.date | None = None

    def admits(self, item) -> bool:
        return (item.status == self.status and item.kind in self.kinds
                and (self.due_from is None or item.due >= self.due_from)
                and (self.due_before is None or item.due < self.due_before))


def is_task(item) -> bool:
    """A planned item staff have to do something about."""
    return item.status == "planned" and item.kind in TASK_KINDS


# The note on an item its course's stop cancelled before it was done: a missed task, for quality audits.
ENDED_UNDONE_NOTE = "not done: the course stopped"


def course_has_ended(stop_on: dt.date | None, today: dt.date) -> bool:
    """A course whose stop date has come: what is still planned for it is no longer anyone's task (nobody
    draws a stopped drug's monitoring or chases its baseline), so it is cancelled, never left overdue. A
    course stopped on a later date stays a course to monitor until then."""
    return stop_on is not None and stop_on <= today


def course_is_live(status: str, stop_on: dt.date | None, today: dt.date) -> bool:
    """A course still given on `today`: not stopped, and a stop announced for a later day not yet come (the
    nightly marks it stopped on that day; a what-if or a day without a nightly must not wait for that)."""
    return status != "stopped" and not course_has_ended(stop_on, today)


def is_due(item, today: dt.date, days: int) -> bool:
    """A task due from today to `days` ahead, inclusive (`tracker due --days`, the digest's lead time)."""
    return is_task(item) and today <= item.due <= today + dt.timedelta(days=days)


def due_window(today: dt.date, days: int) -> ItemWindow:
    return ItemWindow(TASK_KINDS, due_from=today, due_before=today + dt.timedelta(days=days + 1))


def is_overdue(item, today: dt.date) -> bool:
    """A task whose due date has passed."""
    return is_task(item) and item.due < today


def overdue_window(today: dt.date) -> ItemWindow:
    return ItemWindow(TASK_KINDS, due_before=today)


def is_upcoming(item, today: dt.date) -> bool:
    """A planned item of any kind due today or later: what `patient show` lists after the overdue tasks
    (a limit's date included, as a date to know; it is never due nor overdue)."""
    return item.status == "planned" and item.kind in KINDS and item.due >= today


def upcoming_window(today: dt.date) -> ItemWindow:
    return ItemWindow(KINDS, due_from=today)


def days_overdue(item, today: dt.date) -> int:
    return (today - item.due).days


def needs_overdue_alert(item, today: dt.date, grace_days: int) -> bool:
    """A lab draw or baseline test overdue by more than the grace period."""
    return (item.status == "planned" and item.kind in OVERDUE_ALERT_KINDS
            and days_overdue(item, today) > grace_days)


def overdue_alert_window(today: dt.date, grace_days: int) -> ItemWindow:
    return ItemWindow(OVERDUE_ALERT_KINDS, due_before=today - dt.timedelta(days=grace_days))


def reminds_overdue(item, today: dt.date, has_live_alert: bool) -> bool:
    """The digest reminds of an overdue task once: as an OVERDUE line, or, once a live alert is about the item
    (past the grace period, checkpoint missed: open, or acknowledged or snoozed by a person), as that alert.
    An alert acknowledged or snoozed has been seen: its item is not reminded again as an OVERDUE line."""
    return is_overdue(item, today) and not has_live_alert
