"""tracker calendar|due|overdue"""

from __future__ import annotations

import datetime as dt

import click

from tracker.cli import pass_app
from tracker.cli.completion import complete_mrn
from tracker.cli.options import DATE, as_of_option, json_option


class CalendarGroup(click.Group):
    """`tracker calendar MRN [...]` shows a patient's calendar (the `show` subcommand, the default);
    `tracker calendar push` and other subcommands are named. An MRN spelt like a subcommand: `calendar show MRN`."""

    def parse_args(self, ctx, args):
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = ["show", *args]
        return super().parse_args(ctx, args)


@click.group(cls=CalendarGroup)
def calendar() -> None:
    """A patient's calendar (`tracker calendar MRN`), or the staff calendar pushed to CalDAV
    (`tracker calendar push`)."""


@calendar.command("show")
@click.argument("mrn", shell_complete=complete_mrn)
@click.option("--from", "start", type=DATE, help="First date (default: everything).")
@click.option("--to", "end", type=DATE, help="Last date (default: everything planned).")
@click.option("--all", "include_cancelled", is_flag=True, help="Include cancelled items.")
@json_option
@pass_app
def show(app, mrn, start, end, include_cancelled, as_json):
    """A patient's calendar: every baseline test, lab draw, checkpoint and limit."""
    from tracker.cli.render import emit_json, worklist
    from tracker.services.listings import patient_calendar
    from tracker.core.inputs import date_range

    date_range(start, end)
    from tracker.cli.audit import log_access

    with app.clinic() as clinic:  # `--to` may extend plans: a writer
        rows = patient_calendar(clinic, mrn, start, end, include_cancelled)
    if as_json:
        emit_json(rows)
    else:
        worklist(rows, f"Calendar for {mrn}", f"No items for {mrn} in that range.")
    log_access(app, "access.calendar", mrn=mrn, detail={
        "command": "calendar", "from": start, "to": end, "items": len(rows)})


@click.command()
@as_of_option
@click.option("--days", type=click.IntRange(0, 3660), default=7, show_default=True,
              help="Include items due within this many days.")
@click.option("--clinician", help="Only this clinician's patients.")
@json_option
@pass_app
def due(app, as_of, days, clinician, as_json):
    """What is due in the next N days, grouped by patient."""
    from tracker.cli.render import emit_json_rows, worklist
    from tracker.services.listings import due_items, streamed_due_items

    with app.clinic(write=False) as clinic:
        what_if = as_of is not None
        as_of = as_of or clinic.today
        if as_json:
            # Written as the rows are read (memory flat in the clinic's size); a read-only transaction, so
            # nothing shown can be undone by its end.
            with streamed_due_items(clinic, as_of, days, what_if=what_if, clinician=clinician) as rows:
                emit_json_rows(rows)
            return
        rows = due_items(clinic, as_of, days, what_if=what_if, clinician=clinician)
    whose = f" for {clinician}" if clinician else ""
    worklist(rows, f"Due {as_of} to {as_of + dt.timedelta(days=days)}{whose}", "Nothing due.")


@click.command()
@as_of_option
@json_option
@pass_app
def overdue(app, as_of, as_json):
    """Baseline tests, lab draws and checkpoints past their due date, grouped by patient."""
    from tracker.cli.render import emit_json_rows, worklist
    from tracker.services.listings import overdue_items, streamed_overdue_items

    with app.clinic(write=False) as clinic:
        as_of = as_of or clinic.today
        if as_json:  # written as read, as `due --json`
            emit_json_rows(streamed_overdue_items(clinic, as_of))
            return
        rows = overdue_items(clinic, as_of)
    worklist(rows, f"Overdue as of {as_of}", "Nothing overdue.")


COMMANDS = [calendar, due, overdue]
