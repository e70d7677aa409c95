"""tracker therapy start|dose|pause|resume|stop|switch|replan|adjust"""

from __future__ import annotations

import click

from tracker.core.terms import STOP_CATEGORIES

from tracker.cli import pass_app
from tracker.cli.completion import complete_drug, complete_mrn
from tracker.cli.options import DATE

STOP_CATEGORY = click.Choice(STOP_CATEGORIES)


@click.group()
def therapy() -> None:
    """Start, change, pause, resume, stop, switch, re-plan and adjust therapy courses."""


def _report(change, verb: str) -> None:
    for note in change.notes:
        click.echo(f"warning: {note}", err=True)
    sync = change.sync
    parts = [f"{len(sync.added)} items added"]
    if sync.cancelled:
        parts.append(f"{len(sync.cancelled)} cancelled")
    if sync.changed:
        parts.append(f"{len(sync.changed)} updated")
    if sync.merged:
        parts.append(f"{len(sync.merged)} merged with another drug's draws")
    what = f"{change.protocol.id} for {change.patient.mrn}"
    if verb == "stopped" and change.course.status != "stopped":  # announced for a later day
        what = f"{what} stops on {change.course.stop_on} (live until then)"
    else:
        what = f"{verb} {what}"
    click.echo(f"{what} (protocol v{change.protocol.version}): {', '.join(parts)}")
    if change.missing_gates:
        click.echo(f"warning: gate overridden ({change.course.gate_override}): {'; '.join(change.missing_gates)}; "
                   f"a critical alert stays open until a passing result is recorded", err=True)
    if change.consider:
        click.echo(f"consider if at risk: {', '.join(change.consider)}")
    for warning in change.warnings:
        click.echo(f"raised {warning}")


@therapy.command("start")
@click.argument("mrn", shell_complete=complete_mrn)
@click.argument("drug", shell_complete=complete_drug)
@click.option("--on", type=DATE, required=True, help="Start date.")
@click.option("--dose", help="Dose as prescribed, free text.")
@click.option("--override-gate", metavar="REASON",
              help="Start although a hard-gate test is missing, too old or does not pass (audited; a critical "
                   "alert stays open until a passing result arrives).")
@click.option("--historic", is_flag=True,
              help="Allow a start before the clinic's earliest start date ([dates] earliest_start, default 2000-01-01).")
@pass_app
def start(app, mrn, drug, on, dose, override_gate, historic):
    """Start DRUG for MRN; refused (exit 5) while a hard-gate test is missing, too old or does not pass, or
    a result breaks an initiation limit."""
    from tracker.services.courses import start_course

    with app.clinic() as clinic:
        change = start_course(clinic, mrn=mrn, drug=drug, on=on, dose=dose, override_gate=override_gate,
                              historic=historic)
    _report(change, "started")


@therapy.command("dose")
@click.argument("mrn", shell_complete=complete_mrn)
@click.argument("drug", shell_complete=complete_drug)
@click.option("--on", type=DATE, required=True, help="Date of the dose change.")
@click.option("--dose", required=True, help="The new dose.")
@pass_app
def dose(app, mrn, drug, on, dose):
    """Record a dose change; protocols that restart monitoring on a dose change re-plan from that date."""
    from tracker.services.courses import change_dose

    with app.clinic() as clinic:
        change = change_dose(clinic, mrn=mrn, drug=drug, on=on, dose=dose)
    _report(change, "dose changed:")


@therapy.command("pause")
@click.argument("mrn", shell_complete=complete_mrn)
@click.argument("drug", shell_complete=complete_drug)
@click.option("--on", type=DATE, required=True)
@click.option("--reason")
@pass_app
def pause(app, mrn, drug, on, reason):
    """Pause a course: no monitoring is due while it is paused."""
    from tracker.services.courses import pause_course

    with app.clinic() as clinic:
        change = pause_course(clinic, mrn=mrn, drug=drug, on=on, reason=reason)
    _report(change, "paused")


