"""Issue 15 item 1: invariants held by the database, not by check-then-act.

Eight real `tracker` processes are started together and released at once: each imports tracker, reports
ready on a pipe, and waits on its stdin; when all eight are ready the test writes one byte to each (a
barrier, no sleeps). Their "today" is fixed with freezegun inside the process (an ISO string), so the
scenario does not depend on the calendar. The database is SQLite, or PostgreSQL when TRACKER_TEST_PG is
set (CI runs both). Afterwards: exactly one live alert per condition, one `alert.raise` per alert, one
live course per patient and drug, one `checkpoint.met` for one judgement, exit codes 0 or 4, and no
traceback anywhere.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys

from freezegun import freeze_time
from sqlalchemy import func, select

from tracker.db.engine import make_engine, resolve_url
from tracker.db.tables import Alert, Assessment, AuditEvent, Course, Item, Patient

TODAY = "2026-04-27"  # dupilumab week 16 for a course started on 2026-01-05
GUARD_S = 300  # only reached when a process hangs (a failing test)

# Runs in each process: import first (the slow part), say ready, wait for the release, then run the CLI.
LAUNCH = """
import os, sys
from freezegun import freeze_time
import tracker.cli
try:  # the PostgreSQL driver's C part must see the real datetime types, so it is imported before freezing
    import psycopg
except ImportError:
    pass
