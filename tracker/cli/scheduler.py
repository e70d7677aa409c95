"""tracker scheduler run|show"""

from __future__ import annotations

import click

from tracker.cli import pass_app
from tracker.cli.options import json_object_option


def _settings(app, at, timezone):
    from tracker.core.settings import parse_hhmm
    from tracker.errors import ConfigError, InputError

    settings = app.settings.scheduler
    if at is not None:
        try:
            parse_hhmm(at, "at")
        except ConfigError:
            raise InputError("at", at, "expected a time as HH:MM (24-hour)") from None
    zone = timezone or app.settings.timezone
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(zone)
    except Exception:
        raise InputError("timezone", zone, "unknown time zone") from None
    return at or settings.at, zone, settings.grace_hours, settings.lock_retry_minutes * 60


def _options(fn):
    fn = click.option("--timezone", metavar="ZONE", help="IANA zone --at is read in (default: the config's "
                      "timezone). It only says when to run: the day a run is for is the clinic's.")(fn)
    return click.option("--at", metavar="HH:MM", help="Local time of the daily run (default: [scheduler] at, "
                        "else 06:00).")(fn)


@click.group()
def scheduler() -> None:
    """Run the nightly job every day in the foreground (an alternative to cron or a systemd timer)."""


@scheduler.command("run")
@_options
@pass_app
def run(app, at, timezone):
    """Catch up now (every day whose --at has passed), then run `tracker nightly` daily at --at for the
    clinic's day; a run missed while the machine slept runs on waking; a run refused by the nightly lock is
    tried again every [scheduler] lock_retry_minutes (10) that day. Stops cleanly on SIGTERM/SIGINT."""
    import logging

    from tracker.scheduler import build_scheduler, nightly_job, run_forever, run_now

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    at, zone, grace, retry_s = _settings(app, at, timezone)
    job = nightly_job(app.engine, app.library, app.settings, app.user, at=at, timezone=zone)
    sched = build_scheduler(job, at=at, timezone=zone, grace_hours=grace, lock_retry_s=retry_s)
    run_forever(sched, lambda: run_now(sched))


@scheduler.command("show")
@_options
@json_object_option
@pass_app
def show(app, at, timezone, as_json):
    """The job `scheduler run` would register: trigger, timezone, grace time, next run, lock retry."""
    from tracker.cli.render import emit_json
    from apscheduler.schedulers.background import BackgroundScheduler

    from tracker.scheduler import build_scheduler, describe

    at, zone, grace, retry_s = _settings(app, at, timezone)
    sched = build_scheduler(lambda: None, at=at, timezone=zone, grace_hours=grace, lock_retry_s=retry_s,
                            scheduler_class=BackgroundScheduler)
    sched.start(paused=True)
    try:
        info = describe(sched)
    finally:
        sched.shutdown(wait=False)
    info["lock_retry_minutes"] = retry_s // 60  # a night the nightly lock refused is tried again after this
    if as_json:
        emit_json(info)
        return
    for key, value in info.items():
        click.echo(f"{key}: {value}")


COMMANDS = [scheduler]
