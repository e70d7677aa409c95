"""Issue 7: the APScheduler job is registered with the trigger, timezone and grace time asked for (checked
with start(paused=True) and get_next_fire_time, not by waiting), and `tracker scheduler run` catches up at
start and stops cleanly on SIGTERM."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import time
from zoneinfo import ZoneInfo

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from tests.nightly_support import TRACKER, run_cli
from tracker.scheduler import JOB_ID, build_scheduler


def test_registered_job_has_the_trigger_timezone_and_grace_time_asked_for():
    runs = []
    sched = build_scheduler(lambda: runs.append(1), at="05:30", timezone="Europe/London", grace_hours=6,
                            scheduler_class=BackgroundScheduler)
    sched.start(paused=True)
    try:
        job = sched.get_job(JOB_ID)
        assert isinstance(job.trigger, CronTrigger)
        assert str(job.trigger.timezone) == "Europe/London"
        assert (job.misfire_grace_time, job.coalesce, job.max_instances) == (None, True, 1)
        assert type(sched._lookup_jobstore("default")).__name__ == "MemoryJobStore"
        london = ZoneInfo("Europe/London")
        # The clocks go forward on Sunday 2026-03-29: the run stays at 05:30 local time (BST).
        before = dt.datetime(2026, 3, 28, 12, 0, tzinfo=london)
        fire = job.trigger.get_next_fire_time(None, before)
        assert fire == dt.datetime(2026, 3, 29, 5, 30, tzinfo=london)
        assert fire.utcoffset() == dt.timedelta(hours=1)
        assert job.trigger.get_next_fire_time(None, dt.datetime(2026, 3, 30, 5, 31, tzinfo=london)) == \
            dt.datetime(2026, 3, 31, 5, 30, tzinfo=london)
        assert runs == []  # paused: nothing ran
    finally:
        sched.shutdown(wait=False)


def test_scheduler_show_reports_the_job_from_config_and_options(tracker, tmp_path):
    (tmp_path / "site.toml").write_text('timezone = "America/New_York"\n[scheduler]\nat = "04:15"\n'
                                        'grace_hours = 3\nlock_retry_minutes = 4\n')
    info = tracker.json(f"--config {tmp_path / 'site.toml'} scheduler show")
    assert info == {**info, "id": JOB_ID, "timezone": "America/New_York", "misfire_grace_time_s": None,
                    "coalesce": True, "max_instances": 1, "lock_retry_minutes": 4}
    assert tracker.json("scheduler show")["lock_retry_minutes"] == 10  # the default
    assert "lock_retry_minutes: 4" in tracker(f"--config {tmp_path / 'site.toml'} scheduler show").stdout
    assert info["trigger"] == "cron[hour='4', minute='15']"
    other = tracker.json(f"--config {tmp_path / 'site.toml'} scheduler show --at 06:45 --timezone Asia/Tokyo")
    assert other["trigger"] == "cron[hour='6', minute='45']" and other["timezone"] == "Asia/Tokyo"
    assert other["next_run"].endswith("+09:00")


def test_bad_time_or_zone_is_a_one_line_error(tracker):
    bad_at = tracker("scheduler show --at 25:00", ok=False)
    assert bad_at.exit_code == 2 and "at: '25:00'" in bad_at.stderr
    bad_zone = tracker("scheduler show --timezone Mars/Olympus", ok=False)
    assert bad_zone.exit_code == 2 and "timezone: 'Mars/Olympus'" in bad_zone.stderr


def test_scheduler_run_catches_up_at_start_and_stops_on_sigterm(tracker, tmp_path):
    tracker("patient add P1 --name 'Ada Byron' --dob 1980-01-01")
    tracker(f"therapy start P1 dupilumab --on {dt.date.today() - dt.timedelta(days=30)}")
    log_file = tmp_path / "scheduler.log"
    with open(log_file, "w") as err:
        process = subprocess.Popen([*TRACKER, "--db", tracker.db, "scheduler", "run", "--at", "04:00"],
                                   stdout=subprocess.PIPE, stderr=err, text=True, env=os.environ.copy())
    deadline = time.monotonic() + 60
    while "scheduler started" not in log_file.read_text() and time.monotonic() < deadline:
        assert process.poll() is None, log_file.read_text()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=30)
    log = log_file.read_text()
    assert process.returncode == 0, log
    assert "nightly run for" in log and "cron[hour='4', minute='0']" in log
    assert "received SIGTERM; stopping" in log and "scheduler stopped" in log
    assert out.startswith("tracker: ")  # the catch-up's digest (stdout channel)
    runs = json.loads(run_cli(tracker.db, "nightly", "status", "--json").stdout)
    assert len(runs) == 1 and runs[0]["status"] == "ok"


SCHEDULED_NIGHT = """
import datetime, json, sys, threading
from tracker.scheduler import JOB_ID, build_scheduler
from tracker.services.review_worker import _one_thread

