"""Finding minor (b): `nightly status` tells a killed run from a running one. A run marked `running` whose
process no longer holds the nightly lock was SIGKILLed (the next run records it `interrupted`); status
shows it interrupted at once, and writes nothing. A live run is still shown running.

No timing: the run goes to a webhook whose receiver (tests/test_nightly_crash.py's) holds the first POST,
so the process sits mid-delivery, holding the lock, until the test kills it."""

from __future__ import annotations

import json
import os
import signal
import threading

import pytest

from tests.conftest import dump_database
from tests.nightly_support import run_cli
from tests.test_nightly_crash import GUARD_S, Receiver, _start, _wait_until_held


@pytest.fixture
def receiver():
    server = Receiver(answer_first=0)  # the first POST is held
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.answer_held = False
    server.release.set()
    server.shutdown()
    server.server_close()


def test_status_shows_a_killed_run_interrupted_and_a_live_one_running(tracker, tmp_path, receiver):
    import datetime as dt

    tracker("patient add P1 --name 'Ada Byron' --dob 1980-01-01")
    tracker(f"therapy start P1 methotrexate --on {dt.date.today() - dt.timedelta(days=60)}")
    config = tmp_path / "site.toml"
    config.write_text(f'[reminders]\nchannels = ["webhook"]\n[reminders.webhook]\nurl = "{receiver.url}"\n'
                      'timeout_s = 600\n')
    os.environ["TRACKER_CONFIG"] = str(config)  # the autouse fixture restores it after the test
    process = _start(tracker.db)
    _wait_until_held(receiver, process)  # mid-delivery, holding the nightly lock

    live = json.loads(run_cli(tracker.db, "nightly", "status", "--json").stdout)
    assert [(run["status"], run["finished_at"]) for run in live] == [("running", None)]

    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=GUARD_S)
    before = dump_database(tracker.db)
    dead = run_cli(tracker.db, "nightly", "status", "--json")
    assert dead.returncode == 0, dead.stderr
    assert [(run["status"], run["finished_at"]) for run in json.loads(dead.stdout)] == [("interrupted", None)]
    text = run_cli(tracker.db, "nightly", "status")
    assert text.returncode == 0 and "interrupted" in text.stdout.splitlines()[2].split(), text.stdout
    assert "running" not in text.stdout
    assert dump_database(tracker.db) == before  # read-only: the row still says running until the next run

    receiver.answer_held = False
    receiver.release.set()
    rerun = run_cli(tracker.db, "nightly")
    assert rerun.returncode == 0, rerun.stderr
    runs = json.loads(run_cli(tracker.db, "nightly", "status", "--json").stdout)
    assert [run["status"] for run in runs] == ["ok", "interrupted"]
    assert runs[1]["finished_at"] is not None  # recorded by the re-run, under the lock
