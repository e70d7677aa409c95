"""The nightly job: roll calendars forward, evaluate alerts, emit reminders once, deliver them.

Idempotent and catching up: the last day completed is kept in the `setting` table; a run covers every day
since then in one digest, and `reminder.dedupe_key` (unique) means a condition is reminded once.

Crash safety (why the job commits in several steps instead of one command transaction):
  1. a `nightly_run` row is committed first, so `nightly status` shows a run that was killed;
  2. the calendars' roll forward is committed on its own (planning again plans the same items);
  3. new reminders, their pending deliveries (one per channel) and the new last-completed day are
     committed together, so a re-run either redoes all of it or none of it (SQLite: the log's checkpoint
     then runs on a thread while the channels deliver, db/engine.py `commit_without_checkpoint`);
  4. each channel then delivers whatever is pending or failed for it (from any run) and marks it sent:
     batched channels in small committed batches, exactly-once (jsonl skips ids already in the file;
     the webhook records each batch before POSTing it and sends a batch not answered 2xx again unchanged,
     same Idempotency-Key, before any other reminder); a digest (stdout) as one, resent whole only if killed in the instant
     between writing and marking; e-mail keeps one delivery row per recipient (`email:<hash>`), sends each
     recipient its own digest and marks it in the same breath, so a kill re-sends one message to one
     recipient and a refused recipient is retried alone.
A failing channel is recorded and skipped; the others carry on, and its reminders are retried next run.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from dataclasses import dataclass, field

from sqlalchemy import String, case, func, literal, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session

from tracker.core.settings import Settings
from tracker.dates import utcnow
from tracker.db.tables import (
    NightlyRun,
    ReminderDelivery,
    setting_value,
    store_setting,
    unsent_delivery,
)
from tracker.errors import ConfigError, DeliveryError, InputError, LockedError
from tracker.locks import nightly_lock, nightly_lock_held
from tracker.services.delivery import (
    deliver_batches,
    deliver_digest,
    deliver_email,
    error_text,
    undelivered,
)
from tracker.services.reminders import emit_reminders
from tracker.services import review_worker

LAST_COMPLETED = "nightly.last_completed"

D = ReminderDelivery.__table__


@dataclass
class NightlyReport:
    run_id: int
    from_day: dt.date
    as_of: dt.date
    new_days: int = 0
    created: dict = field(default_factory=dict)  # kind -> count of new reminders
    delivered: dict = field(default_factory=dict)  # channel -> count sent this run
    undelivered: dict = field(default_factory=dict)  # channel -> count still pending/failed
    failures: dict = field(default_factory=dict)  # channel (or "inbox", "caldav") -> error text
    warnings: dict = field(default_factory=dict)  # channel -> a problem that delivered or lost nothing

    @property
    def reminders(self) -> int:
        return sum(self.created.values())


# --- selecting what to remind -----------------------------------------------------------------------------


def last_completed(session: Session) -> dt.date | None:
    value = setting_value(session, LAST_COMPLETED)
    return dt.date.fromisoformat(value) if value else None


def _start(engine: Engine, as_of: dt.date) -> tuple[int, dt.date, bool]:
    with Session(engine) as session:
        # Under the lock, a run still marked running was killed: say so instead of leaving it running.
        session.connection().execute(
            update(NightlyRun.__table__).where(NightlyRun.status == "running")
            .values(status="interrupted", finished_at=utcnow()))
        last = last_completed(session)
        from_day = last + dt.timedelta(days=1) if last else as_of
        new = from_day <= as_of
        run = NightlyRun(from_day=from_day if new else as_of, as_of=as_of, started_at=utcnow(), status="running")
        session.add(run)
        session.commit()
        return run.id, run.from_day, new


def _finish(engine: Engine, run_id: int, report: NightlyReport, extra_counts: dict, error: str | None = None):
    with Session(engine) as session:
        run = session.get(NightlyRun, run_id)
        run.finished_at = utcnow()
        failures = dict(report.failures)
        if error:
            failures["run"] = error
        run.status = "failed" if failures else "ok"
        run.counts = json.dumps({
            "days": report.new_days, **{k: report.created.get(k, 0) for k in ("due", "overdue", "alert")},
            "reminders": report.reminders, "delivered": report.delivered, "undelivered": report.undelivered,
            **({"warnings": report.warnings} if report.warnings else {}), **extra_counts,
        }, sort_keys=True)
        run.failures = json.dumps(failures, sort_keys=True) if failures else None
        session.add(run)
        session.commit()


def run_nightly(engine: Engine, library, site: Settings, as_of: dt.date, *, user: str, out=None,
                progress=None) -> NightlyReport:
    """One nightly run under the single-runner lock. Raises LockedError if another run holds it and
    DeliveryError (after recording everything) if a channel failed. `progress(done, total)` is called as
    its steps end (roll forward, evaluate, remind, each channel)."""
    from tracker.channels import build_channels, delivery_keys
    from tracker.db.engine import commit_without_checkpoint, for_writing
    from tracker.services import audit
    from tracker.services.alerts import evaluate_clinic
    from tracker.services.evaluate import full_pass_due
    from tracker.services.plan_sync import roll_forward

    settings = site.reminders
    channels = build_channels(settings, out)
    keys = delivery_keys(channels)  # a delivery row per channel, and per recipient for e-mail
    steps, step = 3 + len(channels), 0

    def step_done() -> None:
        nonlocal step
        step += 1
        if progress is not None:
            progress(step, steps)

    started = time.time()  # lab inbox files modified since are still being written
    with nightly_lock(engine):
        run_id, from_day, new = _start(engine, as_of)
        report = NightlyReport(run_id=run_id, from_day=from_day, as_of=as_of)
        extra: dict = {}
        worker = checkpoint = None
        try:
            if site.labs.inbox is not None:
                # First, so the results the laboratory dropped complete their draws before tonight's
                # reminders; a file's fault moves it to rejected/, the run goes on (services/lab_inbox.py).
                from tracker.services.lab_inbox import import_inbox

                try:
                    extra["inbox"] = import_inbox(engine, library, site, as_of, user, started=started).counts()
                except InputError as exc:  # the folder is missing: recorded, the run goes on (exit 8)
                    report.failures["inbox"] = str(exc)
            if new:
                report.new_days = (as_of - from_day).days + 1
                # A full pass ahead (a cold start, new protocols) on a large clinic: its review worker is
                # started now, so that its start-up overlaps the roll forward.
                with Session(engine) as session:
                    if full_pass_due(session, library) and review_worker.ReviewWorker.worth_it(session):
                        worker = review_worker.ReviewWorker(engine)
                # The write lock up front: a concurrent `tracker alerts` evaluates before or after, never
                # in between (its alerts would otherwise be raised twice).
                with Session(for_writing(engine)) as session:
                    extra["courses_rolled"] = roll_forward(
                        session, library, as_of, as_of + dt.timedelta(days=settings.lead_days),
                        merge_window=site.calendar.merge_window_days,
                        childbearing_ages=site.alerts.childbearing_ages)
                    # Committed before the alerts are evaluated (a re-run plans the same items again), so
                    # that a review worker's connection reads the calendar this one does; the write lock is
                    # taken again at once, before either reads.
                    session.commit()
                    session.connection()
                    step_done()
                    summary = evaluate_clinic(session, library, as_of, site, incremental=True,
                                              review_worker=worker, worker_min_patients=review_worker.MIN_PATIENTS,
                                              forked_min_charts=review_worker.MIN_FORKED_CHARTS)
                    step_done()
                    extra.update(alerts_raised=len(summary.raised), alerts_reopened=len(summary.reopened),
                                 alerts_resolved=len(summary.resolved))
                    if summary.worker is not None:
                        extra["review_worker"] = summary.worker
                    if summary.chart_fork is not None:
                        extra["chart_fork"] = summary.chart_fork
                    session.flush()
                    report.created = emit_reminders(session, run_id, as_of, settings.lead_days,
                                                    site.privacy.patient_label, keys,
                                                    library.vocabulary)
                    store_setting(session, LAST_COMPLETED, as_of.isoformat())
                    audit.record(session, user, "nightly.run", "nightly_run", run_id, None, None,
                                 {"from_day": from_day.isoformat(), "as_of": as_of.isoformat(),
                                  **report.created, **extra})
                    # SQLite: the log is checkpointed on a thread while the channels deliver.
                    pending = commit_without_checkpoint(session)
                    if pending is not None:
                        pending.start()
                        checkpoint = pending
            step = 3
            for channel in channels:
                if getattr(channel, "per_recipient", False):
                    sent, error, warning = deliver_email(engine, channel, as_of, from_day)
                    if warning:
                        report.warnings[channel.name] = warning
                elif channel.digest:
                    sent, error = deliver_digest(engine, channel, as_of, from_day)
                else:
                    sent, error = deliver_batches(engine, channel, settings.batch_size)
                report.delivered[channel.name] = sent
                report.undelivered[channel.name] = undelivered(engine, channel)
                if error:
                    report.failures[channel.name] = error
                step_done()
            if site.caldav is not None:
                # After the reminders: the staff calendar to CalDAV; a failure is reported like a
                # channel's, and the run (its alerts and reminders) is kept.
                from tracker.services.caldav_push import push_calendar

                try:
                    extra["caldav"] = push_calendar(engine, library, site, as_of).counts()
                except (DeliveryError, ConfigError, LockedError) as exc:  # unreachable, refused, password
                    # file unreadable, a `calendar push` by hand running: the next push resumes
                    report.failures["caldav"] = str(exc)
        except BaseException as exc:
            _finish(engine, run_id, report, extra, error=error_text(exc))
            raise
        finally:
            if worker is not None:
                worker.close()
            if checkpoint is not None:
                checkpoint.join()
        _finish(engine, run_id, report, extra)
    raise_failures(report)
    return report


def raise_failures(report: NightlyReport) -> None:
    """A run that recorded failures ends in one error naming each as what it is: a channel (exit 10, its
    reminders kept for the next run), the CalDAV push (exit 10), the lab inbox (exit 8 when nothing else
    failed: a `[labs] inbox` that is not a folder is a configuration problem; every channel delivered)."""
    failures = dict(report.failures)
    inbox = failures.pop("inbox", None)
    caldav = failures.pop("caldav", None)
    parts = []
    if failures:
        detail = "; ".join(f"{name}: {error}" for name, error in failures.items())
        parts.append(f"channel failed ({detail}); its reminders are kept for the next run")
    if caldav:
        parts.append(f"calendar push failed (caldav: {caldav}); the next push resumes")
    if inbox:
        parts.append(f"lab inbox not read ({inbox}); no results were imported"
                     + ("" if failures else ", the reminders were sent"))
    if not parts:
        return
    message = f"nightly {report.as_of}: " + "; ".join(parts)
    if failures or caldav:
        raise DeliveryError(message)
    raise ConfigError(message)


def recent_runs(session: Session, limit: int = 10) -> list[dict]:
    runs = session.execute(select(NightlyRun).order_by(NightlyRun.id.desc()).limit(limit)).scalars().all()
    return [_run_dict(run) for run in runs]


def _run_dict(run: NightlyRun) -> dict:
    return {
        "id": run.id,
        "from_day": run.from_day.isoformat(),
        "as_of": run.as_of.isoformat(),
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "status": run.status,
        "counts": json.loads(run.counts) if run.counts else {},
        "failures": json.loads(run.failures) if run.failures else {},
    }


def show_dead_runs_interrupted(engine: Engine, runs: list[dict]) -> list[dict]:
    """`nightly status`'s view of `runs` (as recent_runs read them): a run still marked running whose
    process no longer holds the nightly lock was killed, and is shown `interrupted` (the next run records it
    so). Writes nothing. The lock is looked at after the runs were read, and their rows are read again
    after: a run holds the lock from before its row is written until after it records its end, so a row
    still `running` once the lock was seen free is a dead run's; one that ended meanwhile shows its end."""
    running = [run["id"] for run in runs if run["status"] == "running"]
    if not running or nightly_lock_held(engine):
        return runs
    with Session(engine) as session:
        now = {run.id: run for run in session.execute(
            select(NightlyRun).where(NightlyRun.id.in_(running))).scalars()}
        fresh = {run_id: _run_dict(run) for run_id, run in now.items()}
        session.rollback()
    shown = []
    for run in runs:
        if run["id"] in fresh:
            run = fresh[run["id"]]
            if run["status"] == "running":
                run = {**run, "status": "interrupted"}
        shown.append(run)
    return shown


def pending_deliveries(session: Session, configured: list[str] | None = None) -> tuple[dict, dict]:
    """Undelivered reminders per channel (pending or failed; e-mail counts a reminder once however many
    recipients still wait for it), as two dicts: for the delivery keys `configured` (those a run delivers
    to: tracker.channels.delivery_keys; None: all), and for channels or e-mail recipients no longer
    configured, which no run counts or sends until they are configured again."""
    channel = case((D.c.channel.like("email:%"), literal("email", String)), else_=D.c.channel)
    current = D.c.channel.in_(configured) if configured is not None else D.c.id.isnot(None)  # (not a constant:
    # SQLite would read GROUP BY 1 as the first column)
    rows = session.execute(
        select(channel, current, func.count(func.distinct(D.c.reminder_id))).where(unsent_delivery())
        .group_by(channel, current)).all()
    return ({name: count for name, now, count in rows if now},
            {name: count for name, now, count in rows if not now})
