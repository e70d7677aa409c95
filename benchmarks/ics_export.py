#!/usr/bin/env python3
"""Calendar export and feed validators at 100,000 patients (issue 16 item 6), before and after, one run.

    .venv/bin/python benchmarks/ics_export.py                        # before = a7e7aa7, after = this tree
    .venv/bin/python benchmarks/ics_export.py --patients 10000 --before-rev HEAD~3
    .venv/bin/python benchmarks/ics_export.py --markdown out.md

"Before" is the tree at `--before-rev`, exported with `git archive` into the work directory (no worktree
is registered); each tree runs as `python -m tracker` with PYTHONPATH pointing at it. One clinic is built
with `tracker synth --seed 1` as of yesterday by the *before* tree; the after tree gets a copy upgraded to
its schema (`tracker db upgrade`), so both read the same rows.

Measured, per tree:
- `tracker export ics --from TODAY --to TODAY+30` of the whole clinic (staff audience): wall time of each
  of `--repeat` runs (subprocesses; the first also fills the OS file cache), and the file's size;
- a feed 304: `tracker serve` on loopback; a whole-clinic feed answered with If-Modified-Since (now) and a
  one-patient feed (the patient with most items) with If-None-Match, each `--requests` times on a new
  connection, timed at the client; median and slowest. The one-patient feed's first (200) response too.
"""

from __future__ import annotations

import argparse
import datetime as dt
import email.utils
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TARGETS = {"export_s": 5.0, "feed_304_s": 0.050}


def tree_env(tree: Path, workdir: Path, label: str) -> dict:
    """The environment that runs `tree`'s tracker. Commands run in the work directory: `python -m` puts the
    current directory first on sys.path, ahead of PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_") and k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(tree)
    env["PYTHONPYCACHEPREFIX"] = str(workdir / f"pycache-{label}")
    env["BENCH_CWD"] = str(workdir)
    return env


def tracker(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "tracker", *args], env=env, capture_output=True, text=True,
                          cwd=env["BENCH_CWD"])
    if check and proc.returncode != 0:
        raise SystemExit(f"tracker {' '.join(args)}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    return proc


def timed(env: dict, *args: str) -> tuple[float, float]:
    """Wall time and CPU time (user + system, from getrusage of the finished child) of one command."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    tracker(env, *args)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def export_tree(rev: str, target: Path) -> Path:
    target.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], capture_output=True, check=True).stdout
    tar_path = target.with_suffix(".tar")
    tar_path.write_bytes(archive)
    with tarfile.open(tar_path) as tar:
        tar.extractall(target, filter="data")
    tar_path.unlink()
    return target


class Served:
    """`tracker serve --port 0` of one tree, in a subprocess."""

    def __init__(self, env: dict, db: str):
        self.process = subprocess.Popen([sys.executable, "-m", "tracker", "--db", db, "serve", "--port", "0"],
                                        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                        cwd=env["BENCH_CWD"])
        line = self.process.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if not match:
            self.process.kill()
            raise SystemExit(f"server did not start: {line}")
        self.port = int(match.group(1))

    def get(self, path: str, headers: dict) -> tuple[int, dict, int, float]:
        start = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        elapsed = time.perf_counter() - start
        conn.close()
        return response.status, dict(response.getheaders()), len(body), elapsed

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def feed_token(env: dict, db: str, *args: str) -> str:
    url = tracker(env, "--db", db, "feed", "create", *args).stdout.strip()
    return re.search(r"/feeds/([A-Za-z0-9_-]+)\.ics$", url).group(1)


def bench_tree(label: str, env: dict, db: str, today: dt.date, mrn: str, repeat: int, requests: int,
               workdir: Path) -> dict:
    out: dict = {}
    to = (today + dt.timedelta(days=30)).isoformat()
    path = workdir / f"{label}-clinic.ics"
    print(f"  {label}: export ...", file=sys.stderr, flush=True)
    runs = [timed(env, "--db", db, "export", "ics", "--from", today.isoformat(), "--to", to, "--out", str(path))
            for _ in range(repeat)]
    out["export_runs_s"] = [round(wall, 2) for wall, _ in runs]
    out["export_runs_cpu_s"] = [round(cpu, 2) for _, cpu in runs]
    out["export_s"] = round(min(wall for wall, _ in runs), 2)
    out["export_cpu_s"] = round(min(cpu for _, cpu in runs), 2)
    out["export_bytes"] = path.stat().st_size
    out["export_events"] = path.read_bytes().count(b"BEGIN:VEVENT")

    print(f"  {label}: feeds ...", file=sys.stderr, flush=True)
    clinic_token = feed_token(env, db, "--clinic")
    patient_token = feed_token(env, db, "--patient", mrn)
    server = Served(env, db)
    try:
        since = email.utils.format_datetime(dt.datetime.now(dt.timezone.utc), usegmt=True)
        clinic_304 = []
        for _ in range(requests):
            status, _, _, elapsed = server.get(f"/feeds/{clinic_token}.ics", {"If-Modified-Since": since})
            assert status == 304, status
            clinic_304.append(elapsed)
        status, headers, size, first = server.get(f"/feeds/{patient_token}.ics", {})
        assert status == 200, status
        etag = headers["ETag"]
        patient_304 = []
        for _ in range(requests):
            status, _, _, elapsed = server.get(f"/feeds/{patient_token}.ics", {"If-None-Match": etag})
            assert status == 304, status
            patient_304.append(elapsed)
    finally:
        server.stop()
    out["clinic_feed_304_median_s"] = round(statistics.median(clinic_304), 4)
    out["clinic_feed_304_max_s"] = round(max(clinic_304), 4)
    out["patient_feed_200_s"] = round(first, 3)
    out["patient_feed_200_bytes"] = size
    out["patient_feed_304_median_s"] = round(statistics.median(patient_304), 4)
    out["patient_feed_304_max_s"] = round(max(patient_304), 4)
    return out