seen = {"threads_before": threading.active_count()}

def job():
    seen.update(main=threading.current_thread() is threading.main_thread(), alone=_one_thread())
    scheduler.shutdown(wait=False)

scheduler = build_scheduler(job, at="04:00", timezone="UTC", grace_hours=1)  # as `tracker scheduler run`
scheduler.modify_job(JOB_ID, next_run_time=datetime.datetime.now(datetime.timezone.utc))  # due at once
scheduler.start()  # blocks until the job shuts the scheduler down
json.dump(seen, sys.stdout)
"""


def test_a_scheduled_night_runs_in_the_scheduler_s_own_thread_where_a_run_may_fork():
    """The nightly job runs in the thread that started the scheduler and no other thread runs beside it, so
    that a scheduled night, like one from cron, may fork its review worker and its charts' fork
    (services/review_worker.py: no fork beside another thread). An executor's thread meant a spawned worker
    and no charts' fork on every night but the catch-up. Run in an interpreter of its own (one thread, as
    `tracker scheduler run`; a pytest-xdist worker has an I/O thread)."""
    import sys

    done = subprocess.run([sys.executable, "-c", SCHEDULED_NIGHT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen == {"threads_before": 1, "main": True, "alone": True}


STOPPED_DURING_A_NIGHT = """
import datetime, json, logging, os, signal, sys
from tracker.scheduler import JOB_ID, build_scheduler, run_forever

logging.basicConfig(level=logging.INFO)

seen = []

def job():
    seen.append("night begins")
    os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, in this thread, before the next line
    seen.append("night ends")

scheduler = build_scheduler(job, at="04:00", timezone="UTC", grace_hours=1)
scheduler.modify_job(JOB_ID, next_run_time=datetime.datetime.now(datetime.timezone.utc))  # due at once
run_forever(scheduler, lambda: None)
json.dump(seen, sys.stdout)
"""


def test_a_stop_asked_during_a_scheduled_night_lets_it_end_then_stops_the_scheduler():
    """SIGTERM while a scheduled night runs (in the scheduler's thread, so the handler interrupts the night
    itself): the night goes on to its end, then the scheduler stops, exit 0. Shut down under the running
    job, APScheduler emptied its job store and then failed to store the job's next run (a traceback)."""
    import sys

    done = subprocess.run([sys.executable, "-c", STOPPED_DURING_A_NIGHT], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["night begins", "night ends"]
    assert "received SIGTERM; stopping" in done.stderr and "Traceback" not in done.stderr


STOPPED_IN_THE_SCHEDULER_S_WAIT = """
import logging, os, signal, sys, threading
from tracker.scheduler import build_scheduler, run_forever

logging.basicConfig(level=logging.INFO)
waits = []

def tracer(frame, event, arg):
    # SIGTERM as the scheduler first waits, inside Event.wait's lock: a handler that set the event would
    # wait on that lock for ever (this thread holds it).
    if event == "call" and frame.f_code is threading.Condition.wait.__code__ and not waits:
        waits.append(1)
        os.kill(os.getpid(), signal.SIGTERM)

scheduler = build_scheduler(lambda: None, at="04:00", timezone="UTC", grace_hours=1)
sys.settrace(tracer)
run_forever(scheduler, lambda: None)
sys.settrace(None)
print("stopped", len(waits))
"""

STOPPED_BEFORE_START = """
import logging
from tracker.scheduler import build_scheduler

logging.basicConfig(level=logging.INFO)
scheduler = build_scheduler(lambda: None, at="04:00", timezone="UTC", grace_hours=1)
scheduler.request_stop()  # as a SIGTERM between the catch-up and start() would
scheduler.start()  # returns at once
print("stopped")
"""


def _scripted(script: str) -> subprocess.CompletedProcess:
    import sys

    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)


