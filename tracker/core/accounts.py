"""Staff accounts for the web view: what a user name, role and password must be, and the sign-in lockout
rule. Pure: plain values in, a decision out (the shell hashes passwords and stores the state)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from tracker.errors import InputError

ROLES = ("clinician", "readonly")  # clinician: may act on alerts; readonly: may only look
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MIN_PASSWORD_LENGTH = 10  # not clinical: a floor against trivially guessable passwords
MAX_PASSWORD_LENGTH = 1024  # argon2 hashes anything, but a megabyte "password" is an attack


def check_name(name: object) -> str:
    text = name if isinstance(name, str) else ""
    if not NAME_PATTERN.fullmatch(text):
        raise InputError("name", name, "expected 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return text


def check_role(role: object) -> str:
    if role not in ROLES:
        raise InputError("role", role, f"expected one of {', '.join(ROLES)}")
    return role


def check_password(password: object) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        # The value itself is never echoed: it is a secret.
        raise InputError("password", "***", f"must be at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InputError("password", "***", f"must be at most {MAX_PASSWORD_LENGTH} characters")
    return password


@dataclass(frozen=True)
class Lockout:
    failures: int  # failed sign-ins in a row that lock the account
    minutes: int  # how long it stays locked


def is_locked(locked_until: dt.datetime | None, now: dt.datetime) -> bool:
    return locked_until is not None and now < locked_until


def after_failure(failed_logins: int, now: dt.datetime, policy: Lockout) -> tuple[int, dt.datetime | None]:
    """(failed sign-ins in a row, locked until) after one more failure: the count restarts when it locks."""
    count = failed_logins + 1
    if count >= policy.failures:
        return 0, now + dt.timedelta(minutes=policy.minutes)
    return count, None


def may_act(role: str) -> bool:
    """Whether a signed-in user may change anything (acknowledge, snooze, resolve)."""
    return role == "clinician"
