"""Monitoring quality over a period (issue 17 item 3): how many draws were done within their window, how
late the others were, what is overdue, whether checkpoints were judged on time, whether alerts were
acknowledged in time, and how many draws fall due in each of the coming weeks. Pure: plain rows in, figures
out; the shell (tracker/services/quality.py) loads the rows and renders.

Every figure is as of the period's last day (`to`): a draw done after `to` was still open on `to`, so a
report for a past period reads the same whenever it is run.

One definition of each window, from the data model and the settings the worklist and the alerts use:
- a draw (a lab item: planned, or a repeat a threshold booked) is done *within its window* when it was
  taken by its due date plus `[alerts] overdue_grace_days` (the lateness that raises an overdue alert,
  tracker/core/worklist.py); days late are counted from the due date, as `days_overdue` does;
- a checkpoint is judged *on time* when the assessment that judged it (the item's `done_on`) was recorded
  by its due date plus `[alerts] checkpoint_window_days` (the window tracker/core/response.py judges in);
- an alert is acknowledged *in time* when a person answered it (its first acknowledgement, or a resolution
  by hand) within `[alerts] ack_within_days` of its raising (a clinic default).
Cancelled items are left out (a cancelled draw was never asked for), except the tasks a course's stop left
undone (they were asked for and missed), and so are a stopped course's items due after its stop. An item whose window is still open on `to` and is not done is *pending*: counted, but
not in a share, which is of decided items only.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace

# The items that are blood draws: planned lab draws and repeats a threshold booked. Baseline items are left
# out: they are single pre-start tests (a chest X-ray and a height among them), due on the start day, and
# gate the start itself (tracker/core/gates.py); their lateness is the baseline-set overdue alert's.
DRAW_KINDS = ("lab",)
CHECKPOINT_KIND = "checkpoint"
FORECAST_WEEKS = 12
CLINIC = "clinic"  # the name of the whole-clinic group


@dataclass(frozen=True)
class QualityItem:
    """A planned draw or checkpoint as stored. `drugs`: the item's drug and any drugs whose draws were merged
    into it (a merged draw serves each); `stopped_on`: its course's stop date when the course was stopped."""

    kind: str
    status: str  # planned | done | cancelled
    due: dt.date
    done_on: dt.date | None
    drugs: tuple[str, ...]
    stopped_on: dt.date | None = None
    count: int = 1  # how many stored items are exactly like this one (the shell reads them grouped)
    # Cancelled by its course's stop before anyone did it (worklist.ENDED_UNDONE_NOTE): a missed task, counted.
    ended_undone: bool = False


@dataclass(frozen=True)
class QualityAlert:
    """An alert as stored, with when a person first answered it (None: nobody has) and, for an alert the
    system resolved by itself (its condition went away), that day."""

    drug: str | None
    raised_on: dt.date
    answered_on: dt.date | None
    auto_resolved_on: dt.date | None = None


@dataclass(frozen=True)
class Windows:
    grace_days: int  # [alerts] overdue_grace_days
    checkpoint_days: int  # [alerts] checkpoint_window_days
    ack_days: int  # [alerts] ack_within_days (clinic default)


@dataclass(frozen=True)
class DrawFigures:
    draws: int  # draws due in the period (cancelled and after-stop left out)
    on_time: int  # done within their window
    late: int  # done, after their window
    open_late: int  # not done on `to`, past their window
    pending: int  # not done on `to`, window still open
    overdue: int  # not done on `to`, due before it (the worklist's overdue)
    on_time_share: float | None  # on_time / (on_time + late + open_late); None when nothing is decided
    median_days_late_done: float | None  # days after the due date, of those done late
    median_days_late_open: float | None  # days after the due date on `to`, of those open past their window


@dataclass(frozen=True)
class CheckpointFigures:
    checkpoints: int
    on_time: int  # judged on an assessment recorded within the window
    late: int  # judged on an assessment recorded after the window
    missed: int  # not judged on `to`, past the window
    pending: int  # not judged on `to`, window still open
    on_time_share: float | None


@dataclass(frozen=True)
class AlertFigures:
    alerts: int  # raised in the period
    in_time: int  # answered within ack_days
    late: int  # answered after ack_days
    unanswered: int  # nobody answered by `to`, past ack_days
    closed_by_system: int  # the condition went away before anyone needed to answer (left out of the share)
    pending: int  # unanswered, still within ack_days on `to`
    in_time_share: float | None


