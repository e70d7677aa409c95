"""A full clinic-wide pass with a review worker (tracker/services/review_worker.py: a second process finding
the patients whose results moved from baseline, and loading and reviewing half of the charts) writes what a
pass alone writes: the same alerts, follow-up items and judged checkpoints, in the same order. If the worker
fails, the pass does its part itself and says so (a synthetic clinic of 1,200 patients, SQLite or PostgreSQL).
On PostgreSQL the worker is a fork of the pass's process (which goes on using its connection after it), on
SQLite a new interpreter; an incremental pass on PostgreSQL has most of its dated group's charts reviewed in a
fork. A process forks only with no other thread (a pytest-xdist worker has one): the passes that are to fork run
in an interpreter of their own (`_apart`), one thread, as a nightly run from cron."""

from __future__ import annotations

import datetime as dt
import os
import pickle
import subprocess
import sys
from pathlib import Path

from freezegun import freeze_time
from sqlalchemy import text
from sqlmodel import Session

from tracker.core.settings import Settings
from tracker.db.engine import for_writing, open_engine
from tracker.protocol_files import load_library
from tracker.services.alerts import evaluate_clinic

TODAY = dt.date(2026, 11, 2)
ROOT = Path(__file__).resolve().parent.parent
# What a pass writes, without ids and clocks: alerts, the items it adds or marks (follow-ups, judged checkpoints).
WRITTEN = {
    "alert": "SELECT condition_key, patient_id, course_id, item_id, result_id, drug, kind, severity, status, "
             "raised_on, message, suggestions, sources, value, limit_text FROM alert ORDER BY id",
    "item": "SELECT course_id, patient_id, kind, due, tests, title, status, done_on, done_note, origin FROM item "
            "WHERE origin <> 'protocol' OR status <> 'planned' ORDER BY id",
}

ITEMS_BOOKED = "SELECT id, course_id, kind, due, tests, origin FROM item WHERE origin <> 'protocol'"


def _pass(db_url: str, day: dt.date, **options) -> tuple[dict, dict]:
    """A pass (`evaluate_clinic` with `options`) on the clinic as committed, its writes read back and then
    undone."""
    library, settings = load_library(), Settings()
    engine = open_engine(db_url)
    with Session(for_writing(engine)) as session:
        session.connection()  # the write lock first, as the nightly holds it
        summary = evaluate_clinic(session, library, day, settings, **options)
        session.flush()
        written = {table: [tuple(row) for row in session.connection().execute(text(sql))]
                   for table, sql in WRITTEN.items()}
        # An alert about an item booked by the pass (a repeat overdue already) names it by id, and PostgreSQL
        # does not give a rolled-back sequence's ids again: the item is named by what it is instead.
        named = {row.id: (row.course_id, row.kind, str(row.due), row.tests, row.origin)
                 for row in session.connection().execute(text(ITEMS_BOOKED))}
        written["alert"] = [(f"overdue:{named[row[3]]}" if row[3] in named and row[0].startswith("overdue:item")
                             else row[0], *row[1:3], named.get(row[3], row[3]), *row[4:])
                            for row in written["alert"]]
        session.rollback()
    engine.dispose()
    said = {"raised": len(summary.raised), "resolved": len(summary.resolved), "outcomes": summary.outcomes,
            "follow_ups": len(summary.follow_ups), "reviewed": summary.reviewed, "settled": summary.settled}
    return written, {**said, "worker": summary.worker, "chart_fork": summary.chart_fork}


def _full_pass(db_url: str, worker_min_patients: int | None) -> tuple[dict, dict]:
    """A full pass (no review mark yet)."""
    return _pass(db_url, TODAY, worker_min_patients=worker_min_patients)


def _apart(function: str, **kwargs):
    """`function` of this module called with `kwargs` in a new interpreter (one thread: it may fork)."""
    code = ("import pickle, sys; import tests.test_review_worker as t; "
            f"sys.stdout.buffer.write(pickle.dumps(t.{function}(**pickle.loads(sys.stdin.buffer.read()))))")
    done = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(kwargs), capture_output=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return pickle.loads(done.stdout)


def _pass_apart(db_url: str, day: dt.date, fail: str | None = None, **options) -> tuple[dict, dict, int]:
    """`_pass` (in `_apart`'s process), and how many processes it forked. `fail`: "fork" (no process can be
    made), "worker" (the worker exits at once, forked or spawned), "charts" (the charts' fork raises)."""
    from tracker.services import review_worker

    forks, fork = [], os.fork

    def counted_fork():
        if fail == "fork":
            raise BlockingIOError(11, "Resource temporarily unavailable")
        forks.append(1)
        return fork()

    os.fork = counted_fork
    if fail == "worker":
        sys.executable = "/bin/false"
        review_worker.main = lambda *streams: None
    if fail == "charts":
        def no_connection(*args):
            raise RuntimeError("no connection")

        review_worker._review_charts_apart = no_connection
    return (*_pass(db_url, day, **options), len(forks))


