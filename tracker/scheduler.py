"""The background scheduler: an APScheduler 3 `BlockingScheduler` running the nightly job once a day.

The job itself is idempotent and catches up (tracker.services.nightly), so the scheduler keeps no state:
a MemoryJobStore, one job with an explicit id, a CronTrigger at `--at` (in `--timezone`, by default the
clinic's), no misfire limit (a run missed while the machine slept runs when it wakes, however late),
coalesce (several missed runs become one) and max_instances=1. The job runs in the scheduler's own thread,
the only one, so that a night may fork as one from cron does. The catch-up also runs once at start, so a
machine that was off at the scheduled time sends the morning's reminders as soon as it is back.

Which day a run is for (`night_for`): the clinic's day (config timezone) of the latest scheduled time that
has passed. So the catch-up at start, a run on waking and a retry run the days whose time has come, never
today's before `--at`, and never a day after the clinic's today whatever zone `--timezone` fires in.

A run the nightly lock refuses (a `db restore`, a `labs import-inbox` or a `tracker nightly` by hand) is
tried again every `[scheduler] lock_retry_minutes` (10, a clinic default) until it runs, as long as that
comes before the next scheduled run.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import signal
from collections.abc import Callable
from zoneinfo import ZoneInfo

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED
from apscheduler.executors.debug import DebugExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.base import STATE_STOPPED, BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger

from tracker.core.settings import DEFAULT_LOCK_RETRY_MINUTES, parse_hhmm
from tracker.dates import utcnow
from tracker.errors import LockedError

JOB_ID = "tracker-nightly"
RETRY_PREFIX = "tracker-nightly-retry-"  # one-off retries of a day the nightly lock refused
# How long a stop asked by a signal may wait for the scheduler to see it, between jobs.
STOP_POLL_S = 1.0
# How soon a day's run that the nightly lock refused is tried again, unless configured: `[scheduler]
# lock_retry_minutes` (tracker/core/settings.py says why 10).
LOCK_RETRY_S = DEFAULT_LOCK_RETRY_MINUTES * 60
log = logging.getLogger("tracker.scheduler")


class ForegroundScheduler(BlockingScheduler):
    """`BlockingScheduler` that a signal handler can stop safely, and only between jobs.

    The job runs in this thread, so a signal handler interrupts it here, possibly inside a lock: the handler
    only sets a flag (`request_stop`: no lock, no event), which the main loop reads at least every
    STOP_POLL_S seconds and after each job. A `shutdown` asked for while a job runs takes effect once the
    job is done: shut down under a running job, the scheduler would empty its job store and then fail to
    store that job's next run time. A stop asked before `start` is honoured by it."""

    _processing = False
    _stop_asked = False

    def request_stop(self) -> None:
        self._stop_asked = True

    def _main_loop(self):
        wait_seconds = None
        while self.state != STATE_STOPPED and not self._stop_asked:
            self._event.wait(STOP_POLL_S if wait_seconds is None else min(wait_seconds, STOP_POLL_S))
            self._event.clear()
            if self._stop_asked:
                break
            self._processing = True
            try:
                wait_seconds = self._process_jobs()  # runs the due jobs; the seconds to the next, or None
            finally:
                self._processing = False
        if self.state != STATE_STOPPED:
            super().shutdown(wait=False)

    def shutdown(self, wait=True):
        if self._processing:
            self.request_stop()
            return
        super().shutdown(wait)


def daily_trigger(at: str, timezone: str) -> CronTrigger:
    hour, minute = parse_hhmm(at, "--at")
    return CronTrigger(hour=hour, minute=minute, timezone=ZoneInfo(timezone))


def night_for(trigger: CronTrigger, clinic_zone: str, now: dt.datetime) -> dt.date:
    """The day a run started at `now` is for: the clinic's day (in `clinic_zone`, the config's timezone) at
    the latest time `trigger` fired at or before `now`. Before today's scheduled time that is yesterday
    (its run is the one due, today's is not yet), so a catch-up at start or on waking never runs today
    early; and it is never after the clinic's today, whatever zone the trigger fires in."""
    fire = trigger.get_next_fire_time(None, now - dt.timedelta(days=3))
    last = None
    while fire is not None and fire <= now:
        last = fire
        fire = trigger.get_next_fire_time(None, fire + dt.timedelta(seconds=1))
    return (last or now).astimezone(ZoneInfo(clinic_zone)).date()


