"""Counting the SQL statements and round trips of one tracker command (issue 19), without touching tracker.

`counting_main` is what the benchmarks run in place of the `tracker` entry point: it installs event listeners
on SQLAlchemy's `Engine` and `Pool` classes (so every engine tracker makes is counted), calls tracker's CLI
`main`, and at exit writes the counts as JSON to the file named by `$TRACKER_BENCH_COUNTS`.

What is counted, per command:
- `statements`: statements the database executes. A plain execute is one; an executemany is one per
  parameter set (the driver sends the statement once per row); SQLAlchemy's "insertmanyvalues" batches
  (a Core insert of many rows on PostgreSQL becomes multi-row INSERT ... VALUES of up to 1,000 rows) are one
  per batch, as each batch is a separate execute.
- `round_trips`: on PostgreSQL, the times the client waits for the server: a plain execute is one; an
  executemany is one if psycopg pipelines it (psycopg 3 does when libpq supports pipeline mode: the rows are
  sent back to back and one Sync is waited for), else one per row; psycopg's implicit BEGIN before the first
  statement of a transaction, a COMMIT or ROLLBACK of an open transaction, and the pool's pre-ping of a
  reused connection are one each. Connecting is counted apart (`connections`). On SQLite nothing goes over a
  wire: the figure is the calls into the driver (execute or executemany, one each).
- `by_statement`: the 25 statement shapes executed most often (their first 90 characters), with their
  statement and round-trip counts: where a per-row loop shows.
- `by_time` (the phases of a long command, issue 19 item 3): the 25 statement shapes with the most time
  *attributed* to them: each statement, COPY and COMMIT gets the wall and CPU time (this process's) from
  its start to the start of the next one, i.e. the server's work on it plus what the client does with its
  rows before it sends the next; `first_s`/`last_s` say when (seconds since start-up) the shape ran first and
  last. Before the first statement is `(start-up)`; after the last, the time goes to the last. Wall time
  minus CPU time is waiting: on the server, or (on a loaded machine) for a core.

COPY (psycopg's `Cursor.copy`, which SQLAlchemy does not see) is counted at the cursor: one statement and one
round trip (its rows are streamed). Statements that bypass SQLAlchemy's cursor events otherwise (the SQLite
connection pragmas run as a connection is opened) are not counted.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import time
from collections import Counter

COUNTS_ENV = "TRACKER_BENCH_COUNTS"

# Run as `python -c COUNTING_MAIN ARGS...`: tracker's CLI with the counters installed.
COUNTING_MAIN = r"""
import os, sys
sys.path.insert(0, os.environ["TRACKER_BENCH_DIR"])
import statement_counts
statement_counts.install(os.environ[statement_counts.COUNTS_ENV])
from tracker.cli import main
sys.argv[0] = "tracker"
main()
"""


def _shape(statement: str) -> str:
    # Literal numbers and IN-list lengths vary per chunk; the shape is what repeats.
    text = re.sub(r"\s+", " ", statement).strip()
    text = re.sub(r"\b\d+\b", "N", text)
    return text[:90]


def _insertmanyvalues(context) -> bool:
    from sqlalchemy.engine.interfaces import ExecuteStyle

    return getattr(context, "execute_style", None) is ExecuteStyle.INSERTMANYVALUES


class StatementCounter:
    def __init__(self) -> None:
        self.statements = 0
        self.round_trips = 0
        self.connections = 0
        self.engine = None
        self.shapes: Counter = Counter()
        self.shape_trips: Counter = Counter()
        # The timeline: time attributed per shape, from one statement's start to the next one's.
        self.began = (time.perf_counter(), time.process_time())
        self._current = ("(start-up)", *self.began)
        self.shape_wall: Counter = Counter()
        self.shape_cpu: Counter = Counter()
        self.shape_span: dict[str, list[float]] = {"(start-up)": [0.0, 0.0]}

    def _mark(self, shape: str | None) -> None:
        """`shape` starts now (None: the end): the time since the previous mark goes to the previous shape."""
        wall, cpu = time.perf_counter(), time.process_time()
        previous, since_wall, since_cpu = self._current
        self.shape_wall[previous] += wall - since_wall
        self.shape_cpu[previous] += cpu - since_cpu
        if shape is None:
            self._current = (previous, wall, cpu)
            return
        offset = wall - self.began[0]
        span = self.shape_span.setdefault(shape, [offset, offset])
        span[1] = offset
        self._current = (shape, wall, cpu)

    # -- PostgreSQL (psycopg 3) ------------------------------------------------------------------------
    @staticmethod
    def _psycopg_status(dbapi_conn):
        """The libpq transaction status of a psycopg connection, or None for another driver."""
        info = getattr(dbapi_conn, "info", None)
        return getattr(info, "transaction_status", None) if info is not None else None

    @staticmethod
    def _idle(status) -> bool:
        return status is not None and status.name == "IDLE"

    def before_execute(self, conn, cursor, statement, parameters, context, executemany) -> None:
        dbapi_conn = cursor.connection
        self.engine = conn.dialect.name
        if executemany and _insertmanyvalues(context):
            # SQLAlchemy reports each "insertmanyvalues" batch (one multi-row INSERT ... VALUES, run by a
            # plain execute) as an executemany whose parameters are the batch's values flattened: one
            # statement and one wait, not a statement per value.
            executemany = False
        rows = len(parameters) if executemany and parameters is not None else 1
        trips = 1
        if conn.dialect.name == "postgresql":
            import psycopg

            pipelined = getattr(dbapi_conn, "_pipeline", None) is not None
            many_pipelined = executemany and psycopg.Pipeline.is_supported()
            if executemany and not (pipelined or many_pipelined):
                trips = rows
            if pipelined:
                trips = 0  # waits at the pipeline's Sync, counted when it is left
            status = self._psycopg_status(dbapi_conn)
            if self._idle(status) and not dbapi_conn.autocommit and not (pipelined or many_pipelined):
                trips += 1  # psycopg sends BEGIN first and waits for it (in a pipeline it rides along)
        self.statements += rows
        self.round_trips += trips
        shape = _shape(statement)
        self.shapes[shape] += rows
        self.shape_trips[shape] += trips
        self._mark(shape)

    def copy(self, dbapi_conn, statement: str) -> None:
        """A psycopg COPY: one statement; its rows are streamed, and the client waits once, at the end (and
        for psycopg's BEGIN first, outside a transaction)."""
        self.statements += 1
        trips = 1 + (self._idle(self._psycopg_status(dbapi_conn)) and not dbapi_conn.autocommit)
        self.round_trips += trips
        shape = _shape(str(statement))
        self.shapes[shape] += 1
        self.shape_trips[shape] += trips
        self._mark(shape)

    def end_transaction(self, conn) -> None:
        self._mark("COMMIT / ROLLBACK")
        if conn.dialect.name != "postgresql":
            return
        status = self._psycopg_status(conn.connection.driver_connection)
        if status is not None and not self._idle(status):
            self.round_trips += 1

    def pool_reset(self, dbapi_conn, _record, *_args) -> None:
        status = self._psycopg_status(dbapi_conn)
        if status is not None and not self._idle(status):
            self.round_trips += 1  # the pool rolls back a connection returned inside a transaction

    def pool_connect(self, _dbapi_conn, record) -> None:
        self.connections += 1
        record.info["bench_fresh"] = True

    def pool_checkout(self, dbapi_conn, record, _proxy) -> None:
        fresh = record.info.pop("bench_fresh", False)
        if not fresh and self._psycopg_status(dbapi_conn) is not None:
            self.round_trips += 1  # pool_pre_ping's SELECT 1 on a reused connection (tracker sets it on PG)

    def report(self) -> dict:
        top = self.shapes.most_common(25)
        self._mark(None)  # what ran after the last statement goes to it
        wall, cpu = time.perf_counter() - self.began[0], time.process_time() - self.began[1]
        timed = sorted(self.shape_wall, key=lambda s: -self.shape_wall[s])[:25]
        return {"engine": self.engine, "statements": self.statements, "round_trips": self.round_trips,
                "connections": self.connections,
                "by_statement": [{"sql": s, "statements": n, "round_trips": self.shape_trips[s]} for s, n in top],
                "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
                "by_time": [{"sql": s, "seconds": round(self.shape_wall[s], 3), "cpu_s": round(self.shape_cpu[s], 3),
                             "statements": self.shapes.get(s, 0), "first_s": round(self.shape_span[s][0], 3),
                             "last_s": round(self.shape_span[s][1], 3)}
                            for s in timed]}


def install(path: str) -> StatementCounter:
    """Count every statement any SQLAlchemy engine of this process executes; write the counts to `path` at
    exit (only from this process: a forked worker exits without running atexit handlers)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import Pool

    counter = StatementCounter()
    event.listen(Engine, "before_cursor_execute", counter.before_execute)
    event.listen(Engine, "commit", counter.end_transaction)
    event.listen(Engine, "rollback", counter.end_transaction)
    event.listen(Pool, "reset", counter.pool_reset)
    event.listen(Pool, "connect", counter.pool_connect)
    event.listen(Pool, "checkout", counter.pool_checkout)
    try:  # COPY goes to the driver's cursor, past SQLAlchemy's events: count it at the cursor
        import psycopg
    except ImportError:
        psycopg = None
    if psycopg is not None:
        original_copy = psycopg.Cursor.copy

        def counted_copy(cursor, statement, *args, **kwargs):
            counter.copy(cursor.connection, statement)
            return original_copy(cursor, statement, *args, **kwargs)
        psycopg.Cursor.copy = counted_copy
    pid = os.getpid()

    def write() -> None:
        if os.getpid() == pid:
            with open(path, "w") as out:
                json.dump(counter.report(), out)
    atexit.register(write)
    return counter
