"""Bulk inserts for the nightly job's hot paths (tens of thousands of alerts, audit events, reminders).

SQLAlchemy Core's executemany builds and processes a parameter dict per row; on SQLite that bookkeeping
costs more than the insert itself. Here, on SQLite, the INSERT is compiled once and each row becomes a
tuple converted by the columns' own bind processors (so values are stored exactly as the ORM stores them),
handed to the driver's executemany.

PostgreSQL gets set-shaped statements instead of a statement per row (issue 19): `bulk_insert` is a COPY
(`bulk_insert_returning_ids` draws the ids from the sequence first, in one statement), `bulk_insert_new` the
same in a savepoint (a row a unique index refuses: a binary COPY into a temporary table and one `INSERT ...
SELECT ... ON CONFLICT DO NOTHING RETURNING` instead),
`update_rows` one `UPDATE ... FROM unnest(arrays)` per chunk; each array holds one column's values,
converted by the column's bind processor and cast to its type. Other databases go through Core as usual.
"""

from __future__ import annotations

import zlib
from operator import itemgetter

from sqlalchemy import Table, func, insert, select

CHUNK = 5000


def copy_rows(conn, table: Table, columns: list[str], rows: list[tuple], *, binary: bool = False,
              into: str | None = None, numbered: bool = False) -> None:
    """PostgreSQL: load `rows` (tuples of Python values in `columns` order) into `table` with one COPY
    ... FROM STDIN on the connection's own transaction: the rows are streamed, not executed one by one.
    Values pass through the columns' bind processors first (None for the plain types), as Core's insert
    would bind them; memoised, since the processed values (timestamps) repeat across rows. `binary`: COPY
    in the binary format with each column's declared type, so psycopg dumps every value with one known C
    dumper (text COPY looks a dumper up per value) and the server parses no text (synth's millions of rows).
    `into`: the name of a table with `table`'s columns to load instead (`_pg_staged`); `numbered`: each row's
    position (from 0) goes first, into a column `staged_order`. A failure comes as Core's own would
    (`sqlalchemy.exc.OperationalError`, `IntegrityError`...: the driver's error wrapped), so that the one
    mapping of database errors (tracker/db/engine.py `lock_conflict`, the CLI's) reads a COPY's as any
    statement's: a lock timeout is "database busy", not a traceback."""
    if not rows:
        return
    import psycopg
    from sqlalchemy.exc import DBAPIError

    dialect = conn.dialect
    quote = dialect.identifier_preparer.quote
    first = 1 if numbered else 0
    processors = [(i + first, _memoised(p)) for i, c in enumerate(columns)
                  if (p := table.c[c].type._cached_bind_processor(dialect)) is not None]
    names = [quote(c) for c in columns]
    sql = f"COPY {quote(into or table.name)} ({', '.join(['staged_order'] * first + names)}) FROM STDIN"
    cursor = conn.connection.driver_connection.cursor()
    try:
        with cursor.copy(sql + (" (FORMAT BINARY)" if binary else "")) as copy:
            if binary:
                copy.set_types(["int4"] * first + [_PG_BINARY_TYPES.get(name, name) for name in (
                    table.c[c].type.compile(dialect=dialect).split("(")[0].lower() for c in columns)])
            write = copy.write_row
            if numbered:
                rows = ((n, *row) for n, row in enumerate(rows))
            if not processors:
                for row in rows:
                    write(row)
                return
            for row in rows:
                values = list(row)
                for i, process in processors:
                    values[i] = process(values[i])
                write(values)
    except psycopg.Error as exc:
        raise DBAPIError.instance(sql, None, exc, psycopg.Error, dialect=dialect) from exc
    finally:
        cursor.close()


# psycopg's names for the SQL types tracker's tables declare (VARCHAR, TEXT and DATE are its own).
_PG_BINARY_TYPES = {"timestamp with time zone": "timestamptz", "float": "float8", "integer": "int4",
                    "boolean": "bool"}


def _sqlite_plan(conn, table: Table, columns: list[str]):
    dialect = conn.dialect
    quote = dialect.identifier_preparer.quote
    sql = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
           f"VALUES ({', '.join('?' for _ in columns)})")
    processors = [table.c[c].type._cached_bind_processor(dialect) for c in columns]
    return sql, processors


