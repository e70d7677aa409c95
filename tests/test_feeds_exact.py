"""Issue 16 item 5: exact feeds. The feed text (durations, no METHOD or calendar UID, escaped name), the
date window and the grace period of cancelled items (through the feed service on the golden clinic, the
clinic's date given), and the server: validators before rendering (counted by the service's own render
counter), gzip when asked, HTTP/1.1 with kept-alive connections."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
import re
import socket

from freezegun import freeze_time

from tests.ics_support import events_by_uid, parse_checked
from tests.test_feed_server_limits import GUARD_S, serve  # noqa: F401  (fixture)
from tests.test_feeds import clinic, create, golden_db  # noqa: F401  (fixtures)


def feed_body(db: str, feed_id: int, today: str, *, clinic_name: str | None = None, **feeds) -> bytes:
    """What feed `feed_id` serves when the clinic's date is `today` (clock frozen at noon UTC), with
    `[feeds]` settings `feeds` over the defaults: the feed service itself, in this process."""
    from sqlmodel import Session

    from tracker.config import load_settings
    from tracker.db.engine import open_engine
    from tracker.db.tables import Feed
    from tracker.protocol_files import library
    from tracker.services.context import Clinic
    from tracker.services.feeds import render_feed

    settings = load_settings(None)
    settings = dataclasses.replace(settings, timezone="UTC", feeds=dataclasses.replace(settings.feeds, **feeds))
    if clinic_name is not None:
        settings = dataclasses.replace(settings, calendar=dataclasses.replace(settings.calendar, name=clinic_name))
    engine = open_engine(db, create=False)
    try:
        with freeze_time(f"{today} 12:00:00"), Session(engine) as session:
            context = Clinic(session, library(settings.schedules_dir), settings, dt.date.fromisoformat(today),
                             "test")
            return render_feed(context, session.get(Feed, feed_id)).body
    finally:
        engine.dispose()


def stored(tracker, mrn: str) -> dict[str, dict]:
    return {row["uid"]: row for row in tracker.json(["calendar", mrn, "--all"])}


# --- the text ---------------------------------------------------------------------------------------------


def test_feed_text_is_exact(clinic):  # noqa: F811
    create(clinic, "--clinic")
    body = feed_body(clinic.db, 1, "2026-03-02", clinic_name="Derm, ward 3; north\\east")
    lines = body.decode().split("\r\n")
    assert "REFRESH-INTERVAL;VALUE=DURATION:PT12H" in lines  # RFC 7986 5.7
    assert "X-PUBLISHED-TTL:PT12H" in lines  # was 12:00:00
    assert r"NAME:Derm\, ward 3\; north\\east" in lines and r"X-WR-CALNAME:Derm\, ward 3\; north\\east" in lines
    assert not any(line.startswith(("METHOD", "ORGANIZER")) for line in lines)
    calendar = parse_checked(body)
    assert len([line for line in lines if line.startswith("UID:")]) == len(calendar.events) > 0


def test_patient_feed_prints_no_source_urls(clinic):  # noqa: F811
    create(clinic, "--patient", "P001", "--audience", "patient")
    create(clinic, "--patient", "P001")
    patient = feed_body(clinic.db, 1, "2026-03-02").decode().replace("\r\n ", "")
    staff = feed_body(clinic.db, 2, "2026-03-02").decode().replace("\r\n ", "")
    assert "://" not in patient and "Sources:" not in patient
    assert "<https://" in staff  # staff keep the citations and their URLs


# --- window and grace -------------------------------------------------------------------------------------


def test_a_feed_shows_its_date_window_only(clinic):  # noqa: F811
    create(clinic, "--patient", "P001")
    rows = stored(clinic, "P001")
    events = events_by_uid(parse_checked(feed_body(clinic.db, 1, "2026-03-02")))
    # Default window: 30 days back, 180 ahead (2026-01-31 to 2026-08-29); the clinic's whole plan is longer.
    assert {row["due"] for row in rows.values()} - {str(e["start"]) for e in events.values()}
    assert set(events) == {uid for uid, row in rows.items() if "2026-01-31" <= row["due"] <= "2026-08-29"}
    narrow = events_by_uid(parse_checked(feed_body(clinic.db, 1, "2026-03-02", days_back=0, days_ahead=10)))
    assert narrow and set(narrow) == {uid for uid, row in rows.items() if "2026-03-02" <= row["due"] <= "2026-03-12"}


def test_cancelled_items_leave_a_feed_after_the_grace_period(clinic):  # noqa: F811
    """P002's dupilumab stopped on 1 March (12:00 UTC): its later items were cancelled then."""
    create(clinic, "--clinic")
    cancelled = {uid for uid, row in stored(clinic, "P002").items()
                 if row["status"] == "cancelled" and "2026-03-01" < row["due"] <= "2026-06-01"}
    assert cancelled

    def shown(today: str, **feeds) -> dict:
        return events_by_uid(parse_checked(feed_body(clinic.db, 1, today, **feeds)))

    within = shown("2026-03-10")  # 9 days after: within the default 14 days
    assert cancelled <= set(within) and {within[u]["status"] for u in cancelled} == {"CANCELLED"}
    after = shown("2026-03-20")  # 19 days after: gone
    assert not cancelled & set(after) and set(after) & set(stored(clinic, "P001"))  # the rest stays
    assert cancelled <= set(shown("2026-03-20", cancelled_grace_days=30))  # configurable


