#!/usr/bin/env python3
"""Alerts per problem (issue 14 item 1): on a synthetic clinic, how many open alerts a clinician sees, and
how many per distinct problem.

    .venv/bin/python benchmarks/alerts_per_problem.py                          # this checkout
    .venv/bin/python benchmarks/alerts_per_problem.py --tree /path/to/other/checkout --label before

Builds `tracker synth --patients 10000 --seed 7 --as-of 2026-06-01` (the checkout's own synth), runs
`tracker nightly --as-of 2026-06-01`, then reads the open alerts and reports:
- open alerts per 100 patients, by kind;
- alerts per distinct problem: a problem is (patient, course, condition), the condition being the kind
  plus what it is about: the test of a threshold alert (one result of one test is one problem, however many
  rules it breaches), "baseline" for overdue baseline tests of one course, the draw for an overdue lab
  draw, the item for checkpoints, the gate or limit itself. Target 1.00.
- conditions lost: for every open threshold alert, the rules its result breaches are re-derived with the
  tree's own core (`tracker.core.thresholds.breach`, absolute, x ULN and categorical rules; change-from-
  baseline rules need the baseline and are left out) and each one's limit text must appear in an open alert
  of that course and test (as the leading rule or an "Also breached" one). Target 0.
Prints a Markdown table (and JSON with --json).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
AS_OF = "2026-06-01"
PYTHON = sys.executable


def tracker(tree: Path, db: str, *args: str) -> tuple[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    env.pop("TRACKER_CONFIG", None)
    started = time.perf_counter()
    proc = subprocess.run([PYTHON, "-m", "tracker", "--db", db, *args], capture_output=True, text=True, env=env,
                          cwd=tree)
    if proc.returncode != 0:
        raise SystemExit(f"tracker {' '.join(args)} in {tree}: exit {proc.returncode}: {proc.stderr[-800:]}")
    return proc.stdout, time.perf_counter() - started


def problem_of(kind: str, key: str, test: str | None) -> str:
    """The condition part of a problem (patient and course are added by the caller)."""
    if kind == "threshold":
        return f"threshold:{test}"
    if kind == "overdue":
        if key.endswith(":baseline") or test == "baseline":
            return "overdue:baseline"
        return key
    return key


def measure(tree: Path, patients: int, seed: int, workdir: Path) -> dict:
    db = str(workdir / f"clinic-{abs(hash(str(tree)))}.db")
    _, synth_s = tracker(tree, db, "synth", "--patients", str(patients), "--seed", str(seed), "--as-of", AS_OF)
    _, nightly_s = tracker(tree, db, "nightly", "--as-of", AS_OF)
    conn = sqlite3.connect(db)
    rows = conn.execute("""
        SELECT a.patient_id, a.course_id, a.kind, a.condition_key, a.message, r.test, i.kind, a.severity
        FROM alert a LEFT JOIN lab_result r ON r.id = a.result_id LEFT JOIN item i ON i.id = a.item_id
        WHERE a.status = 'open'""").fetchall()
    n_patients = conn.execute("SELECT count(*) FROM patient").fetchone()[0]
    by_kind = collections.Counter(kind for _, _, kind, *_ in rows)
    problems = {(p, c, problem_of(kind, key, test if kind == "threshold" else item_kind))
                for p, c, kind, key, _, test, item_kind, _ in rows}
    conn.close()
    check, _ = run_python(tree, LOST_CHECK, db)
    checked = json.loads(check)
    return {
        "tree": str(tree), "patients": n_patients, "synth_s": round(synth_s, 1), "nightly_s": round(nightly_s, 1),
        "open_alerts": len(rows), "problems": len(problems),
        "alerts_per_problem": round(len(rows) / len(problems), 2) if problems else None,
        "per_100_by_kind": {k: round(v * 100 / n_patients, 2) for k, v in sorted(by_kind.items())},
        "per_100_total": round(len(rows) * 100 / n_patients, 2),
        "critical_per_100": round(sum(1 for r in rows if r[7] == "critical") * 100 / n_patients, 2),
        "rules_breached": checked["breached"], "rules_lost": checked["lost"], "lost_examples": checked["examples"],
    }


# Run in the measured tree: every alerting rule an open threshold alert's result breaches must be named in
# an open alert of that course and test.
LOST_CHECK = r"""
import collections, datetime as dt, json, sqlite3, sys
from types import SimpleNamespace
from tracker.core.thresholds import breach, uln_of
from tracker.protocol_files import load_library
lib = load_library()
conn = sqlite3.connect(sys.argv[1])
rows = conn.execute("SELECT a.course_id, c.drug, a.message, r.id, r.test, r.value_num, r.value_text, r.unit, "
    "r.taken_on, r.ref_high FROM alert a JOIN lab_result r ON r.id = a.result_id JOIN course c ON c.id = a.course_id "
    "WHERE a.status = 'open' AND a.kind = 'threshold'").fetchall()
