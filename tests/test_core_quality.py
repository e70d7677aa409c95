"""Issue 17 item 3: the monitoring-quality figures (tracker/core/quality.py) on plain data."""

from __future__ import annotations

import datetime as dt

from tracker.core.quality import (
    CLINIC,
    QualityAlert,
    QualityItem,
    Windows,
    alert_outcome,
    forecast,
    outcome,
    quality_report,
)

D = dt.date
START, END = D(2026, 1, 1), D(2026, 3, 31)
WINDOWS = Windows(grace_days=7, checkpoint_days=14, ack_days=2)


def draw(due, done_on=None, *, status=None, drugs=("methotrexate",), kind="lab", stopped_on=None) -> QualityItem:
    status = status or ("done" if done_on else "planned")
    return QualityItem(kind, status, due, done_on, tuple(drugs), stopped_on)


def report(items=(), alerts=(), ahead=(), **kwargs):
    return quality_report(list(items), list(alerts), START, END, WINDOWS, ahead=list(ahead), **kwargs)


def test_no_draws_gives_zero_counts_and_no_share():
    result = report()
    assert result.drugs == ()
    figures = result.clinic.draws
    assert (figures.draws, figures.on_time, figures.late, figures.open_late, figures.overdue) == (0, 0, 0, 0, 0)
    assert figures.on_time_share is None and figures.median_days_late_done is None
    assert result.clinic.checkpoints.on_time_share is None and result.clinic.alerts.in_time_share is None
    assert [w.draws for w in result.forecast] == [0] * 12
    assert result.forecast[0].start == D(2026, 4, 1) and result.forecast[-1].end == D(2026, 6, 23)


def test_the_window_is_the_due_date_plus_the_overdue_grace():
    due = D(2026, 2, 2)
    assert outcome(draw(due, D(2026, 1, 30)), D(2026, 2, 9), END) == "on_time"  # early counts
    assert outcome(draw(due, D(2026, 2, 9)), D(2026, 2, 9), END) == "on_time"  # the last day of the window
    assert outcome(draw(due, D(2026, 2, 10)), D(2026, 2, 9), END) == "late"
    assert outcome(draw(due), D(2026, 2, 9), D(2026, 2, 9)) == "pending"
    assert outcome(draw(due), D(2026, 2, 9), D(2026, 2, 10)) == "open_late"
    # Done after the report's last day: still open on that day.
    assert outcome(draw(due, D(2026, 2, 20)), D(2026, 2, 9), D(2026, 2, 15)) == "open_late"


def test_all_late():
    items = [draw(D(2026, 1, 5), D(2026, 1, 15)),  # 10 days after due
             draw(D(2026, 1, 12), D(2026, 1, 24)),  # 12
             draw(D(2026, 2, 2), D(2026, 2, 22))]  # 20
    figures = report(items).clinic.draws
    assert (figures.draws, figures.on_time, figures.late, figures.open_late) == (3, 0, 3, 0)
    assert figures.on_time_share == 0.0
    assert figures.median_days_late_done == 12.0 and figures.median_days_late_open is None
    assert figures.overdue == 0


def test_open_draws_overdue_and_pending_as_of_the_last_day():
    items = [draw(D(2026, 3, 1)),  # open 30 days on 31 March: past its window
             draw(D(2026, 3, 10)),  # open 21 days: past its window
             draw(D(2026, 3, 28)),  # overdue 3 days, still in its window: pending
             draw(D(2026, 3, 31)),  # due on the last day: neither overdue nor decided
             draw(D(2026, 2, 1), D(2026, 2, 3))]  # on time
    figures = report(items).clinic.draws
    assert (figures.on_time, figures.late, figures.open_late, figures.pending) == (1, 0, 2, 2)
    assert figures.overdue == 3
    assert figures.median_days_late_open == 25.5  # (30 + 21) / 2
    assert figures.on_time_share == 1 / 3


def test_cancelled_items_are_left_out():
    items = [draw(D(2026, 1, 5), D(2026, 1, 5)), draw(D(2026, 1, 6), status="cancelled"),
             draw(D(2026, 1, 7), D(2026, 1, 20), status="cancelled")]
    figures = report(items).clinic.draws
    assert (figures.draws, figures.on_time, figures.open_late) == (1, 1, 0)


