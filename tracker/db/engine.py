"""Opening the database and keeping its schema current.

`--db PATH|URL`, else `$TRACKER_DB`, else `tracker.db` in the user's data directory (XDG). SQLite runs with
foreign keys on, WAL and a busy timeout. The schema is checked with one cheap query on every start;
Alembic is imported only when the database is behind.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Engine

from tracker.errors import NoDatabaseError, SchemaError

# The newest migration in migrations/versions. A test checks it matches Alembic's head.
SCHEMA_HEAD = "0025"


def default_db_path() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("tracker", appauthor=False)) / "tracker.db"


def resolve_url(db: str | None, *, create: bool = True) -> str:
    """The SQLAlchemy URL of `db` (a path or URL; else $TRACKER_DB; else the user's data directory).

    A SQLite file that does not exist is refused unless `create` (commands that add data): a mistyped path
    never becomes an empty clinic. Directories are never created for a given path; only the default data
    directory is made (private, 0700)."""
    explicit = db or os.environ.get("TRACKER_DB")
    value = explicit or str(default_db_path())
    if "://" in value:
        if value.startswith("postgres://"):
            value = "postgresql://" + value.removeprefix("postgres://")
        if value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value
    path = Path(value).expanduser().resolve()
    if not path.exists():
        if not create:
            raise NoDatabaseError(str(path))
        if not path.parent.is_dir():
            if explicit:
                from tracker.errors import InputError

                raise InputError("db", value, f"directory {path.parent} does not exist")
            from tracker.private_files import private_dir

            private_dir(path.parent)
        from tracker.private_files import create_private

        create_private(path)  # 0600 before SQLite opens it: its -wal and -shm take the database's mode
    else:
        from tracker.private_files import warn_if_shared

        warn_if_shared(path)
    return f"sqlite:///{path}"


# Whether this process has opened a SQLite connection (the CLI's exit collects cycles for it: `_before_exit`).
sqlite_opened = False


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    global sqlite_opened
    sqlite_opened = True
    # foreign_keys is per connection; journal_mode=WAL persists in the file but must be set outside a
    # transaction, which a fresh DBAPI connection is.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={int(LOCK_WAIT_S * 1000)}")  # LOCK_WAIT_S, below
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


# Execution option marking a transaction that writes (see `for_writing`).
WRITE_OPTION = "tracker_write"
# Arbitrary fixed key of PostgreSQL's transaction-level writer lock: "tracker write".
PG_WRITE_LOCK_KEY = 0x7472_7772
LOCK_WAIT_S = 30  # how long a writer waits for another's transaction (SQLite busy_timeout, PG lock_timeout)


def for_writing(engine: Engine) -> Engine:
    """The same engine (same pool), whose transactions take the database's write lock as they begin.

    A command that reads, decides and then writes (is there a live course? which alerts are new?) must not
    interleave with another doing the same, or both act on the same stale read. SQLite: `BEGIN IMMEDIATE`.
    PostgreSQL: a transaction-level advisory lock that every writer takes, so writers run one after the
    other while readers never wait. The partial unique indexes (migration 0007) hold the invariants even
    for a writer that forgets this; the lock makes such a writer's decisions right, not just refused."""
    return engine.execution_options(**{WRITE_OPTION: True})


def _begin(conn) -> None:
    if not conn.get_execution_options().get(WRITE_OPTION):
        return  # the driver's own transaction handling (SQLite: deferred, begun at the first write)
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_WAIT_S}s'")
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_WRITE_LOCK_KEY})")


def busy_reason() -> str:
    """What a command refused after waiting LOCK_WAIT_S for the write lock says (exit 4)."""
    return f"database busy: another command held the write lock for over {LOCK_WAIT_S:g} s; try again"


def lock_conflict(exc: BaseException) -> str | None:
    """A one-line reason if a database error means another command got there first (a writer held the lock
    too long, or a unique invariant refused a duplicate); None for any other error."""
    from sqlalchemy.exc import IntegrityError, OperationalError

    text_ = str(getattr(exc, "orig", None) or exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, OperationalError) and ("database is locked" in text_ or "lock timeout" in text_):
        return busy_reason()
    if isinstance(exc, IntegrityError):
        for (index, sqlite_text), what in UNIQUE_LIVE.items():
            if f'"{index}"' in text_ or text_ == f"UNIQUE constraint failed: {sqlite_text}":
                return f"{what} already exists (another command made it at the same time)"
    return None


# The partial unique indexes holding the "one live ..." invariants (migration 0007): (name, how SQLite names
# it in an error) -> what they guard.
UNIQUE_LIVE = {
    ("uq_alert_live_condition", "alert.condition_key"): "a live alert for this condition",
    ("uq_course_live_patient_drug", "course.patient_id, course.drug"): "a live course of this drug for this patient",
}


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": LOCK_WAIT_S})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _begin)
        return engine
    try:
        engine = create_engine(url, pool_pre_ping=True, connect_args=_pg_connect_args(url))
        event.listen(engine, "begin", _begin)
        return engine
    except ModuleNotFoundError as exc:
        from tracker.errors import InputError

        raise InputError("db", url.split("@")[-1], f"needs the {exc.name} driver: pip install 'tracker[postgres]'") from None


