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
    from tracker.cli.progress import progress_bar

    with progress_bar("exporting calendar") as bar:  # steps: the events collected, then written as ICS
        with app.clinic() as clinic:
            calendar = export_ics(clinic, mrn=mrn, audience=audience, start=start, end=end, alarm=alarm,
                                  alarm_lead_hours=alarm_lead_hours)
            bar(1, 2)
            data = calendar.encode()
            if out:
                # Written inside the transaction: a file that cannot be written keeps nothing the export stored.
                _write_file(out, data)
            bar(2, 2)
    events = calendar.events
    if out:
        click.echo(f"wrote {events} events to {out}", err=True)
    else:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    from tracker.cli.audit import log_access

    # One row for the whole clinic too (its count, not a row per patient).
    log_access(app, "access.export", mrn=mrn, detail={
        "command": "export ics", "scope": "patient" if mrn else "clinic", "audience": audience,
        "from": start, "to": end, "events": events, "out": "file" if out else "stdout"})


@export.command("fhir")
@click.option("--patient", "mrn", metavar="MRN", help="One patient's courses and plans.")
@click.option("--clinic", "whole_clinic", is_flag=True, help="Every patient with a live course.")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), help="Write to FILE (default: stdout).")
@click.option("--no-validate", "skip_validation", is_flag=True,
              help="Skip checking each resource with fhir.resources (about 0.3 ms each: minutes for a large "
                   "clinic; the tests validate what this code builds).")
@pass_app
def fhir(app, mrn, whole_clinic, out, skip_validation):
    """A FHIR R4 transaction Bundle: Patient (MRN only, unless [privacy] patient_label = "name"),
    MedicationStatement and CarePlan per course, ServiceRequest per test of each planned, done or cancelled
    draw, Task per overdue task. Ids are stable: sending it again updates the same resources."""
    from tracker.services.fhir_export import fhir_scope, write_fhir_bundle

    with app.clinic(write=False) as clinic:
        patients = fhir_scope(clinic, mrn=mrn, whole_clinic=whole_clinic)
        if out:
            from tracker.private_files import open_private

            with open_private(out, "w", encoding="utf-8") as fh:
                count = write_fhir_bundle(clinic, fh, patients, validate=not skip_validation)
            click.echo(f"wrote {count} resources to {out}", err=True)
        else:
            sys.stdout.flush()
            write_fhir_bundle(clinic, sys.stdout, patients, validate=not skip_validation)
            sys.stdout.flush()


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
