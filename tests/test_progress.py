"""Issue 18 item 5: a progress bar on stderr when it is a terminal (tracker/cli/progress.py) for result import,
synth, nightly and export ics; none when stderr is piped or the output is JSON. Real processes: one through a
pseudo-terminal, read until it ends (no sleeps)."""

from __future__ import annotations

import datetime as dt
import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
BAR = "━"  # rich's bar


def env() -> dict:
    # TRACKER_PROGRESS_AFTER=0: the bar at once, not after a second (these commands are quick here).
    return {**os.environ, "PYTHONPATH": str(ROOT), "TRACKER_PROGRESS_AFTER": "0", "TERM": "xterm-256color",
            "COLUMNS": "100"}


def on_a_terminal(args: list[str]) -> tuple[int, str]:
    """Run `tracker ARGS` with stderr on a pseudo-terminal; (exit code, everything it wrote there)."""
    primary, secondary = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "tracker", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=secondary, env=env())
    os.close(secondary)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([primary], [], [], 120)
            assert ready, "no output from the command for two minutes"
            try:
                data = os.read(primary, 65536)
            except OSError:  # EIO: the command ended and closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(primary)
    return proc.wait(timeout=120), b"".join(chunks).decode("utf-8", "replace")


def piped(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tracker", *args], capture_output=True, text=True, env=env(),
                          timeout=120)


@pytest.fixture
def lab_file(tracker, tmp_path) -> Path:
    tracker("patient add M1 --name 'Max Test' --dob 1970-01-01")
    tracker("therapy start M1 methotrexate --on " + (dt.date.today() - dt.timedelta(days=30)).isoformat())
    day = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    path = tmp_path / "labs.csv"
    path.write_text("mrn,test,value,unit,taken_on\n" + "".join(
        f"M1,{test},{value},,{day}\n" for test, value in [("alt", 25), ("wbc", 6), ("neutrophils", 3.5)]))
    return path


def test_result_import_shows_a_bar_on_a_terminal(db_url, lab_file):
    code, seen = on_a_terminal(["--db", db_url, "result", "import", str(lab_file)])
    assert code == 0, seen
    assert "importing results" in seen and BAR in seen and "3/3" in seen


def test_result_import_piped_shows_no_bar(db_url, lab_file):
    result = piped(["--db", db_url, "result", "import", str(lab_file)])
    assert result.returncode == 0, result.stderr
    assert "imported 3 results" in result.stdout
    for text in (result.stdout, result.stderr):
        assert BAR not in text and "importing" not in text and "\x1b" not in text and "\r" not in text


def test_synth_nightly_and_export_show_a_bar_on_a_terminal(tmp_path):
    if os.environ.get("TRACKER_TEST_PG"):
        pytest.skip("synth fills an empty SQLite file of its own here")
    db = str(tmp_path / "clinic.db")
    for command, label in [(["synth", "--patients", "30"], "synthesising patients"),
                           (["nightly"], "nightly run"),
                           (["export", "ics", "--out", str(tmp_path / "clinic.ics")], "exporting calendar")]:
        code, seen = on_a_terminal(["--db", db, *command])
        assert code == 0, seen
        assert label in seen and BAR in seen, (command, seen)


def test_no_bar_under_json_even_on_a_terminal(tmp_path):
    if os.environ.get("TRACKER_TEST_PG"):
        pytest.skip("synth fills an empty SQLite file of its own here")
    code, seen = on_a_terminal(["--db", str(tmp_path / "clinic.db"), "synth", "--patients", "30", "--json"])
    assert code == 0, seen
    assert BAR not in seen and "synthesising" not in seen
