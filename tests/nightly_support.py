"""Helpers for the nightly, channel and scheduler tests (issue 7): a small clinic, a site config, jsonl."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from freezegun import freeze_time

TRACKER = [sys.executable, "-m", "tracker"]


def small_clinic(tracker) -> None:
    """P1 on methotrexate (labs 01-19, 02-02, 02-16) and P2 on dupilumab, both from Mon 2026-01-05."""
    with freeze_time("2026-01-02"):
        tracker("patient add P1 --name 'Ada Byron' --dob 1980-01-01")
        tracker("therapy start P1 methotrexate --on 2026-01-05")
        tracker("patient add P2 --name 'Bo Chan' --dob 1975-05-05")
        tracker("therapy start P2 dupilumab --on 2026-01-05")


def write_config(path: Path, body: str) -> Path:
    path.write_text(body)
    os.environ["TRACKER_CONFIG"] = str(path)  # the autouse fixture restores it after the test
    return path


def jsonl_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_cli(db: str, *args: str, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    """A real `tracker` process (not in-process), as cron or systemd would start it."""
    return subprocess.run([*TRACKER, "--db", db, *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120, **kwargs)


def reminder_ids(db: str) -> set[int]:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM reminder")}
