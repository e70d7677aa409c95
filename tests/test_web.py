"""Issue 17: the staff web view through starlette's TestClient on a real database (the demo clinic):
sign-in, lockout, idle timeout, CSRF, roles, security headers, and alert actions audited under the
signed-in user's name."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from freezegun import freeze_time

from tests.conftest import dump_database
from tests.web_clinic import PASSWORD, copy_of, demo_clinic, query  # noqa: F401 (demo_clinic: a fixture, found by name)

starlette_testclient = pytest.importorskip("starlette.testclient")


@pytest.fixture
def clinic_db(request, tmp_path) -> str:
    return copy_of(request.getfixturevalue("demo_clinic"), tmp_path)


def make_client(db: str, *, https: bool = False, **web):
    from tracker.core.settings import Settings, WebSettings
    from tracker.db.engine import open_engine
    from tracker.protocol_files import library
    from tracker.web.app import create_app

    settings = Settings(timezone="UTC", web=WebSettings(**web))
    app = create_app(open_engine(db), library(None), settings, "k" * 64, https=https)
    return starlette_testclient.TestClient(app, base_url="https://testserver" if https else "http://testserver")


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def sign_in(client, name="nina", password=PASSWORD):
    token = csrf_of(client.get("/login").text)
    return client.post("/login", data={"csrf_token": token, "name": name, "password": password},
                       follow_redirects=False)


def utc_today() -> dt.date:
    return dt.datetime.now(dt.timezone.utc).date()  # the clinic's zone in these tests (Settings timezone UTC)


def dump_but_reads(db: str) -> dict:
    """dump_database without the access events of pages shown (a refusal re-shows the alerts list: a read,
    audited) and the chain head they move: what an action changed, if anything."""
    dump = dump_database(db)
    action = 3  # audit_event columns: id, at, user, action, ...
    dump["audit_event"] = [row for row in dump["audit_event"] if not str(row[action]).startswith("access.")]
    dump.pop("audit_head", None)
    return dump


def open_alert_ids(db: str) -> list[int]:
    return [r[0] for r in query(db, "SELECT id FROM alert WHERE status = 'open' ORDER BY id")]


def test_pages_need_a_signed_in_user(clinic_db):
    client = make_client(clinic_db)
    for path in ("/", "/today", "/alerts", "/patients/1"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] in ("/login", "/today"), path
    assert client.get("/today").url.path == "/login"


def test_sign_in_shows_the_morning_list_without_patient_data_in_urls(clinic_db):
    client = make_client(clinic_db)
    response = sign_in(client)
    assert response.status_code == 303 and response.headers["location"] == "/today"
    page = client.get("/today")
    assert page.status_code == 200
    overdue = query(clinic_db, "SELECT count(*) FROM item WHERE status = 'planned' AND due < :d",
                    d=utc_today())[0][0]
    assert overdue > 0 and "Overdue (" in page.text and "Nothing overdue." not in page.text
    assert "Open alerts" in page.text and "No open alerts." not in page.text
    links = re.findall(r'href="([^"]+)"', page.text)
    assert any(re.fullmatch(r"/patients/\d+", link) for link in links)
    assert not [link for link in links if "DEMO" in link]  # MRNs never in a URL
    filtered = client.get("/today", params={"drug": "dupilumab"})
    assert filtered.status_code == 200 and "· dupilumab" in filtered.text


def test_wrong_password_and_unknown_name_get_the_same_refusal(clinic_db):
    client = make_client(clinic_db)
    wrong = sign_in(client, password="not the password")
    unknown = sign_in(client, name="nobody")
    assert wrong.status_code == unknown.status_code == 401
    assert "Sign-in failed" in wrong.text and "Sign-in failed" in unknown.text
    assert client.get("/today").url.path == "/login"


def add_user(tracker, db: str, name: str, role: str = "clinician") -> None:
    """An account of this test's own (on PostgreSQL the module's tests share one clinic)."""
    tracker.db = db
    tracker(["user", "add", name, "--role", role, "--password-stdin"], input=PASSWORD + "\n")


def test_lockout_after_repeated_failures_is_audited(clinic_db, tracker):
    add_user(tracker, clinic_db, "lena")
    client = make_client(clinic_db, lockout_failures=3, lockout_minutes=15)
    with freeze_time("2026-03-02T09:00:00Z"):
        for _ in range(3):
            assert sign_in(client, "lena", password="guess guess guess").status_code == 401
        assert sign_in(client, "lena").status_code == 401  # locked: the right password is refused too
    with freeze_time("2026-03-02T09:15:01Z"):
        assert sign_in(client, "lena").status_code == 303
    actions = [r[0] for r in query(clinic_db, "SELECT action FROM audit_event WHERE entity = 'staff_user' "
                                              "AND \"user\" = 'lena' ORDER BY id")]
    # The refusal while locked is not counted (nor audited): the lock stands until it ends.
    assert actions[-4:] == ["user.login_failed", "user.login_failed", "user.lockout", "user.login"]


def test_failed_sign_ins_from_one_address_are_limited(clinic_db):
    client = make_client(clinic_db)
    statuses = [sign_in(client, name=f"guess{i}").status_code for i in range(21)]
    assert statuses[:20] == [401] * 20 and statuses[20] == 429


def test_idle_session_must_sign_in_again(clinic_db):
    client = make_client(clinic_db, idle_timeout_minutes=15)
    with freeze_time("2026-03-02T09:00:00Z"):
        sign_in(client)
    with freeze_time("2026-03-02T09:14:00Z"):
        assert client.get("/today").url.path == "/today"  # used: the idle clock restarts
    with freeze_time("2026-03-02T09:28:00Z"):
        assert client.get("/today").url.path == "/today"
    with freeze_time("2026-03-02T09:43:01Z"):
        assert client.get("/today").url.path == "/login"


def test_post_without_csrf_token_is_refused_and_changes_nothing(clinic_db):
    client = make_client(clinic_db)
    sign_in(client)
    alert_id = open_alert_ids(clinic_db)[0]
    before = dump_but_reads(clinic_db)
    for data in ({"note": "seen"}, {"note": "seen", "csrf_token": "forged"}):
        response = client.post(f"/alerts/{alert_id}/ack", data=data)
        assert response.status_code == 403 and "did not come from this site" in response.text
    other = make_client(clinic_db)  # a token from another session is no good either
    response = other.post("/login", data={"csrf_token": csrf_of(client.get("/alerts").text), "name": "nina",
                                          "password": PASSWORD})
    assert response.status_code == 403
    assert dump_but_reads(clinic_db) == before


def test_readonly_user_sees_but_cannot_act(clinic_db):
    client = make_client(clinic_db)
    assert sign_in(client, name="rita").status_code == 303
    page = client.get("/alerts")
    assert page.status_code == 200 and "Acknowledge" not in page.text
    alert_id = open_alert_ids(clinic_db)[0]
    before = dump_but_reads(clinic_db)
    response = client.post(f"/alerts/{alert_id}/ack", data={"csrf_token": csrf_of(page.text), "note": "x"})
    assert response.status_code == 403 and "read-only" in response.text
    assert dump_but_reads(clinic_db) == before


def test_acknowledge_is_audited_under_the_signed_in_name(clinic_db):
    client = make_client(clinic_db)
    sign_in(client)
    alert_id = open_alert_ids(clinic_db)[0]
    page = client.get("/alerts")
    response = client.post(f"/alerts/{alert_id}/ack", data={"csrf_token": csrf_of(page.text),
                                                            "note": "bloods booked"}, follow_redirects=False)
    assert response.status_code == 303
    assert query(clinic_db, "SELECT status, note FROM alert WHERE id = :i", i=alert_id)[0] == ("acknowledged",
                                                                                              "bloods booked")
    audit = query(clinic_db, "SELECT \"user\", action FROM audit_event WHERE entity = 'alert' AND entity_id = :i "
                             "ORDER BY id DESC", i=alert_id)
    assert audit[0] == ("nina", "alert.ack")


def test_snooze_and_resolve_keep_the_clis_limits(clinic_db):
    client = make_client(clinic_db)
    sign_in(client)
    first, second = open_alert_ids(clinic_db)[:2]
    token = csrf_of(client.get("/alerts").text)
    today = utc_today()
    before = dump_but_reads(clinic_db)
    too_far = client.post(f"/alerts/{first}/snooze", data={"csrf_token": token, "reason": "away",
                                                           "until": (today + dt.timedelta(days=31)).isoformat()})
    assert too_far.status_code == 400 and "at most 30 days" in too_far.text
    no_reason = client.post(f"/alerts/{first}/resolve", data={"csrf_token": token, "reason": "  "})
    assert no_reason.status_code == 400 and "reason" in no_reason.text
    bad_date = client.post(f"/alerts/{first}/snooze", data={"csrf_token": token, "reason": "r", "until": "soon"})
    assert bad_date.status_code == 400 and "until: &#39;soon&#39;: expected a date" in bad_date.text
    assert client.post("/alerts/999999/resolve", data={"csrf_token": token, "reason": "r"}).status_code == 404
    assert dump_but_reads(clinic_db) == before
    until = (today + dt.timedelta(days=7)).isoformat()
    assert client.post(f"/alerts/{first}/snooze", data={"csrf_token": token, "reason": "on holiday",
                                                        "until": until}).status_code == 200
    assert client.post(f"/alerts/{second}/resolve", data={"csrf_token": token,
                                                          "reason": "seen in clinic"}).status_code == 200
    assert query(clinic_db, "SELECT status, snoozed_until FROM alert WHERE id = :i", i=first)[0][0] == "snoozed"
    assert query(clinic_db, "SELECT status FROM alert WHERE id = :i", i=second)[0][0] == "resolved"
    actions = query(clinic_db, "SELECT \"user\", action FROM audit_event WHERE entity = 'alert' AND entity_id IN "
                               "(:a, :b) ORDER BY id", a=first, b=second)
    assert ("nina", "alert.snooze") in actions and ("nina", "alert.resolve") in actions


def test_security_headers_and_cookie_flags(clinic_db):
    client = make_client(clinic_db)
    for path in ("/login", "/static/style.css", "/no-such-page"):
        headers = client.get(path).headers
        assert "default-src 'self'" in headers["content-security-policy"], path
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["x-content-type-options"] == "nosniff"
    cookie = sign_in(client).headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "secure" not in cookie
    secure = make_client(clinic_db, https=True)
    cookie = sign_in(secure).headers["set-cookie"].lower()
    assert "secure" in cookie and "strict-transport-security" in secure.get("/login").headers


def test_patient_page_has_courses_timeline_results_and_charts(clinic_db):
    client = make_client(clinic_db)
    sign_in(client)
    patient_id, mrn = query(clinic_db, "SELECT p.id, p.mrn FROM patient p JOIN lab_result r ON r.patient_id = p.id "
                                       "ORDER BY p.id LIMIT 1")[0]
    page = client.get(f"/patients/{patient_id}")
    assert page.status_code == 200 and mrn in page.text
    for heading in ("Courses", "Calendar", "Trends", "Results", "Audit trail"):
        assert f">{heading}</h2>" in page.text
    assert "<svg" in page.text and "<script" not in page.text
    assert client.get("/patients/999999").status_code == 404


def test_a_disabled_account_is_signed_out(clinic_db, tracker):
    add_user(tracker, clinic_db, "dora")
    client = make_client(clinic_db)
    sign_in(client, "dora")
    assert client.get("/today").url.path == "/today"
    tracker("user disable dora")
    assert client.get("/today").url.path == "/login"
    assert sign_in(client, "dora").status_code == 401


def test_session_secret_is_a_private_file_beside_the_database(tmp_path):
    import stat

    from sqlalchemy import create_engine

    from tracker.core.settings import Settings
    from tracker.web.security import secret_key, secret_path

    engine = create_engine(f"sqlite:///{tmp_path / 'clinic.db'}")
    path = secret_path(Settings(), engine)
    assert path == tmp_path / "web-secret"
    key = secret_key(path)
    assert len(key) >= 32 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secret_key(path) == key  # kept across restarts: sessions survive them


def test_pages_showing_patient_data_are_access_events_under_the_signed_in_name(clinic_db):
    # As the CLI's reads are (issue 15): who was shown which patient, and the whole clinic's lists.
    client = make_client(clinic_db)
    sign_in(client)
    patient_id, mrn = query(clinic_db, "SELECT id, mrn FROM patient ORDER BY id LIMIT 1")[0]
    before = query(clinic_db, "SELECT coalesce(max(id), 0) FROM audit_event")[0][0]
    assert client.get(f"/patients/{patient_id}").status_code == 200
    assert client.get("/today?drug=methotrexate").status_code == 200
    assert client.get("/alerts").status_code == 200
    rows = query(clinic_db, "SELECT \"user\", action, entity, entity_id, mrn, after FROM audit_event "
                            "WHERE id > :b AND action LIKE 'access.%' ORDER BY id", b=before)
    assert [(r[0], r[1], r[2]) for r in rows] == [("nina", "access.web.patient", "patient"),
                                                  ("nina", "access.web.today", "clinic"),
                                                  ("nina", "access.web.alerts", "clinic")]
    assert (rows[0][3], rows[0][4]) == (patient_id, mrn)
    assert '"drug": "methotrexate"' in rows[1][5]  # the filter, never patient data
    assert client.get("/patients/999999").status_code == 404  # nothing shown, nothing recorded
    assert query(clinic_db, "SELECT count(*) FROM audit_event WHERE action = 'access.web.patient' AND id > :b",
                 b=before)[0][0] == 1  # (on PostgreSQL the module's tests share one clinic)
