"""Issue 17 item 1: staff accounts (`tracker user add|list|disable`), argon2 hashes, sign-in lockout."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import text

from tests.conftest import dump_database
from tracker.core.accounts import Lockout, after_failure, is_locked

PASSWORD = "correct horse battery"


def audit_rows(db: str, action_prefix: str = "user."):
    from tracker.db.engine import make_engine, resolve_url

    engine = make_engine(resolve_url(db))
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT \"user\", action, entity, before, after FROM audit_event "
                                 "WHERE action LIKE :p ORDER BY id"), {"p": action_prefix + "%"}).all()
    engine.dispose()
    return rows


def test_add_list_disable_audited_and_hash_is_argon2(tracker):
    assert "added user nina (clinician)" in tracker("user add nina --role clinician --password-stdin",
                                                    input=PASSWORD + "\n").stdout
    tracker("user add rob --role readonly", input=f"{PASSWORD}\n{PASSWORD}\n")  # prompted, twice
    listed = tracker.json("user list")
    assert [(u["name"], u["role"], u["disabled"]) for u in listed] == [("nina", "clinician", False),
                                                                       ("rob", "readonly", False)]
    assert all("hash" not in key for u in listed for key in u)
    assert "disabled user rob" in tracker("user disable rob").stdout
    assert [u["disabled"] for u in tracker.json("user list")] == [False, True]
    rows = audit_rows(tracker.db)
    assert [(r.user, r.action) for r in rows] == [("tester", "user.add"), ("tester", "user.add"),
                                                  ("tester", "user.disable")]
    assert PASSWORD not in json.dumps([tuple(r) for r in rows])
    from tracker.db.engine import make_engine, resolve_url

    engine = make_engine(resolve_url(tracker.db))
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT password_hash FROM staff_user WHERE name = 'nina'")).scalar()
    engine.dispose()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


@pytest.mark.parametrize("args, stdin, code, message", [
    ("user add 'bad name' --role clinician --password-stdin", PASSWORD + "\n", 2, "name: 'bad name'"),
    ("user add nina --role admin --password-stdin", PASSWORD + "\n", 2, "admin"),
    ("user add nina --role clinician --password-stdin", "short\n", 2, "password: '***': must be at least"),
    ("user add nina --role clinician --password-stdin", PASSWORD + "\n", 4, "name: 'nina': a user of that name"),
    ("user disable nobody", None, 3, "name: 'nobody': not found"),
])
def test_bad_input_is_one_line_and_changes_nothing(tracker, args, stdin, code, message):
    tracker("user add nina --role clinician --password-stdin", input=PASSWORD + "\n")
    before = dump_database(tracker.db)
    result = tracker(args, ok=False, input=stdin)
    assert result.exit_code == code and message in result.stderr
    assert result.stderr.count("\n") == 1
    assert "short" not in result.stderr
    assert dump_database(tracker.db) == before


def test_password_is_never_an_option(tracker):
    result = tracker(["user", "add", "nina", "--role", "clinician", "--password", PASSWORD], ok=False)
    assert result.exit_code == 2 and "no such option" in result.stderr.lower()


def test_lockout_rule():
    now = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.timezone.utc)
    policy = Lockout(failures=3, minutes=15)
    assert after_failure(0, now, policy) == (1, None)
    assert after_failure(1, now, policy) == (2, None)
    assert after_failure(2, now, policy) == (0, now + dt.timedelta(minutes=15))
    assert is_locked(now + dt.timedelta(minutes=15), now + dt.timedelta(minutes=14, seconds=59))
    assert not is_locked(now + dt.timedelta(minutes=15), now + dt.timedelta(minutes=15))
    assert not is_locked(None, now)


def test_sign_in_locks_after_failures_and_unlocks_later(tracker):
    from sqlmodel import Session

    from tracker.db.engine import open_engine
    from tracker.services.users import SignInRefused, sign_in

    tracker("user add nina --role clinician --password-stdin", input=PASSWORD + "\n")
    engine = open_engine(tracker.db)
    policy = Lockout(failures=5, minutes=15)
    now = dt.datetime(2026, 1, 5, 8, 0, tzinfo=dt.timezone.utc)

    def attempt(password, at):
        with Session(engine) as session:
            try:
                return sign_in(session, "nina", password, policy, at).name
            except SignInRefused:
                return None
            finally:
                session.commit()

    for _ in range(5):
        assert attempt("wrong password!", now) is None
    assert attempt(PASSWORD, now + dt.timedelta(minutes=14)) is None  # locked: even the right one is refused
    assert attempt(PASSWORD, now + dt.timedelta(minutes=15)) == "nina"
    engine.dispose()
    actions = [r.action for r in audit_rows(tracker.db)]
    assert actions[:7] == ["user.add"] + ["user.login_failed"] * 4 + ["user.lockout", "user.login"]
    assert all(r.user == "nina" for r in audit_rows(tracker.db)[1:])
