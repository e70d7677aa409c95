#!/usr/bin/env python3
"""A large PostgreSQL clinic in minutes: a synthetic clinic copied N times inside the server (issue 19 item 3).

    tracker --db "$BASE/seed" synth --patients 10000 --seed 1 --as-of DAY     # a fresh clinic, never reviewed
    .venv/bin/python benchmarks/replicate.py --pg "$TRACKER_TEST_PG" --seed-db seed --to tracker_rep_1000000 --copies 100
    .venv/bin/python benchmarks/run.py --pg "$TRACKER_TEST_PG" --pg-prefix tracker_rep --sizes 1000000 --reuse --no-ics --as-of DAY

`tracker synth --patients 1000000` streams every row from Python (about 14 million items and 44 million
results); on a shared machine that takes hours. Here the server copies the seed clinic's rows (patients,
courses, dose changes, pauses, items, results, assessments) `copies - 1` more times with `INSERT ... SELECT`,
each copy's ids shifted past the previous one's (and every reference to them: a course's patient and the
course it switched from, an item's course, patient and merged-into item), MRNs and item UIDs re-made from
the new ids in synth's own shapes (`SYN` + seven digits; UID prefix + twelve digits). The sequences are then
moved past the ids and the tables analysed, as synth does (no VACUUM: synth runs none either).

The result has the same rows per patient as the seed (N identical copies of each patient's chart, each with
its own ids): the work a nightly run or a worklist does per patient is the same as in a synthesised clinic
of that size, but it is not a different clinic per patient, so use it for growth (cost per patient), not for
the distribution of alerts. The seed must be fresh (`synth` only, no nightly run yet), as the clone database
starts as a copy of it (`CREATE DATABASE ... TEMPLATE`), audit event included.
"""

from __future__ import annotations

import argparse
import sys
import time

# Per table: the columns that hold ids of a copied table (shifted by that table's offset per copy).
SHIFTED = {
    "patient": {"id": "patient"},
    "course": {"id": "course", "patient_id": "patient", "switched_from_id": "course"},
    "dose_change": {"id": "dose_change", "course_id": "course"},
    "course_pause": {"id": "course_pause", "course_id": "course"},
    "item": {"id": "item", "course_id": "course", "patient_id": "patient", "merged_into_id": "item"},
    "lab_result": {"id": "lab_result", "patient_id": "patient"},
    "assessment": {"id": "assessment", "patient_id": "patient"},
}
# Unique text columns, re-made from the row's new id in synth's shapes.
REMADE = {
    ("patient", "mrn"): "'SYN' || lpad(({id})::text, 7, '0')",
    ("item", "uid"): "left(t.uid, 24) || lpad(({id})::text, 12, '0')",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg", required=True, metavar="URL", help="A PostgreSQL base URL that may create databases.")
    parser.add_argument("--seed-db", required=True, help="The database holding the fresh synthetic clinic.")
    parser.add_argument("--to", required=True, help="The database to make (dropped first if it exists).")
    parser.add_argument("--copies", type=int, required=True, help="Copies of the seed clinic in the result (>= 1).")
    args = parser.parse_args()
    if args.copies < 1:
        print("replicate: --copies must be at least 1", file=sys.stderr)
        return 2

    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(args.pg).set(drivername="postgresql")
    with psycopg.connect(base.render_as_string(hide_password=False), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{args.to}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{args.to}" TEMPLATE "{args.seed_db}"')
    url = base.set(database=args.to).render_as_string(hide_password=False)
    with psycopg.connect(url) as conn:
        # A bulk load: the secondary indexes of the copied tables are dropped and re-built after it (one sorted
        # build each instead of millions of inserts at random places), with memory for those sorts.
        conn.execute("SET maintenance_work_mem = '512MB'")
        names = ", ".join(f"'{t}'" for t in SHIFTED)
        indexes = conn.execute(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = 'public' "
            f"AND i.tablename IN ({names}) AND NOT EXISTS (SELECT 1 FROM pg_constraint c "
            "WHERE c.conname = i.indexname)").fetchall()
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        # Foreign keys too: checked row by row (a trigger per row, 58 million at 1,000,000 patients) they cost
        # more than the copy; added back after it, each is validated by one join.
        foreign = conn.execute(
            "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
            f"WHERE c.contype = 'f' AND c.conrelid::regclass::text IN ({names})").fetchall()
        for table, name, _ in foreign:
            conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        offsets = {t: conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM {t}").fetchone()[0] for t in SHIFTED}
        if offsets["patient"] * args.copies > 9_999_999:
            print("replicate: MRNs have seven digits; at most 9,999,999 patients", file=sys.stderr)
            return 2
        for table, shifted in SHIFTED.items():
            columns = [r[0] for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' "
                "AND table_name = %s ORDER BY ordinal_position", (table,))]
            values = []
            for column in columns:
                if column in shifted:
                    values.append(f"t.{column} + k * {offsets[shifted[column]]}")
                elif (table, column) in REMADE:
                    values.append(REMADE[(table, column)].format(id=f"t.id + k * {offsets[table]}"))
                else:
                    values.append(f"t.{column}")
            began = time.perf_counter()
            # Copy by copy, each in id order: the rows go in as synth would have written them (ascending ids).
            conn.execute(f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(values)} FROM "
                         f"generate_series(1, {args.copies - 1}) k CROSS JOIN LATERAL (SELECT * FROM {table} "
                         f"WHERE id <= {offsets[table]} ORDER BY id) t")
            print(f"replicate: {table} x{args.copies} in {time.perf_counter() - began:.1f} s", file=sys.stderr,
                  flush=True)
        began = time.perf_counter()
        for _, definition in indexes:
            conn.execute(definition)
        for table, name, definition in foreign:
            conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        print(f"replicate: {len(indexes)} indexes re-built, {len(foreign)} foreign keys checked in "
              f"{time.perf_counter() - began:.1f} s", file=sys.stderr, flush=True)
        for table in SHIFTED:
            conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                         f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)")
        conn.commit()
        began = time.perf_counter()
        # Statistics, as synth leaves them (ANALYZE, no VACUUM), so the figures compare with synthesised clinics.
        conn.execute(f"ANALYZE {', '.join(SHIFTED)}")
        conn.commit()
        print(f"replicate: ANALYZE in {time.perf_counter() - began:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