def _clinic(tracker) -> None:
    with freeze_time(TODAY.isoformat()):
        tracker("synth --patients 1200 --seed 3")


def test_a_pass_with_a_review_worker_writes_what_a_pass_alone_writes(tracker, db_url):
    """Spawned here (this process has another thread), forked on PostgreSQL in a process of its own."""
    _clinic(tracker)
    alone, alone_said = _full_pass(db_url, None)
    shared, shared_said = _full_pass(db_url, 0)
    forked, forked_said, forks = _apart("_pass_apart", db_url=db_url, day=TODAY, worker_min_patients=0)
    assert alone_said.pop("worker") is None
    assert shared_said.pop("worker") == forked_said.pop("worker") == "ok"
    assert forks == (1 if db_url.startswith("postgresql") else 0)
    assert len(alone["alert"]) > 100 and alone_said["follow_ups"] > 0 and alone_said["outcomes"]
    assert shared == forked == alone
    assert shared_said == forked_said == alone_said


def test_a_clinic_under_the_threshold_gets_no_worker(tracker, db_url):
    _clinic(tracker)
    _, said = _full_pass(db_url, 1201)
    assert said["worker"] is None


def test_a_worker_that_fails_leaves_its_part_to_the_pass(tracker, db_url):
    """The worker's program exits at once (as if killed; spawned, or forked on PostgreSQL): the pass scans and
    reviews everything itself. With no process to be forked (a limit on processes), the worker is spawned."""
    _clinic(tracker)
    alone, alone_said = _full_pass(db_url, None)
    failed, failed_said, _ = _apart("_pass_apart", db_url=db_url, day=TODAY, fail="worker", worker_min_patients=0)
    spawned, spawned_said, forks = _apart("_pass_apart", db_url=db_url, day=TODAY, fail="fork",
                                          worker_min_patients=0)
    assert failed_said.pop("worker").startswith("failed: ")
    assert (spawned_said.pop("worker"), forks) == ("ok", 0)
    alone_said.pop("worker")
    assert failed == spawned == alone
    assert failed_said == spawned_said == alone_said


def test_a_pass_that_stops_listening_stops_its_worker(tracker, db_url):
    """A pass that raised after asking for reviews closes its worker without reading them: the worker is
    stopped, not left blocked on a reply nobody reads (nor waited for)."""
    from sqlmodel import select

    from tracker.db.tables import Patient
    from tracker.protocol_files import load_algorithm
    from tracker.services.review_worker import ReviewWorker

    _clinic(tracker)
    library, settings = load_library(), Settings()
    engine = open_engine(db_url)
    with Session(engine) as session:
        ids = session.exec(select(Patient.id)).all()
        worker = ReviewWorker.start(session, library, load_algorithm(None), TODAY, settings.alerts, min_patients=0)
        assert worker.prefilter_share() is not None
        worker.review(ids, ids)
        worker.close()
    engine.dispose()
    assert worker._process.returncode is not None
    assert worker.failure is None


def _written(db: str) -> dict:
    """What a nightly run wrote, without ids or clocks: alerts, items, reminders (their epoch aside)."""
    import re

    from tracker.db.engine import make_engine, resolve_url

    engine = make_engine(resolve_url(db))
    queries = {**WRITTEN, "reminder": "SELECT dedupe_key, kind, severity, patient_id, payload FROM reminder ORDER BY id"}
    with engine.connect() as conn:
        out = {table: [tuple(re.sub(r'"epoch": "[^"]*"', "", str(v)) for v in row) for row in conn.execute(text(sql))]
               for table, sql in queries.items()}
    engine.dispose()
    return out


def test_the_nightly_spawns_its_worker_before_the_roll_forward_and_writes_what_it_writes_alone(
        tracker, tmp_path, migrated_template, monkeypatch):
    """A cold night of a clinic past the worker's threshold: the worker is spawned first, and the night writes
    the alerts, items and reminders the same night writes without one (the same synthetic clinic twice)."""
    from tests.conftest import Tracker, fresh_db
    from tracker.services import review_worker

    alone = Tracker(fresh_db(tmp_path, migrated_template, "second.db"))
    for clinic in (tracker, alone):
        _clinic(clinic)
    monkeypatch.setattr(review_worker, "MIN_PATIENTS", 1000)
    with freeze_time(TODAY.isoformat()):
        tracker(f"nightly --as-of {TODAY.isoformat()}")
        status = tracker.json("nightly status --json")
        monkeypatch.setattr(review_worker, "MIN_PATIENTS", 1201)
        alone(f"nightly --as-of {TODAY.isoformat()}")
        alone_status = alone.json("nightly status --json")
    assert status[0]["counts"]["review_worker"] == "ok"
    assert "review_worker" not in alone_status[0]["counts"]
    assert _written(tracker.db) == _written(alone.db)


