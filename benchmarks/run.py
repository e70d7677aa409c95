#!/usr/bin/env python3
"""tracker benchmarks (issues 6 and 19): synthetic clinics of 10,000 and 100,000 patients (and more).

    .venv/bin/python benchmarks/run.py                      # SQLite, 10,000 and 100,000 patients
    .venv/bin/python benchmarks/run.py --sizes 10000        # one size
    .venv/bin/python benchmarks/run.py --pg "$TRACKER_TEST_PG" --sizes 10000   # PostgreSQL
    .venv/bin/python benchmarks/run.py --markdown benchmarks/RESULTS.md
    .venv/bin/python benchmarks/run.py --pg "$TRACKER_TEST_PG" --sizes 1000000 --no-ics   # growth (growth.py)

Every command runs as a subprocess (`tracker ...`, the installed entry point next to this Python), timed
by wall clock, with its own peak RSS and CPU time read from getrusage(RUSAGE_CHILDREN) in a tiny wrapper
process. A command this tracker does not have is reported as "n/a", so the script can be re-run as
features land. Prints a table, writes JSON to benchmarks/results/latest.json (git-ignored), re-written after
every phase, so a long run (1,000,000 patients) that is stopped keeps the figures of the phases done.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from statement_counts import COUNTING_MAIN, COUNTS_ENV  # noqa: E402

TRACKER = str(Path(sys.executable).with_name("tracker"))

# Runs a command, then prints its wall time, peak RSS and CPU time as JSON on the last stderr line.
WRAPPER = r"""
import json, resource, subprocess, sys, time
t = time.perf_counter()
p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
wall = time.perf_counter() - t
u = resource.getrusage(resource.RUSAGE_CHILDREN)
sys.stderr.write(p.stderr.decode(errors="replace")[-2000:])
sys.stderr.write("\n" + json.dumps({"rc": p.returncode, "wall": wall, "maxrss_kib": u.ru_maxrss,
                                    "cpu": u.ru_utime + u.ru_stime}) + "\n")
