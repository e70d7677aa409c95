"""The feed server's validators and log against what a review found (session 20): two changes within one
second are two versions (a strong ETag names one body), and a request line's control characters are logged
escaped, never written raw to the operator's terminal."""

from __future__ import annotations

import datetime as dt
import io
import socket
import threading

import pytest
from freezegun import freeze_time

from tests.test_feeds import clinic, create, golden_db  # noqa: F401 (fixtures, found by name)


def version_and_body(db: str, token: str):
    from sqlmodel import Session

    from tracker.core.settings import Settings
    from tracker.db.engine import open_engine
    from tracker.protocol_files import library
    from tracker.services.context import Clinic
    from tracker.services.feeds import active_feed, clinic_feed_window, feed_version, render_feed

    engine = open_engine(db)
    settings = Settings(timezone="UTC")
    with Session(engine) as session:
        clinic_ = Clinic(session, library(None), settings, dt.date(2026, 3, 2), "tester")
        feed = active_feed(session, token)
        version = feed_version(session, feed, clinic_feed_window(clinic_))
        body = render_feed(clinic_, feed, version).body
    engine.dispose()
    return version.etag(feed, "g"), version.last_modified, body


def test_two_changes_within_one_second_are_two_etags(clinic):  # noqa: F811
    token = create(clinic, "--patient", "P001", "--audience", "staff")
    with freeze_time("2026-03-02T09:00:00.200000Z"):
        clinic("patient update P001 --name 'Ann Aa'")
        first = version_and_body(clinic.db, token)
    with freeze_time("2026-03-02T09:00:00.700000Z"):
        clinic("patient update P001 --name 'Ann Bb'")
        second = version_and_body(clinic.db, token)
    assert first[2] != second[2]  # two bodies ...
    assert first[1] == second[1]  # ... in one second (HTTP dates have no finer grain) ...
    assert first[0] != second[0]  # ... are two versions (before: one ETag, so a 304 for the stale body)


def test_control_characters_of_a_request_line_are_logged_escaped(clinic):  # noqa: F811
    from tracker.core.settings import Settings
    from tracker.db.engine import open_engine
    from tracker.protocol_files import library
    from tracker.server import make_server

    log = io.StringIO()
    server = make_server("127.0.0.1", 0, open_engine(clinic.db), library(None), Settings(timezone="UTC"), log)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with socket.create_connection(server.server_address[:2], timeout=10) as sock:
            sock.sendall(b'GET /x\x1b[2K\r10.0.0.66 - "GET /feeds/forged.ics HTTP/1.1" 200 HTTP/1.1\r\n\r\n')
            sock.recv(4096)  # the answer: the request was logged before it was sent
    finally:
        server.shutdown()
        server.server_close()
    written = log.getvalue()
    assert "\x1b" not in written and "\r" not in written  # before: both, raw
    assert "\\x1b[2K\\x0d10.0.0.66" in written


@pytest.mark.parametrize("text, shown", [("a\x00b\x7fc\x85d", "a\\x00b\\x7fc\\x85d"), ("plain é", "plain é")])
def test_loggable(text, shown):
    from tracker.server import loggable

    assert loggable(text) == shown