def test_a_worker_with_no_one_in_the_full_group_replies_for_each_group_in_turn(tracker, db_url):
    """A full pass whose full group is empty (no result that may breach, no override, no live alert): the
    worker's empty reply for it is not taken for the dated group's, which still gets its overdue alerts."""
    from tests.nightly_support import small_clinic
    from tracker.db.charts import ProtocolsOfCourses, patients_to_review, windowed_items

    small_clinic(tracker)
    day = dt.date(2026, 3, 2)  # the early labs are overdue
    library, settings = load_library(), Settings()
    engine = open_engine(db_url)
    with Session(engine) as session:
        items = windowed_items(session, day, settings.alerts)
        chosen = patients_to_review(session, ProtocolsOfCourses(session, library), library.vocabulary, day,
                                    settings.alerts, items_by_patient=items)
    engine.dispose()
    assert not chosen.full and chosen.dated
    results = {}
    for review_worker in (None, 0):
        engine = open_engine(db_url)
        with Session(for_writing(engine)) as session:
            session.connection()
            summary = evaluate_clinic(session, library, day, settings, worker_min_patients=review_worker)
            session.flush()
            results[review_worker] = ([tuple(row) for row in session.connection().execute(text(WRITTEN["alert"]))],
                                      summary.worker)
            session.rollback()
        engine.dispose()
    assert results[0][1] == "ok"
    assert results[0][0] == results[None][0]
    assert any(row[6] == "overdue" for row in results[None][0])


def _forked_or_spawned(db_url: str) -> tuple[bool, bool, int]:
    """In `_apart`'s process: whether a worker is forked alone and beside another thread; and a connection
    held open across the fork, queried after the worker is closed."""
    import threading

    from tracker.services.review_worker import ReviewWorker, _ForkedWorker

    engine = open_engine(db_url)
    with engine.connect() as conn:  # held open across the fork: the child lets its copy go unused
        worker = ReviewWorker(engine)
        alone = isinstance(worker._process, _ForkedWorker)
        worker.close()
        assert worker._process.returncode is not None
        answer = conn.execute(text("SELECT 1")).scalar()
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        worker = ReviewWorker(engine)
        beside = isinstance(worker._process, _ForkedWorker)
        worker.close()
    finally:
        release.set()
        other.join()
    engine.dispose()
    return alone, beside, answer


def test_the_worker_is_forked_on_postgresql_alone_and_never_beside_another_thread(db_url):
    """Forked (ready at once) only for a PostgreSQL database and when no other thread runs (this pytest
    process has one: no fork here); else spawned. Unused, either is closed at once, and the forked one leaves
    this process's connections working."""
    from tracker.services.review_worker import ReviewWorker, _ForkedWorker, _one_thread

    postgresql = db_url.startswith("postgresql")
    assert _apart("_forked_or_spawned", db_url=db_url) == (postgresql, False, 1)
    if not _one_thread():
        engine = open_engine(db_url)
        worker = ReviewWorker(engine)
        assert not isinstance(worker._process, _ForkedWorker)
        worker.close()
        engine.dispose()


def test_a_fork_lets_go_of_all_but_its_pipes_and_standard_streams():
    """`_let_go_all_but` in a child: the kept descriptors are as they were (0 among them: os.closerange(0, 0)
    would close everything), any other now points at /dev/null (its number still taken)."""
    import stat

    from tracker.services.review_worker import _let_go_all_but

    read, write = os.pipe()
    other, other_write = os.pipe()
    null = os.stat(os.devnull)
    pid = os.fork()
    if pid == 0:
        try:
            before = [os.fstat(fd) for fd in (0, 1, 2)]
            _let_go_all_but(0, 1, 2, write)
            kept = [os.fstat(fd) for fd in (0, 1, 2)] == before and stat.S_ISFIFO(os.fstat(write).st_mode)
            gone = all(os.path.samestat(os.fstat(fd), null) for fd in (read, other, other_write))
            os.write(write, b"ok" if kept and gone else b"wrong")
        finally:
            os._exit(0)
    os.close(write)
    got = os.read(read, 100)
    os.waitpid(pid, 0)
    for fd in (read, other, other_write):
        os.close(fd)
    assert got == b"ok"


def _incremental_pass(db_url: str, forked_min_charts: int | None) -> tuple[dict, dict]:
    """An incremental pass a month on (the full one committed before)."""
    return _pass(db_url, TODAY + dt.timedelta(days=30), incremental=True, forked_min_charts=forked_min_charts)


