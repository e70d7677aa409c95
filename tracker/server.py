"""A read-only HTTP server for calendar feeds: GET/HEAD /feeds/<token>.ics, nothing else.

Standard library only (ThreadingHTTPServer). Each request opens its own database session and renders the
feed afresh. Responses carry an ETag (hash of the body) and Last-Modified (latest change), and conditional
requests get 304. Unknown and revoked tokens get 404, exactly like any other unknown path, so a probe
learns nothing. The log has one line per request, with the token replaced by `<token>`.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import hashlib
import re
import sys
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sqlmodel import Session

FEED_PATH = re.compile(r"^/feeds/([A-Za-z0-9_-]{16,128})\.ics$")
REDACT = re.compile(r"/feeds/[^\s?]*")
READ_METHODS = "GET, HEAD"


def redact(text: str) -> str:
    return REDACT.sub("/feeds/<token>.ics", text)


def etag_for(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


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

    def __init__(self, address, engine, library, settings, log=None):
        self.engine = engine
        self.library = library
        self.settings = settings
        self.log = log or sys.stderr
        super().__init__(address, FeedHandler)


class FeedHandler(BaseHTTPRequestHandler):
    server: FeedServer
    server_version = "tracker-feeds"

    def version_string(self) -> str:
        return self.server_version  # no Python version in the Server header

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
        from tracker.services.feeds import feed_calendar

        match = FEED_PATH.match(self.path.split("?", 1)[0])
        if match is None:
            return self._plain(HTTPStatus.NOT_FOUND, "not found\n", send_body)
        try:
            with Session(self.server.engine) as session:
                settings = self.server.settings
                clinic = Clinic(session, self.server.library, settings, today(settings.timezone), "feeds")
                rendered = feed_calendar(clinic, match.group(1))
                session.rollback()  # read-only: nothing to keep
        except Exception:
            self.server.log.write(redact(traceback.format_exc()))
            return self._plain(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error\n", send_body)
        if rendered is None:
            return self._plain(HTTPStatus.NOT_FOUND, "not found\n", send_body)
        etag = etag_for(rendered.body)
        fresh = not_modified(self.headers, etag, rendered.last_modified)
        self.send_response(HTTPStatus.NOT_MODIFIED if fresh else HTTPStatus.OK)
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", email.utils.format_datetime(rendered.last_modified, usegmt=True))
        # Patient data: shared caches must not keep it; clients may, but must revalidate.
        self.send_header("Cache-Control", "private, no-cache")
        if fresh:
            self.end_headers()
            return
        self.send_header("Content-Type", "text/calendar; charset=utf-8")
        self.send_header("Content-Length", str(len(rendered.body)))
        self.end_headers()
        if send_body:
            self.wfile.write(rendered.body)

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
                              f'"{redact(self.requestline)}" {code}\n')
        self.server.log.flush()

    def log_error(self, format, *args) -> None:
        # send_error() logs here and then once more via log_request; keep the single line.
        pass

    def log_message(self, format, *args) -> None:
        self.server.log.write(redact(format % args) + "\n")
        self.server.log.flush()


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_server(host: str, port: int, engine, library, settings, log=None) -> FeedServer:
    family_host = host.strip("[]")
    server_class = FeedServer
    if ":" in family_host:
        import socket

        class _V6(FeedServer):
            address_family = socket.AF_INET6

        server_class = _V6
    return server_class((family_host, port), engine, library, settings, log)
