#!/usr/bin/env python3
"""A read + write floor of a nightly run on PostgreSQL (issue 19 item 2), reported *next to* run.py's floor.

run.py's `raw_floor` only reads: the rows a nightly run must look at. A cold first night also writes about
15,000 alerts, 16,000 audit events, 23,000 reminders and their deliveries at 100,000 patients, each row
checked against its foreign keys and entered in its indexes; no floor that only reads counts that work.
This script measures it in raw SQL:

    write_floor.py --before DB_BEFORE --after DB_AFTER [--as-of DAY] [--pg URL]

DB_AFTER is a clinic just after a nightly run, DB_BEFORE the same clinic just before it (e.g. a
`CREATE DATABASE ... TEMPLATE` copy made before the run). The rows the run inserted (those of `DB_AFTER`
with an id above the highest of `DB_BEFORE`, per table) are fetched first, as binary COPY data; then, in
one transaction on DB_BEFORE, run.py's floor queries are read and those rows are COPied in, in foreign-key
order, with their own ids; the transaction is rolled back. The faster of two passes is reported: reads
alone, writes alone, and both. Rows the run *updated* (checkpoint items judged, alerts resolved, delivery
states) are not written again: the figure is a floor of the inserts only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Referenced tables first: a reminder names its run, alert and item; a delivery its reminder.
TABLES = ("nightly_run", "item", "alert", "audit_event", "reminder", "reminder_delivery")


def _conninfo(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def inserted_rows(before: str, after: str) -> dict[str, tuple[int, bytes]]:
    """Per table: (rows, binary COPY data) of the rows `after` has beyond `before`'s highest id."""
    import psycopg

    with psycopg.connect(_conninfo(before)) as conn:
        highest = {t: conn.execute(f"SELECT coalesce(max(id), 0) FROM {t}").fetchone()[0] for t in TABLES}
    out = {}
    with psycopg.connect(_conninfo(after)) as conn:
        for table in TABLES:
            count = conn.execute(f"SELECT count(*) FROM {table} WHERE id > %s", (highest[table],)).fetchone()[0]
            data = bytearray()
            with conn.cursor().copy(f"COPY (SELECT * FROM {table} WHERE id > {int(highest[table])} ORDER BY id) "
                                    "TO STDOUT (FORMAT BINARY)") as copy:
                for chunk in copy:
                    data += chunk
            out[table] = (count, bytes(data))
    return out


def measure(before: str, rows: dict, as_of: dt.date, lead_days: int, passes: int = 2) -> dict:
    import psycopg

    sys.path.insert(0, str(HERE))
    from run import floor_queries

    queries = floor_queries(as_of, lead_days)
    best: dict = {}
    for _ in range(passes):
        with psycopg.connect(_conninfo(before)) as conn:
            began = time.perf_counter()
            read = {name: len(conn.execute(sql).fetchall()) for name, sql in queries.items()}
            reading = time.perf_counter() - began
            for table in TABLES:
                count, data = rows[table]
                if count:
                    with conn.cursor().copy(f"COPY {table} FROM STDIN (FORMAT BINARY)") as copy:
                        copy.write(data)
            conn.execute("SET CONSTRAINTS ALL IMMEDIATE")  # (none is deferred; said so that none waits)
            both = time.perf_counter() - began
            conn.rollback()
        figures = {"read_s": reading, "write_s": both - reading, "read_write_s": both}
        best = {k: min(v, best.get(k, v)) for k, v in figures.items()}
    return {**{k: round(v, 3) for k, v in best.items()}, "rows_read": read,
            "rows_written": {t: rows[t][0] for t in TABLES}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="URL of the clinic just before the run")
    parser.add_argument("--after", required=True, help="URL of the same clinic just after it")
    parser.add_argument("--as-of", required=True, help="The run's day (the floor's due window).")
    parser.add_argument("--lead-days", type=int, default=3)
    args = parser.parse_args()
    rows = inserted_rows(args.before, args.after)
    result = measure(args.before, rows, dt.date.fromisoformat(args.as_of), args.lead_days)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