def test_a_task_its_courses_stop_cancelled_undone_counts_as_missed():
    # worklist.ENDED_UNDONE_NOTE: a stop cancels what its course left undone; for an audit it was missed.
    items = [draw(D(2026, 1, 5), D(2026, 1, 5)),
             QualityItem("lab", "cancelled", D(2026, 1, 19), None, ("methotrexate",), None, 2, ended_undone=True)]
    figures = report(items).clinic.draws
    assert (figures.draws, figures.on_time, figures.open_late) == (3, 1, 2)
    assert sum(w.draws for w in report(ahead=[items[1]]).forecast) == 0  # never a draw to plan


def test_a_stopped_courses_later_items_are_left_out():
    stop = D(2026, 2, 1)
    items = [draw(D(2026, 1, 20), D(2026, 1, 21), stopped_on=stop),  # before the stop: counts
             draw(D(2026, 2, 1), stopped_on=stop),  # on the stop day: counts (and is open late)
             draw(D(2026, 2, 15), stopped_on=stop),  # after the stop: never needed
             draw(D(2026, 3, 15), stopped_on=stop, kind="checkpoint")]
    result = report(items, ahead=[draw(D(2026, 4, 2), stopped_on=stop)])
    assert (result.clinic.draws.draws, result.clinic.draws.on_time, result.clinic.draws.open_late) == (2, 1, 1)
    assert result.clinic.checkpoints.checkpoints == 0
    assert sum(w.draws for w in result.forecast) == 0


def test_items_outside_the_period_are_ignored():
    items = [draw(D(2025, 12, 31), D(2026, 1, 1)), draw(D(2026, 4, 1), D(2026, 4, 1)), draw(D(2026, 1, 1))]
    assert report(items).clinic.draws.draws == 1


def test_per_drug_and_clinic_a_merged_draw_counts_once_for_the_clinic():
    items = [draw(D(2026, 1, 5), D(2026, 1, 6), drugs=("methotrexate", "ciclosporin")),
             draw(D(2026, 1, 12), D(2026, 1, 30), drugs=("ciclosporin",)),
             draw(D(2026, 2, 2), D(2026, 2, 2), drugs=("dupilumab",)),
             draw(D(2026, 2, 2), drugs=("dupilumab",), kind="baseline")]  # a pre-start test, not a draw
    result = report(items)
    by_name = {g.name: g.draws for g in result.drugs}
    assert list(by_name) == ["ciclosporin", "dupilumab", "methotrexate"]
    assert (by_name["ciclosporin"].draws, by_name["ciclosporin"].on_time, by_name["ciclosporin"].late) == (2, 1, 1)
    assert by_name["methotrexate"].on_time_share == 1.0
    assert result.clinic.name == CLINIC and result.clinic.draws.draws == 3
    only = report(items, drug="ciclosporin")
    assert [g.name for g in only.drugs] == ["ciclosporin"] and only.clinic.draws.draws == 2


def test_checkpoints_on_time_within_their_window():
    due = D(2026, 2, 1)
    items = [draw(due, D(2026, 2, 15), kind="checkpoint"),  # the window's last day
             draw(due, D(2026, 2, 16), kind="checkpoint"),  # judged on a late assessment
             draw(D(2026, 1, 5), kind="checkpoint"),  # never assessed: missed
             draw(D(2026, 3, 25), kind="checkpoint"),  # window open on 31 March: pending
             draw(D(2026, 3, 1), kind="checkpoint", status="cancelled")]
    figures = report(items).clinic.checkpoints
    assert (figures.checkpoints, figures.on_time, figures.late, figures.missed, figures.pending) == (4, 1, 1, 1, 1)
    assert figures.on_time_share == 1 / 3
    assert report(items).clinic.draws.draws == 0  # checkpoints are not draws


