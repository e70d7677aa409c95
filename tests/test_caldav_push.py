"""Issue 16 item 4: `tracker calendar push` keeps a real CalDAV collection (Radicale, started here on
loopback with htpasswd auth) in step with the staff calendar, through a dose change; the nightly step."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
from freezegun import freeze_time
from icalendar import Calendar

from tests.conftest import dump_database

USER, PASSWORD = "tracker", "s3cret-pass"
START_DEADLINE_S = 30


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen) -> None:
    """Until the server accepts a connection (the event we need), or the deadline: no fixed sleep."""
    deadline = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"radicale exited with {process.returncode}: {process.stderr.read()!r}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            continue
    raise RuntimeError("radicale did not accept connections in time")


@pytest.fixture
def radicale(tmp_path):
    """A Radicale server on a free loopback port, its storage in tmp_path, one htpasswd user; the URL of an
    empty calendar collection made for the test."""
    import caldav

    users = tmp_path / "radicale-users"
    users.write_text(f"{USER}:{PASSWORD}\n")
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "radicale", "--server-hosts", f"127.0.0.1:{port}",
         "--storage-filesystem-folder", str(tmp_path / "radicale-store"),
         "--auth-type", "htpasswd", "--auth-htpasswd-filename", str(users),
         "--auth-htpasswd-encryption", "plain", "--logging-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "HOME": str(tmp_path)})  # no user config of the machine's
    try:
        _wait_for_port(port, process)
        url = f"http://127.0.0.1:{port}/{USER}/staff/"
        client = caldav.DAVClient(url=url, username=USER, password=PASSWORD, enable_rfc6764=False)
        assert client.mkcalendar(url).status == 201
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        process.stderr.close()


@pytest.fixture
def site(tmp_path, radicale):
    password = tmp_path / "caldav-password"
    password.write_text(PASSWORD + "\n")
    os.chmod(password, 0o600)
    config = tmp_path / "site.toml"
    config.write_text(f'[caldav]\nurl = "{radicale}"\nusername = "{USER}"\npassword_file = "{password}"\n')
    return str(config)


def collection(url: str) -> dict[str, tuple]:
    """What the server holds, read back with the caldav client: UID -> (DTSTART, SEQUENCE, STATUS)."""
    import caldav

    client = caldav.DAVClient(url=url, username=USER, password=PASSWORD, enable_rfc6764=False)
    out = {}
    for obj in client.calendar(url=url).events():
        events = Calendar.from_ical(obj.data).walk("VEVENT")
        assert len(events) == 1  # one event per calendar object resource
        out[str(events[0]["UID"])] = _key(events[0])
        assert obj.url.path.endswith(f"/{events[0]['UID']}.ics")  # href from the UID
    return out


def staff_calendar(tracker, config: str, **feeds) -> dict[str, tuple]:
    """The whole-clinic staff feed today (the window a push mirrors: `[feeds]`, overridden by `feeds`), as
    the same mapping. `calendar push` runs on the real clock (it speaks to a real server), so today is
    today's date in the machine's zone, as the push's."""
    from tests.test_feeds_exact import feed_body
    from tracker.dates import today

    tracker(["--config", config, "feed", "create", "--clinic"])
    [feed] = [f for f in tracker.json(["feed", "list"]) if f["mrn"] is None and not f.get("revoked_at")][-1:]
    data = feed_body(tracker.db, feed["id"], today(None).isoformat(), **feeds)
    return {str(e["UID"]): _key(e) for e in Calendar.from_ical(data).walk("VEVENT")}


def _key(event) -> tuple:
    return (event["DTSTART"].dt, int(event.get("SEQUENCE", 0)), str(event.get("STATUS")))


def push(tracker, config: str, *extra: str, ok: bool = True):
    result = tracker(["--config", config, "calendar", "push", "--json", *extra], ok=ok)
    return tracker.json_of(result) if ok else result


@pytest.fixture
def clinic(tracker):
    import json

    tracker.json_of = lambda result: json.loads(result.stdout)
    with freeze_time("2026-11-02 09:00:00"):
        tracker("patient add P001 --name 'Ada Baker' --dob 1980-02-03 --sex f --childbearing-potential no")
        tracker("patient add P002 --name 'Ben Chen' --dob 1975-06-07 --sex m")
        tracker("therapy start P001 methotrexate --on 2026-11-02 --dose '10 mg weekly'")
        tracker("therapy start P002 dupilumab --on 2026-11-02 --dose '300 mg every 2 weeks'")
    return tracker


