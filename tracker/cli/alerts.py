"""tracker alerts; tracker alert show|ack|snooze|resolve"""

from __future__ import annotations

import click

from tracker.cli import pass_app
from tracker.cli.options import DATE, ROW_ID, as_of_option, json_option
from tracker.cli.render import echo  # stored text shown literally


@click.command()
@click.option("--all", "include_all", is_flag=True, help="Include acknowledged, snoozed and resolved alerts.")
@click.option("--mrn", help="Only this patient's alerts.")
@as_of_option
@json_option
@pass_app
def alerts(app, include_all, mrn, as_of, as_json):
    """List open alerts (most severe first) as the nightly job (or `tracker evaluate`) stored them; nothing is
    written. With --as-of, show what would be open on that date (a what-if, evaluated, not stored)."""
    from tracker.cli.render import emit_json, say, table
    from tracker.services.listings import review_alerts

    with app.clinic(write=False) as clinic:  # reads only: it need not wait for writers
        evaluated, rows = review_alerts(clinic, as_of, include_all, mrn)
    if as_of is not None:
        heading = f"Alerts that would be open on {as_of} (what-if: nothing stored)"
    else:
        heading = f"Alerts (last nightly evaluation: {evaluated or 'never'}; `tracker evaluate` runs one now)"
    if as_json:
        emit_json(rows)
        return
    say(heading)
    if not rows:
        say("No open alerts." if not include_all else "No alerts.")
        return
    table(["ID", "MRN", "Drug", "Kind", "Severity", "Status", "Raised", "Message", "Suggestions"],
          [[r["id"] or "-", r["mrn"], r["drug"], r["kind"], r["severity"], r["state"], r["raised_on"], r["message"],
            ", ".join(r["suggestions"])] for r in rows])


@click.group()
def alert() -> None:
    """Show, acknowledge, snooze or resolve one alert."""


@alert.command("show")
@click.argument("alert_id", metavar="ID", type=ROW_ID)
@json_option
@pass_app
def show(app, alert_id, as_json):
    """One alert with its history."""
    from tracker.cli.render import emit_json

    from tracker.services.alerts import show_alert

    with app.session() as session:
        row = show_alert(session, alert_id)
    if as_json:
        emit_json(row)
        return
    echo(f"alert #{row['id']}  {row['kind']}  {row['severity']}  {row['state']}  raised {row['raised_on']}")
    echo(f"patient {row['mrn']}  drug {row['drug'] or '-'}")
    echo(row["message"])
    for label, key in (("value", "value"), ("limit", "limit"), ("note", "note"), ("snoozed until", "snoozed_until"),
                       ("re-opened", "reopened_on"), ("cleared", "cleared_on"), ("resolved", "resolved_on"), ("resolution", "resolution")):
        if row[key]:
            echo(f"{label}: {row[key]}")
    if row["suggestions"]:
        echo(f"suggestions: {', '.join(row['suggestions'])}")
    if row["sources"]:
        echo(f"sources: {', '.join(row['sources'])}")
    for event in row["history"]:
        echo(f"  {event['at']}  {event['user']}  {event['action']}")


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
@json_option
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