def _pg_connect_args(url: str) -> dict:
    """PostgreSQL sessions without JIT compilation (unless the URL sets `options` itself): the whole-clinic
    prefilter's scans are costed high enough to be compiled, and compiling took longer (1-3 s a query at
    100,000 patients) than it saved; tracker's queries are index seeks and single scans."""
    from sqlalchemy.engine import make_url

    return {} if "options" in make_url(url).query else {"options": "-c jit=off"}


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        try:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except Exception:  # no alembic_version table yet: a new database
            conn.rollback()
            return None


def open_engine(db: str | None = None, *, upgrade: bool = True, create: bool = True,
                user: str | None = None, keep: int | None = None, record=None) -> Engine:
    engine = make_engine(resolve_url(db, create=create))
    if upgrade and current_revision(engine) != SCHEMA_HEAD:
        upgrade_schema(engine, user=user, keep=keep, record=record)
    return engine


def _alembic_config(connection=None):
    from alembic.config import Config

    from tracker.resources import migrations_dir

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


# Arbitrary fixed key of PostgreSQL's session-level migration lock: "tracker migrate".
PG_MIGRATE_LOCK_KEY = 0x7472_6D69


@contextmanager
def migration_lock(engine: Engine):
    """Only one process migrates a database at a time; the others wait here, then find it current.

    SQLite: a blocking OS file lock (flock) on `<database>.migrate.lock`, dropped by the kernel if the
    holder dies. PostgreSQL: a session-level advisory lock on its own connection."""
    path = _sqlite_file(engine)
    if engine.dialect.name == "sqlite":
        if path is None:  # in-memory: one connection, nobody to wait for
            yield
            return
        import fcntl

        fd = os.open(f"{path}.migrate.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock
    else:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"SELECT pg_advisory_lock({PG_MIGRATE_LOCK_KEY})")
            conn.commit()
            try:
                yield
            finally:
                conn.exec_driver_sql(f"SELECT pg_advisory_unlock({PG_MIGRATE_LOCK_KEY})")
                conn.commit()


def _sqlite_file(engine: Engine) -> str | None:
    database = engine.url.database
    return database if engine.dialect.name == "sqlite" and database and database != ":memory:" else None


def commit_without_checkpoint(session):
    """Commit `session`; on a SQLite file, without the checkpoint that SQLite runs as a large transaction
    commits, which is returned as a thread to start (on a connection of its own) and join: else None.

    The automatic checkpoint copies the write-ahead log into the database file and syncs both: a cold
    night's commit at 100,000 patients takes 0.3 s with it (an 80 MB log), 0.05 s without. The nightly
    runs it while its channels deliver (SQLite lets one connection checkpoint while others read and write;
    the thread waits on the disk, not on the GIL). Durability: with `synchronous=NORMAL` a commit in WAL mode
    is on disk once a checkpoint has synced the log; a typical night's commit, whose log stays under the
    automatic checkpoint's 1,000 pages, was never synced before its delivery either. A power cut before
    the checkpoint ends can undo the night after its digest went out: the next run then sends it again. A
    checkpoint that does not happen here happens at the next commit past 1,000 pages or as the last
    connection closes."""
    conn = session.connection()
    if _sqlite_file(conn.engine) is None:
        session.commit()
        return None
    engine = conn.engine
    raw = conn.connection.dbapi_connection  # the setting is the connection's: restored before others use it
    (every,) = raw.execute("PRAGMA wal_autocheckpoint").fetchone()
    raw.execute("PRAGMA wal_autocheckpoint=0")
    try:
        session.commit()
    finally:
        # Back in the pool by now, and this thread's until it checks out another: the CLI's nightly and the
        # scheduler's run alone in their process.
        raw.execute(f"PRAGMA wal_autocheckpoint={int(every)}")

    def checkpoint() -> None:
        try:
            other = engine.raw_connection()  # no transaction (nor the write lock `for_writing` would take)
            try:
                other.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            finally:
                other.close()
        except Exception:  # a speed-up only: the next large commit or the last close checkpoints instead
            pass

    return threading.Thread(target=checkpoint, name="wal-checkpoint", daemon=True)