def build_scheduler(job: Callable[[], object], *, at: str, timezone: str, grace_hours: float,
                    lock_retry_s: float = LOCK_RETRY_S,
                    scheduler_class: type[BaseScheduler] = ForegroundScheduler) -> BaseScheduler:
    """A scheduler with the nightly job registered (not started).

    When `job` raises LockedError (another process holds the nightly lock) it is tried again `lock_retry_s`
    later, and again, until it runs or the next scheduled run comes first. A run due while the machine
    slept runs when it wakes, once; one finishing more than `grace_hours` after its time is logged as late.
    `run_now` runs the job as the scheduler does (the catch-up at start).

    `BlockingScheduler.start()` blocks even when paused, so tests and `scheduler show` inspect the same
    configuration with `scheduler_class=BackgroundScheduler` and `start(paused=True)`."""
    zone = ZoneInfo(timezone)
    trigger = daily_trigger(at, timezone)
    scheduler = scheduler_class(
        jobstores={"default": MemoryJobStore()},
        # The job runs in the scheduler's own thread (`BlockingScheduler`: the main thread), not in a pool's:
        # with no other thread in the process a night may fork its review worker and its charts' fork as a
        # run from cron does (services/review_worker.py: never beside another thread). One job, max_instances
        # 1: a pool's thread bought nothing. APScheduler calls this executor "debug"; it runs the job in place.
        executors={"default": DebugExecutor()},
        # No misfire limit: a run due while the machine slept runs when it wakes, however late, and once
        # (coalesce). With a grace time, a later run was dropped and the day waited for the next one.
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        timezone=zone,
    )
    serial = itertools.count(1)

    def fire(retry_id: str | None = None) -> None:
        try:
            job()
        except LockedError as exc:
            _retry_later(scheduler, fire, trigger, exc, lock_retry_s, retry_id, next(serial))

    scheduler.add_job(
        fire,
        trigger,
        id=JOB_ID,
        name="tracker nightly",
        replace_existing=True,
        coalesce=True,
        max_instances=1,
        misfire_grace_time=None,
    )
    late_after = dt.timedelta(hours=grace_hours)

    def log_event(event) -> None:
        if event.exception is not None:
            log.error("nightly run scheduled for %s failed: %s", event.scheduled_run_time, event.exception)
            return
        late = utcnow() - event.scheduled_run_time
        if late > late_after:
            log.warning("nightly run due at %s ran late, finishing %s after its time (the machine asleep or "
                        "off?)", event.scheduled_run_time, str(late).split(".")[0])
        else:
            log.info("nightly run scheduled for %s finished", event.scheduled_run_time)

    scheduler.add_listener(log_event, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    return scheduler


def _retry_later(scheduler: BaseScheduler, fire: Callable, trigger: CronTrigger, exc: LockedError,
                 lock_retry_s: float, retry_id: str | None, serial: int) -> None:
    """The day's run was refused by the nightly lock: try again in `lock_retry_s`, unless the next scheduled
    run comes first (it runs the day then). At most one retry is pending. Adds a one-off job and removes
    none: a job removed while the scheduler processes its due jobs would still run, then fail to be
    updated."""
    now = utcnow()
    when = now + dt.timedelta(seconds=lock_retry_s)
    regular = trigger.get_next_fire_time(None, now)
    if regular is not None and when >= regular:
        log.warning("%s; the run at %s will catch up", exc, regular.isoformat(timespec="minutes"))
        return
    if any(job.id.startswith(RETRY_PREFIX) and job.id != retry_id for job in scheduler.get_jobs()):
        log.warning("%s; a retry is already due", exc)
        return
    job_id = f"{RETRY_PREFIX}{serial}"
    scheduler.add_job(fire, DateTrigger(run_date=when), id=job_id, name="tracker nightly (retry)",
                      kwargs={"retry_id": job_id}, coalesce=True, max_instances=1, misfire_grace_time=None)
    log.warning("%s; trying again at %s (every %g min until it runs)", exc,
                when.astimezone(trigger.timezone).isoformat(timespec="seconds"), lock_retry_s / 60)


def run_now(scheduler: BaseScheduler) -> None:
    """Run the nightly job now as the scheduler would (a refusal by the lock schedules a retry): the
    catch-up at start. Works before `start()`."""
    scheduler.get_job(JOB_ID).func()


def describe(scheduler: BaseScheduler) -> dict:
    """The registered job, as `tracker scheduler show` prints it (start the scheduler paused first)."""
    job = scheduler.get_job(JOB_ID)
    return {
        "id": job.id,
        "trigger": str(job.trigger),
        "timezone": str(job.trigger.timezone),
        "misfire_grace_time_s": job.misfire_grace_time,  # None: a missed run runs on waking, however late
        "coalesce": job.coalesce,
        "max_instances": job.max_instances,
        "next_run": job.next_run_time.isoformat() if job.next_run_time else None,
    }


def nightly_job(engine, library, settings, user: str, *, at: str, timezone: str) -> Callable[[], None]:
    """The job: one nightly run for the clinic's day of the latest scheduled time passed (`night_for`: the
    trigger at `at` in `timezone`; the day in the config's timezone). It logs problems rather than raising,
    so a failed channel never stops the scheduler; LockedError (another process holds the nightly lock) is
    raised for the scheduler to try again (build_scheduler)."""
    from tracker.errors import TrackerError
    from tracker.services.nightly import run_nightly

    trigger = daily_trigger(at, timezone)

    def run() -> None:
        as_of = night_for(trigger, settings.timezone, utcnow())
        log.info("nightly run for %s starting", as_of)
        try:
            report = run_nightly(engine, library, settings, as_of, user=user)
        except LockedError:
            raise
        except TrackerError as exc:  # a channel failed, the lab inbox could not be read, ...: one line, as the CLI
            log.error("nightly run for %s: %s", as_of, exc)
        except Exception:
            log.exception("nightly run for %s failed", as_of)
        else:
            log.info("nightly run for %s done: %d new reminders, sent %s", as_of, report.reminders,
                     report.delivered)
            for channel, warning in report.warnings.items():  # delivered, yet something to tell
                log.warning("nightly run for %s: %s: %s", as_of, channel, warning)

    return run


def run_forever(scheduler: ForegroundScheduler, catch_up: Callable[[], None]) -> None:
    """Catch up once, then block until SIGTERM or SIGINT; a run in progress finishes before exit (the signal
    handler interrupts the run's own thread briefly and returns; ForegroundScheduler stops after the run)."""
    stopping = []

    def stop(signum, _frame) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        stopping.append(signum)
        scheduler.request_stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        catch_up()
        if stopping:
            return
        job = scheduler.get_job(JOB_ID)
        log.info("scheduler started: %s (%s); a missed run runs on waking", job.trigger, job.trigger.timezone)
        scheduler.start()
        log.info("scheduler stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
