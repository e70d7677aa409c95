"""tracker alerts; tracker alert show|ack|snooze|resolve"""

from __future__ import annotations

import click

from tracker.cli import pass_app
from tracker.cli.completion import complete_mrn
from tracker.cli.options import DATE, ROW_ID, as_of_option, json_object_option, json_option
from tracker.cli.render import echo  # stored text shown literally


@click.command()
@click.option("--all", "include_all", is_flag=True, help="Include acknowledged, snoozed and resolved alerts.")
@click.option("--mrn", shell_complete=complete_mrn, help="Only this patient's alerts.")
@click.option("--clinician", help="Only the alerts of this clinician's patients.")
@as_of_option
@json_option
@pass_app
def alerts(app, include_all, mrn, clinician, as_of, as_json):
    """List open alerts (most severe first) as the nightly job (or `tracker evaluate`) stored them; nothing is
    written. With --as-of, show what would be open on that date (a what-if, evaluated, not stored)."""
    from tracker.cli.render import emit_json, say, table
    from tracker.services.listings import review_alerts

    with app.clinic(write=False) as clinic:  # reads only: it need not wait for writers
        evaluated, rows = review_alerts(clinic, as_of, include_all, mrn, clinician)
    if as_json:
        emit_json(rows)
        return
    noun = "alert" if len(rows) == 1 else "alerts"
    whose = f" for {mrn}" if mrn else f" for {clinician}'s patients" if clinician else ""
    if as_of is not None:
        say(f"{len(rows)} {noun}{whose} " + (f"on {as_of}, any status" if include_all else f"would be open on {as_of}")
            + " (what-if: nothing stored)")
    else:
        # The list is what the last evaluation stored (nightly, or `tracker evaluate`), not a live review.
        say(f"{len(rows)} {'' if include_all else 'open '}{noun}{whose} "
            + (f"(evaluated {evaluated})" if evaluated else "(never evaluated: `tracker evaluate` runs one now)"))
    if not rows:
        return
    table(["ID", "MRN", "Drug", "Severity", "Kind", "Raised", "Status", "Message"],
          [[r["id"] or "-", r["mrn"], r["drug"] or "-", (r["severity"], SEVERITY_STYLE.get(r["severity"], "")),
            r["kind"], r["raised_on"], r["state"], _alert_text(r)] for r in rows], message="Message")


SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow"}


def _alert_text(row: dict) -> str:
    """An alert's message and, when there are any, the drugs to consider instead (named once)."""
    from tracker.services.row_shapes import alert_text

    return alert_text(row)


@click.group()
def alert() -> None:
    """Show, acknowledge, snooze or resolve one alert."""


@alert.command("show")
@click.argument("alert_id", metavar="ID", type=ROW_ID)
@json_object_option
@pass_app
def show(app, alert_id, as_json):
    """One alert with its history."""
    from tracker.cli.render import emit_json, say

    from tracker.services.alerts import show_alert

    from tracker.services.coded_rows import alert_codes

    library = app.library  # a bad schedules directory fails before the database is read
    with app.session() as session:
        row = show_alert(session, alert_id)
        alert_codes(session, [row], library)
    if as_json:
        emit_json(row)
        return
    say(f"alert #{row['id']}  {row['kind']}  {row['severity']}  {row['state']}  raised {row['raised_on']}")
    say(f"patient {row['mrn']}  drug {row['drug'] or '-'}")
    say(row["message"])  # on a terminal wrapped at word boundaries; piped, one line
    for label, key in (("value", "value"), ("limit", "limit"), ("note", "note"), ("snoozed until", "snoozed_until"),
                       ("re-opened", "reopened_on"), ("cleared", "cleared_on"), ("resolved", "resolved_on"), ("resolution", "resolution")):
        if row[key]:
            say(f"{label}: {row[key]}")
    if row["suggestions"]:
        say(f"suggestions: {', '.join(row['suggestions'])}")
    if row["sources"]:
        say(f"sources: {', '.join(row['sources'])}")
    for event in row["history"]:
        say(f"  {event['at']}  {event['user']}  {event['action']}")


@alert.command("ack")
@click.argument("alert_id", metavar="ID", type=ROW_ID)
@click.option("--note", required=True, help="What was decided or done.")
@pass_app
def ack(app, alert_id, note):
    """Acknowledge an alert (it leaves the open list but stays live). A critical alert whose condition
    has cleared ("cleared, awaiting acknowledgement") resolves when acknowledged."""
    from tracker.services.alerts import acknowledge

    with app.clinic() as clinic:
        row = acknowledge(clinic, alert_id, note)
    click.echo(f"acknowledged alert #{row.id}" + (f" (condition cleared on {row.cleared_on}: resolved)"
                                                  if row.status == "resolved" else ""))


@alert.command("snooze")
@click.argument("alert_id", metavar="ID", type=ROW_ID)
@click.option("--until", type=DATE, required=True, help="The alert comes back on this date (at most 30 days).")
@click.option("--reason", required=True)
@pass_app
def snooze(app, alert_id, until, reason):
    """Hide an alert until a date; it re-opens then if its condition still holds."""
    from tracker.services.alerts import snooze as snooze_alert

    with app.clinic() as clinic:
        row = snooze_alert(clinic, alert_id, until, reason)
    click.echo(f"snoozed alert #{row.id} until {row.snoozed_until}")


@alert.command("resolve")
@click.argument("alert_id", metavar="ID", type=ROW_ID)
@click.option("--reason", required=True)
@pass_app
def resolve(app, alert_id, reason):
    """Resolve an alert by hand; the same condition will not raise it again."""
    from tracker.services.alerts import resolve as resolve_alert

    with app.clinic() as clinic:
        row = resolve_alert(clinic, alert_id, reason)
    click.echo(f"resolved alert #{row.id}")


def echo_evaluation(evaluation) -> None:
    """What an evaluation changed, one line each (used by `result add`, `result import`, `assess`)."""
    if evaluation is None:
        return
    for item in evaluation.follow_ups:
        echo(f"scheduled: {item.due} {item.title}")
    for row in evaluation.raised + evaluation.reopened:
        echo(f"alert #{row.id} ({row.kind}, {row.severity}): {row.message}")
    for row in evaluation.resolved:
        echo(f"resolved alert #{row.id} ({row.kind}): {row.resolution}")


@click.command()
@json_object_option
@pass_app
def evaluate(app, as_json):
    """Review every live course today and store the alerts (what the nightly job does before reminding)."""
    from tracker.cli.render import emit_json, say
    from tracker.services.listings import evaluate_alerts

    with app.clinic() as clinic:
        summary = evaluate_alerts(clinic)
    counts = {"reviewed": summary.reviewed, "raised": len(summary.raised), "reopened": len(summary.reopened),
              "resolved": len(summary.resolved), "follow_ups": len(summary.follow_ups)}
    if as_json:
        emit_json(counts)
        return
    say(f"evaluated {counts['reviewed']} patients: {counts['raised']} raised, {counts['reopened']} re-opened, "
        f"{counts['resolved']} resolved, {counts['follow_ups']} follow-ups booked")
    echo_evaluation(summary)


COMMANDS = [alerts, alert, evaluate]