"""


def measure(args: list[str], env: dict | None = None, count: bool = True) -> dict:
    """Run `tracker ARGS` once; {'rc', 'wall', 'maxrss_kib', 'cpu', 'stderr'} and, with `count`, 'sql': the
    command's SQL statements and round trips (statement_counts.py: tracker's CLI run with SQLAlchemy event
    listeners installed; `--help` is run without, as the listeners import SQLAlchemy, which it does not)."""
    if not count:
        command = [TRACKER, *args]
    else:
        fd, counts_file = tempfile.mkstemp(prefix="tracker-bench-counts-", suffix=".json")
        os.close(fd)
        env = {**(env if env is not None else os.environ), COUNTS_ENV: counts_file, "TRACKER_BENCH_DIR": str(HERE)}
        command = [sys.executable, "-c", COUNTING_MAIN, *args]
    proc = subprocess.run([sys.executable, "-c", WRAPPER, *command], capture_output=True, text=True, env=env)
    *rest, last = proc.stderr.rstrip("\n").rsplit("\n", 1) if "\n" in proc.stderr.strip() else ("", proc.stderr)
    out = json.loads(last)
    out["stderr"] = "".join(rest).strip()
    if count:
        try:
            out["sql"] = json.loads(Path(counts_file).read_text() or "null")
        except (OSError, ValueError):
            out["sql"] = None
        Path(counts_file).unlink(missing_ok=True)
    return out


def sql_counts(run: dict) -> dict | None:
    """The statement and round-trip counts of a measured run, without the per-statement detail."""
    sql = run.get("sql")
    return {k: sql[k] for k in ("statements", "round_trips", "connections")} if sql else None


def has_command(*words: str) -> bool:
    proc = subprocess.run([TRACKER, *words, "--help"], capture_output=True, text=True)
    return proc.returncode == 0


def latency(args: list[str], env: dict, repeat: int = 3, count: bool = True) -> dict:
    """Median wall time of `repeat` runs (after one warm-up run that fills the OS file cache)."""
    runs = [measure(args, env, count=count) for _ in range(repeat + 1)]
    failed = [r for r in runs if r["rc"] != 0]
    if failed:
        return {"error": f"exit {failed[0]['rc']}: {failed[0]['stderr'][-300:]}"}
    walls = [r["wall"] for r in runs[1:]]
    out = {"s": round(statistics.median(walls), 3), "runs": [round(w, 3) for w in walls],
           "cpu_s": round(statistics.median(r["cpu"] for r in runs[1:]), 3),
           "peak_mib": round(max(r["maxrss_kib"] for r in runs) / 1024, 1)}
    if count:
        out["sql"] = sql_counts(runs[-1])
        out["sql_detail"] = runs[-1].get("sql")
    return out


# --- the raw-SQL floor of the nightly run -----------------------------------------------------------------

def floor_queries(as_of: dt.date, lead_days: int) -> dict[str, str]:
    """The rows a nightly run must look at, selected with plain SQL: due and overdue tasks (with the
    patient), and the alerting inputs: out-of-range results and reached checkpoints of live courses."""
    day = as_of.isoformat()
    until = (as_of + dt.timedelta(days=lead_days)).isoformat()
    tasks = "('baseline', 'lab', 'checkpoint')"
    return {
        "due": f"SELECT i.id, i.due, i.kind, i.drug, i.tests, i.title, p.mrn, p.name FROM item i "
               f"JOIN patient p ON p.id = i.patient_id WHERE i.status = 'planned' AND i.kind IN {tasks} "
               f"AND i.due >= '{day}' AND i.due <= '{until}'",
        "overdue": f"SELECT i.id, i.due, i.kind, i.drug, i.tests, i.title, p.mrn, p.name FROM item i "
                   f"JOIN patient p ON p.id = i.patient_id WHERE i.status = 'planned' AND i.kind IN {tasks} "
                   f"AND i.due < '{day}'",
        "out_of_range": "SELECT r.id, r.patient_id, r.test, r.value_num, r.taken_on FROM lab_result r "
                        "WHERE (r.value_num > r.ref_high OR r.value_num < r.ref_low) AND EXISTS (SELECT 1 "
                        "FROM course c WHERE c.patient_id = r.patient_id AND c.status <> 'stopped')",
        "checkpoints": f"SELECT i.id, i.course_id, i.due, i.status, i.measure, i.target FROM item i "
                       f"JOIN course c ON c.id = i.course_id WHERE c.status <> 'stopped' "
                       f"AND i.kind = 'checkpoint' AND i.due <= '{day}'",
        "assessments": "SELECT a.patient_id, a.assessed_on, a.easi, a.iga, a.dlqi FROM assessment a "
                       "WHERE EXISTS (SELECT 1 FROM course c WHERE c.patient_id = a.patient_id "
                       "AND c.status <> 'stopped')",
        # Course limits (maximum duration) of live courses, and the live alerts a run reconciles with.
        "limits": "SELECT i.id, i.course_id, i.due FROM item i JOIN course c ON c.id = i.course_id "
                  "WHERE c.status <> 'stopped' AND i.kind = 'limit' AND i.status = 'planned'",
        "live_alerts": "SELECT a.id, a.condition_key, a.patient_id, a.kind, a.status, a.snoozed_until FROM alert a "
                       "WHERE a.status IN ('open', 'acknowledged', 'snoozed')",
    }


def raw_floor(url: str, as_of: dt.date, lead_days: int) -> dict:
    from sqlalchemy import create_engine

    engine = create_engine(url)
    rows, best = {}, None
    for _ in range(2):  # best of two: the first pass also warms the file cache
        began = time.perf_counter()
        with engine.connect() as conn:
            for name, sql in floor_queries(as_of, lead_days).items():
                rows[name] = len(conn.exec_driver_sql(sql).fetchall())
        elapsed = time.perf_counter() - began
        best = elapsed if best is None else min(best, elapsed)
    engine.dispose()
    return {"s": round(best, 3), "rows": rows}


def autovacuum_due(url: str) -> dict:
    """PostgreSQL: what autovacuum would do within its first minute (after the clinic is loaded; after the
    cold night, as a typical night comes a day later), done now: VACUUM and/or ANALYZE each table past
    autovacuum's own thresholds, the server's settings (dead rows or rows inserted since the last vacuum,
    rows changed since the last analyze; a table never analyzed counts as empty, as autovacuum counts it).
    Run at once rather than waited for, so that no figure races autovacuum on the same cores: without it
    the next night ANALYZEd `reminder` itself (its statistics still said empty) and read tables whose new
    rows no vacuum had marked visible, and autovacuum of the loaded results and items ran beside the floor
    and the nights. Returns {"tables": {table: "VACUUM ANALYZE" | "VACUUM" | "ANALYZE"}, "s": the seconds it
    took (in no figure)}."""
    from sqlalchemy import create_engine

    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    began = time.perf_counter()
    done = {}
    with engine.connect() as conn:
        # The row counts a session has not yet sent (at most once a second) it sends as it ends, before it
        # leaves pg_stat_activity: wait for the measured commands' sessions to be gone.
        while conn.exec_driver_sql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                   "AND pid <> pg_backend_pid()").scalar() and time.perf_counter() - began < 30:
            time.sleep(0.05)
        setting = dict(conn.exec_driver_sql(
            "SELECT name, setting::float8 FROM pg_settings WHERE name IN ('autovacuum_vacuum_threshold', "
            "'autovacuum_vacuum_scale_factor', 'autovacuum_vacuum_insert_threshold', "
            "'autovacuum_vacuum_insert_scale_factor', 'autovacuum_analyze_threshold', "
            "'autovacuum_analyze_scale_factor')").all())
        conn.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
        tables = conn.exec_driver_sql(
            "SELECT s.relname, greatest(c.reltuples, 0), s.n_dead_tup, s.n_ins_since_vacuum, s.n_mod_since_analyze "
            "FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid ORDER BY s.relname").all()
        for name, tuples, dead, inserted, modified in tables:
            vacuum = (dead > setting["autovacuum_vacuum_threshold"] + setting["autovacuum_vacuum_scale_factor"] * tuples
                      or inserted > setting["autovacuum_vacuum_insert_threshold"]
                      + setting["autovacuum_vacuum_insert_scale_factor"] * tuples)
            analyze = modified > setting["autovacuum_analyze_threshold"] + setting["autovacuum_analyze_scale_factor"] * tuples
            what = " ".join(word for word, wanted in (("VACUUM", vacuum), ("ANALYZE", analyze)) if wanted)
            if what:
                conn.exec_driver_sql(f'{what} "{name}"')
                done[name] = what
    engine.dispose()
    return {"tables": done, "s": round(time.perf_counter() - began, 2)}


# --- the planner, pure ------------------------------------------------------------------------------------

def planner_throughput(courses: int = 3000) -> dict:
    sys.path.insert(0, str(HERE.parent))
    from tracker.core.plan import CourseFacts, PatientFacts, plan_course
    from tracker.protocol_files import library
    from tracker.services.plan_sync import EXTEND_TO

    lib = library()
    today = dt.date.today()
    protocols = list(lib.protocols.values())
    began = time.perf_counter()
    items = 0
    for n in range(courses):
        start = today - dt.timedelta(days=n % 1095)
        facts = CourseFacts(start=start, patient=PatientFacts(sex="f" if n % 2 else "m",
                                                              childbearing_potential=n % 4 == 1))
        items += len(plan_course(protocols[n % len(protocols)], facts, EXTEND_TO.after(today)))
    elapsed = time.perf_counter() - began
    return {"courses_per_s": round(courses / elapsed), "items_per_course": round(items / courses, 1)}


# --- one clinic -------------------------------------------------------------------------------------------

def database_for(size: int, workdir: Path, pg: str | None, prefix: str = "tracker_bench", reuse: bool = False) -> str:
    """The clinic's database: made afresh (dropped first), or with `reuse` the one an earlier run built."""
    if not pg:
        path = workdir / f"clinic-{size}.db"
        for suffix in ("", "-wal", "-shm"):
            if not reuse:
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return str(path)
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(pg).set(drivername="postgresql")
    name = f"{prefix}_{size}"
    with psycopg.connect(base.render_as_string(hide_password=False), autocommit=True) as conn:
        if not reuse:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    return base.set(drivername="postgresql+psycopg", database=name).render_as_string(hide_password=False)


