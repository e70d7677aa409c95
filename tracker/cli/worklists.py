"""tracker calendar|due|overdue"""

from __future__ import annotations

import datetime as dt

import click

from tracker.cli import pass_app
from tracker.cli.options import DATE, as_of_option, json_option


def _refresh(app, session, needed: dt.date) -> None:
    """Roll plans forward first if they do not reach the asked-for dates yet."""
    from tracker.services.calendar import merge_window_days, roll_forward

    roll_forward(session, app.library, app.today(), needed, merge_window_days(app.config))


@click.command()
@click.argument("mrn")
@click.option("--from", "start", type=DATE, help="First date (default: everything).")
@click.option("--to", "end", type=DATE, help="Last date (default: everything planned).")
@click.option("--all", "include_cancelled", is_flag=True, help="Include cancelled items.")
@json_option
@pass_app
def calendar(app, mrn, start, end, include_cancelled, as_json):
    """A patient's calendar: every baseline test, lab draw, checkpoint and limit."""
    from tracker.cli.render import emit_json, worklist
    from tracker.services.patients import get_patient
    from tracker.services.worklists import calendar as calendar_rows

    with app.session() as session:
        patient = get_patient(session, mrn)
        if end:
            _refresh(app, session, end)
        rows = calendar_rows(session, patient.id, start, end, app.today(), include_cancelled)
    if as_json:
        emit_json(rows)
    else:
        worklist(rows, f"Calendar for {mrn}", f"No items for {mrn} in that range.")


@click.command()
@as_of_option
@click.option("--days", type=click.IntRange(0, 3660), default=7, show_default=True,
              help="Include items due within this many days.")
@json_option
@pass_app
def due(app, as_of, days, as_json):
    """What is due in the next N days, grouped by patient."""
    from tracker.cli.render import emit_json, worklist
    from tracker.services.worklists import due as due_rows

    as_of = as_of or app.today()
    with app.session() as session:
        _refresh(app, session, as_of + dt.timedelta(days=days))
        rows = due_rows(session, as_of, days)
    if as_json:
        emit_json(rows)
    else:
        worklist(rows, f"Due {as_of} to {as_of + dt.timedelta(days=days)}", "Nothing due.")


@click.command()
@as_of_option
@json_option
@pass_app
def overdue(app, as_of, as_json):
    """Baseline tests, lab draws and checkpoints past their due date, grouped by patient."""
    from tracker.cli.render import emit_json, worklist
    from tracker.services.worklists import overdue as overdue_rows

    as_of = as_of or app.today()
    with app.session() as session:
        rows = overdue_rows(session, as_of)
    if as_json:
        emit_json(rows)
    else:
        worklist(rows, f"Overdue as of {as_of}", "Nothing overdue.")


COMMANDS = [calendar, due, overdue]
