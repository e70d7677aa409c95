"""Subscription feeds: `tracker feed create|list|revoke`, and `tracker serve` as a real HTTP server."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from freezegun import freeze_time

from tests.conftest import Tracker, dump_database
from tests.ics_support import copy_database, events_by_uid, golden_database, parse_checked

URL = re.compile(r"^http://127\.0\.0\.1:8080/feeds/([A-Za-z0-9_-]{43})\.ics$")


@pytest.fixture(scope="module")
def golden_db(tmp_path_factory, migrated_template) -> str:
    return golden_database(tmp_path_factory.mktemp("golden"), migrated_template)


@pytest.fixture
def clinic(golden_db, tmp_path) -> Tracker:
    return Tracker(copy_database(golden_db, tmp_path))


def create(tracker, *args: str) -> str:
    """Create a feed; returns its token (the URL is printed once, on stdout)."""
    result = tracker(["feed", "create", *args])
    match = URL.match(result.stdout.strip())
    assert match, result.stdout
    return match.group(1)


def audit_actions(db: str) -> list[str]:
    rows = dump_database(db)["audit_event"]
    return [row[3] for row in rows]  # id, at, user, action, ...


# --- CLI --------------------------------------------------------------------------------------------------


def test_create_list_revoke(clinic):
    token = create(clinic, "--patient", "P001", "--audience", "patient")
    clinic_token = create(clinic, "--clinic")
    assert token != clinic_token

    database = json.dumps(dump_database(clinic.db), default=str)
    assert token not in database and clinic_token not in database  # only hashes are stored
    assert hashlib.sha256(token.encode()).hexdigest() in database

    listed = clinic(["feed", "list", "--json"]).stdout
    assert token not in listed and hashlib.sha256(token.encode()).hexdigest() not in listed
    rows = json.loads(listed)
    assert [(r["id"], r["scope"], r["mrn"], r["audience"], r["active"]) for r in rows] == [
        (1, "patient", "P001", "patient", True),
        (2, "clinic", None, "staff", True),
    ]
    assert set(rows[0]) == {"id", "scope", "mrn", "audience", "created_at", "revoked_at", "active"}

    assert clinic("feed revoke 1").stdout.strip() == "revoked feed 1 (patient P001)"
    rows = clinic.json("feed list")
    assert rows[0]["active"] is False and rows[0]["revoked_at"] and rows[1]["active"] is True
    assert audit_actions(clinic.db)[-3:] == ["feed.create", "feed.create", "feed.revoke"]
    assert "P001" in clinic("feed list").stdout  # the table view


def test_bad_requests_change_nothing(clinic):
    create(clinic, "--clinic")
    before = dump_database(clinic.db)
    cases = [
        (["feed", "create"], 2, "scope"),
        (["feed", "create", "--clinic", "--patient", "P001"], 2, "scope"),
        (["feed", "create", "--clinic", "--audience", "patient"], 2, "audience: 'patient'"),
        (["feed", "create", "--patient", "P999"], 3, "mrn: 'P999': not found"),
        (["feed", "revoke", "99"], 3, "feed: 99: not found"),
    ]
    for args, code, message in cases:
        result = clinic(args, ok=False)
        assert (result.exit_code, message in result.stderr) == (code, True), (args, result.stderr)
        assert result.stdout == ""
    assert dump_database(clinic.db) == before
    clinic("feed revoke 1")
    again = clinic("feed revoke 1", ok=False)
    assert again.exit_code == 4 and "already revoked" in again.stderr


def test_base_url_comes_from_the_config(clinic, tmp_path):
    config = tmp_path / "feeds.toml"
    config.write_text('[feeds]\nbase_url = "https://calendar.clinic.example/"\n')
    url = clinic(["--config", str(config), "feed", "create", "--clinic"]).stdout.strip()
    assert re.fullmatch(r"https://calendar\.clinic\.example/feeds/[A-Za-z0-9_-]{43}\.ics", url)
    config.write_text('[feeds]\nbase_url = "calendar.clinic.example"\n')
    result = clinic(["--config", str(config), "feed", "create", "--clinic"], ok=False)
    assert result.exit_code == 8 and "feeds.base_url" in result.stderr


# --- the server -------------------------------------------------------------------------------------------


# `tracker serve` with its clock frozen at a moment that then runs on (tick), so the feeds' window ("today")
# is the golden clinic's, not the real date's.
# psycopg's C extension is imported before the clock is frozen: imported after, it sees freezegun's datetime
# classes and warns about their size.
FROZEN_SERVE = ("import sys, importlib.util\n"
                "if importlib.util.find_spec('psycopg'): import psycopg\n"
                "from freezegun import freeze_time; freeze_time(sys.argv[1], tick=True).start()\n"
                "from tracker.cli import main; sys.argv = ['tracker', *sys.argv[2:]]; main()")
SERVED_AT = "2026-03-02 09:00:00"
# UTC days; the window reaches back past the golden clinic's first items (2026-01-05).
SERVE_CONFIG = 'timezone = "UTC"\n[feeds]\ndays_back = 90\n'


class Server:
    """`tracker serve --port 0` in a subprocess, its clock frozen at `at` (and running on from there); the port
    it bound is read from its first line."""

    def __init__(self, db: str, config: str, at: str = SERVED_AT):
        self.process = subprocess.Popen(
            [sys.executable, "-c", FROZEN_SERVE, at, "--config", config, "--db", db, "serve", "--port", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        line = self.process.stderr.readline()
        while line and "Warning" in line:  # a library's import-time warning before the server's first line
            line = self.process.stderr.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        if not match:
            self.process.kill()
            raise AssertionError(f"server did not start: {line}{self.process.stderr.read()}")
        self.base = f"http://127.0.0.1:{match.group(1)}"

    def get(self, path: str, method: str = "GET", headers: dict | None = None):
        request = urllib.request.Request(self.base + path, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()

    def stop(self) -> str:
        self.process.terminate()
        try:
            _, log = self.process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, log = self.process.communicate()
        return log


@pytest.fixture
def serve_config(tmp_path) -> str:
    path = tmp_path / "serve.toml"
    path.write_text(SERVE_CONFIG)
    return str(path)


@pytest.fixture
def server(clinic, serve_config):
    running = Server(clinic.db, serve_config)
    yield running
    running.stop()


def test_serve_fetch_conditional_revoke(clinic, server):
    token = create(clinic, "--patient", "P001")
    path = f"/feeds/{token}.ics"

    status, headers, body = server.get(path)
    assert status == 200
    assert headers["Content-Type"] == "text/calendar; charset=utf-8"
    etag, last_modified = headers["ETag"], headers["Last-Modified"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)  # from the feed's version, judged without rendering
    # The later of P001's latest change (the dose change, 16 Feb 11:00) and the start of the window's day.
    assert last_modified == "Mon, 02 Mar 2026 00:00:00 GMT"
    calendar = parse_checked(body)
    assert calendar["X-WR-CALNAME"] == "Monitoring: P001 AB"
    # Every item of P001 in the window (90 days back, 180 ahead: to 2026-08-29).
    stored = clinic.json("calendar P001 --all")
    assert {str(e["UID"]) for e in calendar.events} == {r["uid"] for r in stored if r["due"] <= "2026-08-29"}
    assert any(r["due"] > "2026-08-29" for r in stored)

    # Unchanged: the same bytes again, and 304 for a conditional re-fetch (by ETag or by date).
    assert server.get(path)[2] == body
    assert server.get(path, headers={"If-None-Match": etag})[0] == 304
    assert server.get(path, headers={"If-Modified-Since": last_modified})[0] == 304
    assert server.get(path, headers={"If-None-Match": '"stale"'})[0] == 200
    head = server.get(path, method="HEAD")
    assert head[0] == 200 and head[2] == b"" and head[1]["ETag"] == etag

    # A dose change reaches the subscriber: new ETag, bumped SEQUENCE on what changed.
    with freeze_time("2026-03-10 08:00:00"):
        clinic("therapy dose P001 methotrexate --on 2026-03-10 --dose '20 mg weekly'")
    status, headers, changed = server.get(path, headers={"If-None-Match": etag})
    assert status == 200 and headers["ETag"] != etag
    assert headers["Last-Modified"] == "Tue, 10 Mar 2026 08:00:00 GMT"
    old, new = events_by_uid(calendar), events_by_uid(parse_checked(changed))
    assert set(old) <= set(new)
    assert any(new[u]["sequence"] > old[u]["sequence"] for u in old)

    # Read-only, and nothing else is served.
    assert server.get(path, method="POST")[0] == 405
    assert server.get(path, method="DELETE")[1].get("Allow") == "GET, HEAD"
    assert server.get("/feeds/not-a-real-token-at-all-0123456789.ics")[0] == 404
    assert server.get("/")[0] == 404

    clinic("feed revoke 1")
    assert server.get(path)[0] == 404

    log = server.stop()
    lines = [line for line in log.splitlines() if '"' in line]
    assert len(lines) == 12  # one line per request
    assert token not in log and "/feeds/<token>.ics" in log


def test_patient_feed_holds_one_patient_in_plain_language(clinic, server):
    token = create(clinic, "--patient", "P002", "--audience", "patient")
    status, _, body = server.get(f"/feeds/{token}.ics")
    assert status == 200
    text = body.decode()
    assert "P002" not in text and "P001" not in text and "Ada" not in text and "Methotrexate" not in text
    calendar = parse_checked(body)
    assert "Clinic review: how is your eczema?" in {str(e["SUMMARY"]).removeprefix("Cancelled: ")
                                                    for e in calendar.events}
    assert calendar["REFRESH-INTERVAL"] is not None
