"""Bulk writing of a synthetic clinic: `synthesise_clinic` inserts the rows `clinic.Builder` makes.

SQLite gets the rows in stored form through the driver's executemany, with the randomly-updated
indexes dropped during the load and rebuilt after it (`bulk_load_journal` also swaps WAL for a rollback
journal meanwhile); PostgreSQL gets them through binary COPY (one statement per table and chunk, rows
streamed, `tracker.db.bulk.copy_rows(binary=True)`) with the foreign keys and secondary indexes re-created
after the load (`_defer_postgresql_checks`), its id sequences moved on and the loaded tables analysed once,
at the end.
Large clinics are built in a forked process while this one inserts (SQLite's rows cross by marshal).
"""

from __future__ import annotations

import datetime as dt
import json
import marshal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import event, func, insert, select, text

from tracker.core.protocol import Protocol
from tracker.db.bulk import copy_rows
from tracker.db.tables import (
    Assessment,
    Course,
    CoursePause,
    DoseChange,
    Item,
    LabResult,
    Patient,
    ProtocolSnapshot,
)
from tracker.errors import ConflictError, InputError
from tracker.services import audit
from tracker.services.context import Clinic
from tracker.services.synth.clinic import build_chunks
from tracker.services.synth.params import CHUNK, DRUG_WEIGHTS, FIELDS, SPAN_DAYS, stamp

TABLES = {"patient": Patient, "course": Course, "dose_change": DoseChange, "course_pause": CoursePause,
          "item": Item, "lab_result": LabResult, "assessment": Assessment}


@dataclass
class SynthSummary:
    patients: int = 0
    courses: int = 0
    items: int = 0
    results: int = 0
    assessments: int = 0
    dose_changes: int = 0
    pauses: int = 0
    seconds: float = 0.0
    drugs: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _produce(library, today, seed, patients, chunk, sqlite_values, send) -> None:
    """Build every chunk in order with one random stream and hand each to `send`. Stored-form rows (SQLite:
    only str, int, float and None) go marshalled, which writes and reads them in about 60 % of pickle's
    time (pickle memoises every tuple): about 4 s of the two processes' CPU at 100,000 patients. Rows of
    Python values (dates, timestamps: PostgreSQL) go pickled; parsing stored forms back in the loading
    process cost it four times what marshal saved (2.5 s per 10,000 patients)."""
    for item in build_chunks(library, today, seed, patients, chunk, sqlite_values):
        send(marshal.dumps(item) if sqlite_values else item)
    send(None)


def _chunks(library, today, seed, patients, chunk, sqlite_values, background: bool):
    """Yield (patients done, rows) chunks; with `background`, built in a forked process meanwhile."""
    if not background:
        yield from build_chunks(library, today, seed, patients, chunk, sqlite_values)
        return
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    queue = ctx.Queue(maxsize=3)
    worker = ctx.Process(target=_produce, args=(library, today, seed, patients, chunk, sqlite_values, queue.put),
                         daemon=True)
    worker.start()
    try:
        while True:
            item = queue.get()
            if item is None:
                break
            yield marshal.loads(item) if sqlite_values else item
        worker.join()
        if worker.exitcode:
            raise RuntimeError(f"synth: the row builder process failed (exit {worker.exitcode})")
    finally:
        if worker.is_alive():
            worker.kill()
            worker.join()

def _insert_plan(conn, name: str) -> tuple[str | None, tuple, list[str]]:
    """(driver SQL for SQLite or None, constant values for the columns not built here, column names).

    A column not built here whose default is NULL and that has no server default is written as a literal
    NULL (SQLite) or left out of the COPY (PostgreSQL), rather than appended to each of millions of rows."""
    table = TABLES[name].__table__
    built = FIELDS[name]
    extra, suffix, nulls = [], [], []
    for column in table.columns:
        if column.name in built:
            continue
        default = column.default.arg if column.default is not None and column.default.is_scalar else None
        if default is None and not column.nullable:
            raise RuntimeError(f"synth: column {name}.{column.name} is required and has no default")
        if default is None and column.server_default is None:
            nulls.append(column.name)
            continue
        extra.append(column.name)
        suffix.append(int(default) if isinstance(default, bool) and conn.dialect.name == "sqlite" else default)
    columns = [*built, *extra]
    sql = None
    if conn.dialect.name == "sqlite":
        quote = conn.dialect.identifier_preparer.quote
        sql = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in [*columns, *nulls])}) "
               f"VALUES ({', '.join(['?'] * len(columns) + ['NULL'] * len(nulls))})")
    return sql, tuple(suffix), columns


