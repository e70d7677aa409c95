"""A read-only HTTP server for calendar feeds: GET/HEAD /feeds/<token>.ics, nothing else.

Standard library only (ThreadingHTTPServer), HTTP/1.1. Each request opens its own database session.
Responses carry an ETag and Last-Modified computed from the feed's change stamp (`feed_version`: the latest
item change and highest item id in scope, and the day's window; a few index seeks), so a conditional
request is answered 304 before anything is rendered; otherwise the feed is rendered afresh, gzipped when
the client accepts gzip. Unknown and revoked tokens get 404, exactly like any other unknown path, so a probe
learns nothing. The log has one line per request, with anything shaped like a token replaced by
`<token>`, whatever the path's case or percent-encoding.

Bounded: a client must send its whole request within `request_timeout_s` and may stay silent (or not
read) at most `idle_timeout_s`; at most `max_connections` are served at once, and a connection beyond
that gets an immediate 503 without a thread.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import gzip
import re
import socket
import sys
import threading
import traceback
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sqlmodel import Session

FEED_PATH = re.compile(r"^/feeds/([A-Za-z0-9_-]{16,128})\.ics$")
# Feed tokens are 16+ characters of the URL-safe alphabet: any such run is a possible token, wherever it
# stands (a mistyped route, other case, a query string), and never reaches the log.
TOKEN_LIKE = re.compile(r"[A-Za-z0-9_-]{16,}")
READ_METHODS = "GET, HEAD"
REQUEST_TIMEOUT_S = 10.0  # to send the request line and headers
IDLE_TIMEOUT_S = 10.0  # the longest silence on a socket (reading the request, or a client not reading)
MAX_CONNECTIONS = 32  # served at once; threads and database sessions stay bounded


def redact(text: str) -> str:
    """The text with every token-shaped run, also percent-encoded, replaced by `<token>`."""
    text = TOKEN_LIKE.sub("<token>", text)
    decoded = urllib.parse.unquote(text)
    if decoded != text and TOKEN_LIKE.search(decoded):
        return TOKEN_LIKE.sub("<token>", decoded)
    return text


# Control characters of a request line as the log shows them (\xNN): an ESC or CR sent by a client would
# otherwise rewrite the operator's terminal or forge a line of the log (as http.server escapes them).
_LOG_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}


def loggable(text: str) -> str:
    return text.translate(_LOG_ESCAPES)


def accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding header accepts gzip (RFC 9110 12.5.3): named, or `*`, with q > 0."""
    accepted = {}
    for part in header.split(","):
        name, _, params = part.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if name.strip():
            accepted[name.strip().lower()] = quality
    quality = accepted.get("gzip", accepted.get("x-gzip", accepted.get("*", 0.0)))
    return quality > 0


def _etag_matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return etag in tags


def not_modified(headers, etag: str, last_modified: dt.datetime) -> bool:
    """RFC 9110 13.2.2: If-None-Match decides when present; otherwise If-Modified-Since."""
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None:
        return _etag_matches(if_none_match, etag)
    if_modified_since = headers.get("If-Modified-Since")
    if if_modified_since:
        try:
            since = email.utils.parsedate_to_datetime(if_modified_since)
        except (TypeError, ValueError, IndexError):
            return False
        if since is None:
            return False
        if since.tzinfo is None:
            since = since.replace(tzinfo=dt.timezone.utc)
        return last_modified <= since
    return False


class FeedServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, engine, library, settings, log=None, *,
                 request_timeout_s: float = REQUEST_TIMEOUT_S, idle_timeout_s: float = IDLE_TIMEOUT_S,
                 max_connections: int = MAX_CONNECTIONS):
        import secrets

        self.engine = engine
        self.library = library
        self.settings = settings
        self.log = log or sys.stderr
        self.request_timeout_s = request_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.max_connections = max_connections
        self._slots = threading.BoundedSemaphore(max_connections)
        # Stands in the ETag for what is fixed while this process runs (protocols, export settings).
        self.generation = secrets.token_hex(8)
        self.counts = {"rendered": 0, "not_modified": 0, "busy": 0}  # what happened, for tests and ops
        self._counts_lock = threading.Lock()
        super().__init__(address, FeedHandler)

    def count(self, what: str) -> None:
        with self._counts_lock:
            self.counts[what] += 1

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            self.count("busy")
            self._busy(request, client_address)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def _busy(self, request, client_address) -> None:
        """Beyond the cap: a 503 written from the accepting thread (a few bytes, bounded), then closed."""
        self.log.write(f"{client_address[0]} - busy: {self.max_connections} connections open, answered 503\n")
        self.log.flush()
        try:
            request.settimeout(1.0)
            request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Length: 0\r\n"
                            b"Connection: close\r\n\r\n")
        except OSError:
            pass
        finally:
            self.shutdown_request(request)


