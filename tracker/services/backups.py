"""`tracker db backup` and `tracker db restore`: the use cases around tracker/db/backups.py, audited.

A restore is refused while a nightly run holds its lock (and holds that lock itself, so no run starts
half-way), checks the file is a tracker database, keeps the current database aside, brings the restored one
to the current schema and records `db.restore` in it. It also draws a new reminder epoch
(tracker/services/reminders.py): reminders emitted from now on are named apart from those the undone run
delivered, whose row ids the restored database will hand out again.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session

from tracker.db import backups
from tracker.db.backups import Backup
from tracker.errors import BackupError, InputError, LockedError


def backup(engine: Engine, out: str | None, user: str, keep: int | None = None) -> Backup:
    """A backup of the whole database (see tracker/db/backups.py), recorded as `db.backup` afterwards.

    Only a recorded backup is kept: the file is written first (while others keep working), then the audit
    row is written under the write lock, and only once that commits are older backups rotated away. Refused
    (the write lock held by another command for over 30 s: "database busy"), it leaves no file and
    removes none."""
    from dataclasses import replace

    from tracker.db.engine import for_writing
    from tracker.services import audit

    made = backups.make_backup(engine, out, keep=None)
    try:
        with Session(for_writing(engine)) as session:
            doomed = backups.rotation(engine, keep or backups.DEFAULT_KEEP) if out is None else []
            names = [p.name for p in doomed if not p.name.endswith(".partial")]
            audit.record(session, user, "db.backup", "database", None, None, None,
                         {"file": str(made.path), "size": made.size, "rotated": names})
            session.commit()
    except BaseException:
        made.path.unlink(missing_ok=True)
        raise
    return replace(made, rotated=backups.remove(doomed))


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


def restore(engine: Engine, file: str, user: str) -> Restored:
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
            return _restore_sqlite(engine, path, user)
        if engine.dialect.name == "postgresql":
            return _restore_postgres(engine, path, user)
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


def _restore_sqlite(engine: Engine, path: Path, user: str) -> Restored:
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
            kept = None
            if _has_tables(live):
                backups.sqlite_copy(live, aside)
                kept = aside
            # Into the live file with the online backup API (not a rename): processes that have it open
            # see the restored pages, and its -wal and -shm stay consistent.
            source = sqlite3.connect(str(staging))
            try:
                target = sqlite3.connect(str(live), timeout=30)
                try:
                    source.backup(target)
                finally:
                    target.close()
            finally:
                source.close()
    finally:
        for leftover in (staging, Path(f"{staging}-wal"), Path(f"{staging}-shm"), Path(f"{staging}.migrate.lock"),
                         Path(f"{staging}.partial")):
            leftover.unlink(missing_ok=True)
    return Restored(path, revision, after, kept)


def _has_tables(live: Path) -> bool:
    if not live.exists() or live.stat().st_size == 0:
        return False
    conn = sqlite3.connect(str(live), timeout=30)
    try:
        return conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0] > 0
    finally:
        conn.close()


def _restore_postgres(engine: Engine, path: Path, user: str) -> Restored:
    from tracker.db.engine import current_revision, migration_lock, upgrade_locked

    backups.pg_check_dump(path)
    folder = backups.backups_dir(engine)
    from tracker.private_files import private_dir

    private_dir(folder)
    aside = folder / f"{engine.url.database}.before-restore-{_stamp()}.dump"
    with migration_lock(engine):
        backups.pg_dump(engine, aside)  # refused without pg_dump: nothing is restored unkept
        engine.dispose()  # pooled sessions would hold locks on the tables pg_restore drops
        backups.pg_restore(engine, path)
        revision = current_revision(engine)
        _, after = upgrade_locked(engine, user=user, backup=False, record=record_migration)
        with Session(engine) as session:
            _record(session, user, path, revision or "?", after, aside)
            session.commit()
    return Restored(path, revision or "?", after, aside)
