#!/usr/bin/env python3
"""Start-up of the commands that open a clinic (issue 12; issue 18 item 5; issue 19 item 2), in CPU time.

    .venv/bin/python benchmarks/startup.py --db small.db                     # this tree
    .venv/bin/python benchmarks/startup.py --db small.db --before /path/to/old/tree --repeat 7

For each command (`due --json`, `patient show MRN`, `result import FILE`, `nightly`, `alerts`) on a copy of
`--db` (a clinic made by `tracker synth`), three figures, each the median of `--repeat` fresh processes:

- import CPU: a fresh interpreter importing, in the same order, the modules the command had loaded when it
  ended (so: what its imports cost, without its work);
- open CPU: then building what opens the clinic (`AppContext`: settings, protocol library, engine with its
  schema check, one connection);
- total CPU: the whole command (`python -m tracker ...`), user + system time of the process.

CPU rather than wall time: the machine is shared, and CPU time is what a command costs whatever else runs.
A writing command (import, nightly) runs on a fresh copy of the clinic each time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# The command, run as the `tracker` script runs it; at its end (whatever its exit) the modules it loaded
# are written to stderr, in the order they were imported, and its CPU time so far.
COMMAND = r"""
import json, sys, time
sys.argv = ["tracker", *sys.argv[1:]]
from tracker.cli import main
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code or 0
sys.stderr.write("\nSTARTUP " + json.dumps({"rc": code, "modules": list(sys.modules)}) + "\n")
"""

# Replays a command's imports, then opens the clinic as every command does.
REPLAY = r"""
import gc, importlib, json, sys, time
modules, db = json.loads(sys.argv[1]), sys.argv[2]
gc.set_threshold(100_000, *gc.get_threshold()[1:])  # as tracker.cli.main does while a command starts
start = time.process_time()
for name in modules:
    if name == "__main__" or name in sys.modules:
        continue
    try:
        importlib.import_module(name)
    except Exception:
        pass  # a private module that only imports from its package
imported = time.process_time()
from tracker.cli import AppContext
app = AppContext(db, "bench", None)
app.settings, app.library
with app.engine.connect():
    pass
