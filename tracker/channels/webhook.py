"""webhook: an HTTP POST of JSON per batch, with a timeout (urllib).

Body: {"reminders": [...], "count": n}. Each reminder carries `reminder_id`, and the request carries an
Idempotency-Key, so a receiver can drop a batch it already has (a crash between POST and mark resends it).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from tracker.config import secret
from tracker.core.settings import WebhookSettings


class WebhookChannel:
    name = "webhook"
    digest = False

    def __init__(self, settings: WebhookSettings):
        self.settings = settings

    def send(self, rows: list[dict]) -> None:
        body = json.dumps({"count": len(rows), "reminders": rows}, sort_keys=True).encode()
        request = urllib.request.Request(self.settings.url, data=body, method="POST")
        request.add_header("Content-Type", "application/json")
        request.add_header("User-Agent", "tracker-nightly")
        request.add_header("Idempotency-Key",
                           f"tracker-reminders-{rows[0]['reminder_id']}-{rows[-1]['reminder_id']}")
        token = secret(self.settings.token_env)
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"HTTP {exc.code} {exc.reason}") from None
        except urllib.error.URLError as exc:
            raise RuntimeError(f"cannot reach webhook: {exc.reason}") from None