def _defaults(table: Table, given) -> dict:
    """What Core's insert() would add for the columns a row leaves out: their scalar Python defaults."""
    defaults = {}
    for column in table.columns:
        if column.name in given or column.default is None:
            continue
        if not column.default.is_scalar:
            raise ValueError(f"bulk insert into {table.name}: give {column.name} (its default is computed)")
        defaults[column.name] = column.default.arg
    return defaults


def _memoised(process):
    """A bind processor remembering its answers: the processed columns here are dates and timestamps,
    which repeat across a batch (every row of a run has the same created_at), and converting them is the
    costly part."""
    if process is None:
        return None
    seen: dict = {}

    def cached(value):
        try:
            return seen[value]
        except KeyError:
            result = seen[value] = process(value)
            return result
        except TypeError:  # unhashable
            return process(value)
    return cached


def _tuples(rows, columns, processors, defaults):
    # The processed columns (dates, timestamps) by position; a row holding every column is read in one call.
    processed = [(i, _memoised(p)) for i, p in enumerate(processors) if p is not None]
    fallback = [(c, defaults.get(c)) for c in columns]  # what a row without a column gets
    read = itemgetter(*columns) if len(columns) > 1 else (lambda row: (row[columns[0]],))
    for row in rows:
        try:
            values = read(row)
        except KeyError:
            values = tuple([row.get(c, d) for c, d in fallback])
        if processed:
            values = list(values)
            for i, process in processed:
                values[i] = process(values[i])
            values = tuple(values)
        yield values


def _columns(table: Table, rows: list[dict]) -> tuple[list[str], dict]:
    """The columns the rows give or have a scalar default for, in table order, and those defaults."""
    given = set().union(*(row.keys() for row in rows))
    defaults = _defaults(table, given)
    return [c.name for c in table.columns if c.name in given or c.name in defaults], defaults


def _pg_arrays(conn, table: Table, columns: list[str], rows: list[dict], defaults: dict) -> tuple[list[str], list]:
    """PostgreSQL: per column, its `%s::TYPE[]` placeholder and the list of its values (bind-processed;
    floats as floats, since psycopg dumps a list by the type of its values and ints would mix in)."""
    dialect = conn.dialect
    placeholders, arrays = [], []
    for name in columns:
        column = table.c[name]
        process = column.type._cached_bind_processor(dialect)
        default = defaults.get(name)
        values = [row.get(name, default) for row in rows]
        if process is not None:
            values = [process(v) for v in values]
        try:
            python_type = column.type.python_type
        except NotImplementedError:
            python_type = None
        if python_type is float:
            values = [None if v is None else float(v) for v in values]
        placeholders.append(f"%s::{column.type.compile(dialect=dialect)}[]")
        arrays.append(values)
    return placeholders, arrays


def _pg_staged(conn, table: Table, columns: list[str], rows: list[tuple]) -> str:
    """PostgreSQL: `rows` (tuples in `columns` order) in a temporary table of `table`'s `columns` and their
    order (`staged_order`), loaded by one binary COPY; returns its quoted name. Text in arrays of parameters
    is dumped value by value in Python (a cold night's 15,064 alerts: 0.25 s of the client's); a binary COPY
    formats the same rows in C (0.02 s with the server's part). One such table per table and set of columns,
    made at its first use in a transaction, dropped as it ends and emptied before each use: not dropped after
    each, as a DROP makes psycopg discard every statement it has prepared on the connection."""
    quote = conn.dialect.identifier_preparer.quote
    name = f"staged_{table.name}_{zlib.crc32(','.join(columns).encode()):08x}"
    conn.exec_driver_sql(
        f"CREATE TEMPORARY TABLE IF NOT EXISTS {quote(name)} ON COMMIT DROP AS SELECT 0 AS staged_order, "
        f"{', '.join(quote(c) for c in columns)} FROM {quote(table.name)} WITH NO DATA")
    conn.exec_driver_sql(f"TRUNCATE {quote(name)}")
    copy_rows(conn, table, columns, rows, binary=True, into=name, numbered=True)
    return quote(name)


