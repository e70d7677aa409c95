"""Issue 7: a real `tracker nightly` process SIGKILLed part-way through delivery, then re-run, delivers
every reminder exactly once; two concurrent runs: one works, the other refuses.

No timing and no test hook in the product (issue 12): the reminders go to the webhook channel, whose
receiver is a real HTTP server in this test on 127.0.0.1. It answers the first `answer_first` batches
with 200 and, on the next POST, sets the `held` event and does not answer until the test sets `release`.
The nightly process then sits in the worst place, deterministically: the batches before were answered
and marked sent (delivery is sequential: answer, mark, next batch), the held one is sent but neither
answered nor marked, the rest not sent. The test waits for `held` (60 s is only a failure guard), then
SIGKILLs the process or starts a second run. "Delivered" means answered 200 by the receiver.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from tests.nightly_support import TRACKER, reminder_ids, run_cli

BATCH = 5
GUARD_S = 60  # upper bound on waiting for an event; only ever reached when a test is failing


class Receiver(ThreadingHTTPServer):
    """The webhook receiver: answers 200 to the first `answer_first` POSTs, holds the next one."""

    def __init__(self, answer_first: int):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answer_first = answer_first
        self.lock = threading.Lock()
        self.posts: list[tuple[str, list[int]]] = []  # (Idempotency-Key, reminder ids) of every POST
        self.acknowledged: list[int] = []  # reminder ids of the batches answered 200
        self.held = threading.Event()  # set when the held POST has arrived
        self.release = threading.Event()  # set by the test: answer the held POST (if answer_held) or drop it
        self.answer_held = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/reminders"

    def held_ids(self) -> list[int]:
        return self.posts[self.answer_first][1]


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self):
        server = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        ids = [row["reminder_id"] for row in body["reminders"]]
        with server.lock:
            server.posts.append((self.headers["Idempotency-Key"], ids))
            hold = len(server.posts) == server.answer_first + 1  # only ever one POST is held
        if hold:
            server.held.set()
            if not server.release.wait(GUARD_S) or not server.answer_held:
                return  # closed unanswered: not delivered
        self.send_response(200)
        self.end_headers()
        self.wfile.flush()
        with server.lock:
            server.acknowledged.extend(ids)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def demo_template(tmp_path_factory, migrated_template):
    """A demo clinic built once for this module (the demo uses the real today)."""
    from tracker.cli import cli

    path = tmp_path_factory.mktemp("demo") / "demo.db"
    shutil.copy(migrated_template, path)  # keeps the template's private mode (0600)
    empty = path.parent / "empty.toml"
    empty.write_text("")
    result = CliRunner().invoke(cli, ["--db", str(path), "--config", str(empty), "demo", "--patients", "40"])
    assert result.exit_code == 0, result.output
    import sqlite3

    with sqlite3.connect(path) as conn:  # fold the WAL into the file so a plain copy has everything
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return str(path)


@pytest.fixture
def receiver():
    server = Receiver(answer_first=2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.answer_held = False  # a held POST still waiting (a failing test) is dropped, not answered
    server.release.set()
    server.shutdown()
    server.server_close()  # joins the request threads


@pytest.fixture
def clinic(tmp_path, demo_template, receiver):
    db = tmp_path / "clinic.db"
    shutil.copy(demo_template, db)
    config = tmp_path / "site.toml"
    # timeout_s at its maximum: the held POST must not time out while the test kills or races the run
    config.write_text(f'[reminders]\nchannels = ["webhook"]\nbatch_size = {BATCH}\n'
                      f'[reminders.webhook]\nurl = "{receiver.url}"\ntimeout_s = 600\n')
    os.environ["TRACKER_CONFIG"] = str(config)  # the autouse fixture restores it after the test
    return str(db)


def _start(db: str) -> subprocess.Popen:
    return subprocess.Popen([*TRACKER, "--db", db, "nightly"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_until_held(receiver: Receiver, process: subprocess.Popen) -> None:
    """Block until the receiver holds a POST; fail early if the process exits first."""
    deadline = time.monotonic() + GUARD_S
    while not receiver.held.wait(0.5):
        if process.poll() is not None:
            _, err = process.communicate()
            raise AssertionError(f"nightly exited {process.returncode} before a batch was held:\n{err}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no batch was held within {GUARD_S} s")


def test_sigkill_mid_run_then_rerun_delivers_every_reminder_exactly_once(clinic, receiver):
    db = clinic
    process = _start(db)
    _wait_until_held(receiver, process)
    process.send_signal(signal.SIGKILL)  # mid-delivery: 2 batches answered and marked, 1 sent unanswered
    process.communicate(timeout=GUARD_S)
    assert process.returncode == -signal.SIGKILL
    receiver.answer_held = False
    receiver.release.set()  # the held POST is dropped: its reminders were never delivered

    expected = reminder_ids(db)  # the killed run committed its reminders before delivering
    before_kill = list(receiver.acknowledged)
    assert len(before_kill) == 2 * BATCH
    held_key, held = receiver.posts[2]
    assert len(held) == BATCH and not set(held) & set(before_kill)
    assert len(expected) > len(before_kill) + len(held)  # some batches were never sent before the kill

    rerun = run_cli(db, "nightly")
    assert rerun.returncode == 0, rerun.stderr
    counts = Counter(receiver.acknowledged)
    assert set(counts) == expected
    assert set(counts.values()) == {1}  # nobody reminded twice, nobody missed
    sent_again = receiver.posts[3]  # the re-run starts with the batch the killed run had not marked
    assert sent_again == (held_key, held)  # same ids, same Idempotency-Key
    runs = run_cli(db, "nightly", "status", "--json")
    statuses = [r["status"] for r in json.loads(runs.stdout)]
    assert statuses == ["ok", "interrupted"]


def test_two_concurrent_runs_one_works_the_other_refuses(clinic, receiver):
    db = clinic
    first = _start(db)
    _wait_until_held(receiver, first)  # the first run is mid-delivery, holding the nightly lock
    second = run_cli(db, "nightly")
    assert second.returncode == 9, second.stderr
    assert "another nightly run" in second.stderr
    receiver.release.set()  # answer the held batch: the first run carries on
    _, err = first.communicate(timeout=GUARD_S)
    assert first.returncode == 0, err
    counts = Counter(receiver.acknowledged)
    assert set(counts) == reminder_ids(db) and set(counts.values()) == {1}
    assert sorted(i for _, ids in receiver.posts for i in ids) == sorted(counts)  # nothing POSTed twice
    runs = run_cli(db, "nightly", "status", "--json")
    assert [r["status"] for r in json.loads(runs.stdout)] == ["ok"]  # the refused run left no row
