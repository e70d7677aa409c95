#!/usr/bin/env python3
"""`tracker result import` at speed (issue 18 item 5): 10,000 and 100,000 rows of lab results.

    .venv/bin/python benchmarks/result_import.py                           # this tree, 10k and 100k rows
    .venv/bin/python benchmarks/result_import.py --before /path/to/old/tree --before-rows 10000
    .venv/bin/python benchmarks/result_import.py --rows 10000 --patients 3000 --markdown out.md

Builds one synthetic clinic (`tracker synth --seed 1` as of yesterday), then for each size writes a CSV of
plausible results for the clinic's patients (the common panels' analytes, values around the middle of their
reference ranges at a laboratory's precision, a share of the rows (`--other-units`, default one in ten) in
another usual unit that pint converts, taken in the last 60 days, each patient's rows on a few draw days) and times `tracker result import FILE` on a fresh copy of the
clinic: wall and CPU time of the whole command (start-up included) and rows per second. With `--before
TREE`, the same imports also run with PYTHONPATH set to an older source tree (a git worktree of main) for
a before/after table from one run. Targets (issue 18): at least 5,000 rows/s; 10,000 rows under 2 s,
100,000 under 20 s (SQLite).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TARGET_SECONDS = {10_000: 2.0, 100_000: 20.0}
TARGET_ROWS_PER_S = 5000

sys.path.insert(0, str(HERE))
from run import WRAPPER  # noqa: E402  (the same timing wrapper as benchmarks/run.py)


# (test, decimals as a laboratory reports it, another unit it is often reported in, factor to that unit)
ANALYTES = [
    ("wbc", 1, "cells/uL", 1000), ("neutrophils", 1, "cells/uL", 1000), ("lymphocytes", 1, "cells/uL", 1000),
    ("platelets", 0, None, None), ("hb", 0, "g/dL", 0.1), ("alt", 0, None, None),
    ("creatinine", 0, None, None), ("albumin", 0, "g/dL", 0.1), ("egfr", 0, None, None),
    ("bp_systolic", 0, None, None), ("bp_diastolic", 0, None, None),
]
MIDDLE = {"wbc": (4, 11), "neutrophils": (2, 7.5), "lymphocytes": (1, 4), "platelets": (150, 400),
          "hb": (115, 165), "alt": (5, 40), "creatinine": (45, 110), "albumin": (35, 50), "egfr": (60, 120),
          "bp_systolic": (100, 150), "bp_diastolic": (60, 95)}


def run(tracker_path: Path, args: list[str], env: dict) -> dict:
    """`python -m tracker ARGS` with PYTHONPATH=tracker_path; {'rc', 'wall', 'cpu', 'maxrss_kib', 'stderr'}."""
    env = {**env, "PYTHONPATH": str(tracker_path)}
    proc = subprocess.run([sys.executable, "-c", WRAPPER, sys.executable, "-m", "tracker", *args],
                          capture_output=True, text=True, env=env, cwd=str(tracker_path))
    text = proc.stderr.rstrip("\n")
    rest, _, last = text.rpartition("\n")
    out = json.loads(last)
    out["stderr"] = rest.strip()
    return out


def patients_of(db: Path, limit: int) -> list[tuple[str, str]]:
    """(mrn, date of birth) of up to `limit` patients with a live course."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT DISTINCT p.mrn, p.dob FROM patient p JOIN course c ON c.patient_id = p.id "
                            "WHERE c.status != 'stopped' ORDER BY p.id LIMIT ?", (limit,)).fetchall()