def update_rows(conn, table: Table, rows: list[dict], key: str = "id") -> None:
    """Update each row of `table` whose `key` is a row's `key` with the row's other values (every row gives
    the same columns). PostgreSQL: one `UPDATE ... FROM unnest(...)` per chunk; elsewhere Core's
    executemany."""
    if not rows:
        return
    columns = [key] + [c for c in rows[0] if c != key]
    if conn.dialect.name != "postgresql":
        from sqlalchemy import bindparam, update

        statement = (update(table).where(table.c[key] == bindparam(f"b_{key}"))
                     .values({c: bindparam(f"b_{c}") for c in columns[1:]}))
        for start in range(0, len(rows), CHUNK):
            conn.execute(statement, [{f"b_{c}": row[c] for c in columns} for row in rows[start:start + CHUNK]])
        return
    quote = conn.dialect.identifier_preparer.quote
    for start in range(0, len(rows), CHUNK):
        placeholders, arrays = _pg_arrays(conn, table, columns, rows[start:start + CHUNK], {})
        names = ", ".join(f"v{n}" for n in range(len(columns)))
        sets = ", ".join(f"{quote(c)} = new.v{n}" for n, c in enumerate(columns) if n)
        conn.exec_driver_sql(
            f"UPDATE {quote(table.name)} AS t SET {sets} FROM unnest({', '.join(placeholders)}) AS new({names}) "
            f"WHERE t.{quote(key)} = new.v0", tuple(arrays))


def bulk_insert(conn, table: Table, rows: list[dict]) -> None:
    """Insert `rows` (dicts keyed by column name) into `table`. A key missing from a row gets the column's
    scalar default, else NULL, as with Core's insert()."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        columns, defaults = _columns(table, rows)
        # Binary: a cold night's 23,059 reminders 0.06-0.12 s of text COPY, 0.03 s binary.
        copy_rows(conn, table, columns, [tuple(row.get(c, defaults.get(c)) for c in columns) for row in rows],
                  binary=True)
        return
    if conn.dialect.name != "sqlite":
        for start in range(0, len(rows), CHUNK):
            conn.execute(insert(table), rows[start:start + CHUNK])
        return
    given = set().union(*(row.keys() for row in rows))
    defaults = _defaults(table, given)
    columns = [c.name for c in table.columns if c.name in given or c.name in defaults]
    sql, processors = _sqlite_plan(conn, table, columns)
    for start in range(0, len(rows), CHUNK):
        conn.exec_driver_sql(sql, list(_tuples(rows[start:start + CHUNK], columns, processors, defaults)))


def _drawn_ids(conn, table: Table, count: int) -> list[int]:
    """PostgreSQL: `count` new ids drawn from `table`'s sequence in one statement, ascending."""
    return sorted(conn.exec_driver_sql(
        "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)", (table.name, count)).scalars())


def bulk_insert_returning_ids(conn, table: Table, rows: list[dict]) -> list[int]:
    """Insert `rows` and return their new primary keys (`id`), in order.

    SQLite: the first row goes in alone (RETURNING its id), which takes the database's write lock for the
    rest of the transaction, so no other connection can insert until commit; the others then get the
    following ids explicitly. PostgreSQL: the ids drawn from the table's sequence at once, the rows COPied
    with them. Other databases: Core executemany with RETURNING, ordered by parameters.
    """
    if not rows:
        return []
    if conn.dialect.name == "postgresql":
        # The ids are drawn from the table's sequence in one statement, then the rows are COPied with them:
        # two statements instead of a row each (psycopg's executemany with RETURNING).
        ids = _drawn_ids(conn, table, len(rows))
        bulk_insert(conn, table, [{**row, "id": row_id} for row, row_id in zip(rows, ids)])
        return ids
    if conn.dialect.name != "sqlite":
        ids = []
        for start in range(0, len(rows), CHUNK):
            result = conn.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True),
                                  rows[start:start + CHUNK])
            ids.extend(result.scalars())
        return ids
    first = conn.execute(insert(table).returning(table.c.id), rows[0]).scalar_one()
    # Every id above `first` is free: `first` was the largest id + 1 and nobody else can write now.
    highest = conn.execute(select(func.max(table.c.id))).scalar_one()
    if highest != first:  # cannot happen while we hold the write lock; refuse rather than guess
        raise RuntimeError(f"bulk insert into {table.name}: id {first} is not the newest ({highest})")
    rest = [{**row, "id": first + n} for n, row in enumerate(rows[1:], start=1)]
    bulk_insert(conn, table, rest)
    return [first + n for n in range(len(rows))]


