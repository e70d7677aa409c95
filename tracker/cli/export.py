"""tracker export ics"""

from __future__ import annotations

import sys

import click

from tracker.cli import pass_app
from tracker.cli.options import DATE, NumberRange


@click.group()
def export() -> None:
    """Export calendars for other programs."""


@export.command("ics")
@click.option("--patient", "mrn", metavar="MRN", help="One patient's items (default: the whole clinic).")
@click.option("--from", "start", type=DATE, help="First date (default: everything stored).")
@click.option("--to", "end", type=DATE, help="Last date (default: everything planned).")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), help="Write to FILE (default: stdout).")
@click.option("--audience", type=click.Choice(["staff", "patient"]), default="staff", show_default=True,
              help="staff: MRN and initials, clinical wording; patient: plain language, needs --patient.")
@click.option("--alarm/--no-alarm", default=None,
              help="Add a reminder alarm (default: only if [calendar] alarm_lead_hours is set).")
@click.option("--alarm-lead-hours", type=NumberRange(0, 672), metavar="HOURS",
              help="Alarm this many hours before the day starts (implies --alarm).")
@pass_app
def ics(app, mrn, start, end, out, audience, alarm, alarm_lead_hours):
    """An iCalendar (.ics) file: one all-day event per baseline test, lab draw, checkpoint and limit.

    Cancelled items are included with STATUS:CANCELLED so calendars that imported them drop them.
    """
    from tracker.services.export import export_ics
    from tracker.core.inputs import date_range

    date_range(start, end)
    if alarm_lead_hours is not None and alarm is None:
        alarm = True
    with app.clinic() as clinic:
        calendar = export_ics(clinic, mrn=mrn, audience=audience, start=start, end=end, alarm=alarm,
                              alarm_lead_hours=alarm_lead_hours)
        data = calendar.to_ical()
        if out:
            # Written inside the transaction: a file that cannot be written keeps nothing the export stored.
            _write_file(out, data)
    events = len(calendar.events)
    if out:
        click.echo(f"wrote {events} events to {out}", err=True)
    else:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()


def _write_file(path: str, data: bytes) -> None:
    """Write `--out`; a missing directory or a full disk is one line naming the option (review rows
    ex-out-nodir, ex-out-devfull)."""
    from tracker.errors import InputError
    from tracker.private_files import open_private

    try:
        with open_private(path, "wb") as fh:
            fh.write(data)
    except OSError as exc:
        raise InputError("out", path, exc.strerror or str(exc)) from None


COMMANDS = [export]
