"""Staff accounts (`tracker user add|list|disable`) and signing in to the web view.

Passwords are hashed with argon2 (argon2-cffi's defaults); the rules on names, roles, passwords and the
lockout are tracker/core/accounts.py. Every change to an account is audited; so are sign-ins, failed
sign-ins and lockouts (with the account's name, never the password)."""

from __future__ import annotations

import datetime as dt

from sqlmodel import Session, select

from tracker.core.accounts import Lockout, after_failure, check_name, check_password, check_role, is_locked
from tracker.dates import utcnow
from tracker.db.tables import StaffUser
from tracker.errors import ConflictError, NotFoundError
from tracker.services import audit
from tracker.services.context import Clinic


def _hasher():
    from argon2 import PasswordHasher

    return PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def _fields(row: StaffUser) -> dict:
    """What the audit log and `user list` show of an account (never the hash)."""
    return {"name": row.name, "role": row.role, "disabled": row.disabled,
            "failed_logins": row.failed_logins,
            "locked_until": row.locked_until.isoformat() if row.locked_until else None,
            "created_at": row.created_at.isoformat()}


def find_user(session: Session, name: str) -> StaffUser | None:
    return session.exec(select(StaffUser).where(StaffUser.name == name)).first()


def add_user(clinic: Clinic, name: str, role: str, password: str) -> StaffUser:
    name, role, password = check_name(name), check_role(role), check_password(password)
    session = clinic.session
    if find_user(session, name) is not None:
        raise ConflictError(f"name: {name!r}: a user of that name exists")
    row = StaffUser(name=name, role=role, password_hash=hash_password(password), created_at=utcnow())
    session.add(row)
    session.flush()
    audit.record(session, clinic.user, "user.add", "staff_user", row.id, after=_fields(row))
    return row


def list_users(session: Session) -> list[dict]:
    now = utcnow()
    rows = session.exec(select(StaffUser).order_by(StaffUser.name)).all()
    return [{**_fields(r), "locked": is_locked(_aware(r.locked_until), now)} for r in rows]


def disable_user(clinic: Clinic, name: str) -> StaffUser:
    session = clinic.session
    row = find_user(session, name)
    if row is None:
        raise NotFoundError("name", name)
    if row.disabled:
        raise ConflictError(f"name: {name!r}: already disabled")
    before = _fields(row)
    row.disabled = True
    session.add(row)
    audit.record(session, clinic.user, "user.disable", "staff_user", row.id, before=before, after=_fields(row))
    return row


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands timestamps back naive; they were written as UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value


class SignInRefused(Exception):
    """Wrong name or password, a disabled or a locked account: the page says only that sign-in failed."""


def sign_in(session: Session, name: str, password: str, policy: Lockout, now: dt.datetime | None = None) -> StaffUser:
    """The account if `password` is right and the account may sign in; else SignInRefused. The caller
    commits either way: a failure's count and a lockout must be kept (and are audited)."""
    from argon2.exceptions import InvalidHashError, VerificationError

    now = now or utcnow()
    hasher = _hasher()
    row = find_user(session, name) if isinstance(name, str) and len(name) <= 64 else None
    # One password hashing for every attempt, before any refusal: an unknown name is checked against a dummy
    # hash, a locked or disabled account against its own (its outcome unused), so the time taken tells no
    # names.
    try:
        hasher.verify(row.password_hash if row is not None else _dummy_hash(), password or "")
        right = True
    except (VerificationError, InvalidHashError):
        right = False
    if row is None or row.disabled or is_locked(_aware(row.locked_until), now):
        raise SignInRefused()  # a locked account stays locked, whatever the password
    if not right:
        before = _fields(row)
        row.failed_logins, row.locked_until = after_failure(row.failed_logins, now, policy)
        session.add(row)
        action = "user.lockout" if row.locked_until is not None else "user.login_failed"
        audit.record(session, row.name, action, "staff_user", row.id, before=before, after=_fields(row))
        raise SignInRefused()
    if row.failed_logins or row.locked_until is not None:
        row.failed_logins, row.locked_until = 0, None
    if hasher.check_needs_rehash(row.password_hash):
        row.password_hash = hasher.hash(password)
    session.add(row)
    audit.record(session, row.name, "user.login", "staff_user", row.id)
    return row


_DUMMY: list[str] = []


def _dummy_hash() -> str:
    if not _DUMMY:
        _DUMMY.append(hash_password("not a password of anyone"))
    return _DUMMY[0]
