"""Issue 15 item 2: the webhook counts only a 2xx from the configured URL as delivery. Real HTTP servers
on loopback: a redirect is a failure (the target gets nothing), proxy variables are ignored unless a proxy
is configured, a dripping server is cut off at `timeout_s`, and 5xx is retried within the run (bounded)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.nightly_support import small_clinic, write_config


class Recorder(ThreadingHTTPServer):
    """Answers each POST with the next of `statuses` (then 200), recording path and body."""

    def __init__(self, statuses=(), location=None):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.statuses = list(statuses)
        self.location = location
        self.posts: list[tuple[str, dict, dict]] = []  # (request target, headers, body)
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def answer(self, handler) -> None:
        """Called before each answer is sent."""


class _Handler(BaseHTTPRequestHandler):
    server: Recorder

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.posts.append((self.path, dict(self.headers), body))
            status = self.server.statuses.pop(0) if self.server.statuses else 200
        self.server.answer(self)
        self.send_response(status)
        if self.server.location:
            self.send_header("Location", self.server.location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST

    def log_message(self, *args):
        pass


def _serve(server):
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


@pytest.fixture
def servers():
    started = []

    def start(server):
        started.append(_serve(server))
        return server

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


def _config(tmp_path, url, extra="", timeout_s=5):
    write_config(tmp_path / "site.toml", f"""
[reminders]
channels = ["webhook"]
batch_size = 50
[reminders.webhook]
url = "{url}"
timeout_s = {timeout_s}
backoff_s = 0
{extra}
""")


def _undelivered(tracker) -> int:
    return tracker.json("nightly status")[0]["counts"]["undelivered"]["webhook"]


def test_a_redirect_is_a_failure_and_the_target_gets_nothing(tracker, tmp_path, servers, monkeypatch):
    monkeypatch.setenv("HOOK_TOKEN", "t0ken")
    elsewhere = servers(Recorder())
    hook = servers(Recorder(statuses=[302], location=f"{elsewhere.url}/steal"))
    small_clinic(tracker)
    _config(tmp_path, f"{hook.url}/reminders", 'token_env = "HOOK_TOKEN"')
    failed = tracker("nightly --as-of 2026-01-16", ok=False)
    assert failed.exit_code == 10 and "HTTP 302" in failed.stderr and "redirects are not followed" in failed.stderr
    assert len(hook.posts) == 1  # a 3xx is not retried
    assert elsewhere.posts == []  # neither the body nor the token went to the Location
    assert _undelivered(tracker) == len(hook.posts[0][2]["reminders"]) > 0


def test_proxy_variables_are_ignored_and_a_configured_proxy_is_used(tracker, tmp_path, servers, monkeypatch):
    stray = servers(Recorder())
    hook = servers(Recorder())
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy"):
        monkeypatch.setenv(name, stray.url)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    small_clinic(tracker)
    _config(tmp_path, f"{hook.url}/reminders")
    tracker("nightly --as-of 2026-01-09")
    assert stray.posts == [] and len(hook.posts) == 1  # straight to the URL, whatever the environment says
    assert _undelivered(tracker) == 0

    proxy = servers(Recorder())
    _config(tmp_path, f"{hook.url}/reminders", f'proxy = "{proxy.url}"')
    tracker("nightly --as-of 2026-01-16")
    assert len(hook.posts) == 1  # the proxy answered (it does not forward): still only the first POST
    [(target, headers, body)] = proxy.posts
    assert target == f"{hook.url}/reminders" and body["reminders"]  # an absolute-URI proxy request
    assert _undelivered(tracker) == 0


class Dripper(ThreadingHTTPServer):
    """Answers a POST with an endless header, one byte at a time, until the client hangs up or the test
    ends; `bytes_sent` grows while a client keeps listening."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _DripHandler)
        self.stop = threading.Event()
        self.bytes_sent = 0
        self.hung_up = threading.Event()

    url = Recorder.url


class _DripHandler(BaseHTTPRequestHandler):
    server: Dripper

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
        try:
            # Each byte comes well inside a per-read timeout; only a total deadline stops the client.
            while not self.server.stop.wait(0.05):
                self.wfile.write(b"x")
                self.wfile.flush()
                self.server.bytes_sent += 1
        except OSError:
            self.server.hung_up.set()

    def log_message(self, *args):
        pass


def test_a_dripping_server_is_cut_off_at_timeout_s(tracker, tmp_path, servers):
    drip = servers(Dripper())
    small_clinic(tracker)
    _config(tmp_path, f"{drip.url}/reminders", timeout_s=1)
    try:
        failed = tracker("nightly --as-of 2026-01-16", ok=False)
        assert failed.exit_code == 10
        assert "no complete answer within timeout_s = 1 s" in failed.stderr
        assert drip.hung_up.wait(60)  # the client closed the connection: it was not left dripping
        assert _undelivered(tracker) > 0
    finally:
        drip.stop.set()


def test_5xx_is_retried_within_the_run_with_the_same_batch(tracker, tmp_path, servers):
    hook = servers(Recorder(statuses=[503, 502]))
    small_clinic(tracker)
    _config(tmp_path, f"{hook.url}/reminders", "attempts = 3")
    tracker("nightly --as-of 2026-01-16")  # third try answered 200: delivered in this run, exit 0
    assert len(hook.posts) == 3
    keys = {headers["Idempotency-Key"] for _, headers, _ in hook.posts}
    assert len(keys) == 1  # the same batch each time
    assert _undelivered(tracker) == 0