def upgrade_schema(engine: Engine, target: str = "head", *, user: str | None = None, backup: bool = True,
                   keep: int | None = None, record=None) -> tuple[str | None, str]:
    """Bring the database to `target`; returns (before, after) revisions.

    Under the migration lock (concurrent first opens wait, then find the work done). A database with data
    is backed up first (rotated, see tracker/db/backups.py). Each run is one transaction: SQLite DDL is
    transactional, so a migration killed at any point leaves the database as it was and a rerun completes
    it. `record(conn, user, before, after, backup_file)` is called in that transaction for a real migration
    of a database with data to the current schema (the audit's `db.migrate`: services/backups.py
    record_migration; the services layer, so handed in)."""
    with migration_lock(engine):
        return upgrade_locked(engine, target, user=user, backup=backup, keep=keep, record=record)


def upgrade_locked(engine: Engine, target: str = "head", *, user: str | None = None, backup: bool = True,
                   keep: int | None = None, record=None) -> tuple[str | None, str]:
    """`upgrade_schema` for a caller already holding the migration lock (a restore)."""
    before = current_revision(engine)
    refuse_newer(before)
    wanted = head_revision() if target == "head" else target
    if before == wanted:
        return before, before
    saved = _backup_before_migration(engine, before, keep) if backup else None
    if engine.dialect.name == "sqlite":
        _upgrade_sqlite(engine, target, before, saved, user, record)
    else:
        with engine.begin() as conn:
            command_upgrade(conn, target)
            _record_migration(conn, record, before, saved, user)
    return before, current_revision(engine) or ""


def command_upgrade(conn, target: str) -> None:
    """Alembic's upgrade on `conn`, inside the transaction the caller began (migrations/env.py joins it)."""
    from alembic import command

    command.upgrade(_alembic_config(conn), target)


def _upgrade_sqlite(engine: Engine, target: str, before: str | None, saved, user: str | None, record) -> None:
    # Batch migrations recreate tables; with foreign keys on, dropping the old table would cascade. The
    # pragma only takes effect outside a transaction, hence before BEGIN.
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        conn.commit()
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # every statement below, DDL too, in one transaction
            _drop_leftover_batch_tables(conn)
            command_upgrade(conn, target)
            problems = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if problems:
                raise SchemaError(f"foreign key check failed after upgrade (nothing changed): {problems[:5]}")
            _record_migration(conn, record, before, saved, user)
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            conn.commit()


def _drop_leftover_batch_tables(conn) -> None:
    """A batch rebuild killed by an older tracker (which ran DDL outside a transaction) could leave its
    `_alembic_tmp_<table>` copy behind, and every rerun then failed on it. The original table is intact in
    that case (the copy never replaced it), so the copy is dropped; without the original it is refused."""
    names = {row[0] for row in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for name in sorted(n for n in names if n.startswith("_alembic_tmp_")):
        original = name.removeprefix("_alembic_tmp_")
        if original not in names:
            raise SchemaError(f"table {original} is missing and {name} holds its rows: restore a backup "
                              "(tracker db restore FILE)")
        conn.exec_driver_sql(f'DROP TABLE "{name}"')


def _record_migration(conn, record, before: str | None, saved, user: str | None) -> None:
    """Hand a real migration to `record`: of a database that had data (a new one's creation is not an
    event), to the current schema (which the table models describe)."""
    if record is None or before is None:
        return
    after = conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    if after == SCHEMA_HEAD:
        record(conn, user or _os_user(), before, after, str(saved.path) if saved else None)


def _os_user() -> str:
    return os.environ.get("USER") or os.environ.get("USERNAME") or "unknown"


def refuse_newer(revision: str | None) -> None:
    """SchemaError (exit 7) for a schema revision this tracker does not know: a newer tracker's database."""
    if revision is None or revision == SCHEMA_HEAD:
        return
    known = known_revisions()
    if revision not in known:
        raise SchemaError(f"database schema {revision!r} is newer than this tracker (knows {sorted(known)})")


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {rev.revision for rev in ScriptDirectory.from_config(_alembic_config()).walk_revisions()}


def _backup_before_migration(engine: Engine, before: str | None, keep: int | None):
    """A rotated backup of a database that has data, before its schema changes; None for a new one. On
    PostgreSQL without pg_dump: a warning line, and the migration goes ahead."""
    import sys

    from tracker.db import backups
    from tracker.errors import BackupError

    if before is None and not inspect(engine).get_table_names():
        return None
    try:
        return backups.make_backup(engine, why=f"before-{before or 'unversioned'}",
                                   keep=keep or backups.DEFAULT_KEEP)
    except BackupError as exc:
        if engine.dialect.name == "sqlite":
            raise
        print(f"warning: no backup before migrating: {exc}", file=sys.stderr)
        return None


def schema_status(engine: Engine) -> dict:
    """Where the database is and its revision; SchemaError for a newer tracker's, as every command refuses
    it (no upgrade could help)."""
    current = current_revision(engine)
    refuse_newer(current)
    head = SCHEMA_HEAD
    return {
        "url": engine.url.render_as_string(hide_password=True),
        "dialect": engine.dialect.name,
        "current": current,
        "head": head,
        "up_to_date": current == head,
    }
