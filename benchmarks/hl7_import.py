#!/usr/bin/env python3
"""HL7 import speed (issue 16, item 6): `tracker result import` of one file of 10,000 OBX results.

    .venv/bin/python benchmarks/hl7_import.py                 # 1,000 ORU^R01 messages x 10 results
    .venv/bin/python benchmarks/hl7_import.py --results 20000 --per-message 20
    .venv/bin/python benchmarks/hl7_import.py --before /path/to/old/tree   # before and after in one run

Builds a synthetic clinic (`tracker synth --patients N`, N = one patient per message, all data invented),
writes one file of ORU^R01 messages (v2.5.1), one per patient, each a full blood count and liver/kidney
chemistry coded with LOINC (the CBC values in 10*9/L and g/dL, so every Hb goes through the unit
conversion; creatinine under its mass code 2160-0 in mg/dL), dated yesterday, and times the import as a
subprocess: wall clock and CPU time. Then imports the same file again (every result already on record,
nothing written). Target: <= 30 s for 10,000 results on SQLite.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TRACKER = [sys.executable, "-m", "tracker"]
OBX = [  # LOINC, unit, value, reference range
    ("26464-8", "10*9/L", "6.1", "4.0-11.0"),
    ("26499-4", "10*9/L", "3.4", "2.0-7.5"),
    ("26474-7", "10*9/L", "1.9", "1.0-4.0"),
    ("26515-7", "10*9/L", "260", "150-400"),
    ("718-7", "g/dL", "13.8", "11.5-16.5"),
    ("1742-6", "U/L", "24", "0-40"),
    ("1920-8", "U/L", "22", "0-40"),
    ("2160-0", "mg/dL", "0.9", "0.6-1.2"),
    ("1751-7", "g/L", "41", "35-50"),
    ("2951-2", "mmol/L", "140", "133-146"),
]


def run(args: list[str], env: dict, tree: Path | None = None) -> tuple[float, float, subprocess.CompletedProcess]:
    """`python -m tracker ARGS` (from source tree `tree` when given: PYTHONPATH); (wall, CPU, process)."""
    if tree is not None:
        env = {**env, "PYTHONPATH": str(tree)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([*TRACKER, *args], capture_output=True, text=True, env=env, cwd=tree)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"tracker {' '.join(args[:4])} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return wall, cpu, proc


def write_messages(path: Path, mrns: list[str], per_message: int, day: dt.date) -> int:
    stamp = day.strftime("%Y%m%d")
    count = 0
    with open(path, "w", newline="") as fh:
        for number, mrn in enumerate(mrns, start=1):
            segments = [f"MSH|^~\\&|LABSYS|BENCHLAB|TRACKER|DERM|{stamp}1500||ORU^R01^ORU_R01|B{number:07d}|P|2.5.1",
                        f"PID|1||{mrn}^^^DERM^MR", f"OBR|1|O{number}|F{number}|58410-2^CBC^LN|||{stamp}0830"]
            for index in range(per_message):
                loinc, unit, value, limits = OBX[index % len(OBX)]
                segments.append(f"OBX|{index + 1}|NM|{loinc}^^LN||{value}|{unit}|{limits}|N|||F")
                count += 1
            fh.write("\r".join(segments) + "\r\n")
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=int, default=10_000)
    parser.add_argument("--per-message", type=int, default=10)
    parser.add_argument("--before", type=Path, help="an older source tree to time too, in the same run (PYTHONPATH)")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    messages = options.results // options.per_message
    today = dt.date.today()
    trees = [("after", Path(__file__).resolve().parent.parent)]
    if options.before:
        trees.append(("before", options.before.resolve()))
    figures = {}
    with tempfile.TemporaryDirectory() as work:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE" and not k.startswith("TRACKER_")}
        env.update({"TRACKER_CONFIG": str(Path(work) / "none.toml"), "PYTHONPYCACHEPREFIX": work})
        (Path(work) / "none.toml").write_text("")
        # One clinic for every tree, made by the oldest; each tree imports into a copy brought to its own
        # schema first (untimed), so the timed import includes no migration.
        clinic = str(Path(work) / "clinic.db")
        run(["--db", clinic, "synth", "--patients", str(messages), "--as-of", str(today - dt.timedelta(days=1))],
            env, trees[-1][1])
        _, _, listing = run(["--db", clinic, "patient", "list", "--json"], env, trees[-1][1])
        mrns = [row["mrn"] for row in json.loads(listing.stdout)][:messages]
        path = Path(work) / "results.hl7"
        count = write_messages(path, mrns, options.per_message, today - dt.timedelta(days=1))
        for label, tree in trees:
            # Every module compiled beforehand (PYTHONPYCACHEPREFIX), so the timed import compiles nothing.
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "tracker")], env=env, check=True,
                           stdout=subprocess.DEVNULL)
            db = str(Path(work) / f"{label}.db")
            shutil.copyfile(clinic, db)
            run(["--db", db, "db", "upgrade"], env, tree)
            wall, cpu, first = run(["--db", db, "result", "import", str(path)], env, tree)
            again_wall, again_cpu, again = run(["--db", db, "result", "import", str(path)], env, tree)
            figures[label] = {
                "results": count, "messages": len(mrns), "import_wall_s": round(wall, 2),
                "import_cpu_s": round(cpu, 2), "reimport_wall_s": round(again_wall, 2),
                "reimport_cpu_s": round(again_cpu, 2), "first": first.stdout.splitlines()[0],
                "again": again.stdout.splitlines()[0], "load_average": os.getloadavg()[0]}
    if options.json:
        print(json.dumps(figures if options.before else figures["after"], indent=2))
        return
    for label, f in figures.items():
        print(f"{label}: HL7 import of {f['results']:,} results in {f['messages']:,} ORU^R01 messages: "
              f"{f['import_wall_s']:.2f} s wall ({f['import_cpu_s']:.2f} s CPU); again (all on record): "
              f"{f['reimport_wall_s']:.2f} s ({f['reimport_cpu_s']:.2f} s CPU); load {f['load_average']:.1f}")
        print(f"  {f['first']}\n  {f['again']}")


if __name__ == "__main__":
    main()
