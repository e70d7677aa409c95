"""webhook: an HTTP POST of JSON per batch (http.client), delivered only on a 2xx answer.

Body: {"reminders": [...], "count": n}. Each reminder carries `reminder_id`, `reminder_uid` (unique across
a restore) and `dedupe_key` (the condition it reminds of). The request carries an Idempotency-Key derived
from the batch's reminder uids, so one key always carries the same reminders. A batch is recorded (its
reminders and key) before it is POSTed, and a batch not answered 2xx (a timeout, a kill, a 5xx) is sent
again unchanged, same body and key, before any other reminder (tracker/services/delivery.py): a receiver
can drop a request whose key it already has, and loses nothing and doubles nothing.

Only a 2xx from the configured URL is delivery:
- redirects are not followed (a 3xx is a failure): following one would send the body, and the Bearer
  token, wherever the Location points;
- proxy environment variables (http_proxy, https_proxy, ...) are ignored; a proxy is used only when
  `reminders.webhook.proxy` names one, so a stray proxy's 200 never counts as delivery;
- `timeout_s` is a deadline for the whole request (connect, send, answer), not per socket read: a server
  that drips bytes is cut off when it passes;
- refused connections, resets, 5xx and 429 are retried within the run (`attempts`, exponential backoff
  from `backoff_s`, capped, via tenacity) before the batch is left for the next run. A deadline passed is
  not retried, so one slow server holds a run at most `timeout_s`.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import ssl
import threading
import time
from urllib.parse import urlsplit

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from tracker.config import secret
from tracker.core.settings import WebhookSettings

MAX_BACKOFF_S = 30.0  # the longest wait between two attempts, whatever `backoff_s` and `attempts` say
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


class WebhookError(RuntimeError):
    """The batch was not delivered; `retry` says whether trying again within the run makes sense; `status`
    the receiver's answer, if it gave one."""

    def __init__(self, message: str, retry: bool, status: int | None = None):
        super().__init__(message)
        self.retry, self.status = retry, status

    @property
    def refused(self) -> bool:
        """The receiver answered and did not take the batch (a redirect or a 4xx): it was not delivered, so it
        need not be sent again unchanged (a 5xx, a timeout or a lost connection may hide a batch taken)."""
        return self.status is not None and 300 <= self.status < 500


def _uid(row: dict) -> str:
    return str(row.get("reminder_uid", row["reminder_id"]))  # unique across a restore, unlike the row id


class WebhookChannel:
    name = "webhook"
    digest = False

    def __init__(self, settings: WebhookSettings):
        self.settings = settings

    @staticmethod
    def batch_key(rows: list[dict]) -> str:
        """The Idempotency-Key of a batch: a digest of its reminders' uids (the same key, the same reminders)."""
        digest = hashlib.sha256("\n".join(_uid(row) for row in rows).encode()).hexdigest()
        return f"tracker-reminders-{digest[:32]}"

    def send(self, rows: list[dict], key: str | None = None) -> None:
        body = json.dumps({"count": len(rows), "reminders": rows}, sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "tracker-nightly",
            "Idempotency-Key": key or self.batch_key(rows),
        }
        token = secret(self.settings.token_env)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            self._post_with_retries(body, headers)
        except WebhookError as exc:
            failed = RuntimeError(str(exc))  # shown as the run's failure: "RuntimeError: HTTP 500 ..."
            failed.refused = exc.refused  # read by the delivery (services/delivery.py _refused)
            raise failed from None

    def _post_with_retries(self, body: bytes, headers: dict) -> None:
        s = self.settings
        for attempt in Retrying(
            stop=stop_after_attempt(s.attempts),
            wait=wait_exponential(multiplier=s.backoff_s, max=MAX_BACKOFF_S),
            retry=retry_if_exception(lambda exc: isinstance(exc, WebhookError) and exc.retry),
            reraise=True,
        ):
            with attempt:
                self._post(body, headers)

    def _connection(self) -> tuple[http.client.HTTPConnection, str]:
        """The connection and the request target: the URL's own host, or the configured proxy."""
        s = self.settings
        url = urlsplit(s.url)
        target = (url.path or "/") + (f"?{url.query}" if url.query else "")
        host, port = url.hostname, url.port
        if s.proxy is None:
            if url.scheme == "https":
                return http.client.HTTPSConnection(host, port, timeout=s.timeout_s,
                                                   context=ssl.create_default_context()), target
            return http.client.HTTPConnection(host, port, timeout=s.timeout_s), target
        proxy = urlsplit(s.proxy)
        if url.scheme == "https":  # CONNECT tunnel: the proxy sees neither body nor token
            conn = http.client.HTTPSConnection(proxy.hostname, proxy.port or 8080, timeout=s.timeout_s,
                                               context=ssl.create_default_context())
            conn.set_tunnel(host, port or 443)
            return conn, target
        netloc = url.netloc.rsplit("@", 1)[-1]
        return http.client.HTTPConnection(proxy.hostname, proxy.port or 8080, timeout=s.timeout_s), \
            f"http://{netloc}{target}"

    def _post(self, body: bytes, headers: dict) -> None:
        s = self.settings
        conn, target = self._connection()
        expired = threading.Event()

        def cut_off() -> None:
            # The deadline passed: shut the socket so the blocked connect/send/read returns at once.
            expired.set()
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        watchdog = threading.Timer(s.timeout_s, cut_off)
        watchdog.daemon = True
        started = time.monotonic()
        watchdog.start()
        try:
            conn.connect()
            if expired.is_set():  # passed while connecting, before there was a socket to shut
                raise TimeoutError
            conn.request("POST", target, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            status, reason = response.status, response.reason
        except (OSError, http.client.HTTPException) as exc:
            if expired.is_set() or isinstance(exc, TimeoutError):
                raise WebhookError(f"no complete answer within timeout_s = {s.timeout_s:g} s "
                                   f"(gave up after {time.monotonic() - started:.1f} s)", retry=False) from None
            raise WebhookError(f"cannot reach webhook: {exc}", retry=True) from None
        finally:
            watchdog.cancel()
            conn.close()
        if expired.is_set():
            raise WebhookError(f"no complete answer within timeout_s = {s.timeout_s:g} s", retry=False)
        if 200 <= status < 300:
            return
        if 300 <= status < 400:
            raise WebhookError(f"HTTP {status} {reason}: redirects are not followed; "
                               f"set reminders.webhook.url to the final address", retry=False, status=status)
        raise WebhookError(f"HTTP {status} {reason}", retry=status in RETRY_STATUSES, status=status)