@dataclass(frozen=True)
class GroupFigures:
    name: str  # a drug, or CLINIC
    draws: DrawFigures
    checkpoints: CheckpointFigures
    alerts: AlertFigures


@dataclass(frozen=True)
class ForecastWeek:
    start: dt.date
    end: dt.date  # inclusive
    draws: int
    by_drug: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class QualityReport:
    start: dt.date
    end: dt.date
    drug: str | None
    windows: Windows
    clinic: GroupFigures
    drugs: tuple[GroupFigures, ...]
    forecast: tuple[ForecastWeek, ...]


# --- one item, one alert -----------------------------------------------------------------------------------


def counts(item: QualityItem) -> bool:
    """Whether an item is in the report at all: not cancelled (but a task its course's stop left undone is
    counted, as never done), and not due after its course's stop."""
    return ((item.status != "cancelled" or item.ended_undone)
            and (item.stopped_on is None or item.due <= item.stopped_on))


def done_by(item: QualityItem, day: dt.date) -> dt.date | None:
    """The day the item was done, if that was by `day` (a draw done later was still open on `day`)."""
    if item.status == "done" and item.done_on is not None and item.done_on <= day:
        return item.done_on
    return None


def draw_deadline(item: QualityItem, grace_days: int) -> dt.date:
    """The last day of a draw's window: its due date plus the grace the overdue alert allows."""
    return item.due + dt.timedelta(days=grace_days)


def checkpoint_deadline(item: QualityItem, window_days: int) -> dt.date:
    """The last day an assessment judging the checkpoint may be recorded on (core/response.py's window)."""
    return item.due + dt.timedelta(days=window_days)


def outcome(item: QualityItem, deadline: dt.date, as_of: dt.date) -> str:
    """on_time | late | open_late | pending, as of `as_of`. A done item without a date (not written by
    tracker, which always dates what it completes) counts as done on time: nothing says otherwise."""
    if item.status == "done" and item.done_on is None:
        return "on_time"
    done = done_by(item, as_of)
    if done is not None:
        return "on_time" if done <= deadline else "late"
    return "open_late" if as_of > deadline else "pending"


def alert_outcome(alert: QualityAlert, ack_days: int, as_of: dt.date) -> str:
    """in_time | late | unanswered | closed_by_system | pending, as of `as_of`."""
    deadline = alert.raised_on + dt.timedelta(days=ack_days)
    answered = alert.answered_on if alert.answered_on is not None and alert.answered_on <= as_of else None
    if answered is not None:
        return "in_time" if answered <= deadline else "late"
    auto = alert.auto_resolved_on
    if auto is not None and auto <= as_of and auto <= deadline:
        return "closed_by_system"  # gone before anyone had to answer it
    return "unanswered" if as_of > deadline else "pending"


# --- figures -----------------------------------------------------------------------------------------------


def _share(good: int, decided: int) -> float | None:
    return good / decided if decided else None


def _median(weighted: list[tuple[int, int]]) -> float | None:
    """The median of values given as (value, how many times): as statistics.median of the expanded list."""
    total = sum(n for _, n in weighted)
    if not total:
        return None
    ordered = sorted(weighted)

    def nth(k: int) -> int:  # the k-th value (0-based) of the expanded, sorted list
        for value, n in ordered:
            if k < n:
                return value
            k -= n
        raise IndexError(k)

    middle = total // 2
    return float(nth(middle)) if total % 2 else (nth(middle - 1) + nth(middle)) / 2


def draw_figures(items: list[QualityItem], end: dt.date, grace_days: int) -> DrawFigures:
    tally = {"on_time": 0, "late": 0, "open_late": 0, "pending": 0}
    late_done, late_open, overdue = [], [], 0
    for item in items:
        result = outcome(item, draw_deadline(item, grace_days), end)
        tally[result] += item.count
        if result == "late":
            late_done.append(((item.done_on - item.due).days, item.count))
        elif result == "open_late":
            late_open.append(((end - item.due).days, item.count))
        if result in ("open_late", "pending") and item.due < end:
            overdue += item.count
    decided = tally["on_time"] + tally["late"] + tally["open_late"]
    return DrawFigures(sum(i.count for i in items), tally["on_time"], tally["late"], tally["open_late"],
                       tally["pending"], overdue, _share(tally["on_time"], decided), _median(late_done),
                       _median(late_open))


