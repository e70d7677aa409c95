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
SCHEMA_HEAD = "0008"


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


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    try:
        return create_engine(url, pool_pre_ping=True)
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