class FeedHandler(BaseHTTPRequestHandler):
    server: FeedServer
    server_version = "tracker-feeds"
    # HTTP/1.1: persistent connections (every response has a Content-Length); each request on a connection
    # must arrive within request_timeout_s, and an idle connection closes at idle_timeout_s.
    protocol_version = "HTTP/1.1"

    def version_string(self) -> str:
        return self.server_version  # no Python version in the Server header

    def setup(self) -> None:
        self.timeout = self.server.idle_timeout_s  # the socket timeout: every read and write
        super().setup()
        self._request_deadline = None

    def handle_one_request(self) -> None:
        # Each request (line and headers) within request_timeout_s, however slowly it drips in; on a kept-alive
        # connection the wait for the next request counts too.
        self._request_deadline = threading.Timer(self.server.request_timeout_s, self._cut_off)
        self._request_deadline.daemon = True
        self._request_deadline.start()
        try:
            super().handle_one_request()
        finally:
            self._request_deadline.cancel()

    def _cut_off(self) -> None:
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def parse_request(self) -> bool:
        parsed = super().parse_request()
        self._request_deadline.cancel()  # the request is in; writing is bounded by the idle timeout
        return parsed

    def finish(self) -> None:
        if self._request_deadline is not None:
            self._request_deadline.cancel()
        super().finish()

    def do_GET(self) -> None:
        self._feed(send_body=True)

    def do_HEAD(self) -> None:
        self._feed(send_body=False)

    def _refuse(self) -> None:
        self.send_response(HTTPStatus.METHOD_NOT_ALLOWED)
        self.send_header("Allow", READ_METHODS)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _refuse

    def _feed(self, send_body: bool) -> None:
        from tracker.dates import today
        from tracker.services.context import Clinic
        from tracker.services.feeds import active_feed, clinic_feed_window, feed_version, render_feed

        match = FEED_PATH.match(self.path.split("?", 1)[0])
        if match is None:
            return self._plain(HTTPStatus.NOT_FOUND, "not found\n", send_body)
        body = None
        encoding = "gzip" if accepts_gzip(self.headers.get("Accept-Encoding", "")) else None
        try:
            with Session(self.server.engine) as session:
                feed = active_feed(session, match.group(1))
                if feed is not None:
                    settings = self.server.settings
                    clinic = Clinic(session, self.server.library, settings, today(settings.timezone), "feeds")
                    # The validators come from the change stamp (a few index seeks), before any rendering.
                    version = feed_version(session, feed, clinic_feed_window(clinic))
                    etag = version.etag(feed, self.server.generation, encoding)
                    fresh = not_modified(self.headers, etag, version.last_modified)
                    if not fresh:  # only now is the calendar rendered
                        body = render_feed(clinic, feed, version).body
                        if send_body:  # patient data about to be sent: audited first (services/access.py)
                            from tracker.services.access import feed_fetched

                            feed_fetched(self.server, feed, len(body))
                session.rollback()  # read-only: nothing to keep
        except Exception:
            # Not `redact`: it would blank long identifiers in the trace; the request's own runs go.
            trace = traceback.format_exc()
            for run in TOKEN_LIKE.findall(self.path) + TOKEN_LIKE.findall(urllib.parse.unquote(self.path)):
                trace = trace.replace(run, "<token>")
            self.server.log.write(trace)
            return self._plain(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error\n", send_body)
        if feed is None:
            return self._plain(HTTPStatus.NOT_FOUND, "not found\n", send_body)
        self.server.count("not_modified" if fresh else "rendered")
        self.send_response(HTTPStatus.NOT_MODIFIED if fresh else HTTPStatus.OK)
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", email.utils.format_datetime(version.last_modified, usegmt=True))
        # Patient data: shared caches must not keep it; clients may, but must revalidate.
        self.send_header("Cache-Control", "private, no-cache")
        self.send_header("Vary", "Accept-Encoding")
        if fresh:
            self.end_headers()
            return
        if encoding:
            body = gzip.compress(body, compresslevel=6, mtime=0)  # mtime 0: the same bytes for the same feed
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Type", "text/calendar; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _plain(self, status: HTTPStatus, text: str, send_body: bool) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    # Logging: one line per request (from send_response), never the token.
    def log_request(self, code="-", size="-") -> None:
        code = code.value if isinstance(code, HTTPStatus) else code
        self.server.log.write(f'{self.address_string()} - [{self.log_date_time_string()}] '
                              f'"{loggable(redact(self.requestline))}" {code}\n')
        self.server.log.flush()

    def log_error(self, format, *args) -> None:
        # send_error() logs here and then once more via log_request; keep the single line.
        pass

    def log_message(self, format, *args) -> None:
        self.server.log.write(loggable(redact(format % args)) + "\n")
        self.server.log.flush()


def make_server(host: str, port: int, engine, library, settings, log=None, **limits) -> FeedServer:
    """`limits`: request_timeout_s, idle_timeout_s, max_connections (FeedServer's defaults otherwise)."""
    family_host = host.strip("[]")
    server_class = FeedServer
    if ":" in family_host:
        import socket

        class _V6(FeedServer):
            address_family = socket.AF_INET6

        server_class = _V6
    return server_class((family_host, port), engine, library, settings, log, **limits)