# --- the server -------------------------------------------------------------------------------------------


def _exchange(sock: socket.socket, raw: bytes) -> tuple[str, dict, bytes]:
    """Send one request on an open connection and read one response (status line, headers, body)."""
    sock.sendall(raw)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    status, *header_lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
    length = int(headers.get("content-length", 0)) if not raw.startswith(b"HEAD") else 0
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return status, headers, body


def _get(token: str, *headers: str, method: str = "GET") -> bytes:
    return (f"{method} /feeds/{token}.ics HTTP/1.1\r\nHost: localhost\r\n" + "".join(h + "\r\n" for h in headers)
            + "\r\n").encode()


def test_a_304_renders_nothing_and_connections_are_kept_alive(clinic, serve):  # noqa: F811
    from tracker.services.feeds import RENDERS

    token = create(clinic, "--clinic")
    server, _ = serve()
    with socket.create_connection(server.server_address[:2], timeout=GUARD_S) as sock:
        before = RENDERS.value
        status, headers, body = _exchange(sock, _get(token))
        assert status == "HTTP/1.1 200 OK" and body.startswith(b"BEGIN:VCALENDAR")
        assert RENDERS.value == before + 1
        etag, last_modified = headers["etag"], headers["last-modified"]
        # The same connection, twice more: 304 by ETag and by date, and nothing rendered for either.
        for header in (f"If-None-Match: {etag}", f"If-Modified-Since: {last_modified}"):
            status, headers, body = _exchange(sock, _get(token, header))
            assert status == "HTTP/1.1 304 Not Modified" and body == b"" and headers["etag"] == etag
        assert RENDERS.value == before + 1
    clinic(["therapy", "dose", "P001", "methotrexate", "--on", "2026-03-10", "--dose", "20 mg weekly"])
    with socket.create_connection(server.server_address[:2], timeout=GUARD_S) as sock:
        status, headers, _ = _exchange(sock, _get(token, f"If-None-Match: {etag}"))
        assert status == "HTTP/1.1 200 OK" and headers["etag"] != etag and RENDERS.value == before + 2


def test_gzip_when_asked(clinic, serve):  # noqa: F811
    token = create(clinic, "--clinic")
    server, _ = serve()
    with socket.create_connection(server.server_address[:2], timeout=GUARD_S) as sock:
        _, plain_headers, plain = _exchange(sock, _get(token))
        _, headers, packed = _exchange(sock, _get(token, "Accept-Encoding: br, gzip;q=0.8"))
        assert "content-encoding" not in plain_headers and plain.startswith(b"BEGIN:VCALENDAR")
        assert headers["content-encoding"] == "gzip" and headers["vary"] == "Accept-Encoding"
        assert gzip.decompress(packed) == plain and len(packed) < len(plain)
        assert headers["etag"] != plain_headers["etag"]  # another representation, another validator
        assert re.fullmatch(r'"[0-9a-f]{32}-gzip"', headers["etag"])
        # gzip refused (q=0), or not named: the plain body.
        for refused in ("Accept-Encoding: gzip;q=0", "Accept-Encoding: identity", "Accept-Encoding: br"):
            _, headers, body = _exchange(sock, _get(token, refused))
            assert "content-encoding" not in headers and body == plain
        status, _, body = _exchange(sock, _get(token, "Accept-Encoding: gzip", f"If-None-Match: {headers['etag']}"))
        assert status.startswith("HTTP/1.1 200")  # the plain ETag does not validate the gzip body