def table(results: dict) -> str:
    rows = [
        ("Whole-clinic ICS export, 30 days (best of runs)", "<= 5 s", "export_s", " s"),
        ("  its runs (wall)", "", "export_runs_s", ""),
        ("  CPU time, best run (user + system)", "", "export_cpu_s", " s"),
        ("  events / bytes", "", None, ""),
        ("Whole-clinic feed 304 (If-Modified-Since), median", "<= 50 ms", "clinic_feed_304_median_s", " s"),
        ("  slowest", "", "clinic_feed_304_max_s", " s"),
        ("One-patient feed 304 (If-None-Match), median", "<= 50 ms", "patient_feed_304_median_s", " s"),
        ("One-patient feed 200", "", "patient_feed_200_s", " s"),
    ]
    before, after = results["before"], results["after"]
    lines = ["| Measure | Target | Before | After |", "|---|---|---|---|"]
    for name, target, key, unit in rows:
        if key is None:
            cells = [f"{r['export_events']} / {r['export_bytes']:,}" for r in (before, after)]
        else:
            cells = [f"{r[key]}{unit}" for r in (before, after)]
        lines.append(f"| {name} | {target} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--before-rev", default="a7e7aa7")
    parser.add_argument("--after-rev", help="measure this revision as 'after' (default: this working tree)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--workdir", help="keep the clinic and trees here (default: a temporary directory)")
    parser.add_argument("--markdown", help="write the table to this file")
    parser.add_argument("--reuse", action="store_true",
                        help="keep the clinic already built in --workdir (before.db; after.db is copied again)")
    args = parser.parse_args()

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="tracker-ics-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    before_tree = workdir / "before"
    if before_tree.exists():
        shutil.rmtree(before_tree)
    export_tree(args.before_rev, before_tree)
    after_tree = ROOT
    if args.after_rev:
        after_tree = workdir / "after"
        if after_tree.exists():
            shutil.rmtree(after_tree)
        export_tree(args.after_rev, after_tree)
    envs = {"before": tree_env(before_tree, workdir, "before"), "after": tree_env(after_tree, workdir, "after")}

    today = dt.date.today()
    before_db, after_db = str(workdir / "before.db"), str(workdir / "after.db")
    reuse = args.reuse and Path(before_db).exists()
    for path in (after_db,) if reuse else (before_db, after_db):
        for suffix in ("", "-wal", "-shm"):
            Path(path + suffix).unlink(missing_ok=True)
    synth_s = None
    if not reuse:
        print(f"synth {args.patients} (before tree) ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        tracker(envs["before"], "--db", before_db, "synth", "--patients", str(args.patients), "--seed", "1",
                "--as-of", (today - dt.timedelta(days=1)).isoformat())
        synth_s = round(time.perf_counter() - started, 1)
    shutil.copy(before_db, after_db)
    tracker(envs["after"], "--db", after_db, "db", "upgrade")

    import sqlite3

    with sqlite3.connect(after_db) as conn:
        mrn = conn.execute("SELECT p.mrn FROM patient p JOIN item i ON i.patient_id = p.id GROUP BY p.mrn "
                           "ORDER BY COUNT(*) DESC, p.mrn LIMIT 1").fetchone()[0]
        items = conn.execute("SELECT COUNT(*) FROM item").fetchone()[0]

    for label, env in envs.items():  # each tree runs its own code
        where = tracker(env, "--version", check=False)
        probe = subprocess.run([sys.executable, "-c", "import tracker; print(tracker.__file__)"], env=env,
                               cwd=env["BENCH_CWD"], capture_output=True, text=True).stdout.strip()
        tree = before_tree if label == "before" else after_tree
        assert probe.startswith(str(tree)), (label, probe, where.returncode)
    results = {"patients": args.patients, "items": items, "synth_s": synth_s, "today": today.isoformat(),
               "before_rev": args.before_rev,
               "after_rev": args.after_rev or "working tree of " + subprocess.run(
                   ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
               "load": os.getloadavg()}
    for label, db in (("before", before_db), ("after", after_db)):
        results[label] = bench_tree(label, envs[label], db, today, mrn, args.repeat, args.requests, workdir)
    results["load_after"] = os.getloadavg()
    print(json.dumps(results, indent=2))
    text = table(results)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(
            f"{args.patients:,} patients ({items:,} items), SQLite; before {args.before_rev}, after "
            f"{results['after_rev']}; load average {results['load'][0]:.2f} at the start, "
            f"{results['load_after'][0]:.2f} at the end.\n\n{text}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