def sqlalchemy_url(db: str) -> str:
    sys.path.insert(0, str(HERE.parent))
    from tracker.db.engine import resolve_url

    return resolve_url(db)


def bench_clinic(size: int, db: str, as_of: dt.date, lead_days: int, env: dict, out: dict | None = None,
                 save=lambda: None, reuse: bool = False, ics: bool = True, repeat: int = 3) -> dict:
    """Every figure of one clinic into `out`, calling `save()` after each phase. With `reuse`, the clinic an
    earlier run built (as of the same day) is measured without building it; without `ics`, no ICS export."""
    out = {"patients": size} if out is None else out
    day = as_of.isoformat()
    if reuse:
        out["synth"] = "n/a"
    else:
        print(f"  synth {size} ...", file=sys.stderr, flush=True)
        synth = measure(["--db", db, "synth", "--patients", str(size), "--seed", "1", "--as-of", day], env)
        if synth["rc"] != 0:
            out["synth"] = {"error": synth["stderr"][-500:]}
            return out
        out["synth"] = {"s": round(synth["wall"], 2), "cpu_s": round(synth["cpu"], 2),
                        "peak_mib": round(synth["maxrss_kib"] / 1024, 1), "sql": sql_counts(synth),
                        "sql_detail": synth.get("sql")}
        save()

    url = sqlalchemy_url(db)
    if "://" in db:
        # The loaded clinic as autovacuum would leave it before anything is measured: otherwise autovacuum
        # gets to the 4.4 million results and 1.4 million items (at 100,000 patients) while the floor and the
        # nights run, on the same two cores.
        out["autovacuum_after_synth"] = autovacuum_due(url)
    from sqlalchemy import create_engine

    engine = create_engine(url)
    with engine.connect() as conn:
        counts = {t: conn.exec_driver_sql(f"SELECT COUNT(*) FROM {t}").scalar()
                  for t in ("patient", "course", "item", "lab_result", "assessment")}
        mrn = conn.exec_driver_sql(
            "SELECT p.mrn FROM patient p JOIN item i ON i.patient_id = p.id GROUP BY p.mrn "
            "ORDER BY COUNT(*) DESC, p.mrn LIMIT 1").scalar()
    engine.dispose()
    out["rows"] = counts
    out["patient_shown"] = mrn

    print("  latencies ...", file=sys.stderr, flush=True)
    out["help"] = latency(["--help"], env, repeat=5, count=False)
    out["due_json"] = latency(["--db", db, "due", "--json", "--as-of", day], env, repeat=repeat)
    out["patient_show"] = latency(["--db", db, "patient", "show", mrn], env, repeat=repeat)
    save()
    if ics and has_command("export", "ics"):
        tmp = tempfile.mkdtemp(prefix="tracker-bench-")
        out["ics_patient"] = latency(["--db", db, "export", "ics", "--patient", mrn, "--out", f"{tmp}/p.ics"], env)
        to = (as_of + dt.timedelta(days=30)).isoformat()
        out["ics_clinic_30d"] = latency(["--db", db, "export", "ics", "--from", day, "--to", to, "--out",
                                         f"{tmp}/clinic.ics"], env, repeat=1)
        out["ics_clinic_30d"]["bytes"] = os.path.getsize(f"{tmp}/clinic.ics") if os.path.exists(
            f"{tmp}/clinic.ics") else None
    else:
        out["ics_patient"] = out["ics_clinic_30d"] = "n/a"

    save()
    print("  floor ...", file=sys.stderr, flush=True)
    out["floor"] = raw_floor(url, as_of, lead_days)
    save()
    if has_command("nightly"):
        # First run on the new clinic: nothing was ever evaluated, so every alert is raised now (a cold
        # start). Then the same day again (nothing new), then the next day: a typical night, whose floor
        # also reads the live alerts the first run raised.
        print("  nightly ...", file=sys.stderr, flush=True)
        out["nightly"] = cold_nightly(db, day, env, out["floor"])
        save()
        again = measure(["--db", db, "nightly", "--as-of", day], env)
        out["nightly_rerun"] = {"s": round(again["wall"], 2), "cpu_s": round(again["cpu"], 2), "rc": again["rc"],
                                "sql": sql_counts(again), "sql_detail": again.get("sql")}
        save()
        print("  next night ...", file=sys.stderr, flush=True)
        following = as_of + dt.timedelta(days=1)
        if "://" in db:
            out["autovacuum_before_next"] = autovacuum_due(url)
        out["floor_next"] = raw_floor(url, following, lead_days)
        save()
        out["nightly_next"] = nightly_run(db, following.isoformat(), env, out["floor_next"])
        save()
    else:
        out["nightly"] = "n/a"
    return out