def bulk_insert_new(conn, table: Table, rows: list[dict], key: str) -> list[tuple[int, dict]]:
    """Insert `rows`, skipping each one a unique index refuses (another writer already made it); returns (new
    id, row) for the rows inserted, in order. `key` is a column whose value tells the rows apart (unique
    within `rows`). As `bulk_insert_new_making`, making nothing."""
    return [(row_id, row) for row_id, row, _ in bulk_insert_new_making(conn, table, rows, key, _nothing)]


def _nothing(_row_id, _row) -> None:
    return None


def bulk_insert_new_making(conn, table: Table, rows: list[dict], key: str, make) -> list[tuple[int, dict, object]]:
    """Insert `rows`, skipping each one a unique index refuses (another writer already made it); returns (new
    id, row, `make(new id, row)`) for the rows inserted, in order. `key` is a column whose value tells the
    rows apart (unique within `rows`). `make` reads its arguments only (no database: on PostgreSQL it runs
    while the connection is busy with the COPY) and may be called again for a row (after a fallback, below).

    SQLite: as `bulk_insert_returning_ids` (the first row that goes in takes the write lock and gives the
    next ids), then the rows that went in are read back by id. PostgreSQL: the ids drawn from the sequence,
    the rows COPied with them in a savepoint, and each row's `make` called as it streams, so that the client
    makes what follows from the rows while the server writes them (a cold night's 15,064 alerts and their
    audit rows at 100,000 patients: 1.11-1.15 -> 0.99-1.05 s; the foreign keys are checked after the last
    row, so only the rows' own writing overlaps). A row a unique index refuses fails the COPY (a writer that
    skipped the write lock): the savepoint is rolled back, what was made is dropped, and the rows go in again
    by a staged `INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING` (`_pg_staged`), `make` called for
    those that went in."""
    if not rows:
        return []
    if conn.dialect.name == "postgresql":
        columns, defaults = _columns(table, rows)
        values = [tuple(row.get(c, defaults.get(c)) for c in columns) for row in rows]
        made = _pg_copy_new(conn, table, columns, rows, values, make)
        if made is not None:
            return made
        quote = conn.dialect.identifier_preparer.quote
        names = ", ".join(quote(c) for c in columns)
        staged = _pg_staged(conn, table, columns, values)
        ids = dict((value, row_id) for row_id, value in conn.exec_driver_sql(
            f"INSERT INTO {quote(table.name)} ({names}) SELECT {names} FROM {staged} ORDER BY staged_order "
            f"ON CONFLICT DO NOTHING RETURNING id, {quote(key)}"))
        return [(ids[row[key]], row, make(ids[row[key]], row)) for row in rows if row[key] in ids]
    return [(row_id, row, make(row_id, row)) for row_id, row in _sqlite_insert_new(conn, table, rows)]


def _pg_copy_new(conn, table: Table, columns: list[str], rows: list[dict], values: list[tuple], make):
    """PostgreSQL: `rows` (as `values`, tuples in `columns` order) COPied into `table` with ids drawn from
    its sequence, in a savepoint, `make` called for each as it streams; the (id, row, made) list, or None
    if a unique index refused a row (the savepoint rolled back)."""
    import psycopg
    from sqlalchemy.exc import IntegrityError

    ids = _drawn_ids(conn, table, len(rows))
    made = []

    def streamed():
        for row_id, row, row_values in zip(ids, rows, values):
            yield (row_id, *row_values)
            made.append((row_id, row, make(row_id, row)))  # while the server writes the row

    conn.exec_driver_sql("SAVEPOINT bulk_insert_new")
    try:
        copy_rows(conn, table, ["id", *columns], streamed(), binary=True)
    except IntegrityError as exc:
        if not isinstance(exc.orig, psycopg.errors.UniqueViolation):
            raise
        # Undone and ended: what follows in the transaction is not left inside the savepoint.
        conn.exec_driver_sql("ROLLBACK TO SAVEPOINT bulk_insert_new")
        conn.exec_driver_sql("RELEASE SAVEPOINT bulk_insert_new")
        return None
    conn.exec_driver_sql("RELEASE SAVEPOINT bulk_insert_new")
    return made