def _full_pass_committed(db_url: str) -> None:
    library, settings = load_library(), Settings()
    engine = open_engine(db_url)
    with Session(for_writing(engine)) as session:
        session.connection()
        evaluate_clinic(session, library, TODAY, settings, incremental=True)
        session.commit()
    engine.dispose()


def test_an_incremental_pass_with_its_charts_reviewed_in_a_fork_writes_what_it_writes_alone(tracker, db_url):
    """A typical night's dated group: its charts (patients with a checkpoint or a limit in a window) reviewed
    in a fork on PostgreSQL (`ForkedChartReviews`), the draws here: the same alerts, items and counts as the
    pass alone; a fork that fails, or cannot be made, leaves its charts to the pass. SQLite never forks."""
    _clinic(tracker)
    _full_pass_committed(db_url)
    day = TODAY + dt.timedelta(days=30)
    alone, alone_said = _incremental_pass(db_url, None)
    postgresql = db_url.startswith("postgresql")
    runs = {fail: _apart("_pass_apart", db_url=db_url, day=day, fail=fail, incremental=True, forked_min_charts=1)
            for fail in (None, "charts", "fork")}
    assert alone_said.pop("chart_fork") is None
    assert len(alone["alert"]) > 100 and alone_said["reviewed"] > alone_said["settled"] > 0
    assert alone_said["raised"] > 50  # new alerts, of charts and of draws
    assert [forks for _, _, forks in runs.values()] == ([1, 1, 0] if postgresql else [0, 0, 0])
    assert [said.pop("chart_fork") for _, said, _ in runs.values()] == (
        ["ok", "failed: RuntimeError: no connection", None] if postgresql else [None, None, None])
    for written, said, _ in runs.values():
        assert (written, said) == (alone, alone_said)


def _stopped_unheard(db_url: str) -> tuple[bool, bool]:
    """In `_apart`'s process: a charts' fork started, then closed unread; whether it was started, and reaped."""
    from sqlmodel import select

    from tracker.db.tables import Patient
    from tracker.protocol_files import load_algorithm
    from tracker.services.review_worker import ForkedChartReviews

    library, settings = load_library(), Settings()
    engine = open_engine(db_url)
    with Session(engine) as session:
        ids = session.exec(select(Patient.id)).all()
        forked = ForkedChartReviews.start(session, library, load_algorithm(None), ids, TODAY, settings.alerts,
                                          {}, min_charts=1)
    engine.dispose()
    if forked is None:
        return False, False
    pid = forked.pid
    forked.close()
    try:
        os.waitpid(pid, os.WNOHANG)
        return True, False
    except ChildProcessError:
        return True, forked.pid is None


def test_a_fork_for_charts_the_pass_stops_listening_to_is_stopped(tracker, db_url):
    """Closed before its reviews are read (the pass raised): the fork is stopped and reaped (PostgreSQL)."""
    _clinic(tracker)
    postgresql = db_url.startswith("postgresql")
    assert _apart("_stopped_unheard", db_url=db_url) == (postgresql, postgresql)


def test_an_interrupt_at_the_fork_never_unwinds_this_process_code_in_the_child(monkeypatch):
    """Ctrl-C reaches the whole process group: an interrupt landing in the child just after the fork is held
    until the child's own code runs, which then ends it (exit 1) instead of raising into the caller (where it
    would roll back the caller's transaction on the caller's connection)."""
    import signal

    from tracker.services import review_worker

    read, write = os.pipe()
    fork = os.fork

    def interrupted_fork():
        pid = fork()
        if pid == 0:
            os.kill(os.getpid(), signal.SIGINT)  # at once, in the child, before _fork's own code
        return pid

    monkeypatch.setattr(os, "fork", interrupted_fork)
    parent = os.getpid()
    try:
        pid = review_worker._fork(lambda: os.write(write, b"child ran"), write)
    except KeyboardInterrupt:
        if os.getpid() != parent:  # the child, unwinding the caller's code: what must not happen
            os.write(write, b"escaped")
            os._exit(3)
        raise
    os.close(write)
    got = os.read(read, 100)
    _, status = os.waitpid(pid, 0)
    os.close(read)
    assert (got, os.waitstatus_to_exitcode(status)) == (b"", 1)


def test_a_fork_that_cannot_be_made_leaves_no_pipe_open(monkeypatch):
    """With no process to be made (`os.fork` raising), `_ForkedWorker` raises for `ReviewWorker` to spawn
    instead, and the four ends of its two pipes are closed, not left to each failed night."""
    import pytest

    from tracker.services.review_worker import _ForkedWorker

    def no_fork():
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    before = sorted(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError):
        _ForkedWorker()
    assert sorted(os.listdir("/proc/self/fd")) == before
