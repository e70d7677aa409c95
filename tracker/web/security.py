"""What every response and form of the web view carries: security headers, CSRF tokens, the session's
idle timeout, and a per-address limit on failed sign-ins (beside the per-account lockout)."""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
from collections import defaultdict, deque
from pathlib import Path

SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),  # pages hold patient data: no copies in shared or browser caches
]
HSTS = (b"strict-transport-security", b"max-age=31536000")


class SecurityHeaders:
    """ASGI middleware adding SECURITY_HEADERS (and HSTS over TLS) to every HTTP response."""

    def __init__(self, app, https: bool = False):
        self.app, self.headers = app, SECURITY_HEADERS + ([HSTS] if https else [])

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def csrf_token(session: dict) -> str:
    """The session's CSRF token (made on first use); every POST form carries it back."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def csrf_ok(session: dict, sent: object) -> bool:
    expected = session.get("csrf")
    return isinstance(sent, str) and bool(expected) and hmac.compare_digest(expected, sent)


def idle_expired(session: dict, now: dt.datetime, idle_minutes: int) -> bool:
    seen = session.get("seen")
    return seen is None or now.timestamp() - seen > idle_minutes * 60


class AddressLimiter:
    """At most `limit` failed sign-ins per client address in `window` (in memory: it slows guessing across
    many account names, which the per-account lockout alone would not)."""

    def __init__(self, limit: int = 20, window: dt.timedelta = dt.timedelta(minutes=15)):
        self.limit, self.window = limit, window
        self.failures: dict[str, deque] = defaultdict(deque)

    def _trim(self, address: str, now: dt.datetime) -> deque:
        times = self.failures[address]
        while times and now - times[0] >= self.window:
            times.popleft()
        return times

    def blocked(self, address: str, now: dt.datetime) -> bool:
        return len(self._trim(address, now)) >= self.limit

    def failed(self, address: str, now: dt.datetime) -> None:
        self._trim(address, now).append(now)


def secret_key(path: Path) -> str:
    """The session-signing key kept in `path` (0600), made on first use."""
    from tracker.private_files import open_private, private_dir

    if path.exists():
        key = path.read_text().strip()
        if len(key) >= 32:
            return key
    private_dir(path.parent)
    key = secrets.token_hex(32)
    with open_private(path) as fh:
        fh.write(key + "\n")
    return key


def secret_path(settings, engine) -> Path:
    """`[web] secret_file`, else `web-secret` beside a SQLite database, else in tracker's data directory."""
    if settings.web.secret_file:
        return Path(settings.web.secret_file)
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database).resolve().parent / "web-secret"
    from platformdirs import user_data_dir

    return Path(user_data_dir("tracker", appauthor=False)) / "web-secret"