opened = time.process_time()
print(json.dumps({"interpreter": start, "imports": imported - start, "open": opened - imported}))
"""

WRAPPER = r"""
import json, resource, subprocess, sys
p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
u = resource.getrusage(resource.RUSAGE_CHILDREN)
sys.stderr.write(p.stderr.decode(errors="replace"))
sys.stderr.write("\nCPU " + json.dumps(u.ru_utime + u.ru_stime) + "\n")
"""


def commands(db: Path, workdir: Path, as_of: str | None) -> dict[str, tuple[list[str], bool]]:
    """name -> (tracker arguments after --db, writes). The patient shown is the one with the most items, and
    `due --json --as-of` a what-if, as benchmarks/run.py measures them."""
    with sqlite3.connect(db) as conn:
        mrn = conn.execute("SELECT p.mrn FROM patient p JOIN item i ON i.patient_id = p.id GROUP BY p.mrn "
                           "ORDER BY COUNT(*) DESC, p.mrn LIMIT 1").fetchone()[0]
    csv = workdir / "labs.csv"
    # Values in the vocabulary's units (nothing to convert), as the 10,000-row benchmark with --other-units 0.
    csv.write_text("mrn,test,value,unit,taken_on,ref_low,ref_high\n"
                   f"{mrn},alt,31,U/L,2026-12-01,,\n{mrn},creatinine,70,,2026-12-01,,\n")
    return {
        "due --json": (["due", "--json", *(["--as-of", as_of] if as_of else [])], False),
        "patient show": (["patient", "show", mrn], False),
        "result import": (["result", "import", str(csv)], True),
        "nightly": (["nightly"], True),
        "alerts": (["alerts"], False),
    }


def once(tree: Path, db: Path, args: list[str], replay: bool = True) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "TZ": "UTC"}
    env.pop("TRACKER_CONFIG", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # measured as installed: modules compiled once, not per run
    proc = subprocess.run([sys.executable, "-c", WRAPPER, sys.executable, "-c", COMMAND, "--db", str(db), *args],
                          capture_output=True, text=True, env=env, cwd=str(tree))
    found = {line.split(" ", 1)[0]: json.loads(line.split(" ", 1)[1]) for line in proc.stderr.splitlines()
             if line.startswith(("STARTUP ", "CPU "))}
    result, cpu = found["STARTUP"], found["CPU"]
    assert result["rc"] == 0, [line for line in proc.stderr.splitlines() if not line.startswith("STARTUP ")][-20:]
    if not replay:
        return {"total": cpu, "modules": len(result["modules"])}
    replay = subprocess.run([sys.executable, "-c", REPLAY, json.dumps(result["modules"]), str(db)],
                            capture_output=True, text=True, env=env, cwd=str(tree))
    assert replay.returncode == 0, replay.stderr[-2000:]
    opened = json.loads(replay.stdout)
    return {"total": cpu, **opened, "modules": len(result["modules"])}


def measure(trees: dict[str, Path], db: Path, repeat: int, workdir: Path, as_of: str | None = None,
            only: list[str] | None = None, replay: bool = True) -> dict[str, dict[str, dict]]:
    """tree label -> command -> medians. The trees take turns run by run, so a change of load over the
    measurement falls on both alike."""
    runs: dict[str, dict[str, list]] = {label: {} for label in trees}
    for name, (args, writes) in commands(db, workdir, as_of).items():
        if only and name not in only:
            continue
        for attempt in range(repeat + 1):
            for label, tree in trees.items():
                target = db
                if writes:
                    target = workdir / "copy.db"
                    shutil.copyfile(db, target)
                result = once(tree, target, args, replay)
                if attempt:  # the first run may compile the tree's modules
                    runs[label].setdefault(name, []).append(result)
    return {label: {name: {key: statistics.median(r[key] for r in results) for key in results[0]}
                    for name, results in by_command.items()}
            for label, by_command in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True, type=Path, help="a SQLite clinic (tracker synth); only copies are written")
    parser.add_argument("--before", type=Path, help="an older source tree to measure too")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", type=Path, help="write the figures here too")
    parser.add_argument("--as-of", help="the day of `due --json --as-of` (benchmarks/run.py: the synth day)")
    parser.add_argument("--only", action="append", help="only this command (by its name in the table); repeatable")
    parser.add_argument("--total-only", action="store_true", help="whole commands only (no import/open replay)")
    parser.add_argument("--in-place", action="store_true",
                        help="read-only commands run on --db itself, not on a copy (a large clinic)")
    options = parser.parse_args()
    trees = {"after": ROOT} if options.before is None else {"before": options.before.resolve(), "after": ROOT}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="tracker-startup-") as tmp:
        # One copy of the clinic at the head of the oldest tree, so no run pays for a migration.
        db = options.db.resolve()
        if not options.in_place:
            db = Path(tmp) / "clinic.db"
            shutil.copyfile(options.db, db)
        figures = measure(trees, db, options.repeat, Path(tmp), options.as_of, options.only,
                          not options.total_only)
    load.append(os.getloadavg()[0])
    print(f"CPU seconds, median of {options.repeat}; load average (1 min) {load[0]:.1f} -> {load[1]:.1f}\n")
    print("| command | tree | modules | import CPU | open CPU | start-up CPU (interpreter + import + open) "
          "| total CPU |")
    print("|---|---|---|---|---|---|---|")
    for name in figures["after"]:
        for label, by_command in figures.items():
            f = by_command[name]
            if "imports" not in f:
                print(f"| `{name}` | {label} | {f['modules']:.0f} | | | | {f['total']:.3f} |")
                continue
            print(f"| `{name}` | {label} | {f['modules']:.0f} | {f['imports']:.3f} | {f['open']:.3f} | "
                  f"{f['interpreter'] + f['imports'] + f['open']:.3f} | {f['total']:.3f} |")
    if options.json:
        options.json.write_text(json.dumps({"load": load, "figures": figures}, indent=1))


if __name__ == "__main__":
    main()
