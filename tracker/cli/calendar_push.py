"""tracker calendar push"""

from __future__ import annotations

import click

from tracker.cli import pass_app
from tracker.cli.options import json_object_option
from tracker.cli.worklists import calendar


@calendar.command("push")
@click.option("--dry-run", is_flag=True, help="Count what would be sent, against what was last sent; "
                                             "the server is not contacted.")
@json_object_option
@pass_app
def push(app, dry_run, as_json):
    """Keep the [caldav] collection in step with the staff calendar within the feeds' window ([feeds]
    days_back/days_ahead around today): new events created, changed ones updated (by UID, SEQUENCE from the
    plan), cancelled ones sent as cancelled, gone ones (or out of the window) deleted. Exits 10 if the server
    refused or could not be reached (what was sent is kept; the next push resumes), 9 while another push
    runs."""
    from tracker.cli.render import emit_json
    from tracker.services.caldav_push import push_calendar

    settings = app.settings
    report = push_calendar(app.engine, app.library, settings, app.today(), dry_run=dry_run)
    if as_json:
        emit_json(report.as_dict())
        return
    counts = report.counts()
    click.echo(f"{'would push' if dry_run else 'pushed'} to {report.collection}: "
               + ", ".join(f"{count} {name}" for name, count in counts.items()))


COMMANDS = []
