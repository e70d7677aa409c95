"""The web view against an attacker's and a busy clinic's requests (session 20's review found each of these
mishandled): a patient page shows that patient's own audit trail after an MRN is reused, an unknown action
changes nothing, signing out ends the session for every copy of its cookie, a locked or disabled account is
refused after the same hashing as any other, a database held by another writer is "busy" (not a server
error), an id too long for a row is 404, notes and reasons are checked as the CLI's free text is, and a HEAD
shows nothing so records no access."""

from __future__ import annotations

import datetime as dt

import pytest
from freezegun import freeze_time

from tests.test_web import add_user, csrf_of, dump_but_reads, make_client, open_alert_ids, sign_in, utc_today
from tests.web_clinic import PASSWORD, copy_of, demo_clinic, query  # noqa: F401 (demo_clinic: a fixture)

pytest.importorskip("starlette.testclient")


@pytest.fixture
def clinic_db(request, tmp_path) -> str:
    return copy_of(request.getfixturevalue("demo_clinic"), tmp_path)


def trail_actions(html: str) -> list[str]:
    """The actions listed in a patient page's audit trail (its last table)."""
    import re

    trail = html[html.index('id="h-audit"'):]
    return re.findall(r"<td>([a-z_]+\.[a-z_.]+)</td>", trail)


def test_a_reused_mrn_does_not_bring_another_patients_audit_trail(clinic_db, tracker):
    tracker.db = clinic_db
    tracker("patient add HARD-1 --name 'First Holder' --dob 1970-01-01")
    tracker("therapy start HARD-1 dupilumab --on 2026-01-05")
    tracker("patient update HARD-1 --new-mrn HARD-1B")
    tracker("patient add HARD-1 --name 'Second Holder' --dob 1990-02-02")
    first, second = (query(clinic_db, "SELECT id FROM patient WHERE mrn = :m", m=m)[0][0]
                     for m in ("HARD-1B", "HARD-1"))
    client = make_client(clinic_db)
    sign_in(client)
    newcomer = trail_actions(client.get(f"/patients/{second}").text)
    holder = trail_actions(client.get(f"/patients/{first}").text)
    assert "therapy.start" not in newcomer and "patient.add" in newcomer  # before: the first holder's history
    assert {"patient.add", "therapy.start", "patient.update"} <= set(holder)  # before: only patient.update


def test_an_unknown_action_on_an_alert_changes_nothing(clinic_db):
    client = make_client(clinic_db)
    sign_in(client)
    alert_id = open_alert_ids(clinic_db)[0]
    token = csrf_of(client.get("/alerts").text)
    before = dump_but_reads(clinic_db)
    response = client.post(f"/alerts/{alert_id}/undo", data={"csrf_token": token, "reason": "x", "note": "x"})
    assert response.status_code == 404  # before: resolved for good, then a 500
    assert dump_but_reads(clinic_db) == before


