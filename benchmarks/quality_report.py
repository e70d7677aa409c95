#!/usr/bin/env python3
"""Monitoring-quality report speed (issue 17 item 3): `tracker report quality --json` at 100,000 patients.

    .venv/bin/python benchmarks/quality_report.py --db CLINIC.db      # a clinic built by `tracker synth`
    .venv/bin/python benchmarks/quality_report.py --patients 100000  # builds one first (minutes)

Times the command as a subprocess, over the last 90 days and the last year (to the clinic's day), the median
of three runs after a warm-up: wall clock and CPU time (getrusage of the child; on a shared machine wall
time is noise, CPU time the figure to compare), and, in-process, each part of the work: the grouped item
read, the alert read and the pure core. Nothing is written to the clinic (the command only reads); opening
an older database migrates it first (migration 0014 adds the index the item read uses).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRACKER = [sys.executable, "-m", "tracker"]


def run(args: list[str], env: dict) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([*TRACKER, *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"tracker {' '.join(args[:4])} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def parts(db: str, start: dt.date, end: dt.date) -> dict:
    """CPU seconds of each part of the report, in-process."""
    from sqlmodel import Session

    from tracker.core.quality import Windows, quality_report
    from tracker.core.settings import Settings
    from tracker.db.engine import open_engine
    from tracker.protocol_files import library
    from tracker.services import quality as service
    from tracker.services.context import Clinic

    engine = open_engine(db)
    out = {}
    with Session(engine) as session:
        clinic = Clinic(session, library(None), Settings(timezone="UTC"), end, "bench")
        clock = time.process_time()
        items = service.load_items(session, start, end + dt.timedelta(weeks=12), None)
        out["item read (grouped rows)"] = (time.process_time() - clock, len(items), sum(i.count for i in items))
        clock = time.process_time()
        alerts = service.load_alerts(clinic, start, end, None)
        out["alert read"] = (time.process_time() - clock, len(alerts), len(alerts))
        clock = time.process_time()
        quality_report([i for i in items if i.due <= end], alerts, start, end, Windows(7, 14, 2),
                       ahead=[i for i in items if i.due > end])
        out["core"] = (time.process_time() - clock, None, None)
    engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", help="an existing clinic (default: build one with --patients)")
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--day", type=dt.date.fromisoformat, help="the report's last day (default: today)")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    end = options.day or dt.date.today()
    with tempfile.TemporaryDirectory() as work:
        env = {**os.environ, "TRACKER_CONFIG": str(Path(work) / "none.toml"), "PYTHONPYCACHEPREFIX": work}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # with a bytecode cache, as an installed package runs
        (Path(work) / "none.toml").write_text("")
        db = options.db
        if db is None:
            db = str(Path(work) / "clinic.db")
            run(["--db", db, "synth", "--patients", str(options.patients), "--seed", "1"], env)
            run(["--db", db, "nightly"], env)  # alerts raised, as a clinic has them
        results = {}
        for label, days in (("90 days", 89), ("one year", 364)):
            start = end - dt.timedelta(days=days)
            args = ["--db", db, "report", "quality", "--from", start.isoformat(), "--to", end.isoformat(), "--json"]
            run(args, env)  # warm-up (and the bytecode cache)
            runs = [run(args, env) for _ in range(3)]
            results[label] = {"wall_s": round(statistics.median(r[0] for r in runs), 2),
                              "cpu_s": round(statistics.median(r[1] for r in runs), 2),
                              "parts": {k: [round(v[0], 2), v[1], v[2]] for k, v in parts(db, start, end).items()}}
        results["load_average"] = os.getloadavg()[0]
    if options.json:
        print(json.dumps(results, indent=2))
        return
    for label, figures in results.items():
        if label == "load_average":
            continue
        print(f"{label}: {figures['wall_s']} s wall, {figures['cpu_s']} s CPU")
        for part, (cpu, rows, items) in figures["parts"].items():
            print(f"  {part}: {cpu} s CPU" + (f" ({rows:,} rows for {items:,})" if rows is not None else ""))
    print(f"load average at the end: {results['load_average']:.1f}")


if __name__ == "__main__":
    main()