def checkpoint_figures(items: list[QualityItem], end: dt.date, window_days: int) -> CheckpointFigures:
    tally = {"on_time": 0, "late": 0, "open_late": 0, "pending": 0}
    for item in items:
        tally[outcome(item, checkpoint_deadline(item, window_days), end)] += item.count
    decided = tally["on_time"] + tally["late"] + tally["open_late"]
    return CheckpointFigures(sum(i.count for i in items), tally["on_time"], tally["late"], tally["open_late"],
                             tally["pending"], _share(tally["on_time"], decided))


def alert_figures(alerts: list[QualityAlert], end: dt.date, ack_days: int) -> AlertFigures:
    tally = dict.fromkeys(("in_time", "late", "unanswered", "closed_by_system", "pending"), 0)
    for alert in alerts:
        tally[alert_outcome(alert, ack_days, end)] += 1
    decided = tally["in_time"] + tally["late"] + tally["unanswered"]
    return AlertFigures(len(alerts), tally["in_time"], tally["late"], tally["unanswered"], tally["closed_by_system"],
                        tally["pending"], _share(tally["in_time"], decided))


def forecast(items: list[QualityItem], end: dt.date, weeks: int = FORECAST_WEEKS) -> tuple[ForecastWeek, ...]:
    """Draws still planned in each of the `weeks` weeks after `end` (week 1: the seven days from the day after
    `end`), in the clinic and per drug: what the phlebotomy list must hold (a draw merged for two drugs is one
    draw for the clinic and counts for each drug)."""
    first = end + dt.timedelta(days=1)
    out = []
    for week in range(weeks):
        start = first + dt.timedelta(weeks=week)
        out.append((start, start + dt.timedelta(days=6), [0], {}))
    for item in items:
        if item.kind not in DRAW_KINDS or item.status != "planned" or not counts(item):
            continue
        index = (item.due - first).days // 7
        if 0 <= index < weeks:
            _, _, total, by_drug = out[index]
            total[0] += item.count
            for drug in item.drugs:
                by_drug[drug] = by_drug.get(drug, 0) + item.count
    return tuple(ForecastWeek(start, stop, total[0], dict(sorted(by_drug.items())))
                 for start, stop, total, by_drug in out)


def quality_report(items: list[QualityItem], alerts: list[QualityAlert], start: dt.date, end: dt.date,
                   windows: Windows, *, drug: str | None = None, ahead: list[QualityItem] = ()) -> QualityReport:
    """The report over items due and alerts raised in [start, end] (others are ignored), per drug and for the
    clinic; `ahead`: the planned draws due in the weeks after `end`, for the forecast. With `drug`, only that
    drug's items and alerts count, and the clinic figures are that drug's."""

    def wanted(drugs) -> bool:
        return drug is None or drug in drugs

    period = [i for i in items if start <= i.due <= end and counts(i) and wanted(i.drugs)]
    raised = [a for a in alerts if start <= a.raised_on <= end and wanted((a.drug,))]

    def group(name: str, its: list[QualityItem], als: list[QualityAlert]) -> GroupFigures:
        return GroupFigures(
            name,
            draw_figures([i for i in its if i.kind in DRAW_KINDS], end, windows.grace_days),
            checkpoint_figures([i for i in its if i.kind == CHECKPOINT_KIND], end, windows.checkpoint_days),
            alert_figures(als, end, windows.ack_days))

    names = sorted({d for i in period for d in i.drugs} | {a.drug for a in raised if a.drug})
    if drug is not None:
        names = [drug]
    per_drug = tuple(group(name, [i for i in period if name in i.drugs], [a for a in raised if a.drug == name])
                     for name in names)
    future = [i for i in ahead if wanted(i.drugs)]
    if drug is not None:
        future = [replace(i, drugs=(drug,)) for i in future]
    return QualityReport(start, end, drug, windows, group(CLINIC, period, raised), per_drug,
                         forecast(future, end))
