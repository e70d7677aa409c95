"""Single-runner locks: the nightly job (a second concurrent run refuses instead of double-sending), and the
CalDAV push (`caldav_lock`: two pushes interleaving their PUTs, DELETEs and records of what was sent would
leave the collection and `caldav_object` disagreeing).

SQLite: an OS file lock (flock, non-blocking) on `<database>.nightly.lock`; the kernel drops it when the
process dies, so a SIGKILLed run never leaves a stale lock behind. PostgreSQL: a session-level advisory
lock held on a dedicated connection for the length of the run (also released when the session ends).

`nightly_lock_held` tells, without taking the lock, whether some process holds it (`nightly status`: a run
marked running whose process holds no lock was killed).
"""

from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import Engine

from tracker.errors import LockedError

# Arbitrary fixed key for pg_try_advisory_lock: "tracker nightly".
PG_LOCK_KEY = 0x7472_6E69
PG_CALDAV_LOCK_KEY = 0x7472_6364  # "trcd": tracker CalDAV push
# `nightly_lock_held` on SQLite takes a shared flock for an instant: a run starting then tries again for this
# long (in PROBE_RETRY_S steps) before it refuses, so a `nightly status` never turns a run away.
PROBE_GRACE_S = 0.25
PROBE_RETRY_S = 0.01


def lock_path(engine: Engine, name: str = "nightly") -> Path:
    database = engine.url.database
    if not database or database == ":memory:":
        raise LockedError(f"{name}: an in-memory database cannot be shared, so it cannot be locked")
    return Path(f"{database}.{name}.lock")


@contextmanager
def _sqlite_lock(engine: Engine, name: str = "nightly", refusal: str = "nightly run"):
    import fcntl

    path = lock_path(engine, name)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        tries = round(PROBE_GRACE_S / PROBE_RETRY_S)  # counted, not timed: a frozen clock (tests) stops nothing
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if tries > 0:  # perhaps a `nightly status` looking (`nightly_lock_held`)
                    tries -= 1
                    time.sleep(PROBE_RETRY_S)
                    continue
                holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                raise LockedError(f"{name}: another {refusal} holds {path} (pid {holder}); "
                                  "not starting a second one") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


@contextmanager
def _postgres_lock(engine: Engine, key: int = PG_LOCK_KEY, name: str = "nightly", refusal: str = "nightly run"):
    # PostgreSQL: session advisory lock on its own connection, held until the run ends.
    from sqlalchemy import text

    with engine.connect() as conn:
        got = conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar()
        conn.commit()
        if not got:
            raise LockedError(f"{name}: another {refusal} holds the database advisory lock "
                              f"{key}; not starting a second one")
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            conn.commit()


@contextmanager
def nightly_lock(engine: Engine):
    """Hold the nightly lock for the duration of the block, or raise LockedError at once."""
    if engine.dialect.name == "sqlite":
        with _sqlite_lock(engine):
            yield
    elif engine.dialect.name == "postgresql":
        with _postgres_lock(engine):
            yield
    else:
        raise LockedError(f"nightly: no single-runner lock for the {engine.dialect.name} dialect")


def nightly_lock_held(engine: Engine) -> bool:
    """Whether some process holds the nightly lock now; writes nothing, and never keeps a run from starting.
    SQLite: a shared flock tried on the lock file opened read-only (no file: nobody ever held it), released
    at once (a run starting in that instant tries again, `_sqlite_lock`). PostgreSQL: pg_locks (the advisory
    lock is not taken). True when it cannot tell."""
    if engine.dialect.name == "sqlite":
        import fcntl

        try:
            fd = os.open(lock_path(engine), os.O_RDONLY)
        except FileNotFoundError:
            return False
        except OSError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:  # held (BlockingIOError), or it cannot tell
            return True
        finally:
            os.close(fd)  # releases the shared lock if taken
        return False
    if engine.dialect.name == "postgresql":
        from sqlalchemy import text

        with engine.connect() as conn:
            held = conn.execute(text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND classid::bigint = :high AND objid::bigint = :low AND objsubid = 1"),
                {"high": PG_LOCK_KEY >> 32, "low": PG_LOCK_KEY & 0xFFFF_FFFF}).scalar()
            conn.rollback()
        return bool(held)
    return True


@contextmanager
def caldav_lock(engine: Engine):
    """Hold the CalDAV push lock for the block, or raise LockedError at once (a second push refuses: the
    first brings the collection in step, and the next push resumes from what it recorded)."""
    if engine.dialect.name == "sqlite":
        with _sqlite_lock(engine, "caldav", "calendar push"):
            yield
    elif engine.dialect.name == "postgresql":
        with _postgres_lock(engine, PG_CALDAV_LOCK_KEY, "caldav", "calendar push"):
            yield
    else:
        raise LockedError(f"caldav: no push lock for the {engine.dialect.name} dialect")
