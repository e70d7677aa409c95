"""A second process for a full clinic-wide pass: half of its work on the machine's other core.

A full pass (a cold night, a new protocol library) spends most of its time in Python: scanning every latest
result for a possible breach, loading some 18,000 charts at 100,000 patients and reviewing them, one core
busy and the other idle (threads would not help: the GIL). The worker is started as the nightly run begins
(or as the pass does), so that its start-up overlaps the roll forward and the pass's first queries: on
PostgreSQL forked from this process (`_ForkedWorker`: ready at once), else spawned (a new interpreter, which
imports what it needs first: half a second of CPU). Given the pass (`begin`), on its own connection it then

  1. finds the patients whose results of a test's latest day moved from their course's baseline past a relative bound (a
     few seeks per live course) and, on SQLite, scans the last third of the results against the absolute
     bounds (`prefilter_share`), while the main process scans the rest;
  2. loads and reviews the second half of the full group's charts while the main process does the first,
     then the whole dated group while the main process applies the full group's reviews.

It reads and decides, never writes: its reviews are sent back (pickled, those that say something; protocol
versions by key, not by value) and applied by the main process in the order a pass alone would have applied
them, so the alerts, follow-ups and reminders are the same, row for row. It must read what the main process
reads: the caller has committed its own writes before the pass (the nightly commits its roll forward first)
and holds the write lock, so no one else writes meanwhile (SQLite); on PostgreSQL other writers' commits may
land between two reads as they may between two statements of one pass (READ COMMITTED), and the pass's mark
was taken before either. If the worker fails anywhere, the main process does that part itself: a worker can
make a pass faster, never different or failed.

An incremental pass (a typical night) on PostgreSQL forks once more, for most of its dated group's charts
(`ForkedChartReviews`), on the same terms.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

from sqlalchemy import func, select

import tracker

# Below this many patients a full pass takes about a second or less: a process's start-up is not worth it.
MIN_PATIENTS = 20_000
# The worker's share of the scan of results (SQLite): a third, as it starts later (its own start-up) and
# also asks the changes from baseline.
SCAN_SHARE = 1 / 3


def _portable(reviews: list) -> tuple[list[int], list]:
    """The patients reviewed, and the reviews that say something (most say nothing), the course of each
    follow-up with its protocol as (drug, version): a protocol is large, and the receiver has it."""
    said = []
    for r in reviews:
        if r.follow_ups:
            r = replace(r, follow_ups=tuple(
                (replace(course, protocol=(course.protocol.id, course.protocol.content_hash)), follow)
                for course, follow in r.follow_ups))
        if r.alerts or r.follow_ups or r.judged or r.cleared:
            said.append(r)
    return [r.patient_id for r in reviews], said


def _restored(portable: tuple[list[int], list], protocol_of) -> list:
    """`_portable`'s reviews again, every patient's, their protocols those of `protocol_of`."""
    from tracker.core.review import Review
    from tracker.db.charts import CourseVersion

    patient_ids, said = portable
    by_patient = {}
    for r in said:
        if r.follow_ups:
            r = replace(r, follow_ups=tuple(
                (replace(course, protocol=protocol_of(CourseVersion(*course.protocol))), follow)
                for course, follow in r.follow_ups))
        by_patient[r.patient_id] = r
    return [by_patient.get(patient_id) or Review(patient_id) for patient_id in patient_ids]


_WORKER_MAIN = ("import sys\n"
                "if sys.argv[1] not in sys.path:\n"
                "    sys.path.insert(0, sys.argv[1])\n"
                "from tracker.services.review_worker import main\n"
                "main()\n")


def _package_root() -> str:
    """The directory this process imported tracker from."""
    return str(Path(tracker.__file__).resolve().parent.parent)


class ReviewWorker:
    """The main process's end. Every method returning data returns None once the worker has failed."""

    def __init__(self, engine=None):
        """Start the worker for a pass on `engine`'s database: forked if it may be (`forkable`), else
        spawned; it then waits for `begin` (or is closed unused)."""
        self.failure: str | None = None
        self.split_at: int | None = None  # the results past this id are the worker's to scan
        self._begun = False
        self._writer: threading.Thread | None = None
        self._awaited = 0  # replies still to come: the prefilter's share, then a group's reviews each
        self._process = None
        if engine is not None and forkable(engine):
            try:
                self._process = _ForkedWorker()
                return
            except OSError:  # no process could be made (a limit on processes, memory): spawned, or none
                pass
        try:
            # The same tracker as this process's, wherever the command runs from: -P keeps the working directory
            # off the path, and this tracker's directory goes first if it is not on the path already (a source tree).
            self._process = subprocess.Popen([sys.executable, "-P", "-c", _WORKER_MAIN, _package_root()],
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        except OSError as exc:  # none: the pass does it all itself
            self.failure = f"not started: {type(exc).__name__}: {exc}"

    @staticmethod
    def worth_it(session, min_patients: int | None = None) -> bool:
        """Whether a full pass of this clinic gets a worker: not with one core, a database only this process
        can open (SQLite in memory), or a clinic under `min_patients` (MIN_PATIENTS)."""
        from tracker.db.tables import Patient

        min_patients = MIN_PATIENTS if min_patients is None else min_patients
        url = session.get_bind().url
        if (os.cpu_count() or 1) < 2 or (url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")):
            return False
        return session.execute(select(func.count()).select_from(Patient)).scalar() >= min_patients

    @classmethod
    def start(cls, session, library, algorithm, today, settings, min_patients: int | None = None):
        """A worker begun for this pass, or None if not `worth_it`."""
        if not cls.worth_it(session, min_patients):
            return None
        worker = cls(session.get_bind())
        worker.begin(session, library, algorithm, today, settings)
        return worker

    def begin(self, session, library, algorithm, today, settings) -> None:
        """Give the worker its pass: the database (as `session` reads it) and the pass's parameters."""
        from tracker.db.tables import LabResult

        url = session.get_bind().url
        # SQLite reads a range of ids alone; PostgreSQL would scan the whole table for each share (a parallel
        # scan already, on both cores): there the main process scans it all.
        last = session.execute(select(func.max(LabResult.id))).scalar() if url.get_backend_name() == "sqlite" else None
        self.split_at = int(last * (1 - SCAN_SHARE)) if last else None
        self._begun, self._awaited = True, 1
        self._send((url.render_as_string(hide_password=False), library, algorithm, today, settings, self.split_at))

    def _send(self, message) -> None:
        """Write `message` without waiting for the worker to read it: the pass's parameters (the protocol
        library: ~100 KB, over a pipe's buffer) reach a worker still importing, which reads them only then.
        A thread writes; the next message is written after it."""
        if self.failure is not None:
            return
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        if self._writer is not None:
            self._writer.join()

        def write() -> None:
            try:
                self._process.stdin.write(data)
                self._process.stdin.flush()
            except (OSError, ValueError):  # the worker died (its pipe is closed), or was closed meanwhile:
                pass  # the replies it owes then never come, and the pass does that part itself

        self._writer = threading.Thread(target=write, name="review-worker-send", daemon=True)
        self._writer.start()

    def _receive(self, kind: str):
        if self.failure is not None:
            return None
        try:
            got, value = pickle.load(self._process.stdout)
        except Exception as exc:  # EOF (it died), a torn message
            self._fail(f"no {kind}: {type(exc).__name__}")
            return None
        if got != kind:
            self._fail(value if got == "error" else f"sent {got}, not {kind}")
            return None
        self._awaited -= 1
        return value

    def _fail(self, why: str) -> None:
        self.failure = why
        self.close()

    def prefilter_share(self) -> tuple[set[int], list] | None:
        """The worker's `prefilter_share`: the patients whose results moved from baseline, and the scan's
        candidates past `split_at`."""
        return self._receive("prefilter")

    def review(self, full_ids, dated_ids) -> None:
        """Ask for the reviews of `full_ids` (every rule) and then `dated_ids` (the dated rules' charts)."""
        self._send(("review", sorted(full_ids), sorted(dated_ids)))
        self._awaited += 2

    def reviews(self, protocol_of) -> list | None:
        """The next group's reviews, their protocols those of `protocol_of`."""
        portable = self._receive("reviews")
        return None if portable is None else _restored(portable, protocol_of)

    def close(self) -> None:
        """Stop the worker (done or not) and wait for it."""
        process = self._process
        if process is None:  # never started
            return
        if process.poll() is None and (self.failure is not None or self._awaited or not self._begun):
            # Failed, still working for a pass that has stopped listening (it raised: the worker would block on
            # a reply nobody reads), or never needed: killed. It only reads: nothing is left half done.
            process.kill()
        if self._writer is not None:
            self._writer.join()  # done, or failed on the closed pipe
        try:
            process.stdin.close()  # a worker that is done stops at its next read
        except OSError:
            pass
        process.wait()
        process.stdout.close()


# An incremental pass's dated group (services/evaluate.py): with at least this many charts to load, most are
# loaded and reviewed in a fork (`ForkedChartReviews`) while the pass settles and reviews the draws; fewer
# cost less than the fork and its connection (a typical night at 100,000 patients: 2,939).
MIN_FORKED_CHARTS = 1000
# The fork's share of those charts: the pass's own work meanwhile (the settled patients, the draws) is about
# what a fifth of them cost, so that both end together (a typical night at 100,000 patients).
FORKED_SHARE = 0.8


class ForkedChartReviews:
    """The charts of an incremental pass's dated group (its patients whose windowed items are more than
    draws: a checkpoint, a limit) loaded and reviewed on the dated rules in a fork of this process, on a
    connection of its own, while this process finds the patients settled by their draws and reviews the
    others' draws (a typical night at 100,000 patients: 0.2 s of CPU there beside 0.17 s here, on the
    machine's other core). The fork inherits what it reviews with (the library, the windowed items, the
    settings) and sends back its reviews (`_portable`). It reads what this process would: the pass's own
    writes before the dated group (the first group's) change no item of a chart of it (evaluate.py), and its
    other reads are of what the caller committed; it never writes. `reviews` returns None if it failed: the
    pass then reviews those charts itself."""

    def __init__(self, url: str, library, algorithm, patient_ids, today, settings, items_by_patient):
        self.patient_ids = patient_ids
        read, write = os.pipe()  # OSError here or from the fork: `start` gives the charts back to the pass

        def reply() -> None:  # in the fork
            gc.disable()
            os.dup2(2, 1)  # anything printed goes to stderr, not into this process's output
            with os.fdopen(write, "wb") as out:
                try:
                    value = ("reviews", _review_charts_apart(url, library, algorithm, patient_ids, today, settings,
                                                             items_by_patient))
                except BaseException as exc:
                    value = ("error", _error_line(exc))
                pickle.dump(value, out, protocol=pickle.HIGHEST_PROTOCOL)

        try:
            self.pid, self.failure = _fork(reply, write), None
        except OSError:
            os.close(read)
            raise
        finally:
            os.close(write)
        self._replies = os.fdopen(read, "rb")

    @classmethod
    def start(cls, session, library, algorithm, patient_ids, today, settings, items_by_patient,
              min_charts: int | None = None):
        """Of `patient_ids` (a dated group) those whose windowed items are more than draws, the first
        FORKED_SHARE of them, reviewed in a fork; None where there are fewer than `min_charts`
        (MIN_FORKED_CHARTS) or a fork may not be made here."""
        from tracker.core.review import reviewed_from_draws

        engine = session.get_bind()
        charted = [p for p in patient_ids if not reviewed_from_draws(items_by_patient.get(p))]
        if len(charted) < (MIN_FORKED_CHARTS if min_charts is None else min_charts) or not forkable(engine):
            return None
        try:
            return cls(engine.url.render_as_string(hide_password=False), library, algorithm,
                       charted[:round(len(charted) * FORKED_SHARE)], today, settings, items_by_patient)
        except OSError:  # no process could be made: the pass reviews them itself
            return None

    def reviews(self, protocol_of) -> list | None:
        """The reviews of `patient_ids`, in patient order, their protocols those of `protocol_of`; None (and
        `failure` says why) if the fork failed."""
        try:
            kind, value = pickle.load(self._replies)
        except Exception as exc:  # EOF (it died), a torn reply
            kind, value = "error", f"no reviews: {type(exc).__name__}"
        finally:
            self.close()
        if kind != "reviews":
            self.failure = value
            return None
        return _restored(value, protocol_of)

    def close(self) -> None:
        """Stop the fork if it is still working (the pass stopped listening), and wait for it."""
        if self.pid is None:
            return
        if not self._replies.closed:
            self._replies.close()
        child = _Child(self.pid)
        child.kill()  # if it is still working
        child.wait()
        self.pid = None


def _error_line(exc: BaseException) -> str:
    """A worker's failure as its reply says it: the exception's type and the first line of its text."""
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _review_charts_apart(url, library, algorithm, patient_ids, today, settings, items_by_patient) -> tuple:
    """`ForkedChartReviews`' work, in the fork: the charts loaded and reviewed on a connection of its own."""
    from sqlmodel import Session

    from tracker.db.charts import ProtocolsOfCourses
    from tracker.db.engine import make_engine
    from tracker.services.chart_reviews import review_charts

    engine = make_engine(url)
    with Session(engine) as session:
        return _portable(review_charts(session, ProtocolsOfCourses(session, library), library, patient_ids, today,
                                       settings, algorithm, with_results=False, items_by_patient=items_by_patient))


def forkable(engine) -> bool:
    """Whether a worker for a pass on `engine`'s database may be forked from this process: PostgreSQL (a
    session is the server's: the child holds this process's connections as bare descriptors and lets them go
    unused; SQLite keeps state of each open database in the process, which a child must not inherit:
    sqlite.org/howtocorrupt.html, 2.6), on Linux, with no other thread running, however started (a lock held
    by another thread at the fork would stay held in the child for ever: a long-running scheduler, a progress
    bar on a terminal, a test runner's I/O thread mean no fork)."""
    return engine.dialect.name == "postgresql" and sys.platform.startswith("linux") and _one_thread()


def _one_thread() -> bool:
    """No other thread in this process: the kernel's count, which also counts threads started outside
    `threading`."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def _fork(child, *keep: int) -> int:
    """Fork this process (`forkable`) and return the child's pid; OSError if no process can be made. The child
    runs `child()` with only the descriptors `keep` and the standard streams its own (`_let_go_all_but`),
    then ends with `os._exit`: it never returns into this process's code, runs none of its exit handlers,
    flushes none of its buffers (flushed before the fork: else written twice) and closes none of its
    connections (a connection's close would end this process's session). Interrupts are held off across the
    fork (a Ctrl-C landing in the child before its `try` would unwind this process's code there: rolling back
    its transaction on its socket), and so is the cycle collector (no finaliser of an object of this
    process's runs in the child)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    held = (signal.SIGINT, signal.SIGTERM)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    collecting = gc.isenabled()
    gc.disable()
    try:
        pid = os.fork()
    except BaseException:
        pid = -1
        raise
    finally:
        if pid != 0:  # this process: as it was
            if collecting:
                gc.enable()
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    if pid:
        return pid
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a scheduler's handlers are not the child's
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _let_go_all_but(0, 1, 2, *keep)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        child()
        code = 0
    finally:
        try:
            sys.stderr.flush()
        finally:
            os._exit(code)


class _Child:
    """A forked child as `subprocess.Popen` has one: `poll`, `kill`, `wait`."""

    def __init__(self, pid: int):
        self.pid, self.returncode = pid, None

    def poll(self) -> int | None:
        if self.returncode is None:
            self._reap(os.WNOHANG)
        return self.returncode

    def kill(self) -> None:
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)

    def wait(self) -> int:
        if self.returncode is None:
            self._reap(0)
        return self.returncode

    def _reap(self, options: int) -> None:
        try:
            pid, status = os.waitpid(self.pid, options)
        except ChildProcessError:  # reaped already (a process that ignores SIGCHLD has its children reaped)
            self.returncode = 0
            return
        if pid:
            self.returncode = os.waitstatus_to_exitcode(status)


class _ForkedWorker(_Child):
    """The worker as a fork of this process (`_fork`), with `subprocess.Popen`'s part that `ReviewWorker`
    uses (pipes as `stdin` and `stdout`, `poll`, `kill`, `wait`). What the worker needs is imported already,
    so it is ready at once, where a spawned one first spends half a second of CPU importing (in a pass that
    keeps both cores busy)."""

    def __init__(self):
        to_worker, from_pass = os.pipe()
        from_worker, to_pass = os.pipe()
        try:
            pid = _fork(lambda: main(os.fdopen(to_worker, "rb"), os.fdopen(to_pass, "wb")), to_worker, to_pass)
        except OSError:  # no fork (`ReviewWorker` spawns one instead): this end's pipes closed too
            os.close(from_pass)
            os.close(from_worker)
            raise
        finally:
            os.close(to_worker)
            os.close(to_pass)
        super().__init__(pid)
        self.stdin = os.fdopen(from_pass, "wb")
        self.stdout = os.fdopen(from_worker, "rb")


def _let_go_all_but(*keep: int) -> None:
    """Point every file descriptor of this process but `keep` at /dev/null: the kernel's copies of this
    process's files and sockets are let go (no data is sent on them), and their numbers stay taken, so that
    nothing of this process's left holding one can write into a file or connection the child opens later.
    The descriptors listed, not a range up to the limit (which may be a billion; and os.closerange(0, 0)
    closes every descriptor on Python 3.11)."""
    null = os.open(os.devnull, os.O_RDWR)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd != null and fd not in keep:
            try:
                os.dup2(null, fd)
            except OSError:  # the listing's own descriptor, closed by now
                pass
    os.close(null)


def main(inp=None, out=None) -> None:
    """The worker's end: read the pass's parameters, scan, then review what it is asked to. `inp` and `out`:
    its pipes (a forked worker's), else standard input and output (a spawned one's)."""
    # No cycle collection in this short life: it would walk every result row loaded, for nothing to free.
    gc.disable()
    out = out or os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed goes to stderr, not into the replies
    inp = inp or sys.stdin.buffer

    def send(kind: str, value) -> None:
        pickle.dump((kind, value), out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()

    try:
        # Imported before the pass's parameters come (a forked worker has them already): a worker spawned
        # early is ready when they do.
        from sqlmodel import Session

        from tracker.db.charts import ProtocolsOfCourses, prefilter_share, windowed_items
        from tracker.db.engine import make_engine
        from tracker.services.chart_reviews import review_charts

        try:
            url, library, algorithm, today, settings, split_at = pickle.load(inp)
        except EOFError:
            return  # closed unused

        engine = make_engine(url)
        with Session(engine) as session:
            protocol_of = ProtocolsOfCourses(session, library)
            send("prefilter", prefilter_share(session, protocol_of, library.vocabulary, split_at))
            items_by_patient = windowed_items(session, today, settings)
            try:
                _, full_ids, dated_ids = pickle.load(inp)
            except EOFError:
                return  # not needed after all
            for ids, with_results in ((full_ids, True), (dated_ids, False)):
                reviews = review_charts(session, protocol_of, library, ids, today, settings, algorithm,
                                        with_results=with_results, items_by_patient=items_by_patient)
                send("reviews", _portable(reviews))
        engine.dispose()
    except BrokenPipeError:
        return  # the main process is gone or stopped listening
    except BaseException as exc:  # reported, then the main process does this part itself
        try:
            send("error", _error_line(exc))
        except OSError:
            pass


if __name__ == "__main__":
    main()