def cold_nightly(db: str, day: str, env: dict, floor: dict) -> dict:
    """The first nightly run on the new clinic. SQLite: run twice, each time from the same just-built
    file (a copy for the first), and report the faster, as the floor is the faster of two passes: on a
    shared machine a single run is at the mercy of the neighbours; the file system synced before each.
    PostgreSQL: one run."""
    if "://" in db:
        return nightly_run(db, day, env, floor)
    import shutil
    import sqlite3

    with sqlite3.connect(db) as conn:  # fold the WAL into the file so a plain copy has everything
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    trial = f"{db}.cold-trial.db"
    shutil.copyfile(db, trial)
    # The copy's 1.7 GB (at 100,000 patients) is still being written back: the night's first fsync would
    # wait for all of it (0.5 s and more). A clinic's database is at rest when its nightly runs.
    os.sync()
    first = nightly_run(trial, day, env, floor)
    for suffix in ("", "-wal", "-shm", ".nightly.lock"):
        Path(trial + suffix).unlink(missing_ok=True)
    os.sync()
    second = nightly_run(db, day, env, floor)
    best = dict(min((first, second), key=lambda r: r["s"]))
    best["runs"] = [first["s"], second["s"]]
    best["peak_mib"] = max(first["peak_mib"], second["peak_mib"])
    return best