def synthesise_clinic(clinic: Clinic, patients: int, seed: int = 1, progress=None, chunk: int = CHUNK,
                      background: bool | None = None) -> SynthSummary:
    """Fill an empty database with `patients` synthetic patients; refuses a database that has patients.

    SQLite: rows go to the driver's executemany in their stored form (the INSERT names the table's
    columns, as Core's insert() would). PostgreSQL: binary COPY of the Python values (one per table and
    chunk) into tables whose foreign keys and secondary indexes are re-created after the load.
    Large clinics are built in a forked process while this one inserts (`background`, default for more
    than four chunks); the rows are the same either way.
    """
    session, library, today, user = clinic.session, clinic.library, clinic.today, clinic.user
    if patients < 1:
        raise InputError("patients", patients, "must be at least 1")
    began = time.perf_counter()
    conn = session.connection()
    if conn.execute(select(Patient.id).limit(1)).first() is not None:
        raise ConflictError("db: the database already has patients; synth needs an empty one")
    sqlite_values = conn.dialect.name == "sqlite"
    if background is None:
        background = patients > 4 * chunk
    plans = {name: _insert_plan(conn, name) for name in FIELDS}
    drugs = [d for d in DRUG_WEIGHTS if d in library.protocols] or sorted(library.protocols)
    _snapshots(conn, [library.protocols[d] for d in drugs], today)
    if sqlite_values:
        deferred = _defer_sqlite_indexes(conn)
    elif conn.dialect.name == "postgresql":
        deferred = _defer_postgresql_checks(conn)
    else:
        deferred = []
    counts = {name: 0 for name in FIELDS}
    for done, rows in _chunks(library, today, seed, patients, chunk, sqlite_values, background):
        for name in FIELDS:  # parents before children
            batch = rows[name]
            if not batch:
                continue
            sql, suffix, columns = plans[name]
            if suffix:
                batch = [row + suffix for row in batch]
            if sql is not None:
                conn.exec_driver_sql(sql, batch)
            elif conn.dialect.name == "postgresql":
                copy_rows(conn, TABLES[name].__table__, columns, batch, binary=True)
            else:
                conn.execute(insert(TABLES[name].__table__), [dict(zip(columns, row)) for row in batch])
            counts[name] += len(batch)
        if progress:
            progress(done, patients)
    for sql in deferred:
        conn.exec_driver_sql(sql)
    if conn.dialect.name == "postgresql":
        # Ids were given explicitly, so move each table's sequence past them (one statement for all).
        conn.execute(text("SELECT " + ", ".join(f"setval(pg_get_serial_sequence('{name}', 'id'), "
                                                f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {name}), false)"
                                                for name in FIELDS)))
        # The planner's statistics for the loaded tables now, not when autovacuum gets to them: the first
        # nightly run's whole-clinic queries are planned on them (ANALYZE sees this transaction's rows).
        conn.exec_driver_sql(f"ANALYZE {', '.join(FIELDS)}")
    summary = SynthSummary(
        patients=counts["patient"], courses=counts["course"], items=counts["item"],
        results=counts["lab_result"], assessments=counts["assessment"], dose_changes=counts["dose_change"],
        pauses=counts["course_pause"],
    )
    summary.drugs = dict(conn.execute(select(Course.drug, func.count()).group_by(Course.drug)
                                      .order_by(func.count().desc(), Course.drug)).all())
    summary.seconds = round(time.perf_counter() - began, 2)
    after = {k: v for k, v in summary.as_dict().items() if k != "seconds"}
    audit.record(session, user, "clinic.synth", "clinic", None, None, None,
                 {**after, "seed": seed, "today": today.isoformat()})
    return summary


# Index columns whose values arrive in ascending order during the load (rows are built patient by patient,
# course by course): such an index is appended to, so keeping it live costs little, and the work happens
# while the row builder runs, not after it. Others are rebuilt once, sorted, after the load. On PostgreSQL
# too (at 20,000 patients: the server's CPU during the load +2.7 s, after it -1.8 s of 5.8 s).
LOAD_ORDERED = {"patient_id", "course_id"}


