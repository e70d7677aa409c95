#!/usr/bin/env python3
"""CI guard (issue 19): the SQL statement and round-trip counts of the nightly run and the main listings, on
a 10,000-patient synthetic clinic, must not grow by more than 20 % against `statement_baseline.json`.

    .venv/bin/python benchmarks/statement_guard.py                      # SQLite, and PostgreSQL if
                                                                        # $TRACKER_TEST_PG is set
    .venv/bin/python benchmarks/statement_guard.py --pg URL --write-baseline   # after a deliberate change

Counts, unlike times, do not move with the machine's load: a per-row loop that creeps into a path that
scales shows as a count. Each command runs as tracker's CLI in a subprocess with the counters of
statement_counts.py installed. The clinic is synth's (seed 1) as of yesterday, the next-day run as of
today, as benchmarks/run.py builds its clinics: tracker rolls plans forward from the real today, so a clinic
built for a fixed past day would be re-planned whole by the first command that looks ahead. The clinic
therefore differs a little from day to day: round trips and PostgreSQL's statements stay put, SQLite's
per-row statement counts move with the rows written and are reported, not judged (JUDGED); on one day the
counts are the same on every run of the same code. Exit 1 when a count grew too much (each one named), 0 otherwise; counts that fell are listed, to be taken into the baseline with
`--write-baseline`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from run import database_for  # noqa: E402  (a fresh SQLite file or PostgreSQL database, as run.py's)
from statement_counts import COUNTING_MAIN, COUNTS_ENV  # noqa: E402

BASELINE = HERE / "statement_baseline.json"
TOLERANCE = 0.20  # a count may grow by 20 % ...
SLACK = 2  # ... or by 2, whichever is more (a listing of 5 statements may gain one without failing)
METRICS = ("statements", "round_trips")
# On SQLite an executemany counts one statement per row, so its statement count follows the rows the day's
# clinic writes (the guard's clinic is built for the real yesterday: a next-day nightly counted 799 one day
# and 1,043 the next with no change of code). Its calls into the driver (round trips) do not move with the
# data, so SQLite is judged by those and its statements are only reported. PostgreSQL's statements are
# executes and batches, stable from day to day: both are judged there.
JUDGED = {"sqlite": ("round_trips",)}


# --- the comparison (plain data; tests/test_statement_guard.py) --------------------------------------------

def compare(baseline: dict, current: dict, tolerance: float = TOLERANCE, slack: int = SLACK):
    """(failures, notes): `baseline` and `current` map engine -> command -> {metric: count}. A failure is a
    judged count (JUDGED: SQLite's round trips; both metrics elsewhere) above max(baseline x (1 + tolerance), baseline + slack), or a command of the baseline that did not
    run (or failed) on an engine that ran; notes name counts that fell below the baseline's tolerance the
    other way, and commands or engines the baseline does not have."""
    failures, notes = [], []
    for engine, commands in sorted(current.items()):
        base_commands = baseline.get(engine)
        if base_commands is None:
            notes.append(f"{engine}: not in the baseline (add it with --write-baseline)")
            continue
        for command in sorted(base_commands):
            if command not in commands or commands[command] is None:
                failures.append(f"{engine} {command}: did not run")
        for command, counts in sorted(commands.items()):
            if counts is None:
                continue
            base = base_commands.get(command)
            if base is None:
                notes.append(f"{engine} {command}: not in the baseline")
                continue
            for metric in JUDGED.get(engine, METRICS):
                was, now = base.get(metric), counts.get(metric)
                if was is None or now is None:
                    continue
                limit = max(was * (1 + tolerance), was + slack)
                if now > limit:
                    failures.append(f"{engine} {command}: {metric} {now:,} against {was:,} in the baseline "
                                    f"(+{(now - was) / was:.0%}; at most {int(limit):,})" if was else
                                    f"{engine} {command}: {metric} {now:,} against 0 in the baseline")
                elif now < min(was / (1 + tolerance), was - slack):
                    notes.append(f"{engine} {command}: {metric} fell to {now:,} from {was:,} "
                                 f"(rewrite the baseline to keep the gain)")
    return failures, notes


# --- running the commands ----------------------------------------------------------------------------------

def counted(args: list[str], env: dict, details: dict | None = None, name: str | None = None) -> dict:
    """Run `tracker ARGS` with the counters; its {statements, round_trips}, or raise naming what failed.
    `details` gets the whole report (with the statements executed most often) under `name`."""
    fd, counts_file = tempfile.mkstemp(prefix="tracker-guard-", suffix=".json")
    os.close(fd)
    try:
        proc = subprocess.run([sys.executable, "-c", COUNTING_MAIN, *args], capture_output=True, text=True,
                              env={**env, COUNTS_ENV: counts_file, "TRACKER_BENCH_DIR": str(HERE)})
        if proc.returncode != 0:
            raise RuntimeError(f"tracker {' '.join(args)}: exit {proc.returncode}: {proc.stderr.strip()[-500:]}")
        sql = json.loads(Path(counts_file).read_text())
        if details is not None:
            details[name or " ".join(args)] = sql
    finally:
        Path(counts_file).unlink(missing_ok=True)
    return {metric: sql[metric] for metric in METRICS}


def busiest_mrn(db: str) -> str:
    """The patient with the most items (as benchmarks/run.py shows)."""
    sys.path.insert(0, str(HERE.parent))
    from sqlalchemy import create_engine

    from tracker.db.engine import resolve_url

    engine = create_engine(resolve_url(db))
    with engine.connect() as conn:
        mrn = conn.exec_driver_sql(
            "SELECT p.mrn FROM patient p JOIN item i ON i.patient_id = p.id GROUP BY p.mrn "
            "ORDER BY COUNT(*) DESC, p.mrn LIMIT 1").scalar()
    engine.dispose()
    return mrn


def measure_engine(engine: str, workdir: Path, pg: str | None, patients: int, env: dict,
                   details: dict | None = None) -> dict:
    db = database_for(patients, workdir, pg if engine == "postgresql" else None, prefix="tracker_guard")
    today = dt.date.today()
    day, next_day = (today - dt.timedelta(days=1)).isoformat(), today.isoformat()
    out = {}

    def run(name: str, args: list[str]) -> None:
        print(f"  {engine}: {name}", file=sys.stderr, flush=True)
        out[name] = counted(["--db", db, *args], env, details, name)

    run("synth", ["synth", "--patients", str(patients), "--seed", "1", "--as-of", day])
    run("nightly cold", ["nightly", "--as-of", day])
    run("nightly same day", ["nightly", "--as-of", day])
    run("nightly next day", ["nightly", "--as-of", next_day])
    run("due --json", ["due", "--json"])
    run("overdue --json", ["overdue", "--json"])
    run("alerts --json", ["alerts", "--json"])
    run("patient show", ["patient", "show", busiest_mrn(db)])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg", metavar="URL", default=os.environ.get("TRACKER_TEST_PG"),
                        help="PostgreSQL base URL, a role that may create databases (default: $TRACKER_TEST_PG; "
                             "without one only SQLite is measured)")
    parser.add_argument("--patients", type=int, default=10000)
    parser.add_argument("--baseline", default=str(BASELINE))
    parser.add_argument("--engine", choices=("sqlite", "postgresql"), action="append",
                        help="Measure only this engine (repeatable; default: SQLite, and PostgreSQL with a URL).")
    parser.add_argument("--details", metavar="FILE",
                        help="Write every command's full counts (the statements run most often) to FILE as JSON.")
    parser.add_argument("--write-baseline", action="store_true",
                        help="Rewrite the baseline with this run's counts (for the engines measured) and exit 0.")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="tracker-guard-"))
    env = {**os.environ, "TRACKER_CONFIG": str(workdir / "guard-config.toml"), "USER": "guard"}
    env.pop("TRACKER_DB", None)
    (workdir / "guard-config.toml").write_text("# statement guard: defaults\n")
    engines = args.engine or ["sqlite"] + (["postgresql"] if args.pg else [])
    if "postgresql" in engines and not args.pg:
        parser.error("PostgreSQL needs --pg URL or $TRACKER_TEST_PG")
    current, details = {}, {}
    for engine in engines:
        try:
            current[engine] = measure_engine(engine, workdir, args.pg, args.patients, env,
                                             details.setdefault(engine, {}))
        except RuntimeError as exc:
            print(f"FAIL: {engine}: {exc}")
            return 1
    current = {"patients": args.patients, **current}
    if args.details:
        Path(args.details).write_text(json.dumps(details, indent=1) + "\n")

    path = Path(args.baseline)
    baseline = json.loads(path.read_text()) if path.exists() else {}
    if args.write_baseline:
        merged = {**baseline, **current}
        path.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
        print(f"baseline written: {path}")
        return 0
    if baseline.get("patients") != args.patients:
        print(f"the baseline is for {baseline.get('patients')} patients, not {args.patients}", file=sys.stderr)
        return 2
    engines_only = {e: c for e, c in current.items() if e != "patients"}
    failures, notes = compare({e: c for e, c in baseline.items() if e != "patients"}, engines_only)
    for engine, commands in engines_only.items():
        for command, counts in commands.items():
            print(f"{engine:10} {command:18} statements {counts['statements']:>9,}  round trips "
                  f"{counts['round_trips']:>7,}")
    for note in notes:
        print(f"note: {note}")
    for failure in failures:
        print(f"FAIL: {failure}")
    print("statement counts: " + (f"{len(failures)} grew more than {TOLERANCE:.0%}" if failures else "ok"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