def nightly_run(db: str, day: str, env: dict, floor: dict) -> dict:
    run = measure(["--db", db, "nightly", "--as-of", day], env)
    out = {"s": round(run["wall"], 2), "cpu_s": round(run["cpu"], 2), "peak_mib": round(run["maxrss_kib"] / 1024, 1),
           "rc": run["rc"]}
    if run["rc"] != 0:
        out["stderr"] = run["stderr"][-500:]
    out["sql"] = sql_counts(run)
    out["sql_detail"] = run.get("sql")
    out["over_floor"] = round(run["wall"] / floor["s"], 1) if floor["s"] else None
    out["cpu_over_floor"] = round(run["cpu"] / floor["s"], 1) if floor["s"] else None
    return out


# --- reporting --------------------------------------------------------------------------------------------

def fig(value, key: str = "s", unit: str = " s") -> str:
    if isinstance(value, dict) and value.get("rc"):
        return f"failed (exit {value['rc']})"
    if value == "n/a" or value is None:
        return "n/a"
    if isinstance(value, dict):
        if "error" in value:
            return "error"
        value = value.get(key)
        if value is None:
            return "n/a"
    return f"{value:g}{unit}" if isinstance(value, (int, float)) else str(value)


def sql_fig(value) -> str:
    sql = value.get("sql") if isinstance(value, dict) else None
    return f"{sql['statements']:,} / {sql['round_trips']:,}" if sql else "n/a"


