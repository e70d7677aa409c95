"""Issue 15 item 8: the feed server is bounded and quiet. A real server (tracker.server.make_server, the
code behind `tracker serve`) on loopback in a thread, real sockets: idle and slow-request connections are
closed, connections beyond the cap get 503 without a thread, tokens never reach the log (any case, any
encoding), and conditional requests are answered 304 without rendering."""

from __future__ import annotations

import io
import re
import socket
import threading

import pytest

from tests.test_feeds import clinic, create, golden_db  # noqa: F401  (fixtures)

GUARD_S = 60  # a failure guard on blocking reads; never reached when the server behaves


class Log(io.StringIO):
    """The server log, shared with the request threads."""

    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()

    def write(self, text):
        with self.lock:
            return super().write(text)


@pytest.fixture
def serve(clinic):  # noqa: F811
    from tracker.config import load_settings
    from tracker.db.engine import open_engine
    from tracker.protocol_files import library
    from tracker.server import make_server

    started = []

    def start(**limits):
        settings = load_settings(None)
        engine = open_engine(clinic.db, create=False)
        log = Log()
        server = make_server("127.0.0.1", 0, engine, library(settings.schedules_dir), settings, log, **limits)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        started.append((server, engine))
        return server, log

    yield start
    for server, engine in started:
        server.shutdown()
        server.server_close()
        engine.dispose()


def _connect(server) -> socket.socket:
    sock = socket.create_connection(server.server_address[:2], timeout=GUARD_S)
    return sock


def _request(server, raw: bytes) -> bytes:
    with _connect(server) as sock:
        sock.sendall(raw)
        return _read_all(sock)


def _read_all(sock) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _closed_by_server(sock) -> bool:
    """True once the server has closed the connection (EOF or reset); blocks until then (GUARD_S)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_an_idle_connection_is_closed(serve):
    server, _ = serve(idle_timeout_s=0.5, request_timeout_s=30)
    with _connect(server) as sock:
        assert _closed_by_server(sock)  # nothing sent: closed after the idle timeout, not held


def test_a_request_dripping_in_is_cut_off_at_the_request_timeout(serve):
    server, _ = serve(idle_timeout_s=30, request_timeout_s=0.5)
    with _connect(server) as sock:
        sock.sendall(b"GET /feeds/")
        stop = threading.Event()
        closed = threading.Event()

        def drip():
            # A byte every 50 ms: each well inside the idle timeout, so only a total deadline ends it.
            try:
                while not stop.wait(0.05):
                    sock.sendall(b"a")
            except OSError:
                closed.set()

        dripper = threading.Thread(target=drip, daemon=True)
        dripper.start()
        try:
            assert _closed_by_server(sock)
        finally:
            stop.set()
            dripper.join(GUARD_S)


def test_connections_beyond_the_cap_get_503_at_once(serve):
    server, log = serve(max_connections=2, idle_timeout_s=30, request_timeout_s=30)
    held = [_connect(server), _connect(server)]
    try:
        # Both slots are taken once the server has accepted them; the third is refused right away.
        answer = b""
        for _ in range(100):
            answer = _request(server, b"GET / HTTP/1.0\r\n\r\n")
            if answer.startswith(b"HTTP/1.1 503"):
                break
        assert answer.startswith(b"HTTP/1.1 503") and b"Retry-After" in answer
        assert server.counts["busy"] >= 1 and "busy: 2 connections open" in log.getvalue()
    finally:
        for sock in held:
            sock.close()
    # The slots come back when those connections end: a request is served again.
    for _ in range(100):
        answer = _request(server, b"GET / HTTP/1.0\r\n\r\n")
        if answer.startswith(b"HTTP/1.1 404"):
            break
    assert answer.startswith(b"HTTP/1.1 404")


@pytest.mark.parametrize("spelling", [
    "/FEEDS/{token}.ics", "/Feeds/{token}.ICS", "/feeds/{token}.ics/", "/feed/{token}.ics",
    "/feeds/{encoded}.ics", "/x?token={token}", "//feeds/{token}.ics",
])
def test_a_token_never_reaches_the_log(clinic, serve, spelling):  # noqa: F811
    token = create(clinic, "--patient", "P001")
    encoded = "".join(f"%{ord(c):02X}" for c in token)
    server, log = serve()
    path = spelling.format(token=token, encoded=encoded)
    answer = _request(server, f"GET {path} HTTP/1.0\r\n\r\n".encode())
    assert answer.split(b"\r\n", 1)[0].split()[1] in (b"200", b"404")
    text = log.getvalue()
    assert token not in text and encoded not in text and encoded.lower() not in text
    assert "<token>" in text


def test_bad_request_lines_are_logged_without_the_token(clinic, serve):  # noqa: F811
    token = create(clinic, "--patient", "P001")
    server, log = serve()
    _request(server, f"GET /feeds/{token}.ics HTTP/9.9 junk\r\n\r\n".encode())
    assert token not in log.getvalue()


def test_a_conditional_request_is_answered_without_rendering(clinic, serve):  # noqa: F811
    token = create(clinic, "--patient", "P001")
    server, _ = serve()
    first = _request(server, f"GET /feeds/{token}.ics HTTP/1.0\r\n\r\n".encode())
    head, body = first.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200") and body.startswith(b"BEGIN:VCALENDAR")
    etag = re.search(rb"ETag: (\S+)", head).group(1).decode()
    last_modified = re.search(rb"Last-Modified: ([^\r]+)", head).group(1).decode()
    assert server.counts == {"rendered": 1, "not_modified": 0, "busy": 0}
    for header in (f"If-None-Match: {etag}", f"If-Modified-Since: {last_modified}"):
        again = _request(server, f"GET /feeds/{token}.ics HTTP/1.0\r\n{header}\r\n\r\n".encode())
        assert again.startswith(b"HTTP/1.1 304") and again.endswith(b"\r\n\r\n")  # no body
    assert server.counts == {"rendered": 1, "not_modified": 2, "busy": 0}  # rendered once only
    # The same state gives the same ETag; a changed feed renders again under a new one.
    same = _request(server, f"HEAD /feeds/{token}.ics HTTP/1.0\r\n\r\n".encode())
    assert f"ETag: {etag}".encode() in same
    clinic(["therapy", "dose", "P001", "methotrexate", "--on", "2026-03-10", "--dose", "20 mg weekly"])
    changed = _request(server, f"GET /feeds/{token}.ics HTTP/1.0\r\nIf-None-Match: {etag}\r\n\r\n".encode())
    assert changed.startswith(b"HTTP/1.1 200") and f"ETag: {etag}".encode() not in changed
