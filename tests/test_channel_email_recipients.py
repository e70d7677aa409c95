"""Issue 15 item 2: e-mail delivery is tracked per recipient and marked right after each send. A real SMTP
server (aiosmtpd) on loopback: a refused recipient is retried alone, and a `tracker nightly` process
SIGKILLed while the server holds the second recipient's message re-sends nothing to the first."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller

from tests.nightly_support import TRACKER, free_port, run_cli, small_clinic, write_config

NURSES, DOCTOR = "nurses@clinic.example", "dr.who@clinic.example"
GUARD_S = 60  # a failure guard on waiting for an event; never reached when the code behaves


class Inbox:
    """Accepts mail; refuses RCPT for the addresses in `refuse`; holds the `hold_nth` DATA (1-based)
    until `release` is set, then answers it 250 if `answer_held` else drops it."""

    def __init__(self, refuse=(), hold_nth=None):
        self.refuse = set(refuse)
        self.hold_nth = hold_nth
        self.data_seen = 0
        self.accepted: list[tuple[list[str], object]] = []
        self.held = threading.Event()
        self.release = threading.Event()
        self.answer_held = True

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.data_seen += 1
        if self.data_seen == self.hold_nth:
            self.held.set()
            await asyncio.get_running_loop().run_in_executor(None, self.release.wait, GUARD_S)
            if not self.answer_held:
                return "421 4.3.0 dropped"
        self.accepted.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content, policy=policy.default)))
        return "250 OK"

    def per_recipient(self) -> Counter:
        return Counter(r for recipients, _ in self.accepted for r in recipients)


@pytest.fixture
def smtp():
    started = []

    def start(inbox, port=None):
        controller = Controller(inbox, hostname="127.0.0.1", port=port or free_port())
        controller.start()
        started.append(controller)
        return controller

    yield start
    for controller in started:
        inbox = controller.handler
        inbox.answer_held = False
        inbox.release.set()
        controller.stop()


def _config(tmp_path, port):
    write_config(tmp_path / "site.toml", f"""
[reminders]
channels = ["email"]
[reminders.email]
host = "127.0.0.1"
port = {port}
security = "none"
from = "tracker@clinic.example"
to = ["{NURSES}", "{DOCTOR}"]
timeout_s = 30
""")


def test_a_refused_recipient_is_retried_alone(tracker, tmp_path, smtp):
    small_clinic(tracker)
    inbox = Inbox(refuse={DOCTOR})
    server = smtp(inbox)
    _config(tmp_path, server.port)
    failed = tracker("nightly --as-of 2026-01-16", ok=False)
    assert failed.exit_code == 10 and f"recipient refused: {DOCTOR}" in failed.stderr
    assert inbox.per_recipient() == {NURSES: 1}
    count = int(inbox.accepted[0][1]["Subject"].split()[1])
    assert tracker.json("nightly status")[0]["counts"]["undelivered"]["email"] == count

    inbox.refuse.clear()  # the mailbox is back
    tracker("nightly --as-of 2026-01-16")
    tracker("nightly --as-of 2026-01-16")  # nothing left: no empty e-mail, nothing again
    assert inbox.per_recipient() == {NURSES: 1, DOCTOR: 1}  # the nurses did not get it again
    assert inbox.accepted[1][1]["Subject"] == inbox.accepted[0][1]["Subject"]
    assert tracker.json("nightly status")[0]["counts"]["undelivered"]["email"] == 0


def test_a_kill_after_the_first_recipient_was_accepted_resends_nothing_to_it(tracker, tmp_path, smtp):
    if tracker.db.startswith("postgresql"):
        pytest.skip("one SQLite file shared with a subprocess")
    small_clinic(tracker)
    inbox = Inbox(hold_nth=2)
    server = smtp(inbox)
    _config(tmp_path, server.port)
    process = subprocess.Popen([*TRACKER, "--db", tracker.db, "nightly", "--as-of", "2026-01-16"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + GUARD_S
    while not inbox.held.wait(0.5):  # the second recipient's message is held by the server
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "no message was held"
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=GUARD_S)
    inbox.answer_held = False
    inbox.release.set()  # the held message is dropped: never delivered
    assert inbox.per_recipient() == {NURSES: 1}

    rerun = run_cli(tracker.db, "nightly", "--as-of", "2026-01-16")
    assert rerun.returncode == 0, rerun.stderr
    assert inbox.per_recipient() == {NURSES: 1, DOCTOR: 1}  # the first recipient was marked at once


def test_deliveries_kept_under_the_old_single_email_channel_reach_every_recipient_once(tracker, tmp_path, smtp):
    if tracker.db.startswith("postgresql"):
        pytest.skip("rewrites delivery rows through sqlite3")
    small_clinic(tracker)
    port = free_port()
    _config(tmp_path, port)
    tracker("nightly --as-of 2026-01-16", ok=False)  # nobody listens: everything waits
    with sqlite3.connect(tracker.db) as conn:  # as a database from before per-recipient tracking has it
        keys = sorted({k for (k,) in conn.execute("SELECT channel FROM reminder_delivery")})
        conn.execute("DELETE FROM reminder_delivery WHERE channel = ?", (keys[0],))
        conn.execute("UPDATE reminder_delivery SET channel = 'email' WHERE channel = ?", (keys[1],))
        waiting = conn.execute("SELECT count(*) FROM reminder_delivery").fetchone()[0]
    inbox = Inbox()
    smtp(inbox, port)
    tracker("nightly --as-of 2026-01-16")
    assert inbox.per_recipient() == {NURSES: 1, DOCTOR: 1}
    assert {int(m["Subject"].split()[1]) for _, m in inbox.accepted} == {waiting}
    with sqlite3.connect(tracker.db) as conn:
        assert conn.execute("SELECT count(*) FROM reminder_delivery WHERE channel = 'email'").fetchone() == (0,)


def test_a_recipient_removed_from_the_config_is_not_counted_as_undelivered(tracker, tmp_path, smtp):
    """Reliability minor finding (c): a refused recipient then taken out of `to` left `nightly status`
    saying "Undelivered: email N" for ever, while every run recorded 0. Now status counts what a run
    delivers to, and lists apart what waits for a recipient no longer configured (sent if it comes back)."""
    small_clinic(tracker)
    inbox = Inbox(refuse={DOCTOR})
    server = smtp(inbox)
    _config(tmp_path, server.port)
    tracker("nightly --as-of 2026-01-16", ok=False)  # the doctor's mailbox refuses
    count = int(inbox.accepted[0][1]["Subject"].split()[1])
    assert tracker("nightly status").stdout.splitlines()[-1] == f"Undelivered: email {count}"

    _config(tmp_path, server.port)
    (tmp_path / "site.toml").write_text((tmp_path / "site.toml").read_text().replace(f', "{DOCTOR}"', ""))
    tracker("nightly --as-of 2026-01-16")  # the doctor is no longer configured
    status = tracker("nightly status").stdout
    assert "Undelivered" not in status and tracker.json("nightly status")[0]["counts"]["undelivered"]["email"] == 0
    assert status.splitlines()[-1] == f"Not configured any more (sent if configured again): email {count}"

    inbox.refuse.clear()
    _config(tmp_path, server.port)  # back in `to`, the mailbox works again: it gets what waited for it
    tracker("nightly --as-of 2026-01-16")
    assert inbox.per_recipient() == {NURSES: 1, DOCTOR: 1}
    status = tracker("nightly status").stdout
    assert "Undelivered" not in status and "Not configured" not in status
