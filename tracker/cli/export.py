"""tracker export ics"""

from __future__ import annotations

import sys

import click

from tracker.cli import pass_app
from tracker.cli.options import DATE


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
@click.option("--alarm-lead-hours", type=click.FloatRange(0, 672), metavar="HOURS",
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
    data = calendar.encode()
    events = calendar.events
    if out:
        from tracker.private_files import open_private

        with open_private(out, "wb") as fh:
            fh.write(data)
        click.echo(f"wrote {events} events to {out}", err=True)
    else:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()


COMMANDS = [export]