def table(results: dict) -> str:
    lines = []
    sizes = results["clinics"]
    # Each row's targets at 100,000 patients: issue 6's (SQLite), then issue 19's (both engines) where they differ.
    header = "| figure | target at 100k: issue 6 (SQLite) / issue 19 (both engines) | " + " | ".join(f"{c['patients']:,} patients" for c in sizes) + " |"
    lines += [header, "|" + "---|" * (2 + len(sizes))]

    def row(name, target, getter):
        lines.append(f"| {name} | {target} | " + " | ".join(getter(c) for c in sizes) + " |")

    def autovacuum_row(when, key):
        row(f"{when} (PostgreSQL): autovacuum's due work, done at once", "",
            lambda c: ", ".join(f"{what} {name}" for name, what in c[key]["tables"].items()) or "none"
            if isinstance(c.get(key), dict) else "n/a")

    row("rows (patients / courses / items / results)", "",
        lambda c: " / ".join(f"{c.get('rows', {}).get(t, 0):,}" for t in ("patient", "course", "item", "lab_result")))
    row("`tracker synth` wall (CPU)", "< 60 s / <= 60 s",
        lambda c: f"{fig(c.get('synth'))} ({fig(c.get('synth'), 'cpu_s')})")
    autovacuum_row("after synth", "autovacuum_after_synth")
    row("`tracker nightly`, first run (cold: raises every alert; SQLite: faster of two) wall (CPU)", "<= 60 s",
        lambda c: f"{fig(c.get('nightly'))} ({fig(c.get('nightly'), 'cpu_s')})")
    row("`tracker nightly`, first run, peak memory", "<= 1024 MiB", lambda c: fig(c.get("nightly"), "peak_mib", " MiB"))
    row("raw-SQL floor of the nightly", "", lambda c: fig(c.get("floor")))
    row("first run / floor, wall (CPU)", "<= 5x / <= 3x",
        lambda c: f"{fig(c.get('nightly'), 'over_floor', 'x')} ({fig(c.get('nightly'), 'cpu_over_floor', 'x')})")
    row("`tracker nightly` again, same day", "", lambda c: fig(c.get("nightly_rerun")))
    autovacuum_row("before the next day", "autovacuum_before_next")
    row("`tracker nightly`, next day (a typical night) wall (CPU)", "<= 60 s",
        lambda c: f"{fig(c.get('nightly_next'))} ({fig(c.get('nightly_next'), 'cpu_s')})")
    row("`tracker nightly`, next day, peak memory", "<= 1024 MiB",
        lambda c: fig(c.get("nightly_next"), "peak_mib", " MiB"))
    row("raw-SQL floor of the next day", "", lambda c: fig(c.get("floor_next")))
    row("next day / floor, wall (CPU)", "<= 5x / <= 1.5x",
        lambda c: f"{fig(c.get('nightly_next'), 'over_floor', 'x')} ({fig(c.get('nightly_next'), 'cpu_over_floor', 'x')})")
    row("`tracker due --json`", "<= 1.5 s / <= 1 s", lambda c: fig(c.get("due_json")))
    row("`tracker patient show`", "<= 1.5 s / <= 1 s", lambda c: fig(c.get("patient_show")))
    row("`tracker --help`", "<= 0.3 s", lambda c: fig(c.get("help")))
    row("ICS export, one patient", "", lambda c: fig(c.get("ics_patient")))
    row("ICS export, whole clinic, next 30 days", "", lambda c: fig(c.get("ics_clinic_30d")))
    for name, key in (("`tracker synth`", "synth"), ("`tracker nightly`, first run", "nightly"),
                      ("`tracker nightly` again, same day", "nightly_rerun"),
                      ("`tracker nightly`, next day", "nightly_next"), ("`tracker due --json`", "due_json"),
                      ("`tracker patient show`", "patient_show")):
        row(f"{name}: SQL statements / round trips", "", lambda c, key=key: sql_fig(c.get(key)))
    lines.append("")
    lines.append(f"Planner (pure): {results['planner']['courses_per_s']:,} courses/s "
                 f"({results['planner']['items_per_course']} items per course, all protocols in turn).")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", help="Comma-separated clinic sizes.")
    parser.add_argument("--pg", metavar="URL", help="PostgreSQL base URL (a role that may create databases); "
                                                     "default: SQLite files in --workdir.")
    parser.add_argument("--pg-prefix", default="tracker_bench",
                        help="PostgreSQL: the clinics' database names are PREFIX_SIZE (dropped and re-made), so two "
                             "runs on one server can use different prefixes.")
    parser.add_argument("--workdir", default=None, help="Where SQLite clinics are written (default: a temp dir).")
    parser.add_argument("--as-of", default=(dt.date.today() - dt.timedelta(days=1)).isoformat(),
                        help="The clinic's day for synth and the first nightly (default yesterday: the next-day "
                             "nightly then runs as of today, as `nightly --as-of` refuses a day after today).")
    # The nightly job's default reminder lead time (tracker.config.DEFAULT_LEAD_DAYS), so the floor's due rows
    # are the ones the run reminds of.
    parser.add_argument("--lead-days", type=int, default=3, help="Reminder lead time for the floor's due rows.")
    parser.add_argument("--reuse", action="store_true",
                        help="Measure the clinics an earlier run left (same --workdir or --pg-prefix, same --as-of) "
                             "instead of building them: no synth figures.")
    parser.add_argument("--no-ics", action="store_true", help="Skip the ICS exports (minutes at 1,000,000 patients).")
    parser.add_argument("--repeat", type=int, default=3, help="Runs of `due --json` and `patient show` after the "
                                                              "warm-up (the median is reported).")
    parser.add_argument("--json-out", default=str(HERE / "results" / "latest.json"))
    parser.add_argument("--markdown", metavar="FILE", help="Also write the table (and context) to FILE.")
    args = parser.parse_args()

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    as_of = dt.date.fromisoformat(args.as_of)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="tracker-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TRACKER_CONFIG": str(workdir / "bench-config.toml")}
    env.pop("TRACKER_DB", None)
    # An installed package has its bytecode compiled (pip does it); a shell with PYTHONDONTWRITEBYTECODE
    # would make every command re-compile SQLAlchemy and tracker from source (~0.5 s each). Bytecode goes
    # to a cache in the work directory, filled by the warm-up runs, never into the source tree.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
    (workdir / "bench-config.toml").write_text("# benchmark: defaults\n")

    results = {
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "database": "postgresql" if args.pg else "sqlite",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_avg_at_start": os.getloadavg()},
        "as_of": as_of.isoformat(),
        "planner": planner_throughput(),
        "clinics": [],
    }
    print(f"planner: {results['planner']}", file=sys.stderr)
    out = Path(args.json_out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every phase: a stopped long run keeps what it measured
        results["machine"]["load_avg_at_end"] = os.getloadavg()
        out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")

    for size in sizes:
        print(f"clinic of {size} patients ({results['database']})", file=sys.stderr, flush=True)
        db = database_for(size, workdir, args.pg, args.pg_prefix, reuse=args.reuse)
        clinic: dict = {"patients": size}
        results["clinics"].append(clinic)
        bench_clinic(size, db, as_of, args.lead_days, env, clinic, save, reuse=args.reuse, ics=not args.no_ics,
                     repeat=args.repeat)
    save()
    text = table(results)
    print(text)
    print(f"\nJSON: {out}", file=sys.stderr)
    if args.markdown:
        context = (f"Measured {results['when']} on {results['database']}, {os.cpu_count()} CPUs, Python "
                   f"{platform.python_version()}; load average at start {results['machine']['load_avg_at_start'][0]:.1f}"
                   f" (other work on the machine inflates wall times; CPU times are less affected).\n\n")
        Path(args.markdown).write_text(context + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