def test_the_collection_mirrors_the_staff_calendar_through_a_dose_change(clinic, site, radicale):
    first = push(clinic, site)
    expected = staff_calendar(clinic, site)
    assert first["created"] == len(expected) > 0 and first["updated"] == first["removed"] == 0
    assert collection(radicale) == expected

    again = push(clinic, site)  # nothing changed: nothing sent
    assert again == {**first, "created": 0, "unchanged": len(expected)}

    with freeze_time("2026-11-16 11:00:00"):
        clinic("therapy dose P001 methotrexate --on 2026-11-16 --dose '15 mg weekly'")
    assert push(clinic, site, "--dry-run")["updated"] > 0  # judged against what was sent, no request
    after = push(clinic, site)
    changed = staff_calendar(clinic, site)
    assert after["updated"] > 0 and after["removed"] == 0
    assert after["created"] == len(set(changed) - set(expected))
    mirrored = collection(radicale)
    assert mirrored == changed
    # The re-plan moved the next draws: same UID (the same object on the server), a new DTSTART and a
    # bumped SEQUENCE (tracker/core/plan.py: same_planned_items).
    moved = [uid for uid in expected if uid in mirrored and mirrored[uid][0] != expected[uid][0]]
    assert moved and all(mirrored[uid][1] > expected[uid][1] for uid in moved)
    assert push(clinic, site)["unchanged"] == len(changed)


def test_objects_deleted_on_the_server_are_sent_again_and_items_gone_are_deleted(clinic, site, radicale):
    import caldav

    push(clinic, site)
    client = caldav.DAVClient(url=radicale, username=USER, password=PASSWORD, enable_rfc6764=False)
    [victim] = list(collection(radicale))[:1]
    assert client.delete(f"{radicale}{victim}.ics").status in (200, 204)
    assert push(clinic, site)["updated"] == 1  # its ETag is gone from the listing
    assert collection(radicale) == staff_calendar(clinic, site)

    # An item leaving the staff calendar (no command deletes items today; the feed window of issue 16 item 5
    # will make events leave it): a far-future planned item's row removed directly.
    from sqlalchemy import text

    from tracker.db.engine import make_engine, resolve_url

    engine = make_engine(resolve_url(clinic.db))
    last = max(staff_calendar(clinic, site).values())[0]  # the latest day in the window
    with engine.begin() as conn:
        uid = conn.execute(text("SELECT uid FROM item WHERE status = 'planned' AND due <= :last "
                                "ORDER BY due DESC LIMIT 1"), {"last": last.isoformat()}).scalar()
        conn.execute(text("DELETE FROM item WHERE uid = :uid"), {"uid": uid})
    engine.dispose()
    report = push(clinic, site)
    assert report["removed"] == 1 and report["created"] == report["updated"] == 0
    assert uid not in collection(radicale)
    assert collection(radicale) == staff_calendar(clinic, site)


def test_wrong_password_or_no_server_is_one_line_exit_10_and_nothing_recorded(clinic, site, tmp_path):
    password = tmp_path / "caldav-password"
    password.write_text("wrong\n")
    before = dump_database(clinic.db)
    result = push(clinic, site, ok=False)
    assert result.exit_code == 10 and result.stderr.count("\n") == 1 and "caldav" in result.stderr
    assert PASSWORD not in result.stderr and "wrong" not in result.stderr
    assert dump_database(clinic.db) == before

    closed = tmp_path / "closed.toml"
    closed.write_text(f'[caldav]\nurl = "http://127.0.0.1:{_free_port()}/x/y/"\ntimeout_s = 5\n')
    result = push(clinic, str(closed), ok=False)
    assert result.exit_code == 10 and result.stderr.count("\n") == 1 and "caldav" in result.stderr


def test_nightly_pushes_after_reminders_and_a_failure_keeps_the_run(clinic, site, radicale, tmp_path):
    import json

    clinic(["--config", site, "nightly"])
    assert collection(radicale) == staff_calendar(clinic, site)
    [run] = json.loads(clinic(["nightly", "status", "--json"]).stdout)
    assert run["counts"]["caldav"]["created"] == len(collection(radicale)) and run["status"] == "ok"

    closed = tmp_path / "closed.toml"
    closed.write_text(f'[caldav]\nurl = "http://127.0.0.1:{_free_port()}/x/y/"\ntimeout_s = 5\n')
    with freeze_time("2026-12-31 07:00:00"):  # a new day: reminders are made and delivered, then the push fails
        result = clinic(["--config", str(closed), "nightly"], ok=False)
    assert result.exit_code == 10 and "caldav" in result.stderr
    latest = json.loads(clinic(["nightly", "status", "--json"]).stdout)[0]
    assert latest["status"] == "failed" and "caldav" in latest["failures"]
    assert latest["counts"]["reminders"] > 0  # the run's work is kept


def test_config_show_masks_the_password_and_refuses_one_in_the_file(tracker, site, tmp_path):
    text = tracker(["--config", site, "config", "show"]).stdout
    assert "[caldav]" in text and PASSWORD not in text and 'password = "***"' in text
    inline = tmp_path / "inline.toml"
    inline.write_text('[caldav]\nurl = "https://cal.clinic.example/staff/"\npassword = "x"\n')
    result = tracker(["--config", str(inline), "config", "show"], ok=False)
    assert result.exit_code != 0 and "caldav.password" in result.stderr
    plain = tmp_path / "plain.toml"
    plain.write_text('[caldav]\nurl = "http://cal.clinic.example/staff/"\n')
    result = tracker(["--config", str(plain), "config", "show"], ok=False)
    assert "unencrypted" in result.stderr


