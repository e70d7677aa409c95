#!/usr/bin/env python3
"""How tracker's costs grow with the clinic (issue 19 item 3): 10,000 -> 100,000 -> 1,000,000 patients.

    eval "$(.ci/postgres.sh start)"
    .venv/bin/python benchmarks/run.py --pg "$TRACKER_TEST_PG" --sizes 10000,100000,1000000 \
        --json-out growth.json                       # or one run.py per size, each with its own --json-out
    .venv/bin/python benchmarks/growth.py growth.json [more.json ...] --pg "$TRACKER_TEST_PG" --markdown out.md

(A 1,000,000-patient clinic in minutes rather than hours: benchmarks/replicate.py, then run.py --reuse.)

Reads the JSON that `run.py` writes (the clinics of every file, by size; a later file's clinic of a size
replaces an earlier one's) and prints:
- the growth table: each figure (wall, CPU, statements, round trips, peak memory, rows) at every size,
  and the ratio from one size to the next beside the ratio of patients (linear growth: the two are equal);
- the phases of each long command (`statement_counts.py`'s `by_time`: the statement shapes with the most
  time attributed to them, at the largest size, with their time at every size);
- with `--pg` (the server run.py used; `--pg-prefix` as given to it), each clinic's database size on disk,
  per table with its indexes, and per 100,000 patients.
Nothing is run here but those size queries: the clinics are the ones run.py left on the server.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# (label, command key in run.py's clinic, figure key): the figures whose growth the issue asks about.
COMMANDS = (
    ("`tracker synth`", "synth"),
    ("`tracker nightly`, first run (cold)", "nightly"),
    ("`tracker nightly` again, same day", "nightly_rerun"),
    ("`tracker nightly`, next day", "nightly_next"),
    ("`tracker due --json`", "due_json"),
    ("`tracker patient show`", "patient_show"),
    ("ICS export, whole clinic, next 30 days", "ics_clinic_30d"),
)
FLOORS = (("raw-SQL floor of the first night", "floor"), ("raw-SQL floor of the next night", "floor_next"))
PHASED = ("synth", "nightly", "nightly_next")


def load(paths: list[str]) -> list[dict]:
    clinics: dict[int, dict] = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        for clinic in data["clinics"]:
            clinic["_machine"] = data.get("machine", {})
            clinic["_when"] = data.get("when")
            clinics[clinic["patients"]] = clinic
    return [clinics[size] for size in sorted(clinics)]


def figure(clinic: dict, key: str, what: str):
    """One number of a command's run: 'wall', 'cpu', 'statements', 'round_trips', 'peak'; None if missing."""
    run = clinic.get(key)
    if not isinstance(run, dict) or "error" in run or run.get("rc"):
        return None
    if what in ("statements", "round_trips"):
        sql = run.get("sql")
        return sql.get(what) if sql else None
    return run.get({"wall": "s", "cpu": "cpu_s", "peak": "peak_mib"}[what])