def test_signing_out_ends_the_session_for_every_copy_of_its_cookie(clinic_db):
    client = make_client(clinic_db)
    assert sign_in(client).status_code == 303
    kept = dict(client.cookies)  # what a thief (or a shared machine's browser history) kept
    token = csrf_of(client.get("/alerts").text)
    assert client.post("/logout", data={"csrf_token": token}, follow_redirects=False).status_code == 303
    replay = make_client(clinic_db)
    replay.cookies.update(kept)
    alert_id = open_alert_ids(clinic_db)[0]
    before = dump_but_reads(clinic_db)
    assert replay.get("/today", follow_redirects=False).headers["location"] == "/login"  # before: 200
    response = replay.post(f"/alerts/{alert_id}/ack", data={"csrf_token": token, "note": "after sign-out"},
                           follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert dump_but_reads(clinic_db) == before
    assert query(clinic_db, "SELECT \"user\", action FROM audit_event WHERE action LIKE 'user.log%' "
                            "ORDER BY id DESC LIMIT 2") == [("nina", "user.logout"), ("nina", "user.login")]
    again = make_client(clinic_db)  # signing in again opens a new session
    assert sign_in(again).status_code == 303 and again.get("/today").url.path == "/today"


def test_sessions_from_before_the_session_table_must_sign_in_again(clinic_db):
    # A cookie with an account but no session id, signed as starlette's SessionMiddleware signs (the web view's
    # cookies before migration 0024).
    import base64
    import json
    import time

    import itsdangerous

    uid = query(clinic_db, "SELECT id FROM staff_user WHERE name = 'nina'")[0][0]
    data = base64.b64encode(json.dumps({"uid": uid, "seen": int(time.time())}).encode())
    old = make_client(clinic_db)  # make_client's secret: "k" * 64
    old.cookies.set("tracker_session", itsdangerous.TimestampSigner("k" * 64).sign(data).decode())
    assert old.get("/today", follow_redirects=False).headers["location"] == "/login"


def count_argon2_verifies(monkeypatch) -> list:
    """Every argon2 verification made (argon2-cffi's, not ours: what a refusal costs is what it hashes)."""
    from argon2 import PasswordHasher

    calls = []
    real = PasswordHasher.verify

    def verify(self, hash_, password):
        calls.append(hash_)
        return real(self, hash_, password)

    monkeypatch.setattr(PasswordHasher, "verify", verify)
    return calls


def test_locked_and_disabled_accounts_are_refused_after_the_same_hashing(clinic_db, tracker, monkeypatch):
    tracker.db = clinic_db
    for name in ("hard-locked", "hard-gone"):
        tracker(["user", "add", name, "--role", "clinician", "--password-stdin"], input=PASSWORD + "\n")
    tracker("user disable hard-gone")
    client = make_client(clinic_db, lockout_failures=2, lockout_minutes=15)
    for _ in range(2):
        sign_in(client, "hard-locked", password="wrong guess here")
    calls = count_argon2_verifies(monkeypatch)
    for name, password in (("hard-locked", PASSWORD), ("hard-gone", PASSWORD), ("nobody-here", "x")):
        assert sign_in(client, name, password=password).status_code == 401
    assert len(calls) == 3  # before: 1 (only the unknown name was hashed; the others answered at once)


def test_a_database_held_by_another_writer_is_busy_not_a_server_error(clinic_db, monkeypatch):
    from tracker.db import engine as engine_module
    from tracker.db.engine import for_writing, open_engine

    monkeypatch.setattr(engine_module, "LOCK_WAIT_S", 0.2)  # wait a moment, not the clinic's 30 s
    client = make_client(clinic_db)
    sign_in(client)
    alert_id = open_alert_ids(clinic_db)[0]
    token = csrf_of(client.get("/alerts").text)
    holder = open_engine(clinic_db)
    with for_writing(holder).connect() as held:
        held.begin()  # another writer's transaction: it holds the write lock until it ends
        response = client.post(f"/alerts/{alert_id}/ack", data={"csrf_token": token, "note": "seen"})
        assert response.status_code == 503 and "database busy" in response.text  # before: 500
        signing = make_client(clinic_db)
        refused = signing.post("/login", data={"csrf_token": csrf_of(signing.get("/login").text), "name": "nina",
                                               "password": PASSWORD})
        assert refused.status_code == 503 and "database busy" in refused.text
        held.rollback()
    holder.dispose()
    assert query(clinic_db, "SELECT status FROM alert WHERE id = :i", i=alert_id)[0][0] == "open"


def test_an_id_longer_than_any_row_is_not_found(clinic_db):
    client = make_client(clinic_db)
    sign_in(client)
    token = csrf_of(client.get("/alerts").text)
    huge = "9" * 20
    assert client.get(f"/patients/{huge}").status_code == 404  # before: 500 (the driver's overflow)
    assert client.post(f"/alerts/{huge}/ack", data={"csrf_token": token, "note": "x"}).status_code == 404


@pytest.mark.parametrize("action, field", [("ack", "note"), ("snooze", "reason"), ("resolve", "reason")])
@pytest.mark.parametrize("text", ["a\r\nb", "look \x1b[31mhere", "bidi \u202e text", "x" * 501])
def test_notes_and_reasons_are_checked_as_every_free_text(clinic_db, action, field, text):
    client = make_client(clinic_db)
    sign_in(client)
    alert_id = open_alert_ids(clinic_db)[0]
    token = csrf_of(client.get("/alerts").text)
    before = dump_but_reads(clinic_db)
    data = {"csrf_token": token, field: text}
    if action == "snooze":
        data["until"] = (utc_today() + dt.timedelta(days=3)).isoformat()
    response = client.post(f"/alerts/{alert_id}/{action}", data=data)
    assert response.status_code == 400 and f"{field}:" in response.text  # before: stored as typed
    assert dump_but_reads(clinic_db) == before


def test_the_cli_refuses_the_same_reasons(clinic_db, tracker):
    tracker.db = clinic_db
    alert_id = open_alert_ids(clinic_db)[0]
    before = dump_but_reads(clinic_db)
    result = tracker(["alert", "resolve", str(alert_id), "--reason", "line1\nline2"], ok=False)
    assert result.exit_code == 2 and "reason:" in result.stderr and "U+000A" in result.stderr
    assert dump_but_reads(clinic_db) == before


def test_a_head_request_shows_nothing_and_records_no_access(clinic_db):
    client = make_client(clinic_db)
    sign_in(client)
    patient_id = query(clinic_db, "SELECT id FROM patient ORDER BY id LIMIT 1")[0][0]
    before = query(clinic_db, "SELECT coalesce(max(id), 0) FROM audit_event")[0][0]
    assert client.head(f"/patients/{patient_id}").status_code == 200
    assert client.head("/today").status_code == 200
    assert query(clinic_db, "SELECT count(*) FROM audit_event WHERE id > :b AND action LIKE 'access.%'",
                 b=before)[0][0] == 0  # before: access.web.patient and access.web.today


def session_rows(db: str, *names: str) -> list[str]:
    """The accounts of the `web_session` rows kept for these accounts, one entry a row."""
    rows = query(db, "SELECT u.name FROM web_session s JOIN staff_user u ON u.id = s.user_id")
    return sorted(name for (name,) in rows if name in names)


def test_a_sign_in_prunes_ended_and_outlived_sessions_and_keeps_live_ones(clinic_db, tracker):
    names = ("prune-old", "prune-out", "prune-young", "prune-live", "prune-next")
    for name in names:
        add_user(tracker, clinic_db, name)
    with freeze_time("2026-03-01T08:00:00Z"):
        assert sign_in(make_client(clinic_db), "prune-old").status_code == 303  # never signs out
    with freeze_time("2026-03-01T08:05:00Z"):
        out = make_client(clinic_db)
        sign_in(out, "prune-out")
        out.post("/logout", data={"csrf_token": csrf_of(out.get("/alerts").text)})
        assert session_rows(clinic_db, *names) == ["prune-old", "prune-out"]
    with freeze_time("2026-03-01T08:10:00Z"):
        assert sign_in(make_client(clinic_db), "prune-young").status_code == 303
        # The ended row is gone at once (before: kept); the unended ones stay.
        assert session_rows(clinic_db, *names) == ["prune-old", "prune-young"]
    with freeze_time("2026-03-03T09:00:00Z"):  # 49 h later: past session_max_hours (12) and a day's margin
        live = make_client(clinic_db)
        assert sign_in(live, "prune-live").status_code == 303
        assert session_rows(clinic_db, *names) == ["prune-live"]  # before: every row stayed
    with freeze_time("2026-03-03T09:05:00Z"):
        assert sign_in(make_client(clinic_db), "prune-next").status_code == 303
        assert session_rows(clinic_db, *names) == ["prune-live", "prune-next"]
        assert live.get("/today").url.path == "/today"  # the live session still serves pages


def test_a_session_ends_after_session_max_hours_however_much_it_is_used(clinic_db):
    client = make_client(clinic_db, idle_timeout_minutes=15, session_max_hours=1)
    with freeze_time("2026-03-02T09:00:00Z"):
        assert sign_in(client).status_code == 303
    for used in ("09:14", "09:28", "09:42", "09:56"):
        with freeze_time(f"2026-03-02T{used}:00Z"):
            assert client.get("/today").url.path == "/today"
    with freeze_time("2026-03-02T10:00:01Z"):
        assert client.get("/today").url.path == "/login"  # used 4 minutes ago, but started over an hour ago