def test_push_without_caldav_config_is_a_config_error(tracker):
    result = tracker("calendar push", ok=False)
    assert result.exit_code != 0 and "[caldav]" in result.stderr


def test_calendar_mrn_still_shows_a_patients_calendar(clinic):
    assert "P001" in clinic("calendar P001").stdout
    assert clinic.json("calendar P001 --all") == clinic.json("calendar show P001 --all")


def test_calendar_without_an_mrn_is_still_a_one_line_usage_error(tracker):
    result = tracker("calendar", ok=False)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "MRN" in result.stderr


def test_the_push_mirrors_only_the_feed_window_and_removes_what_leaves_it(clinic, site, radicale):
    everything = {str(e["UID"]) for e in Calendar.from_ical(
        clinic(["--config", site, "export", "ics"]).stdout_bytes).walk("VEVENT")}
    with open(site, "a") as fh:
        fh.write("[feeds]\ndays_back = 30\ndays_ahead = 60\n")
    wide = push(clinic, site)
    window = staff_calendar(clinic, site, days_back=30, days_ahead=60)
    assert collection(radicale) == window and wide["created"] == len(window)
    assert 0 < len(window) < len(everything)  # the plan reaches further than the window

    # The window narrows (as days pass, or by the setting): what left it is deleted from the collection.
    text = open(site).read().replace("days_ahead = 60", "days_ahead = 14")
    open(site, "w").write(text)
    narrow = push(clinic, site)
    smaller = staff_calendar(clinic, site, days_back=30, days_ahead=14)
    assert narrow["removed"] == len(set(window) - set(smaller)) > 0 and narrow["created"] == 0
    assert collection(radicale) == smaller
    assert push(clinic, site)["unchanged"] == len(smaller)


def test_a_second_push_while_one_runs_refuses_and_the_collection_stays_whole(clinic, site, radicale):
    from tracker.db.engine import make_engine, resolve_url
    from tracker.locks import caldav_lock

    before = dump_database(clinic.db)
    engine = make_engine(resolve_url(clinic.db))
    try:
        with caldav_lock(engine):  # a push in progress
            result = push(clinic, site, ok=False)
            assert result.exit_code == 9 and result.stderr.count("\n") == 1 and "calendar push" in result.stderr
            assert push(clinic, site, "--dry-run")["created"] > 0  # a dry run reads only: no lock
    finally:
        engine.dispose()
    assert collection(radicale) == {} and dump_database(clinic.db) == before

    # Two real pushes at once, as two processes: each either brings the collection in step or refuses; in
    # the end the server holds the staff calendar and what tracker recorded agrees with it.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "tracker", "--db", clinic.db, "--config", site, "calendar", "push", "--json"]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for _ in range(2)]
    outcomes = [(run.wait(timeout=120), run.stdout.read(), run.stderr.read()) for run in runs]
    for run in runs:
        run.stdout.close()
        run.stderr.close()
    assert sorted(code for code, _, _ in outcomes) in ([0, 0], [0, 9]), outcomes
    expected = staff_calendar(clinic, site)
    assert collection(radicale) == expected
    assert push(clinic, site)["unchanged"] == len(expected)


@pytest.fixture
def redirecting(tmp_path):
    """Two loopback servers: the first answers every request with 307 to the second, which records what
    reaches it. Yields (the first's collection URL, the second's received request lines)."""
    import http.server
    import threading

    received: list[str] = []

    def serving(answer) -> http.server.ThreadingHTTPServer:
        """A loopback server answering every DAV method with `answer(handler)`: (status, extra headers)."""
        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self):
                status, headers = answer(self)
                self.send_response(status)
                for name, value in {**headers, "Content-Length": "0"}.items():
                    self.send_header(name, value)
                self.end_headers()

            do_GET = do_PUT = do_PROPFIND = do_DELETE = _any

            def log_message(self, *args):
                pass

        return http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)

    def record(handler):
        received.append(handler.requestline)
        return 201, {}

    other = serving(record)
    first = serving(lambda handler: (307, {"Location": f"http://127.0.0.1:{other.server_address[1]}{handler.path}"}))
    for server in (first, other):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{first.server_address[1]}/dav/tracker/staff/", received
    for server in (first, other):
        server.shutdown()
        server.server_close()


def test_a_redirect_is_a_failure_and_nothing_reaches_where_it_points(clinic, redirecting, tmp_path):
    # Patient data goes to the configured collection only (as the webhook's: redirects are not followed).
    url, received = redirecting
    config = tmp_path / "redirect.toml"
    config.write_text(f'[caldav]\nurl = "{url}"\ntimeout_s = 10\n')
    before = dump_database(clinic.db)
    result = push(clinic, str(config), ok=False)
    assert result.exit_code == 10 and result.stderr.count("\n") == 1
    assert "307" in result.stderr and "redirects are not followed" in result.stderr
    assert received == []  # before: every event PUT there, and "pushed" with exit 0
    assert dump_database(clinic.db) == before

