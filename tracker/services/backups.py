"""`tracker db backup` and `tracker db restore`: the use cases around tracker/db/backups.py, audited.

A restore is refused while a nightly run holds its lock (and holds that lock itself, so no run starts
half-way), checks the file is a tracker database, keeps the current database aside, brings the restored one
to the current schema and records `db.restore` in it, holding the database's write lock from before the copy
aside until the restored database is in place (a concurrent write is in one or the other). It also draws a
new reminder epoch (tracker/services/reminders.py): reminders emitted from now on are named apart from those
the undone run delivered, whose row ids the restored database will hand out again.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session

from tracker.db import backups
from tracker.db.backups import Backup
from tracker.errors import BackupError, InputError, LockedError


def backup(engine: Engine, out: str | None, user: str, keep: int | None = None, *, on_written=None) -> Backup:
    """A backup of the whole database (see tracker/db/backups.py), recorded as `db.backup` afterwards.

    Only a recorded backup is kept: the file is written first (while others keep working), then the audit
    row is written under the write lock, and only once that commits are older backups rotated away. Refused
    (the write lock held by another command for over 30 s: "database busy"), it leaves no file and
    removes none. `on_written(partial)`, if given, is called once the file is whole under its partial name
    (tests run a second backup there)."""
    from dataclasses import replace

    from tracker.db.engine import for_writing
    from tracker.services import audit

    made = backups.make_backup(engine, out, keep=None, on_written=on_written)
    try:
        with Session(for_writing(engine)) as session:
            doomed = backups.rotation(engine, keep or backups.DEFAULT_KEEP) if out is None else []
            names = [p.name for p in doomed if not p.name.endswith(backups.PARTIAL)]
            audit.record(session, user, "db.backup", "database", None, None, None,
                         {"file": str(made.path), "size": made.size, "rotated": names})
            session.commit()
    except BaseException:
        made.path.unlink(missing_ok=True)
        raise
    backups.remove(doomed)
    return replace(made, rotated=tuple(names))


def record_migration(conn, user: str, before: str, after: str, backup_file: str | None) -> None:
    """`db.migrate` (from, to, the backup made before it), in the migration's own transaction on `conn`."""
    from tracker.services import audit

    session = Session(bind=conn)
    audit.record(session, user, "db.migrate", "database", None, None, {"revision": before},
                 {"revision": after, "backup": backup_file})
    session.flush()
    session.close()


@dataclass(frozen=True)
class Restored:
    file: Path
    from_revision: str  # the backup's schema
    to_revision: str  # after the migrations
    kept_aside: Path | None  # the database as it was before the restore (None: it was empty)


def restore(engine: Engine, file: str, user: str, *, on_locked=None) -> Restored:
    """Replace the database with the backup `file`, keeping the current one aside. From before the copy
    aside until the restored database is in place the restore holds the database's write lock, so no write
    falls between them (see `_replace_sqlite`, `_restore_postgres`). `on_locked()`, if given, is called at
    that point, the lock held (tests pause there)."""
    from tracker.locks import nightly_lock

    path = Path(file).expanduser().resolve()
    if not path.is_file():
        raise InputError("FILE", file, "no such file")
    try:
        lock = nightly_lock(engine)
        lock.__enter__()
    except LockedError:
        raise LockedError("restore refused: a nightly run is in progress; "
                          "restore when it has finished") from None
    try:
        if engine.dialect.name == "sqlite":
            return _restore_sqlite(engine, path, user, on_locked)
        if engine.dialect.name == "postgresql":
            return _restore_postgres(engine, path, user, on_locked)
        raise BackupError(f"restore: no restore for the {engine.dialect.name} dialect")
    finally:
        lock.__exit__(None, None, None)


def _stamp() -> str:
    from tracker.dates import utcnow

    return utcnow().strftime("%Y%m%dT%H%M%SZ")


def _record(session: Session, user: str, path: Path, revision: str, after: str, aside: Path | None) -> None:
    from tracker.services import audit
    from tracker.services.reminders import new_reminder_epoch

    new_reminder_epoch(session)
    audit.record(session, user, "db.restore", "database", None, None, None,
                 {"file": str(path), "revision": revision, "migrated_to": after,
                  "kept_aside": str(aside) if aside else None})


def _restore_sqlite(engine: Engine, path: Path, user: str, on_locked=None) -> Restored:
    from tracker.db.engine import known_revisions, make_engine, migration_lock, upgrade_schema

    live = backups.sqlite_path(engine)
    if live is None:
        raise BackupError("restore: an in-memory database cannot be restored into")
    if path == live:
        raise InputError("FILE", str(path), "is the database itself")
    revision = backups.sqlite_revision(path, known_revisions())  # integrity_check, a known schema revision
    stamp = _stamp()
    staging = live.with_name(f"{live.name}.restoring-{stamp}")
    aside = live.with_name(f"{live.name}.before-restore-{stamp}")
    try:
        # The backup is copied, brought to the current schema and stamped beside the database; only a
        # complete, current copy ever replaces it.
        backups.sqlite_copy(path, staging)
        staged = make_engine(f"sqlite:///{staging}")
        try:
            _, after = upgrade_schema(staged, user=user, backup=False, record=record_migration)
            with Session(staged) as session:
                _record(session, user, path, revision, after, aside if _has_tables(live) else None)
                session.commit()
            with staged.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            staged.dispose()
        with migration_lock(engine):  # nobody migrates the database while it is replaced
            kept = _replace_sqlite(live, staging, aside, on_locked)
    finally:
        for leftover in (staging, Path(f"{staging}-wal"), Path(f"{staging}-shm"), Path(f"{staging}.migrate.lock")):
            leftover.unlink(missing_ok=True)
    return Restored(path, revision, after, kept)