ready, today, args = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
os.write(ready, b"r"); os.close(ready)
sys.stdin.buffer.read(1)
freeze_time(today).start()
sys.argv = ["tracker", *args]
tracker.cli.main()
"""


def run_together(db: str, commands: list[str], today: str = TODAY) -> list[subprocess.CompletedProcess]:
    """Start one `tracker --db db <command>` process per command, release them at once, wait for all."""
    read_end, write_end = os.pipe()
    processes = []
    try:
        for command in commands:
            processes.append(subprocess.Popen(
                [sys.executable, "-c", LAUNCH, str(write_end), today, "--db", db, *command.split()],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                pass_fds=(write_end,), env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}))
        os.close(write_end)
        write_end = -1
        ready = b""
        while len(ready) < len(commands):  # every process imported and waiting (EOF: one died early)
            chunk = os.read(read_end, len(commands))
            if not chunk:
                break
            ready += chunk
        for process in processes:
            process.stdin.write("g")
            process.stdin.flush()  # communicate() closes it
        results = []
        for command, process in zip(commands, processes):
            out, err = process.communicate(timeout=GUARD_S)
            results.append(subprocess.CompletedProcess(command, process.returncode, out, err))
        return results
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def clinic(tracker, patients: int = 12) -> None:
    """P0 with no course; P1..Pn on methotrexate since 2026-01-05 with no labs (overdue draws); D1 on
    dupilumab with a week-16 assessment on record that meets the target but has not been judged yet."""
    with freeze_time("2026-01-05"):
        tracker("patient add P0 --name 'Zed Zero' --dob 1970-01-01")
        for n in range(1, patients + 1):
            tracker(f"patient add P{n} --name 'Pat Number' --dob 1980-01-01")
            tracker(f"therapy start P{n} methotrexate --on 2026-01-05")
        tracker("patient add D1 --name 'Dee Test' --dob 1985-03-01")
        tracker("assess D1 --on 2026-01-02 --easi 30 --dlqi 15")
        tracker("therapy start D1 dupilumab --on 2026-01-05")
    # The week-16 assessment arrives without an evaluation (as from another system's import), so that the
    # concurrent evaluations are the ones to judge the checkpoint.
    engine = make_engine(resolve_url(tracker.db))
    with engine.begin() as conn:
        d1 = conn.execute(select(Patient.id).where(Patient.mrn == "D1")).scalar_one()
        conn.execute(Assessment.__table__.insert().values(
            patient_id=d1, assessed_on=dt.date(2026, 4, 27), easi=12, dlqi=8,
            created_at=dt.datetime(2026, 4, 27, 9, tzinfo=dt.timezone.utc)))
    engine.dispose()


def check_invariants(db: str) -> dict:
    engine = make_engine(resolve_url(db))
    live = Alert.status.in_(("open", "acknowledged", "snoozed"))
    with engine.connect() as conn:
        doubled = conn.execute(select(Alert.condition_key).where(live).group_by(Alert.condition_key)
                               .having(func.count() > 1)).all()
        raises = conn.execute(select(AuditEvent.entity_id, func.count()).where(AuditEvent.action == "alert.raise")
                              .group_by(AuditEvent.entity_id)).all()
        courses = conn.execute(select(Patient.mrn, Course.drug, func.count()).join(Patient)
                               .where(Course.status != "stopped").group_by(Patient.mrn, Course.drug)).all()
        facts = {
            "live_alerts": conn.execute(select(func.count()).where(live)).scalar_one(),
            "alerts": conn.execute(select(func.count()).select_from(Alert)).scalar_one(),
            "raise_events": sum(n for _, n in raises),
            "p0_starts": conn.execute(select(func.count()).where(AuditEvent.action == "therapy.start",
                                                                 AuditEvent.mrn == "P0")).scalar_one(),
            "met_events": conn.execute(select(func.count()).where(AuditEvent.action == "checkpoint.met",
                                                                  AuditEvent.mrn == "D1")).scalar_one(),
            "d1_checkpoints_done": conn.execute(select(func.count()).select_from(Item).join(Patient).where(
                Patient.mrn == "D1", Item.kind == "checkpoint", Item.status == "done")).scalar_one(),
        }
    engine.dispose()
    assert doubled == [], f"conditions with more than one live alert: {doubled[:5]}"
    assert all(n == 1 for _, n in raises), "an alert was raised (audited) more than once"
    assert all(n == 1 for *_, n in courses), f"more than one live course: {[c for c in courses if c[2] > 1]}"
    assert facts["raise_events"] == facts["alerts"]
    return facts


def assert_clean(results) -> None:
    for result in results:
        assert result.returncode in (0, 4), (result.args, result.returncode, result.stderr)
        assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr
        if result.returncode == 4:
            assert result.stderr.count("\n") == 1, result.stderr  # one line


def test_eight_concurrent_evaluations_and_starts_keep_one_live_alert_and_course(tracker):
    clinic(tracker)
    commands = ["evaluate", "evaluate", "evaluate", "nightly"] + ["therapy start P0 dupilumab --on 2026-04-27"] * 4
    results = run_together(tracker.db, commands)
    assert_clean(results)
    # Evaluations wait for each other (the write lock up front) and all succeed.
    assert [r.returncode for r in results[:4]] == [0, 0, 0, 0], [r.stderr for r in results[:4]]
    starts = results[4:]
    assert sorted(r.returncode for r in starts) == [0, 4, 4, 4]
    assert all("already on dupilumab" in r.stderr for r in starts if r.returncode == 4)
    facts = check_invariants(tracker.db)
    assert facts["live_alerts"] > 12  # every methotrexate patient's overdue draws, at least
    assert facts["p0_starts"] == 1
    assert facts["met_events"] == 1 and facts["d1_checkpoints_done"] == 1  # one judgement, one audit row


def test_eight_concurrent_starts_of_the_same_drug_make_one_course(tracker):
    """The double-click: eight `therapy start P0 dupilumab` at once make one course; the others exit 4."""
    with freeze_time("2026-04-01"):
        tracker("patient add P0 --name 'Zed Zero' --dob 1970-01-01")
    results = run_together(tracker.db, ["therapy start P0 dupilumab --on 2026-04-01"] * 8)
    assert_clean(results)
    assert sorted(r.returncode for r in results) == [0] + [4] * 7
    facts = check_invariants(tracker.db)
    assert facts["p0_starts"] == 1


def test_lock_waits_and_index_refusals_are_conflicts_and_other_errors_are_not():
    """What the CLI maps to exit 4 (tracker/cli: TrackerGroup.main) and what it leaves as a database error."""
    import sqlite3

    from sqlalchemy.exc import IntegrityError, OperationalError

    from tracker.db.engine import lock_conflict

    def wrap(kind, message):
        return kind("INSERT ...", {}, sqlite3.OperationalError(message))

    assert "database busy" in lock_conflict(wrap(OperationalError, "database is locked"))
    assert "database busy" in lock_conflict(wrap(OperationalError, "canceling statement due to lock timeout"))
    assert "live course" in lock_conflict(wrap(IntegrityError, "UNIQUE constraint failed: course.patient_id, course.drug"))
    assert "live alert" in lock_conflict(wrap(
        IntegrityError, 'duplicate key value violates unique constraint "uq_alert_live_condition"'))
    assert lock_conflict(wrap(IntegrityError, "UNIQUE constraint failed: patient.mrn")) is None
    assert lock_conflict(wrap(OperationalError, "disk I/O error")) is None