def test_a_signal_while_the_scheduler_waits_stops_it_without_taking_a_lock():
    """The stop handler sets a flag the loop reads (within STOP_POLL_S): it may interrupt this thread anywhere,
    inside the scheduler's own wait included (setting its event there deadlocked: the handler waited for the
    lock its own thread held)."""
    done = _scripted(STOPPED_IN_THE_SCHEDULER_S_WAIT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "stopped 1" and "scheduler stopped" in done.stderr


def test_a_stop_asked_before_the_scheduler_starts_is_not_lost():
    """A SIGTERM after the catch-up and before `start()` was logged and then ignored: the scheduler ran on."""
    done = _scripted(STOPPED_BEFORE_START)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "stopped"


# --- which day a run is for; the catch-up at start (findings D4, D7) ---------------------------------------

FROZEN_SCHEDULER = """
import sys
from freezegun import freeze_time
from tracker.cli import main

frozen, sys.argv = sys.argv[1], ["tracker", *sys.argv[2:]]
with freeze_time(frozen):
    main()
"""


def _frozen_scheduler_run(tracker, tmp_path, frozen: str, *args: str) -> str:
    """`tracker scheduler run ARGS` in a process of its own with the clock frozen at `frozen` (ISO): its
    catch-up at start runs, then SIGTERM once it says it started. Returns its log."""
    import sys

    log_file = tmp_path / "frozen-scheduler.log"
    with open(log_file, "w") as err:
        process = subprocess.Popen([sys.executable, "-c", FROZEN_SCHEDULER, frozen, "--db", tracker.db,
                                    "scheduler", "run", *args],
                                   stdout=subprocess.DEVNULL, stderr=err, text=True, env=os.environ.copy())
    deadline = time.monotonic() + 60
    while "scheduler started" not in log_file.read_text() and time.monotonic() < deadline:
        assert process.poll() is None, log_file.read_text()
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    log = log_file.read_text()
    assert process.returncode == 0, log
    return log


def _jsonl_config(tmp_path, zone: str):
    from tests.nightly_support import write_config

    return write_config(tmp_path / "site.toml", f'timezone = "{zone}"\n[reminders]\nchannels = ["jsonl"]\n'
                        f'[reminders.jsonl]\npath = "{tmp_path / "reminders.jsonl"}"\n')


def test_the_day_a_run_is_for_is_the_clinics_whatever_zone_the_trigger_fires_in(tracker, tmp_path):
    """D4: `scheduler run --timezone Z` took "today" in Z: at 20:00 UTC it ran and stored 2026-01-17 (the
    day in Kiritimati) for a clinic in Pago Pago, where it was 09:00 on the 16th; the real run of the 17th
    then said "already done". --timezone only says when to fire: 06:00 in Kiritimati is 05:00 in Pago
    Pago, so this start catches up the clinic's 16th."""
    from tests.nightly_support import small_clinic

    small_clinic(tracker)
    _jsonl_config(tmp_path, "Pacific/Pago_Pago")
    log = _frozen_scheduler_run(tracker, tmp_path, "2026-01-16T20:00:00Z", "--at", "06:00",
                                "--timezone", "Pacific/Kiritimati")
    assert "nightly run for 2026-01-16 starting" in log, log
    assert [run["as_of"] for run in tracker.json("nightly status")] == ["2026-01-16"]


def test_the_catch_up_at_start_runs_only_the_days_whose_time_has_passed(tracker, tmp_path):
    """D7: started at 05:58 with --at 06:00, the catch-up ran the 16th at once, so the 06:00 run found it
    "already done" (a critical result recorded at 05:59 waited a day). Now it catches up the 15th, and the
    16th runs once its 06:00 has passed."""
    from tests.nightly_support import small_clinic

    small_clinic(tracker)
    _jsonl_config(tmp_path, "Europe/London")
    log = _frozen_scheduler_run(tracker, tmp_path, "2026-01-16T05:58:00Z", "--at", "06:00")
    assert "nightly run for 2026-01-15 starting" in log, log
    assert [run["as_of"] for run in tracker.json("nightly status")] == ["2026-01-15"]
    log = _frozen_scheduler_run(tracker, tmp_path, "2026-01-16T06:00:30Z", "--at", "06:00")
    assert "nightly run for 2026-01-16 starting" in log, log
    runs = tracker.json("nightly status")
    assert [(run["as_of"], run["from_day"]) for run in runs] == [("2026-01-16", "2026-01-16"),
                                                                 ("2026-01-15", "2026-01-15")]
    assert runs[0]["counts"]["days"] == 1  # the 16th itself, not "already done"


def test_night_for_is_the_clinics_day_of_the_latest_scheduled_time_passed():
    from tracker.scheduler import daily_trigger, night_for

    london = ZoneInfo("Europe/London")
    six = daily_trigger("06:00", "Europe/London")

    def at(*args, zone=london):
        return dt.datetime(*args, tzinfo=zone)

    assert night_for(six, "Europe/London", at(2026, 1, 16, 5, 59, 59)) == dt.date(2026, 1, 15)
    assert night_for(six, "Europe/London", at(2026, 1, 16, 6, 0)) == dt.date(2026, 1, 16)
    assert night_for(six, "Europe/London", at(2026, 1, 16, 23, 59)) == dt.date(2026, 1, 16)
    # Woken from a sleep that began on the 14th: the latest run due is the 15th's (then the 16th's at 06:00).
    assert night_for(six, "Europe/London", at(2026, 1, 16, 5, 0)) == dt.date(2026, 1, 15)
    # The clocks go forward on 2026-03-29: 05:30 BST is before that day's 06:00 BST.
    assert night_for(six, "Europe/London", at(2026, 3, 29, 5, 30)) == dt.date(2026, 3, 28)
    # A trigger in another zone never runs the clinic ahead of its today (Pago Pago is 25 h behind
    # Kiritimati): at 23:30 in Pago Pago on the 16th, 06:00 in Kiritimati (05:00 in Pago Pago) has passed.
    kiritimati = daily_trigger("06:00", "Pacific/Kiritimati")
    pago = ZoneInfo("Pacific/Pago_Pago")
    assert night_for(kiritimati, "Pacific/Pago_Pago", at(2026, 1, 16, 23, 30, zone=pago)) == dt.date(2026, 1, 16)
    assert night_for(kiritimati, "Pacific/Pago_Pago", at(2026, 1, 16, 4, 59, zone=pago)) == dt.date(2026, 1, 15)


# --- a run refused by the nightly lock; a run missed while the machine slept (findings D3 a, b) ------------

REFUSED_BY_THE_LOCK = """
import json, logging, sys
from tracker.errors import LockedError
from tracker.scheduler import build_scheduler, run_forever, run_now

logging.basicConfig(level=logging.INFO)
calls = []

def job():
    calls.append(len(calls) + 1)
    if len(calls) < 3:  # the catch-up and the first retry meet the lock; the second retry runs
        raise LockedError("nightly: another nightly run holds the lock (pid 1); not starting a second one")
    scheduler.shutdown(wait=False)

# --at 04:00 UTC: the retries must come before the next scheduled run; they are 0.05 s apart here.
scheduler = build_scheduler(job, at="04:00", timezone="UTC", grace_hours=1, lock_retry_s=0.05)
run_forever(scheduler, lambda: run_now(scheduler))
json.dump(calls, sys.stdout)
"""


def test_a_run_refused_by_the_lock_is_tried_again_until_it_runs():
    """D3a: a run refused by the nightly lock (a `db restore`, an inbox import by hand) was dropped until
    the next day. Now it is tried again after `lock_retry_s` (`[scheduler] lock_retry_minutes`, 10 by default), in the
    running scheduler, until it runs; the catch-up at start is retried the same way."""
    from tracker.core.settings import SchedulerSettings
    from tracker.scheduler import LOCK_RETRY_S

    done = _scripted(REFUSED_BY_THE_LOCK)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [1, 2, 3]
    assert done.stderr.count("trying again at") == 2 and "Traceback" not in done.stderr
    assert LOCK_RETRY_S == 600 and SchedulerSettings().lock_retry_minutes == 10


def test_the_lock_retry_is_the_configured_lock_retry_minutes(tracker, tmp_path):
    """`tracker scheduler run` (a process of its own, its clock frozen at 09:00) meets the nightly lock held
    here in its catch-up at start: the retry comes `[scheduler] lock_retry_minutes` later, 3 here (before, a
    constant 10 minutes, and the key was refused as unknown)."""
    from tests.nightly_support import small_clinic
    from tracker.db.engine import make_engine, resolve_url
    from tracker.locks import nightly_lock

    small_clinic(tracker)
    config = _jsonl_config(tmp_path, "Europe/London")
    config.write_text(config.read_text() + "[scheduler]\nlock_retry_minutes = 3\n")
    engine = make_engine(resolve_url(tracker.db))
    try:
        with nightly_lock(engine):
            log = _frozen_scheduler_run(tracker, tmp_path, "2026-01-16T09:00:00Z", "--at", "06:00")
    finally:
        engine.dispose()
    assert "trying again at 2026-01-16T09:03:00+00:00 (every 3 min until it runs)" in log, log
    assert tracker.json("nightly status") == []  # refused by the lock: nothing ran


def test_the_lock_retry_is_the_days_run_and_stops_at_the_next_scheduled_run(tracker, tmp_path):
    """The real nightly job under a held lock (as a `db restore` holds it): no run, a retry 10 minutes on;
    the retry, once the lock is free, runs the same day. A retry that would come after the next scheduled
    run is left to that run."""
    from freezegun import freeze_time

    from tests.nightly_support import small_clinic
    from tracker.cli import AppContext
    from tracker.locks import nightly_lock
    from tracker.scheduler import RETRY_PREFIX, nightly_job, run_now

    small_clinic(tracker)
    _jsonl_config(tmp_path, "Europe/London")
    app = AppContext(tracker.db, "tester", None)
    job = nightly_job(app.engine, app.library, app.settings, app.user, at="06:00", timezone="Europe/London")
    sched = build_scheduler(job, at="06:00", timezone="Europe/London", grace_hours=6,
                            scheduler_class=BackgroundScheduler)
    sched.start(paused=True)
    try:
        with freeze_time("2026-01-16T05:55:00Z"), nightly_lock(app.engine):
            run_now(sched)  # held: the 06:00 run, in 5 minutes, will run the day
        assert [job.id for job in sched.get_jobs()] == [JOB_ID]
        with freeze_time("2026-01-16T09:00:00Z"):
            with nightly_lock(app.engine):
                run_now(sched)
            retries = [job for job in sched.get_jobs() if job.id.startswith(RETRY_PREFIX)]
            assert len(retries) == 1
            assert retries[0].next_run_time == dt.datetime(2026, 1, 16, 9, 10, tzinfo=dt.timezone.utc)
        assert tracker.json("nightly status") == []
        with freeze_time("2026-01-16T09:10:00Z"):
            retries[0].func(**retries[0].kwargs)  # as the scheduler runs it
        assert [run["as_of"] for run in tracker.json("nightly status")] == ["2026-01-16"]
    finally:
        sched.shutdown(wait=False)
        app.close()


SLEPT_THROUGH_THE_RUN = """
import datetime, json, logging, sys
from apscheduler.events import EVENT_JOB_EXECUTED, EVENT_JOB_MISSED
from tracker.scheduler import JOB_ID, build_scheduler

logging.basicConfig(level=logging.INFO)
seen = []

def job():
    seen.append("ran")

def done(event):
    if event.code == EVENT_JOB_MISSED:
        seen.append("missed")
    scheduler.shutdown(wait=False)  # the loop stops once the due runs are processed

scheduler = build_scheduler(job, at="04:00", timezone="UTC", grace_hours=1)
scheduler.add_listener(done, EVENT_JOB_EXECUTED | EVENT_JOB_MISSED)
# As a machine that slept for three days finds it on waking: the run was due three days ago, and every day
# since (the scheduler's wait is in slices of at most STOP_POLL_S, so it looks within a second of waking).
now = datetime.datetime.now(datetime.timezone.utc)
scheduler.modify_job(JOB_ID, next_run_time=now - datetime.timedelta(days=3))
scheduler.start()
json.dump(seen, sys.stdout)
"""


def test_a_run_missed_while_the_machine_slept_runs_once_on_waking():
    """D3b: a run due while the machine slept longer than grace_hours was "missed (beyond the grace time)"
    and the day waited for the next day's run. Now it runs on waking, once for all the missed days (the
    job catches up every day since the last), and is logged as late."""
    done = _scripted(SLEPT_THROUGH_THE_RUN)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["ran"]
    assert "ran late" in done.stderr


def test_a_run_refused_for_a_reason_of_tracker_is_one_log_line(tracker, tmp_path, caplog):
    """The job logs a tracker error (here the lab inbox that is not a folder: exit 8 from the CLI) in one
    line, as the CLI says it, not with a traceback."""
    import logging

    from freezegun import freeze_time

    from tests.nightly_support import small_clinic, write_config
    from tracker.cli import AppContext
    from tracker.scheduler import nightly_job

    small_clinic(tracker)
    write_config(tmp_path / "site.toml", f'timezone = "UTC"\n[reminders]\nchannels = ["jsonl"]\n'
                 f'[reminders.jsonl]\npath = "{tmp_path / "reminders.jsonl"}"\n'
                 f'[labs]\ninbox = "{tmp_path / "no-such-inbox"}"\n')
    app = AppContext(tracker.db, "tester", None)
    job = nightly_job(app.engine, app.library, app.settings, app.user, at="06:00", timezone="UTC")
    try:
        with freeze_time("2026-01-16T09:00:00Z"), caplog.at_level(logging.INFO, logger="tracker.scheduler"):
            job()
    finally:
        app.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None  # before: logged with its traceback
    assert "lab inbox not read" in errors[0].getMessage()