# SQLite: the sorter memory and auxiliary threads for the index builds after the load. The sorter of a CREATE
# INDEX may use as much memory as the page cache holds; with 256 MiB most builds sort in one piece, in the
# loading thread. With 64 MiB the larger ones are sorted in several runs, and with one auxiliary thread a run
# is sorted and written by it while the loading thread goes on reading the table, and the runs are merged by
# both. The row builder has finished by then, so its core is free: the loading thread's share of the index
# builds at 100,000 patients fell from 22.4 s to 14.2-14.4 s of CPU (both threads: 23.1-23.4 s), measured with
# time.thread_time() on a copy of the loaded tables (see benchmarks/RESULTS.md, session 9).
INDEX_BUILD_CACHE_KIB = 65536
INDEX_BUILD_THREADS = 1


def _defer_sqlite_indexes(conn) -> list[str]:
    """SQLite bulk load: a large page cache for this connection, and the secondary indexes of the loaded
    tables that would be updated at random places dropped now and re-created (from their stored SQL) after
    the load, inside the same transaction: one sorted index build is several times faster than a million
    random B-tree inserts. Kept live: indexes led by a load-ordered column (appended to), and partial ones
    (the synthetic clinic puts few or no rows in them: rebuilding one would scan its whole table for them).
    Returns the statements to run afterwards: the index builds, with a smaller sorter memory and one
    auxiliary sorter thread (INDEX_BUILD_*), and the connection's settings restored after them."""
    cache_size = conn.exec_driver_sql("PRAGMA cache_size").scalar()
    conn.exec_driver_sql("PRAGMA cache_size=-262144")  # 256 MiB, this connection only
    # pysqlite opens the transaction at the first DML statement; make sure DDL below is inside it, so a
    # failed synth rolls the dropped indexes back too.
    conn.exec_driver_sql("DELETE FROM patient WHERE 0")
    names = ", ".join(f"'{name}'" for name in FIELDS)
    ordered = ", ".join(f"'{name}'" for name in sorted(LOAD_ORDERED))
    # One query: each index's SQL, whether it is partial, and its first column.
    indexes = conn.exec_driver_sql(
        "SELECT m.name, m.sql FROM sqlite_master m JOIN pragma_index_list(m.tbl_name) l ON l.name = m.name "
        f"WHERE m.type = 'index' AND m.sql IS NOT NULL AND m.tbl_name IN ({names}) AND NOT l.partial "
        f"AND COALESCE((SELECT i.name FROM pragma_index_info(m.name) i WHERE i.seqno = 0), '') NOT IN ({ordered}) "
        "ORDER BY m.rowid"
    ).all()
    deferred = []
    for name, sql in indexes:
        conn.exec_driver_sql(f'DROP INDEX "{name}"')
        deferred.append(sql)
    if not deferred:
        return [f"PRAGMA cache_size={cache_size}"]
    return [f"PRAGMA cache_size=-{INDEX_BUILD_CACHE_KIB}", f"PRAGMA threads={INDEX_BUILD_THREADS}", *deferred,
            "PRAGMA threads=0", f"PRAGMA cache_size={cache_size}"]