@therapy.command("resume")
@click.argument("mrn", shell_complete=complete_mrn)
@click.argument("drug", shell_complete=complete_drug)
@click.option("--on", type=DATE, required=True)
@click.option("--reason")
@pass_app
def resume(app, mrn, drug, on, reason):
    """Resume a paused course."""
    from tracker.services.courses import resume_course

    with app.clinic() as clinic:
        change = resume_course(clinic, mrn=mrn, drug=drug, on=on, reason=reason)
    _report(change, "resumed")


@therapy.command("stop")
@click.argument("mrn", shell_complete=complete_mrn)
@click.argument("drug", shell_complete=complete_drug)
@click.option("--on", type=DATE, required=True)
@click.option("--reason", required=True)
@click.option("--category", type=STOP_CATEGORY, help="Why: failure, adverse_event or other.")
@pass_app
def stop(app, mrn, drug, on, reason, category):
    """Stop a course; its items after the stop date are cancelled, and so is what it left undone before (from
    the stop date on, nothing of a stopped drug is overdue). A stop on a later day keeps the course live
    (reviewed and alerted on) until that day; the nightly ends it then."""
    from tracker.services.courses import stop_course

    with app.clinic() as clinic:
        change = stop_course(clinic, mrn=mrn, drug=drug, on=on, reason=reason, category=category)
    _report(change, "stopped")


@therapy.command("switch")
@click.argument("mrn", shell_complete=complete_mrn)
@click.argument("from_drug", metavar="FROM", shell_complete=complete_drug)
@click.argument("to_drug", metavar="TO", shell_complete=complete_drug)
@click.option("--on", type=DATE, required=True)
@click.option("--reason", required=True)
@click.option("--category", type=STOP_CATEGORY, help="Why FROM stopped: failure, adverse_event or other.")
@click.option("--dose", help="Dose of TO.")
@click.option("--override-gate", metavar="REASON")
@click.option("--historic", is_flag=True,
              help="Allow a start before the clinic's earliest start date ([dates] earliest_start, default 2000-01-01).")
@pass_app
def switch(app, mrn, from_drug, to_drug, on, reason, category, dose, override_gate, historic):
    """Stop FROM and start TO on the same date (both or neither)."""
    from tracker.services.courses import switch_course

    with app.clinic() as clinic:
        stopped, started = switch_course(clinic, mrn=mrn, from_drug=from_drug, to_drug=to_drug, on=on,
                                         reason=reason, category=category, dose=dose,
                                         override_gate=override_gate, historic=historic)
    _report(stopped, "stopped")
    _report(started, "started")


@therapy.command("replan")
@click.argument("mrn", shell_complete=complete_mrn)
@click.argument("drug", shell_complete=complete_drug)
@pass_app
def replan(app, mrn, drug):
    """Adopt the current version of DRUG's protocol for MRN's course (done items are kept)."""
    from tracker.services.courses import replan_course

    with app.clinic() as clinic:
        change = replan_course(clinic, mrn=mrn, drug=drug)
    _report(change, "re-planned")


@therapy.command("adjust")
@click.argument("mrn", shell_complete=complete_mrn)
@click.argument("drug", shell_complete=complete_drug)
@click.option("--every", required=True, help="Interval for the maintenance phase, e.g. 8w, 3m.")
@click.option("--reason", required=True, help="Why this patient's interval differs from the protocol.")
@click.option("--from", "from_date", type=DATE, help="From this date (default: today).")
@pass_app
def adjust(app, mrn, drug, every, reason, from_date):
    """Set a per-patient interval for the open-ended monitoring phase of MRN's DRUG course."""
    from tracker.services.courses import adjust_course

    with app.clinic() as clinic:
        change = adjust_course(clinic, mrn=mrn, drug=drug, every=every, reason=reason, on=from_date)
    _report(change, f"adjusted to every {change.course.adjust_every} from {change.course.adjust_from}:")


COMMANDS = [therapy]
