"""tracker nightly [--as-of DATE] | tracker nightly status"""

from __future__ import annotations

import click

from tracker.cli import pass_app
from tracker.cli.options import as_of_option, json_option


@click.group(invoke_without_command=True)
@as_of_option
@click.pass_context
def nightly(ctx, as_of):
    """Roll calendars forward, evaluate alerts and send reminders (every day since the last run, once);
    then, when [caldav] is configured, push the staff calendar there (`tracker calendar push`).

    Channels, lead time and privacy come from the site config ([reminders], [privacy]). --as-of may catch up
    to a past day, never run ahead of today (a what-if is `tracker alerts --as-of`). Exits 2 for a future
    --as-of, 9 if another nightly run is in progress, 10 if a channel or the CalDAV push failed (its reminders
    are retried on the next run), 8 if only the [labs] inbox could not be read (not a folder)."""
    if ctx.invoked_subcommand is not None:
        return
    from tracker.cli import AppContext
    from tracker.services.nightly import run_nightly

    app = ctx.find_object(AppContext)
    from tracker.errors import InputError

    settings = app.settings  # read and validated before anything runs
    today = app.today()
    if as_of is not None and as_of > today:
        # A future run would be stored as the last one done and silence every run until that day.
        raise InputError("as-of", as_of.isoformat(), f"is after today ({today} in {settings.timezone}); "
                         "for a what-if use `tracker alerts --as-of`")
    as_of = as_of or today
    from tracker.cli.progress import progress_bar

    with progress_bar("nightly run") as bar:
        report = run_nightly(app.engine, app.library, settings, as_of, user=app.user, progress=bar)
    click.echo(summary_line(report), err=True)


def summary_line(report) -> str:
    days = (f"{report.new_days} day{'s' if report.new_days != 1 else ''} from {report.from_day}"
            if report.new_days else "already done; retrying undelivered only")
    created = ", ".join(f"{report.created.get(k, 0)} {k}" for k in ("due", "overdue", "alert"))
    sent = ", ".join(f"{name} {count}" for name, count in report.delivered.items()) or "none"
    warnings = "".join(f"; warning: {name}: {text}" for name, text in report.warnings.items())
    return f"nightly {report.as_of} ({days}): {report.reminders} new reminders ({created}); sent: {sent}{warnings}"


@nightly.command("status")
@click.option("--limit", type=click.IntRange(1, 1000), default=10, show_default=True)
@json_option
@pass_app
def status(app, limit, as_json):
    """Recent nightly runs: as-of day, started, finished, counts, failures; then the reminders not yet
    delivered to the channels and e-mail recipients in the config, and apart, those waiting for a channel or
    recipient no longer configured. A run marked running whose process no longer holds the nightly lock
    (killed) is shown interrupted."""
    from tracker.channels import build_channels, delivery_keys
    from tracker.cli.render import emit_json, say, table
    from tracker.errors import ConfigError
    from tracker.services.nightly import pending_deliveries, recent_runs, show_dead_runs_interrupted

    try:  # what a run delivers to: the channels and e-mail recipients in the config
        configured = delivery_keys(build_channels(app.settings.reminders))
    except ConfigError:
        configured = None  # unreadable here: every undelivered reminder is listed as undelivered
    with app.session(write=False) as session:
        runs = recent_runs(session, limit)
        pending, orphaned = pending_deliveries(session, configured)
    runs = show_dead_runs_interrupted(app.engine, runs)
    if as_json:
        emit_json(runs)
        return
    if not runs:
        say("No nightly runs yet.")
        return
    rows = []
    for run in runs:
        c = run["counts"]
        counts = (f"{c.get('reminders', 0)} new ({c.get('due', 0)} due, {c.get('overdue', 0)} overdue, "
                  f"{c.get('alert', 0)} alert)") if c else ""
        failures = "; ".join(f"{k}: {v}" for k, v in run["failures"].items())
        rows.append([run["id"], run["as_of"], run["from_day"], run["started_at"][:19].replace("T", " "),
                     (run["finished_at"] or "")[:19].replace("T", " "), run["status"], counts, failures])
    table(["run", "as of", "from", "started (UTC)", "finished (UTC)", "status", "reminders", "failures"], rows,
          f"Nightly runs (latest {len(rows)})", message="reminders")
    if pending:
        say("Undelivered: " + ", ".join(f"{channel} {count}" for channel, count in sorted(pending.items())))
    if orphaned:
        say("Not configured any more (sent if configured again): "
            + ", ".join(f"{channel} {count}" for channel, count in sorted(orphaned.items())))


COMMANDS = [nightly]
