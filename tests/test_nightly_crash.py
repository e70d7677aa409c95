"""Issue 7: a real `tracker nightly` process SIGKILLed part-way through delivery, then re-run, delivers
every reminder exactly once; two concurrent runs: one works, the other refuses.

Test hook: TRACKER_TEST_DELIVERY_DELAY (seconds) makes the jsonl channel pause after writing each batch
and before marking it sent, so the kill lands mid-run, in the worst place, on a machine of any speed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections import Counter

import pytest
from click.testing import CliRunner

from tests.nightly_support import TRACKER, jsonl_rows, reminder_ids, run_cli


@pytest.fixture(scope="module")
def demo_template(tmp_path_factory, migrated_template):
    """A demo clinic built once for this module (the demo uses the real today)."""
    from tracker.cli import cli

    path = tmp_path_factory.mktemp("demo") / "demo.db"
    shutil.copyfile(migrated_template, path)
    empty = path.parent / "empty.toml"
    empty.write_text("")
    result = CliRunner().invoke(cli, ["--db", str(path), "--config", str(empty), "demo", "--patients", "40"])
    assert result.exit_code == 0, result.output
    import sqlite3

    with sqlite3.connect(path) as conn:  # fold the WAL into the file so a plain copy has everything
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return str(path)


@pytest.fixture
def clinic(tmp_path, demo_template):
    db = tmp_path / "clinic.db"
    shutil.copyfile(demo_template, db)
    config = tmp_path / "site.toml"
    config.write_text('[reminders]\nchannels = ["jsonl"]\nbatch_size = 5\n[reminders.jsonl]\npath = "r.jsonl"\n')
    os.environ["TRACKER_CONFIG"] = str(config)
    return str(db), tmp_path / "r.jsonl"


def _start_slow(db: str) -> subprocess.Popen:
    env = {**os.environ, "TRACKER_TEST_DELIVERY_DELAY": "0.15"}
    return subprocess.Popen([*TRACKER, "--db", db, "nightly"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_lines(path, count: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(jsonl_rows(path)) >= count:
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    raise AssertionError(f"{path} never reached {count} lines")


def test_sigkill_mid_run_then_rerun_delivers_every_reminder_exactly_once(clinic):
    db, out = clinic
    process = _start_slow(db)
    _wait_for_lines(out, 10, process)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    killed_lines = len(jsonl_rows(out))
    expected = reminder_ids(db)
    assert 10 <= killed_lines < len(expected)  # the kill landed mid-delivery

    rerun = run_cli(db, "nightly")
    assert rerun.returncode == 0, rerun.stderr
    counts = Counter(row["reminder_id"] for row in jsonl_rows(out))
    assert set(counts) == expected
    assert set(counts.values()) == {1}  # nobody reminded twice, nobody missed
    runs = run_cli(db, "nightly", "status", "--json")
    import json

    statuses = [r["status"] for r in json.loads(runs.stdout)]
    assert statuses == ["ok", "interrupted"]


def test_two_concurrent_runs_one_works_the_other_refuses(clinic):
    db, out = clinic
    first = _start_slow(db)
    _wait_for_lines(out, 1, first)
    second = run_cli(db, "nightly")
    assert second.returncode == 9
    assert "another nightly run" in second.stderr
    assert first.wait(timeout=120) == 0, first.communicate()
    counts = Counter(row["reminder_id"] for row in jsonl_rows(out))
    assert set(counts) == reminder_ids(db) and set(counts.values()) == {1}