def write_csv(path: Path, patients: list[tuple[str, str]], rows: int, today: dt.date, seed: int,
              other_units: float) -> None:
    """`rows` plausible results: each patient gets draws on a few days, each draw every analyte once."""
    rng = random.Random(seed)
    per_draw = len(ANALYTES)
    draws_needed = -(-rows // per_draw)
    days_per_patient = max(1, -(-draws_needed // len(patients)))
    written = 0
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["mrn", "test", "value", "unit", "taken_on", "ref_low", "ref_high"])
        for mrn, _dob in patients:
            days = sorted(rng.sample(range(1, 61), min(days_per_patient, 60)))
            for back in days:
                taken = (today - dt.timedelta(days=back)).isoformat()
                for test, decimals, other_unit, factor in ANALYTES:
                    if written == rows:
                        return
                    low, high = MIDDLE[test]
                    value = round(rng.uniform(low, high), decimals)
                    unit = ""
                    if other_unit is not None and rng.random() < other_units:
                        value, unit = round(value * factor, max(0, decimals - 1) if factor < 1 else 0), other_unit
                    out.writerow([mrn, test, f"{value:g}", unit, taken, "", ""])
                    written += 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--patients", type=int, default=5000, help="clinic size (default 5000)")
    parser.add_argument("--before", type=Path, help="an older source tree to time too (PYTHONPATH)")
    parser.add_argument("--before-rows", type=int, nargs="*",
                        help="sizes to time on --before (default: all; the old import ran ~125 rows/s)")
    parser.add_argument("--other-units", type=float, nargs="+", default=[0.1],
                        help="share of the rows (of analytes with another usual unit) written in that unit, so "
                             "converted by pint; one CSV per share (default 0.1)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="time each import N times, the trees in turn, and report the run with the least CPU")
    parser.add_argument("--markdown", type=Path, help="append a markdown table to this file")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tracker-import-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    (work / "config.toml").write_text("# benchmark: defaults\n")
    env["TRACKER_CONFIG"] = str(work / "config.toml")
    today = dt.date.today()
    trees = [("after", ROOT)] + ([("before", args.before.resolve())] if args.before else [])
    # One clinic for every tree: made by the oldest (its schema may be older), then a copy brought to each
    # newer tree's schema untimed, so no timed import includes a migration and its backup.
    clinic = work / "clinic.db"
    print(f"synth {args.patients} patients ...", file=sys.stderr, flush=True)
    made = run(trees[-1][1], ["--db", str(clinic), "synth", "--patients", str(args.patients), "--seed", "1",
                              "--as-of", (today - dt.timedelta(days=1)).isoformat()], env)
    if made["rc"] != 0:
        print(made["stderr"], file=sys.stderr)
        return 1
    patients = patients_of(clinic, args.patients)
    clinics = {}
    for label, tree in trees:
        # Every module compiled beforehand (into the run's PYTHONPYCACHEPREFIX), so no timed import pays for
        # compiling what synth and `db upgrade` happened not to import.
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "tracker")], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        clinics[label] = work / f"clinic-{label}.db"
        shutil.copyfile(clinic, clinics[label])
        upgraded = run(tree, ["--db", str(clinics[label]), "db", "upgrade"], env)
        if upgraded["rc"] != 0:
            print(upgraded["stderr"], file=sys.stderr)
            return 1
    table = []
    for rows in args.rows:
        for share in args.other_units:
            csv_path = work / f"results-{rows}-{share:g}.csv"
            write_csv(csv_path, patients, rows, today, seed=rows, other_units=share)
            runs: dict[str, list[dict]] = {}
            for _ in range(args.repeat):  # the trees in turn, so both meet the same neighbours
                for label, tree in trees:
                    if label == "before" and args.before_rows is not None and rows not in args.before_rows:
                        continue
                    db = work / f"import-{label}-{rows}.db"
                    shutil.copyfile(clinics[label], db)
                    os.chmod(db, 0o600)
                    print(f"import {rows} rows, {share:.0%} in other units ({label}) ...", file=sys.stderr,
                          flush=True)
                    runs.setdefault(label, []).append(run(tree, ["--db", str(db), "result", "import", str(csv_path)],
                                                          env))
                    db.unlink()
            for label, timed_runs in runs.items():
                failed = [t for t in timed_runs if t["rc"] != 0]
                timed = failed[0] if failed else min(timed_runs, key=lambda t: t["cpu"])  # the least disturbed
                table.append((label, rows, share, None if failed else timed, timed["stderr"][-300:]))
    load = os.getloadavg()[0]
    lines = [f"Measured {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')} on sqlite, "
             f"{os.cpu_count()} CPUs, Python {platform.python_version()}; clinic of {args.patients} patients "
             f"(`tracker synth --seed 1`); load average at the end {load:.1f}"
             + (f"; each the least CPU of {args.repeat} runs, the trees in turn." if args.repeat > 1 else "."),
             "",
             "| tree | rows | in other units | wall (CPU) | rows/s (wall) | rows/s (CPU) | peak memory | target |",
             "|---|---|---|---|---|---|---|---|"]
    for label, rows, share, timed, error in table:
        target = f"< {TARGET_SECONDS[rows]:g} s" if rows in TARGET_SECONDS else f">= {TARGET_ROWS_PER_S} rows/s"
        if timed is None:
            lines.append(f"| {label} | {rows:,} | {share:.0%} | failed: {error} | | | | {target} |")
            continue
        lines.append(f"| {label} | {rows:,} | {share:.0%} | {timed['wall']:.2f} s ({timed['cpu']:.2f} s) | "
                     f"{rows / timed['wall']:,.0f} | {rows / timed['cpu']:,.0f} | "
                     f"{timed['maxrss_kib'] / 1024:.0f} MiB | {target} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        with open(args.markdown, "a") as fh:
            fh.write(text)
    if args.keep:
        print(f"work directory: {work}", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