texts = collections.defaultdict(str)
results = {}
for course_id, drug, message, rid, test, num, text, unit, taken, ref_high in rows:
    texts[(course_id, test)] += message + chr(10)
    results[(course_id, test)] = (drug, SimpleNamespace(id=rid, test=test, value_num=num, value_text=text, unit=unit,
                                  taken_on=dt.date.fromisoformat(taken), ref_high=ref_high))
breached = lost = 0
examples = []
for (course_id, test), (drug, result) in results.items():
    for t in lib.get(drug).thresholds:
        if t.analyte != test or t.action in ("refuse", "repeat") or t.rise_pct or t.fall_pct:
            continue
        vocab = lib.vocabulary.tests[test].ref_high if test in lib.vocabulary else None
        hit, _, limit = breach(t, result, None, uln_of(result, vocab))
        if not hit:
            continue
        breached += 1
        if limit not in texts[(course_id, test)]:
            lost += 1
            examples.append(f"course {course_id} {test}: {limit} -> {t.action}")
print(json.dumps({"breached": breached, "lost": lost, "examples": examples[:10]}))
"""


def run_python(tree: Path, code: str, *args: str) -> tuple[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.perf_counter()
    proc = subprocess.run([PYTHON, "-c", code, *args], capture_output=True, text=True, env=env, cwd=tree)
    if proc.returncode != 0:
        raise SystemExit(f"check in {tree}: {proc.stderr[-800:]}")
    return proc.stdout, time.perf_counter() - started


def table(results: list[tuple[str, dict]]) -> str:
    kinds = sorted({k for _, r in results for k in r["per_100_by_kind"]})
    head = "| figure | " + " | ".join(label for label, _ in results) + " |"
    lines = [head, "|---|" + "---|" * len(results)]

    def row(name, get):
        lines.append(f"| {name} | " + " | ".join(str(get(r)) for _, r in results) + " |")

    row("patients", lambda r: r["patients"])
    row("open alerts", lambda r: r["open_alerts"])
    row("open alerts per 100 patients", lambda r: r["per_100_total"])
    for kind in kinds:
        row(f"&nbsp;&nbsp;{kind} per 100", lambda r, k=kind: r["per_100_by_kind"].get(k, 0))
    row("critical per 100", lambda r: r["critical_per_100"])
    row("distinct problems (patient, course, condition)", lambda r: r["problems"])
    row("**alerts per problem** (target 1.00)", lambda r: f"**{r['alerts_per_problem']}**")
    row("rules breached by alerting results (absolute, x ULN, categorical)", lambda r: r["rules_breached"])
    row("of these, named in no open alert (target 0)", lambda r: r["rules_lost"])
    row("synth / nightly wall (s)", lambda r: f"{r['synth_s']} / {r['nightly_s']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", default=[],
                        help="a checkout to measure, as LABEL=PATH (repeatable); default: this one")
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    trees = [t.split("=", 1) for t in args.tree] or [["this", str(HERE.parent)]]
    results = []
    with tempfile.TemporaryDirectory(prefix="tracker-app-") as work:
        for label, path in trees:
            print(f"  {label}: synth {args.patients} + nightly ...", file=sys.stderr, flush=True)
            results.append((label, measure(Path(path).resolve(), args.patients, args.seed, Path(work))))
    print(table(results))
    for label, r in results:
        for example in r["lost_examples"]:
            print(f"- {label}: lost {example}")
    if args.json:
        print(json.dumps(dict(results), indent=1))


if __name__ == "__main__":
    main()