def test_retries_are_bounded_then_the_batch_waits_for_the_next_run(tracker, tmp_path, servers):
    hook = servers(Recorder(statuses=[500] * 4))
    small_clinic(tracker)
    _config(tmp_path, f"{hook.url}/reminders", "attempts = 2")
    failed = tracker("nightly --as-of 2026-01-16", ok=False)
    assert failed.exit_code == 10 and "HTTP 500" in failed.stderr
    assert len(hook.posts) == 2
    pending = _undelivered(tracker)
    assert pending > 0
    tracker("nightly --as-of 2026-01-16", ok=False)  # two more 500s
    tracker("nightly --as-of 2026-01-16")  # now answered
    ids = [r["reminder_id"] for _, _, body in hook.posts[-1:] for r in body["reminders"]]
    assert len(ids) == pending and _undelivered(tracker) == 0


def test_bad_webhook_settings_are_one_line_errors(tracker, tmp_path):
    _config(tmp_path, "http://127.0.0.1:9/r", 'proxy = "socks5://p:1080"')
    bad = tracker("config show", ok=False)
    assert bad.exit_code == 8 and "reminders.webhook.proxy" in bad.stderr
    _config(tmp_path, "http://127.0.0.1:9/r", "attempts = 0")
    bad = tracker("config show", ok=False)
    assert bad.exit_code == 8 and "reminders.webhook.attempts: 0" in bad.stderr


class Holder(Recorder):
    """Records each POST; holds its answer to the first until `release` is set (the client gave up long
    before), then answers 200 into the closed connection."""

    def __init__(self):
        super().__init__()
        self.held = threading.Event()
        self.release = threading.Event()

    def answer(self, handler) -> None:
        if len(self.posts) == 1:
            self.held.set()
            self.release.wait(60)  # a failure guard: the test sets it as soon as the run is over


def test_a_batch_that_may_have_arrived_is_resent_unchanged_before_new_reminders(tracker, tmp_path, servers):
    """Reliability finding D5: night 1's POST reached the receiver but its answer came after timeout_s, so
    nothing was marked sent. Night 2 first sends that batch again, byte for byte under the same
    Idempotency-Key, then its new reminders in a batch of their own: a receiver dropping keys it already has
    gets every reminder exactly once."""
    hook = servers(Holder())
    small_clinic(tracker)
    _config(tmp_path, f"{hook.url}/reminders", "attempts = 1", timeout_s=0.2)
    try:
        failed = tracker("nightly --as-of 2026-01-09", ok=False)
    finally:
        hook.release.set()
    assert failed.exit_code == 10 and hook.held.is_set()
    first = hook.posts[0][2]["reminders"]
    assert _undelivered(tracker) == len(first) > 0

    tracker("nightly --as-of 2026-01-16")  # new reminders since
    assert len(hook.posts) == 3
    (_, key1, body1), (_, key2, body2), (_, key3, body3) = [
        (target, headers["Idempotency-Key"], body) for target, headers, body in hook.posts]
    assert (key2, body2) == (key1, body1)  # the same batch, as it was
    assert key3 != key1 and body3["reminders"]
    uids = [r["reminder_uid"] for r in body3["reminders"]]
    assert not set(uids) & {r["reminder_uid"] for r in first}  # new reminders only
    by_key = {key: body for key, body in ((key1, body1), (key3, body3))}  # what a deduping receiver keeps
    kept = [r["reminder_uid"] for body in by_key.values() for r in body["reminders"]]
    assert len(kept) == len(set(kept)) and _undelivered(tracker) == 0


def test_a_batch_the_receiver_refused_is_not_replayed_for_good(tracker, tmp_path, servers):
    """Session 20's second reading of D5: a batch the receiver answered 413 (too large) stayed recorded and
    was replayed, unchanged, ahead of every other reminder each night, so lowering batch_size never helped.
    A receiver's refusal (a redirect or 4xx) means it did not take the batch: forgotten, the next run
    batches afresh. (A 5xx or a timeout keeps it: the batch may have been taken.)"""
    hook = servers(Recorder(statuses=[413]))
    small_clinic(tracker)
    _config(tmp_path, f"{hook.url}/reminders", "attempts = 1")
    refused = tracker("nightly --as-of 2026-01-09", ok=False)
    assert refused.exit_code == 10 and "HTTP 413" in refused.stderr
    pending = _undelivered(tracker)
    assert pending == len(hook.posts[0][2]["reminders"]) > 0
    write_config(tmp_path / "site.toml", (tmp_path / "site.toml").read_text().replace("batch_size = 50",
                                                                                       "batch_size = 2"))
    tracker("nightly --as-of 2026-01-09")  # the same day again: undelivered only, in batches of 2
    later = [body for _, _, body in hook.posts[1:]]
    assert all(body["count"] <= 2 for body in later)  # before: the 413'd batch again, whole, and exit 10
    assert sum(body["count"] for body in later) == pending and _undelivered(tracker) == 0
