#!/usr/bin/env python3
"""Probe (issue 19, session 9): the index builds at the end of a SQLite `tracker synth`, with and without the
auxiliary sorter thread, on a copy of a synthesised clinic.

    .venv/bin/python benchmarks/synth_index_probe.py CLINIC.db [--workdir DIR] [--repeat 2]

The copy has the indexes synth defers dropped (committed); each variant then re-creates them in a transaction
that is rolled back, and reports its wall time, the process's CPU (every thread) and the calling thread's CPU
(`time.thread_time`). The calling thread's CPU is the part no other core can take; on a quiet machine with
the row builder finished, the wall time of the builds approaches it. Variants: the 256 MiB cache of the load
and no threads (synth before session 9), and synth's settings now (INDEX_BUILD_CACHE_KIB, INDEX_BUILD_THREADS).
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from sqlalchemy import create_engine  # noqa: E402

from tracker.services.synth.load import INDEX_BUILD_CACHE_KIB, INDEX_BUILD_THREADS, _defer_sqlite_indexes  # noqa: E402

VARIANTS = {"before: 256 MiB, no threads": (262144, 0),
            f"now: {INDEX_BUILD_CACHE_KIB // 1024} MiB, {INDEX_BUILD_THREADS} thread": (INDEX_BUILD_CACHE_KIB,
                                                                                  INDEX_BUILD_THREADS)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clinic", help="a SQLite file `tracker synth` filled (left as it is: a copy is probed)")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="synth-index-probe-"))
    path = workdir / "probe.db"
    shutil.copy(args.clinic, path)
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:  # drop what synth defers, and keep it dropped
        statements = _defer_sqlite_indexes(conn)
        conn.commit()
    engine.dispose()
    creates = [s for s in statements if s.startswith("CREATE")]
    for _ in range(args.repeat):
        for name, (cache_kib, threads) in VARIANTS.items():
            con = sqlite3.connect(path, isolation_level=None)
            con.execute(f"PRAGMA cache_size=-{cache_kib}")
            con.execute(f"PRAGMA threads={threads}")
            con.execute("BEGIN IMMEDIATE")
            wall, cpu, own = time.perf_counter(), time.process_time(), time.thread_time()
            for sql in creates:
                con.execute(sql)
            wall, cpu, own = time.perf_counter() - wall, time.process_time() - cpu, time.thread_time() - own
            con.execute("ROLLBACK")
            con.close()
            print(f"{name:32s} {len(creates)} indexes: wall {wall:6.2f} s  CPU {cpu:6.2f} s  "
                  f"calling thread {own:6.2f} s", flush=True)
    path.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