def _defer_postgresql_checks(conn) -> list[str]:
    """PostgreSQL bulk load into empty tables: the loaded tables' foreign keys and their secondary indexes
    (those no constraint owns: primary keys and unique constraints stay live; partial ones too, small, and
    their predicate would not read back in the same form; and those led by a LOAD_ORDERED column, appended
    to as the rows arrive) dropped now and re-created
    after the load, inside the same transaction, so a failed synth rolls the drops back too. Checking two
    foreign keys per row and maintaining a dozen B-trees as six million rows arrive cost the server about
    twice what one sorted build per index (in parallel workers) and one validating scan per foreign key
    cost. The definitions are read from the catalogue, so the schema ends as the migrations made it and
    every row is still checked against every constraint. Returns the statements to run afterwards."""
    names = ", ".join(f"'{name}'" for name in FIELDS)
    foreign_keys = conn.exec_driver_sql(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
        f"WHERE contype = 'f' AND conrelid::regclass::text IN ({names}) ORDER BY 1, 2").all()
    indexes = conn.exec_driver_sql(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        f"WHERE i.indrelid::regclass::text IN ({names}) AND i.indpred IS NULL "
        "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) "
        "AND (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = i.indrelid AND a.attnum = i.indkey[0]) "
        f"NOT IN ({', '.join(repr(c) for c in sorted(LOAD_ORDERED))}) ORDER BY 1").all()
    # One statement per table for the constraints, one for every index (the statement guard counts them).
    tables = sorted({table for table, _, _ in foreign_keys})
    for table in tables:
        drops = ", ".join(f'DROP CONSTRAINT "{name}"' for t, name, _ in foreign_keys if t == table)
        conn.exec_driver_sql(f'ALTER TABLE "{table}" {drops}')
    if indexes:
        conn.exec_driver_sql("DROP INDEX " + ", ".join(f'"{name}"' for name, _ in indexes))
    # Index builds sort in memory up to this much (per build, shared by its parallel workers).
    adds = [f'ALTER TABLE "{table}" ' + ", ".join(f'ADD CONSTRAINT "{name}" {definition}'
                                                   for t, name, definition in foreign_keys if t == table)
            for table in tables]
    return ["SET LOCAL maintenance_work_mem = '256MB'", *(definition for _, definition in indexes), *adds]


@contextmanager
def bulk_load_journal(engine):
    """SQLite: a rollback journal instead of WAL while a synthetic clinic loads, then WAL again; and, in a
    brand-new file, no syncs to disk until the load is over.

    A transaction that writes a gigabyte of new pages goes through the WAL once and is then copied into
    the database file by the checkpoint; a rollback journal only records the few pre-existing pages it
    changes, so the commit writes the data once (about 5 s less at 100,000 patients). The load is still
    one transaction, rolled back on failure. Changing the journal mode needs no other connection to the
    file; if there is one, the mode stays WAL and the load is just slower.

    A file with nothing in it yet but its schema (`_sqlite_file_is_new`) is loaded with `synchronous=OFF`
    (set as each connection is taken from the pool: SQLite refuses it inside a transaction): the commit does not wait for the
    gigabyte to reach the disk. A crash of the machine meanwhile could leave the file damaged, which loses
    nothing but the synthetic clinic; a file that holds anything else keeps its usual syncs. Afterwards
    the pool's connections are closed, so every later one starts with the usual `synchronous=NORMAL`.
    PostgreSQL: nothing to do.
    """
    if engine.dialect.name != "sqlite":
        yield
        return
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=DELETE")
        new = _sqlite_file_is_new(conn)

    def unsynchronised(dbapi_connection, _record, _proxy) -> None:
        dbapi_connection.execute("PRAGMA synchronous=OFF")  # checked out: no transaction open yet

    if new:
        event.listen(engine.pool, "checkout", unsynchronised)
    try:
        yield
    finally:
        if new:
            event.remove(engine.pool, "checkout", unsynchronised)
            engine.dispose()
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")


# Tables a freshly migrated file already has rows in.
SCHEMA_ONLY_TABLES = ("alembic_version", "audit_head")


def _sqlite_file_is_new(conn) -> bool:
    """True when every table but SCHEMA_ONLY_TABLES is empty: a file with just its schema."""
    tables = [name for (name,) in conn.exec_driver_sql(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        if name not in SCHEMA_ONLY_TABLES]
    if not tables:
        return True
    return not conn.exec_driver_sql(
        "SELECT " + " OR ".join(f'EXISTS (SELECT 1 FROM "{name}")' for name in tables)).scalar()


def _snapshots(conn, protocols: list[Protocol], today: dt.date) -> None:
    """One ProtocolSnapshot per protocol used, as db/snapshots.remember_protocol stores them."""
    existing = set(conn.execute(select(ProtocolSnapshot.content_hash)).scalars())
    rows = [
        {"content_hash": p.content_hash, "protocol_id": p.id, "version": p.version, "origin": p.origin,
         "content": json.dumps(p.model_dump(by_alias=True, mode="json"), sort_keys=True),
         "created_at": stamp(today - dt.timedelta(days=SPAN_DAYS + 30))}
        for p in protocols if p.content_hash not in existing
    ]
    if rows:
        conn.execute(insert(ProtocolSnapshot.__table__), rows)