def _replace_sqlite(live: Path, staging: Path, aside: Path, on_locked) -> Path | None:
    """Keep the live database aside (if it has tables) and copy `staging` into it, all under its write
    lock; the copy kept aside (None: there was nothing to keep).

    Into the live file with the online backup API (not a rename): processes that have it open see the
    restored pages, and its -wal and -shm stay consistent. The backup holds a write transaction on the live
    file (the write lock every writer takes with BEGIN IMMEDIATE) from its first step to its last, so it is
    made in two: the first step takes the lock (waiting LOCK_WAIT_S for a writer, then "database busy") and
    copies all pages but one, uncommitted; between the steps the live database as last committed is copied
    aside by another connection (WAL: a reader goes on beside a writer); the second step copies the last
    page and commits. A writer that committed before the lock is in the copy kept aside; one that starts
    later waits for the lock and writes into the restored database (or is refused "database busy")."""
    from tracker.db.engine import LOCK_WAIT_S, busy_reason
    from tracker.errors import ConflictError

    kept: list[Path | None] = []  # [the copy aside] once the first step holds the lock

    def between(status: int, _remaining: int, _total: int) -> None:
        if kept:  # the second step
            return
        if status in (_SQLITE_BUSY, _SQLITE_LOCKED):  # a writer held the lock for LOCK_WAIT_S
            raise ConflictError(busy_reason())
        if status != _SQLITE_OK:  # copied in one step: never, see `pages` below
            raise BackupError(f"restore: the backup step answered {status} before the database was kept aside")
        if _has_tables(live):
            backups.sqlite_copy(live, aside)
            kept.append(aside)
        else:
            kept.append(None)
        if on_locked:  # tests pause here, with the write lock held
            on_locked()

    source = sqlite3.connect(str(staging))
    try:
        (pages,) = source.execute("PRAGMA page_count").fetchone()
        if pages < 2:  # the first step must leave a page for the second (a tracker database has dozens)
            raise BackupError(f"restore: {staging}: {pages} page(s), not a tracker database")
        target = sqlite3.connect(str(live), timeout=LOCK_WAIT_S)
        try:
            target.execute("PRAGMA journal_mode=WAL")  # as tracker opens it: the copy aside reads beside
            try:
                source.backup(target, pages=pages - 1, progress=between)
            except BaseException:
                if kept and kept[0] is not None:
                    aside.unlink(missing_ok=True)  # the database is as it was
                raise
        finally:
            target.close()
    finally:
        source.close()
    return kept[0] if kept else None


# sqlite3_backup_step's answers, as the progress callback of sqlite3.Connection.backup gets them.
_SQLITE_OK, _SQLITE_BUSY, _SQLITE_LOCKED = 0, 5, 6


def _has_tables(live: Path) -> bool:
    if not live.exists() or live.stat().st_size == 0:
        return False
    conn = sqlite3.connect(str(live), timeout=30)
    try:
        return conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0] > 0
    finally:
        conn.close()


@contextmanager
def _write_locked(engine: Engine):
    """A connection in a transaction holding the database's write lock (as `for_writing` takes it: a writer
    holding it for over LOCK_WAIT_S makes this "database busy"), for a restore that replaces every table on
    other connections meanwhile; it holds no lock on any table (pg_restore drops them). Rolled back on
    error; the caller commits."""
    from tracker.db.engine import for_writing

    with for_writing(engine).connect() as conn:
        conn.begin()  # the begin listener takes the advisory lock
        yield conn


def _restore_postgres(engine: Engine, path: Path, user: str, on_locked=None) -> Restored:
    """The current database is dumped aside and the backup restored into the same database (pg_restore
    --clean, one transaction), then migrated and recorded: all under the writers' advisory lock, held on a
    connection of its own from before the dump until the audit row of the restore commits. A writer that
    committed before is in the dump kept aside; one that starts later waits and writes into the restored
    database (or is refused "database busy" after LOCK_WAIT_S)."""
    from tracker.db.engine import current_revision, migration_lock, upgrade_locked

    backups.pg_check_dump(path)
    folder = backups.backups_dir(engine)
    from tracker.private_files import private_dir

    private_dir(folder)
    aside = folder / f"{engine.url.database}.before-restore-{_stamp()}.dump"
    with migration_lock(engine), _write_locked(engine) as locked:
        backups.pg_dump(engine, aside)  # refused without pg_dump: nothing is restored unkept
        if on_locked:  # tests pause here, with the write lock held
            on_locked()
        engine.dispose()  # pooled sessions would hold locks on the tables pg_restore drops
        backups.pg_restore(engine, path)
        revision = current_revision(engine)
        _, after = upgrade_locked(engine, user=user, backup=False, record=record_migration)
        session = Session(bind=locked)  # in the locked transaction: committing it releases the lock
        _record(session, user, path, revision or "?", after, aside)
        session.flush()
        session.close()
        locked.commit()
    return Restored(path, revision or "?", after, aside)