def fmt(value, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        text = f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    else:
        text = f"{value:,}"
    return text + unit


def ratio(a, b) -> str:
    return f"{b / a:.1f}x" if a and b is not None else "n/a"


def growth_rows(clinics: list[dict]) -> list[tuple[str, list]]:
    rows: list[tuple[str, list]] = []
    for table in ("patient", "course", "item", "lab_result", "assessment"):
        rows.append((f"rows: {table}", [c.get("rows", {}).get(table) for c in clinics]))
    if any("db_bytes" in c for c in clinics):
        rows.append(("database size on disk, MiB", [round(c["db_bytes"] / 2**20) if "db_bytes" in c else None
                                                     for c in clinics]))
    for label, key in COMMANDS:
        for what, unit in (("wall", "wall s"), ("cpu", "CPU s"), ("statements", "statements"),
                           ("round_trips", "round trips"), ("peak", "peak MiB")):
            values = [figure(c, key, what) for c in clinics]
            if any(v is not None for v in values):
                rows.append((f"{label}: {unit}", values))
    for label, key in FLOORS:
        rows.append((f"{label}, s", [(c.get(key) or {}).get("s") for c in clinics]))
    return rows


def growth_table(clinics: list[dict]) -> str:
    sizes = [c["patients"] for c in clinics]
    head = "| figure | " + " | ".join(f"{s:,}" for s in sizes) + " | " + " | ".join(
        f"{a:,} -> {b:,} ({b / a:g}x patients)" for a, b in zip(sizes, sizes[1:])) + " |"
    lines = [head, "|" + "---|" * (1 + 2 * len(sizes) - 1)]
    for label, values in growth_rows(clinics):
        ratios = [ratio(a, b) for a, b in zip(values, values[1:])]
        lines.append(f"| {label} | " + " | ".join(fmt(v) for v in values) + " | " + " | ".join(ratios) + " |")
    return "\n".join(lines)


def phases_table(clinics: list[dict], key: str, top: int = 10) -> str:
    """The statement shapes with the most attributed time at the largest size that has them, at every size."""
    def by_time(clinic):
        run = clinic.get(key)
        detail = run.get("sql_detail") if isinstance(run, dict) else None
        return {p["sql"]: p for p in (detail or {}).get("by_time", [])}

    timed = [by_time(c) for c in clinics]
    largest = next((phases for phases in reversed(timed) if phases), None)  # the largest size measured
    if largest is None:
        return f"(no phases recorded for {key})"
    sizes = [c["patients"] for c in clinics]
    lines = ["| statement shape (time until the next statement) | " + " | ".join(
        f"{s:,}: wall s (CPU s) / statements" for s in sizes) + " |", "|" + "---|" * (1 + len(sizes))]
    for shape, _ in sorted(largest.items(), key=lambda kv: -kv[1]["seconds"])[:top]:
        cells = []
        for phases in timed:
            p = phases.get(shape)
            cells.append(f"{p['seconds']:,.1f} ({p['cpu_s']:,.1f}) / {p['statements']:,}" if p else "-")
        text = shape.replace("|", "\\|")
        lines.append(f"| `{text}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def database_sizes(clinics: list[dict], pg: str, prefix: str,
                   names: dict[int, str] | None = None) -> dict[int, list[tuple[str, int]]]:
    """Per clinic: its database's size (into clinic['db_bytes']) and its largest tables with their indexes."""
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(pg).set(drivername="postgresql")
    tables: dict[int, list[tuple[str, int]]] = {}
    for clinic in clinics:
        name = (names or {}).get(clinic["patients"], f"{prefix}_{clinic['patients']}")
        # A whole URL names a database on another server (sizes measured on servers of their own).
        url = (make_url(name).set(drivername="postgresql") if "://" in name else base.set(database=name)
               ).render_as_string(hide_password=False)
        try:
            with psycopg.connect(url) as conn:
                clinic["db_bytes"] = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
                tables[clinic["patients"]] = conn.execute(
                    "SELECT relname, pg_total_relation_size(relid) FROM pg_stat_user_tables "
                    "ORDER BY 2 DESC LIMIT 8").fetchall()
        except psycopg.OperationalError as exc:
            print(f"growth: {name}: {exc}".strip(), file=sys.stderr)
    return tables


def sizes_table(clinics: list[dict], tables: dict[int, list[tuple[str, int]]]) -> str:
    sizes = [c["patients"] for c in clinics if c["patients"] in tables]
    if not sizes:
        return ""
    names = [name for name, _ in tables[sizes[-1]]]
    lines = ["| table (with its indexes), MiB | " + " | ".join(f"{s:,}" for s in sizes) + " | per 100,000 patients at "
             f"{sizes[-1]:,} |", "|" + "---|" * (2 + len(sizes))]
    for name in names:
        values = [dict(tables[s]).get(name) for s in sizes]
        per = values[-1] / (sizes[-1] / 100_000) if values[-1] else None
        lines.append(f"| {name} | " + " | ".join(fmt(round(v / 2**20)) if v else "-" for v in values)
                     + f" | {fmt(round(per / 2**20)) if per else '-'} |")
    totals = [next(c for c in clinics if c["patients"] == s).get("db_bytes") for s in sizes]
    lines.append("| whole database | " + " | ".join(fmt(round(t / 2**20)) if t else "-" for t in totals)
                 + f" | {fmt(round(totals[-1] / (sizes[-1] / 100_000) / 2**20)) if totals[-1] else '-'} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", nargs="+", help="run.py's JSON output(s).")
    parser.add_argument("--pg", metavar="URL", help="The PostgreSQL server run.py used: measure database sizes.")
    parser.add_argument("--pg-prefix", default="tracker_bench", help="run.py's --pg-prefix.")
    parser.add_argument("--pg-db", action="append", default=[], metavar="SIZE=NAME",
                        help="The database of one size, if not PREFIX_SIZE (e.g. 1000000=tracker_rep_1000000), "
                             "or its whole URL if it is on another server.")
    parser.add_argument("--markdown", metavar="FILE", help="Also write the tables to FILE.")
    args = parser.parse_args()

    clinics = load(args.json)
    if not clinics:
        print("growth: no clinics in the JSON given", file=sys.stderr)
        return 2
    names = {int(size): name for size, name in (item.split("=", 1) for item in args.pg_db)}
    tables = database_sizes(clinics, args.pg, args.pg_prefix, names) if args.pg else {}
    parts = ["### Growth", "", growth_table(clinics), ""]
    if tables:
        parts += ["### Size on disk", "", sizes_table(clinics, tables), ""]
    for key in PHASED:
        label = dict((k, name) for name, k in COMMANDS)[key]
        parts += [f"### Phases: {label}", "", phases_table(clinics, key), ""]
    loads = ", ".join(f"{c['patients']:,}: {c['_machine'].get('load_avg_at_start', ['?'])[0]:.1f} -> "
                      f"{c['_machine'].get('load_avg_at_end', ['?'])[0]:.1f}"
                      for c in clinics if c.get("_machine"))
    parts.append(f"Load average (1 min) at the start and end of each run: {loads}.")
    text = "\n".join(parts)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
