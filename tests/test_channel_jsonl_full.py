"""Issue 15 item 2: the jsonl channel writes a batch completely or fails. A full disk (a real 4 KiB
tmpfs), a short write (RLIMIT_FSIZE in a child process) and a torn last line left by a kill: nothing is
marked sent that is not whole in the file, and the next run delivers the rest exactly once."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from tests.nightly_support import small_clinic, write_config


def _config(tmp_path, jsonl_path, batch_size=2):
    write_config(tmp_path / "site.toml", f"""
[reminders]
channels = ["jsonl"]
batch_size = {batch_size}
[reminders.jsonl]
path = "{jsonl_path}"
""")


def _lines(path) -> list[dict]:
    text = path.read_bytes()
    assert not text or text.endswith(b"\n"), "torn last line"
    return [json.loads(line) for line in text.decode().splitlines()]


def _delivery_states(db: str) -> dict[int, str]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT reminder_id, state FROM reminder_delivery WHERE channel = 'jsonl'"))


@pytest.fixture
def tiny_disk(tmp_path):
    """A real 4 KiB tmpfs (needs mount rights: root, as in CI containers)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(disk)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_marks_only_whole_lines_and_the_rest_is_delivered_once_there_is_room(
        tracker, tmp_path, tiny_disk):
    if tracker.db.startswith("postgresql"):
        pytest.skip("reads delivery states through sqlite3")
    small_clinic(tracker)
    for n in range(3, 12):  # enough reminders to overflow 4 KiB
        tracker(f"patient add P{n} --name 'Pat {n}' --dob 1970-01-01")
        tracker(f"therapy start P{n} methotrexate --on 2026-01-05")
    _config(tmp_path, tiny_disk / "reminders.jsonl")
    full = tracker("nightly --as-of 2026-01-16", ok=False)
    assert full.exit_code == 10 and "jsonl: " in full.stderr
    states = _delivery_states(tracker.db)
    written = _lines(tiny_disk / "reminders.jsonl")
    sent = {rid for rid, state in states.items() if state == "sent"}
    assert {row["reminder_id"] for row in written} == sent  # marked sent == whole in the file
    assert 0 < len(sent) < len(states)

    subprocess.run(["mount", "-o", "remount,size=1m", str(tiny_disk)], check=True)
    tracker("nightly --as-of 2026-01-16")
    ids = [row["reminder_id"] for row in _lines(tiny_disk / "reminders.jsonl")]
    assert sorted(ids) == sorted(states) and len(ids) == len(set(ids))
    assert set(_delivery_states(tracker.db).values()) == {"sent"}


def test_a_short_write_raises_and_leaves_the_file_as_it_was(tmp_path):
    """RLIMIT_FSIZE makes write(2) return fewer bytes than asked (then EFBIG): a real short write."""
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"reminder_id": 1}\n')
    script = textwrap.dedent(f"""
        import resource, signal, sys
        from tracker.channels.jsonl import JsonlChannel
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))
        rows = [{{"reminder_id": n, "text": "x" * 30}} for n in (2, 3, 4)]
        try:
            JsonlChannel({str(path)!r}).send(rows)
        except OSError as exc:
            print("failed:", exc)
            sys.exit(0)
        sys.exit("a short write was taken for delivery")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("failed:")
    assert path.read_bytes() == b'{"reminder_id": 1}\n'  # no partial batch left behind


def test_a_torn_last_line_is_cut_and_its_reminder_written_whole(tracker, tmp_path):
    small_clinic(tracker)
    out = tmp_path / "reminders.jsonl"
    _config(tmp_path, out, batch_size=50)
    tracker("nightly --as-of 2026-01-09")
    before = _lines(out)
    with out.open("ab") as fh:  # a later run killed in the middle of a line
        fh.write(b'{"due": "2026-01-1')
    tracker("nightly --as-of 2026-01-16")
    after = _lines(out)  # every line parses: the torn tail is gone
    assert after[:len(before)] == before
    ids = [row["reminder_id"] for row in after]
    assert len(ids) == len(set(ids)) and len(after) > len(before)