def test_alerts_acknowledged_within_n_days():
    raised = D(2026, 2, 2)
    assert alert_outcome(QualityAlert("x", raised, D(2026, 2, 4)), 2, END) == "in_time"
    assert alert_outcome(QualityAlert("x", raised, D(2026, 2, 5)), 2, END) == "late"
    assert alert_outcome(QualityAlert("x", raised, None), 2, END) == "unanswered"
    assert alert_outcome(QualityAlert("x", raised, None), 2, D(2026, 2, 3)) == "pending"
    assert alert_outcome(QualityAlert("x", raised, None, D(2026, 2, 3)), 2, END) == "closed_by_system"
    # The system closing it after the deadline does not excuse the wait.
    assert alert_outcome(QualityAlert("x", raised, None, D(2026, 2, 10)), 2, END) == "unanswered"
    # Acknowledged after the report's last day: unanswered on that day.
    assert alert_outcome(QualityAlert("x", raised, D(2026, 2, 10)), 2, D(2026, 2, 8)) == "unanswered"
    alerts = [QualityAlert("methotrexate", raised, D(2026, 2, 3)), QualityAlert("methotrexate", raised, None),
              QualityAlert(None, raised, D(2026, 2, 2)), QualityAlert("dupilumab", D(2025, 12, 1), D(2025, 12, 1))]
    result = report(alerts=alerts)
    assert (result.clinic.alerts.alerts, result.clinic.alerts.in_time, result.clinic.alerts.unanswered) == (3, 2, 1)
    assert [(g.name, g.alerts.alerts, g.alerts.in_time_share) for g in result.drugs] == [("methotrexate", 2, 0.5)]


def test_weekly_forecast_of_planned_draws_after_the_period():
    ahead = [draw(D(2026, 4, 1)), draw(D(2026, 4, 7), drugs=("dupilumab", "methotrexate")),
             draw(D(2026, 4, 8), drugs=("dupilumab",)), draw(D(2026, 6, 23)), draw(D(2026, 6, 24)),
             draw(D(2026, 4, 2), kind="checkpoint"), draw(D(2026, 4, 3), status="cancelled"),
             draw(D(2026, 4, 4), D(2026, 3, 30))]  # done early: nothing left to draw
    weeks = forecast(ahead, END)
    assert len(weeks) == 12
    assert (weeks[0].start, weeks[0].end, weeks[0].draws) == (D(2026, 4, 1), D(2026, 4, 7), 2)
    assert weeks[0].by_drug == {"dupilumab": 1, "methotrexate": 2}
    assert weeks[1].draws == 1 and weeks[11].draws == 1
    assert sum(w.draws for w in weeks) == 4
    only = report(ahead=ahead, drug="dupilumab")
    assert [w.draws for w in only.forecast][:2] == [1, 1] and only.forecast[0].by_drug == {"dupilumab": 1}


def test_counted_rows_give_the_figures_of_as_many_single_items():
    """The shell reads identical items grouped, with a count: the figures (medians included) must be those of
    the items one by one."""
    singles = [draw(D(2026, 1, 5), D(2026, 1, 15))] * 3 + [draw(D(2026, 1, 5), D(2026, 1, 25))] \
        + [draw(D(2026, 3, 1))] * 2 + [draw(D(2026, 3, 30))] + [draw(D(2026, 1, 5), D(2026, 1, 6))] * 4
    grouped = [QualityItem("lab", "done", D(2026, 1, 5), D(2026, 1, 15), ("methotrexate",), None, 3),
               QualityItem("lab", "done", D(2026, 1, 5), D(2026, 1, 25), ("methotrexate",), None, 1),
               QualityItem("lab", "planned", D(2026, 3, 1), None, ("methotrexate",), None, 2),
               QualityItem("lab", "planned", D(2026, 3, 30), None, ("methotrexate",), None, 1),
               QualityItem("lab", "done", D(2026, 1, 5), D(2026, 1, 6), ("methotrexate",), None, 4)]
    ahead = [draw(D(2026, 4, 2))] * 5
    one_by_one, counted = report(singles, ahead=ahead), report(grouped, ahead=[
        QualityItem("lab", "planned", D(2026, 4, 2), None, ("methotrexate",), None, 5)])
    assert counted == one_by_one
    assert counted.clinic.draws.median_days_late_done == 10.0  # 10, 10, 10, 20
    assert counted.clinic.draws.draws == 11 and counted.forecast[0].draws == 5
