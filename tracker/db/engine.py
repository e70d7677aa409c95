"""Opening the database and keeping its schema current.

`--db PATH|URL`, else `$TRACKER_DB`, else `tracker.db` in the user's data directory (XDG). SQLite runs with
foreign keys on, WAL and a busy timeout. The schema is checked with one cheap query on every start;
Alembic is imported only when the database is behind.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Engine

from tracker.errors import NoDatabaseError, SchemaError

# The newest migration in migrations/versions. A test checks it matches Alembic's head.
SCHEMA_HEAD = "0009"


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


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # foreign_keys is per connection; journal_mode=WAL persists in the file but must be set outside a
    # transaction, which a fresh DBAPI connection is.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
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


def lock_conflict(exc: BaseException) -> str | None:
    """A one-line reason if a database error means another command got there first (a writer held the lock
    too long, or a unique invariant refused a duplicate); None for any other error."""
    from sqlalchemy.exc import IntegrityError, OperationalError

    text_ = str(getattr(exc, "orig", None) or exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, OperationalError) and ("database is locked" in text_ or "lock timeout" in text_):
        return f"database busy: another command held the write lock for over {LOCK_WAIT_S} s; try again"
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
        engine = create_engine(url, pool_pre_ping=True)
        event.listen(engine, "begin", _begin)
        return engine
    except ModuleNotFoundError as exc:
        from tracker.errors import InputError

        raise InputError("db", url.split("@")[-1], f"needs the {exc.name} driver: pip install 'tracker[postgres]'") from None


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        try:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except Exception:  # no alembic_version table yet: a new database
            conn.rollback()
            return None


def open_engine(db: str | None = None, *, upgrade: bool = True, create: bool = True) -> Engine:
    engine = make_engine(resolve_url(db, create=create))
    if upgrade and current_revision(engine) != SCHEMA_HEAD:
        upgrade_schema(engine)
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


def upgrade_schema(engine: Engine, target: str = "head") -> tuple[str | None, str]:
    """Bring the database to `target`; returns (before, after) revisions."""
    from alembic import command

    before = current_revision(engine)
    known = _known_revisions()
    if before is not None and before not in known:
        raise SchemaError(f"database schema {before!r} is newer than this tracker (knows {sorted(known)})")
    if engine.dialect.name == "sqlite":
        _backup_sqlite(engine, before)
        # Batch migrations recreate tables; with foreign keys on, dropping the old table would cascade.
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()  # the pragma only takes effect outside a transaction
            command.upgrade(_alembic_config(conn), target)
            conn.commit()
            problems = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
            conn.commit()
            if problems:
                raise SchemaError(f"foreign key check failed after upgrade: {problems[:5]}")
    else:
        with engine.begin() as conn:
            command.upgrade(_alembic_config(conn), target)
    return before, current_revision(engine) or ""


def _known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {rev.revision for rev in ScriptDirectory.from_config(_alembic_config()).walk_revisions()}


def _backup_sqlite(engine: Engine, before: str | None) -> None:
    """Copy an existing database aside before changing its schema."""
    if before is None:
        if not inspect(engine).get_table_names():
            return
    path = engine.url.database
    if not path or path == ":memory:" or not Path(path).exists():
        return
    backup = Path(f"{path}.before-{before or 'unversioned'}.bak")
    if backup.exists():
        backup.unlink()
    from tracker.private_files import create_private

    create_private(backup)  # VACUUM INTO fills an empty file and keeps its mode 0600
    with engine.connect() as conn:
        conn.exec_driver_sql(f"VACUUM INTO '{backup}'")


def schema_status(engine: Engine) -> dict:
    current = current_revision(engine)
    head = SCHEMA_HEAD
    return {
        "url": engine.url.render_as_string(hide_password=True),
        "dialect": engine.dialect.name,
        "current": current,
        "head": head,
        "up_to_date": current == head,
    }
