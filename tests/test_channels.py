"""Issue 7: e-mail (a real aiosmtpd server on loopback) and webhook (a real http.server) channels; a
failing channel loses nothing, blocks nothing, and is retried on the next run."""

from __future__ import annotations

import json
import threading
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from tests.smtp_support import DOCTOR, NURSES, email_site
from tests.nightly_support import free_port, jsonl_rows, small_clinic, write_config


class Inbox:
    """aiosmtpd handler keeping every message it accepts."""

    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content, policy=policy.default)))
        return "250 OK"


@pytest.fixture
def smtp_port():
    return free_port()


def _email_config(tmp_path, port, extra=""):
    email_site(tmp_path, port, channels=("stdout", "jsonl", "email"), to=(NURSES, DOCTOR), timeout_s=5, extra=extra)


def test_smtp_down_keeps_email_reminders_for_the_next_run_and_other_channels_work(tracker, tmp_path, smtp_port):
    small_clinic(tracker)
    _email_config(tmp_path, smtp_port)
    down = tracker("nightly --as-of 2026-01-16", ok=False)  # nothing listens on the port yet
    assert down.exit_code == 10
    assert "email: " in down.stderr and "kept for the next run" in down.stderr
    rows = jsonl_rows(tmp_path / "reminders.jsonl")
    assert rows and down.stdout.startswith(f"tracker: {len(rows)} reminders")  # stdout and jsonl unaffected
    run = tracker.json("nightly status")[0]
    assert run["status"] == "failed" and "email" in run["failures"]
    assert run["counts"]["undelivered"] == {"stdout": 0, "jsonl": 0, "email": len(rows)}

    inbox = Inbox()
    server = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    server.start()
    try:
        tracker("nightly --as-of 2026-01-16")  # same day: nothing new, the e-mail is retried
        tracker("nightly --as-of 2026-01-16")  # and not sent twice
    finally:
        server.stop()
    assert len(inbox.messages) == 2  # one digest per recipient (issue 15: delivery tracked per recipient)
    assert sorted(r for recipients, _ in inbox.messages for r in recipients) == [
        "dr.who@clinic.example", "nurses@clinic.example"]
    recipients, message = inbox.messages[0]
    assert message["Subject"] == f"tracker: {len(rows)} reminders for 2026-01-16"
    body = message.get_content()
    assert body.count("OVERDUE") + body.count("    due ") + body.count("ALERT") == len(rows)
    assert "P1 AB" in body and "Ada" not in body
    assert jsonl_rows(tmp_path / "reminders.jsonl") == rows  # jsonl was not re-sent
    assert tracker.json("nightly status")[0]["counts"]["undelivered"]["email"] == 0


def test_email_subject_has_no_clinical_text_and_login_uses_the_password_env(tracker, tmp_path, smtp_port,
                                                                             monkeypatch):
    from aiosmtpd.smtp import AuthResult

    seen = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        seen.append((auth_data.login.decode(), auth_data.password.decode()))
        return AuthResult(success=auth_data.password == b"s3cret")

    small_clinic(tracker)
    _email_config(tmp_path, smtp_port, 'user = "tracker"\npassword_env = "TEST_SMTP_PASSWORD"')
    monkeypatch.setenv("TEST_SMTP_PASSWORD", "s3cret")
    inbox = Inbox()
    server = Controller(inbox, hostname="127.0.0.1", port=smtp_port, authenticator=authenticator,
                        auth_require_tls=False)
    server.start()
    try:
        tracker("nightly --as-of 2026-01-16")
    finally:
        server.stop()
    assert seen == [("tracker", "s3cret")]
    subject = inbox.messages[0][1]["Subject"]
    assert subject.startswith("tracker: ") and subject.endswith("reminders for 2026-01-16")
    for word in ("methotrexate", "dupilumab", "P1", "AB", "CBC", "overdue"):
        assert word.lower() not in subject.lower()


class Hook(BaseHTTPRequestHandler):
    """Records each POSTed JSON body; answers with `server.status`."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.posts.append((dict(self.headers), json.loads(body)))
        self.send_response(self.server.status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    server.posts, server.status = [], 200
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _webhook_config(tmp_path, port):
    write_config(tmp_path / "site.toml", f"""
[reminders]
channels = ["jsonl", "webhook"]
batch_size = 4
[reminders.jsonl]
path = "reminders.jsonl"
[reminders.webhook]
url = "http://127.0.0.1:{port}/reminders?token=abc"
timeout_s = 5
""")


def test_webhook_receives_every_reminder_once_in_batches(tracker, tmp_path, webhook):
    small_clinic(tracker)
    _webhook_config(tmp_path, webhook.server_address[1])
    tracker("nightly --as-of 2026-01-16")
    tracker("nightly --as-of 2026-01-16")
    rows = jsonl_rows(tmp_path / "reminders.jsonl")
    posted = [r for _, body in webhook.posts for r in body["reminders"]]
    assert sorted(r["reminder_id"] for r in posted) == sorted(r["reminder_id"] for r in rows)
    assert len(webhook.posts) == -(-len(rows) // 4)  # batches of 4
    headers, body = webhook.posts[0]
    assert headers["Content-Type"] == "application/json"
    assert headers["Idempotency-Key"].startswith("tracker-reminders-")
    assert body["count"] == len(body["reminders"]) <= 4


def test_failing_webhook_is_retried_next_run_without_blocking_jsonl(tracker, tmp_path, webhook):
    small_clinic(tracker)
    _webhook_config(tmp_path, webhook.server_address[1])
    webhook.status = 500
    failed = tracker("nightly --as-of 2026-01-16", ok=False)
    assert failed.exit_code == 10 and "webhook: RuntimeError: HTTP 500" in failed.stderr
    assert "token=abc" not in failed.stderr
    rows = jsonl_rows(tmp_path / "reminders.jsonl")
    assert rows  # jsonl delivered everything
    webhook.posts.clear()
    webhook.status = 200
    tracker("nightly --as-of 2026-01-16")
    posted = [r["reminder_id"] for _, body in webhook.posts for r in body["reminders"]]
    assert sorted(posted) == sorted(r["reminder_id"] for r in rows)
    runs = tracker.json("nightly status")
    assert [r["status"] for r in runs] == ["ok", "failed"]