def _sqlite_insert_new(conn, table: Table, rows: list[dict]) -> list[tuple[int, dict]]:
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    single = sqlite_insert(table).on_conflict_do_nothing().returning(table.c.id)
    for at, row in enumerate(rows):
        first = conn.execute(single, row).scalar_one_or_none()
        if first is not None:
            break
    else:
        return []
    highest = conn.execute(select(func.max(table.c.id))).scalar_one()
    if highest != first:  # cannot happen while we hold the write lock; refuse rather than guess
        raise RuntimeError(f"bulk insert into {table.name}: id {first} is not the newest ({highest})")
    rest = [{**row, "id": first + n} for n, row in enumerate(rows[at + 1:], start=1)]
    if rest:
        given = set().union(*(r.keys() for r in rest))
        defaults = _defaults(table, given)
        columns = [c.name for c in table.columns if c.name in given or c.name in defaults]
        sql, processors = _sqlite_plan(conn, table, columns)
        sql += " ON CONFLICT DO NOTHING"
        for start in range(0, len(rest), CHUNK):
            conn.exec_driver_sql(sql, list(_tuples(rest[start:start + CHUNK], columns, processors, defaults)))
    inserted = set(conn.execute(select(table.c.id).where(table.c.id.between(first, first + len(rest)))).scalars())
    return [(first, rows[at])] + [(r["id"], rows[at + n]) for n, r in enumerate(rest, start=1) if r["id"] in inserted]


# What an ANALYZE inside a nightly's transaction reads of a table (`analyze_if_outdated`): the columns the
# transaction's later statements filter, join or anti-join it on (the review groups' lookups of live alerts,
# the reminders' anti-joins). The other columns, long texts among them (an alert's message, suggestions and
# sources; a reminder's payload), were most of its cost: an alert table of 15,000 rows 78-91 ms whole, 27-28
# ms these; a reminder table of 23,000 rows 78-107 and 38-42 ms. The row count is refreshed either way; autovacuum
# analyzes every column after the commit, as it always did.
ANALYZED_COLUMNS = {
    "alert": ("id", "condition_key", "patient_id", "course_id", "item_id", "kind", "status", "raised_on",
              "reopened_on", "snoozed_until"),
    "reminder": ("id", "dedupe_key", "run_id", "patient_id", "item_id", "alert_id"),
}


def analyze_if_outdated(conn, tables: tuple[str, ...]) -> None:
    """PostgreSQL: ANALYZE those of `tables` that this transaction has changed, since it last analyzed them
    here, by at least 1,000 rows and by more than half the rows their statistics count (a cold night's alerts
    into an empty table). A typical night adds a few percent, which moves no plan; its ANALYZE sampled 30,000
    rows of an ever-growing reminder table each night for nothing (autovacuum analyzes after the commit as
    usual). The view also holds the counts of the backend's earlier transactions it has not yet reported
    (PostgreSQL 15 reports at most once a second): at worst an ANALYZE more, never one less. The counts
    are the transaction's since it began: what it had changed at its own last ANALYZE of a table is kept
    (`conn.info`), so that a table analyzed after its last insert is not analyzed again (a cold night's
    alerts: once after each review group, not a third time before the reminders)."""
    rows = conn.exec_driver_sql(
        "SELECT c.relname, s.n_tup_ins + s.n_tup_upd + s.n_tup_del, c.reltuples, "
        "pg_current_xact_id_if_assigned()::text FROM pg_class c "
        "JOIN pg_stat_xact_user_tables s ON s.relid = c.oid WHERE c.oid = ANY(%s::regclass[])", (list(tables),)).all()
    xact = rows[0][3] if rows else None
    seen = {key: n for key, n in conn.info.get("analyzed_in_xact", {}).items() if key[0] == xact and xact}
    outdated = []
    for name, changed, counted, _ in rows:
        since = changed - seen.get((xact, name), 0)  # rows changed since this transaction's ANALYZE of it
        if since >= 1000 and since > max(counted, 0) / 2:
            outdated.append((name, changed))
    if outdated:
        conn.exec_driver_sql("ANALYZE " + ", ".join(
            f"{name} ({', '.join(ANALYZED_COLUMNS[name])})" if name in ANALYZED_COLUMNS else name
            for name, _ in outdated))
        seen.update(((xact, name), changed) for name, changed in outdated)
    conn.info["analyzed_in_xact"] = seen
