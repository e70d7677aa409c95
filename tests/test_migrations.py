"""Issue 2: migrations. Upgrade from empty gives exactly the models' schema; current databases skip Alembic."""

from __future__ import annotations

import os
import subprocess
import sys

from sqlalchemy import text

from tracker.db.engine import SCHEMA_HEAD, current_revision, head_revision, make_engine, open_engine, resolve_url


def test_schema_head_constant_matches_alembic_head():
    assert SCHEMA_HEAD == head_revision()


def test_upgrade_from_empty_matches_the_models(tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlmodel import SQLModel

    import tracker.db.tables  # noqa: F401

    db = str(tmp_path / "fresh.db")
    engine = open_engine(db)
    assert current_revision(engine) == SCHEMA_HEAD
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), SQLModel.metadata)
    assert diff == []


def test_sqlite_runs_with_foreign_keys_wal_and_busy_timeout(tmp_path):
    engine = open_engine(str(tmp_path / "p.db"))
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 5000


def test_current_database_opens_without_importing_alembic(tmp_path):
    db = str(tmp_path / "current.db")
    open_engine(db).dispose()
    code = ("import sys; from tracker.db.engine import open_engine; open_engine(sys.argv[1]); "
            "print('alembic' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, db], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_old_database_is_brought_to_the_current_schema_automatically(tracker, tmp_path):
    # An "old" database: one made before any migration ran (no alembic_version table, no tables).
    db = str(tmp_path / "old.db")
    make_engine(resolve_url(db)).connect().close()
    assert current_revision(make_engine(resolve_url(db))) is None
    tracker.db = db
    tracker("patient add P1 --name 'Ann Lee' --dob 1980-01-01")
    assert current_revision(make_engine(resolve_url(db))) == SCHEMA_HEAD


def test_db_status_and_upgrade_commands(tracker, tmp_path):
    tracker.db = str(tmp_path / "cmd.db")
    for command in ("db status", "db upgrade"):  # nothing there: refused, nothing created
        result = tracker(command, ok=False)
        assert result.exit_code == 3 and "no database at" in result.stderr and "tracker db init" in result.stderr
        assert not (tmp_path / "cmd.db").exists()
    assert "created at " + SCHEMA_HEAD in tracker("db init").stdout
    assert tracker.json("db status")["up_to_date"] is True
    assert "already at " + SCHEMA_HEAD in tracker("db upgrade").stdout
    assert "already at " + SCHEMA_HEAD in tracker("db init").stdout


def test_a_missing_database_is_never_created_by_a_reading_command(tracker, tmp_path):
    """Issue 18: a mistyped --db path is refused (exit 3), never an empty clinic; no directory is made."""
    tracker.db = str(tmp_path / "typo.db")
    for command in ("patient list", "due", "overdue", "alerts", "nightly", "patient show X1", "export ics"):
        result = tracker(command, ok=False)
        assert result.exit_code == 3, (command, result.stderr)
        assert result.stderr.count("\n") == 1 and "no database at" in result.stderr
    assert not (tmp_path / "typo.db").exists()
    tracker.db = str(tmp_path / "no-such-dir" / "clinic.db")
    result = tracker("patient add P1 --name 'A B' --dob 1980-01-01", ok=False)
    assert result.exit_code == 2 and "does not exist" in result.stderr
    assert not (tmp_path / "no-such-dir").exists()
    tracker.db = str(tmp_path / "new.db")
    tracker("patient add P1 --name 'A B' --dob 1980-01-01")  # adding data creates the clinic
    assert tracker.json("patient list")[0]["mrn"] == "P1"


def test_database_from_environment_and_xdg_default(tmp_path):
    env = {**os.environ, "TRACKER_DB": str(tmp_path / "env.db"), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    subprocess.run([sys.executable, "-m", "tracker", "db", "init"], env=env, check=True, capture_output=True)
    out = subprocess.run([sys.executable, "-m", "tracker", "db", "status", "--json"], env=env,
                         capture_output=True, text=True, check=True)
    assert "env.db" in out.stdout
    del env["TRACKER_DB"]
    subprocess.run([sys.executable, "-m", "tracker", "db", "init"], env=env, check=True, capture_output=True)
    assert (tmp_path / "xdg" / "tracker").stat().st_mode & 0o777 == 0o700  # the default data directory
    out = subprocess.run([sys.executable, "-m", "tracker", "db", "status", "--json"], env=env,
                         capture_output=True, text=True, check=True)
    assert str(tmp_path / "xdg" / "tracker" / "tracker.db") in out.stdout


def test_an_unreachable_database_is_a_one_line_error(tracker):
    import importlib.util

    tracker.db = "postgresql://nobody@127.0.0.1:1/none"
    result = tracker("patient list", ok=False)
    assert result.stderr.count("\n") == 1
    if importlib.util.find_spec("psycopg") is None:  # the PostgreSQL extra is not installed
        assert result.exit_code == 2 and "pip install 'tracker[postgres]'" in result.stderr
    else:
        assert result.exit_code == 1 and result.stderr.startswith("error: database: ")


def downgrade_sqlite(db: str, revision: str) -> None:
    """Take a SQLite file's schema (and stamp) back to `revision` with the migrations' own downgrades."""
    from alembic import command

    from tracker.db.engine import _alembic_config

    engine = make_engine(resolve_url(db))
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        conn.commit()
        command.downgrade(_alembic_config(conn), revision)
        conn.commit()
    engine.dispose()


def test_0003_existing_patients_become_unknown_unless_flagged_yes(tracker, tmp_path):
    """Issue 13: the boolean `childbearing_potential` (false = never flagged) becomes yes / no / unknown."""
    import sqlite3

    db = str(tmp_path / "old.db")
    open_engine(db).dispose()
    downgrade_sqlite(db, "0002")
    with sqlite3.connect(db) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(patient)")]
        assert "childbearing_potential" in columns and "childbearing" not in columns
        conn.executemany(
            "INSERT INTO patient (mrn, name, dob, sex, childbearing_potential, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
            [("Y1", "Flagged Yes", "1990-01-01", "f", 1), ("N1", "Not Flagged", "1990-01-01", "f", 0),
             ("M1", "A Man", "1970-01-01", "m", 0)])
    tracker.db = db
    rows = {p["mrn"]: (p["childbearing"], p["may_conceive"]) for p in tracker.json("patient list")}
    assert current_revision(make_engine(resolve_url(db))) == SCHEMA_HEAD
    # A woman never flagged is "unknown", which counts as yes at 36 (clinic default ages 12-55).
    assert rows == {"Y1": ("yes", True), "N1": ("unknown", True), "M1": ("unknown", False)}
    downgrade_sqlite(db, "0002")
    with sqlite3.connect(db) as conn:
        back = dict(conn.execute("SELECT mrn, childbearing_potential FROM patient"))
    assert back == {"Y1": 1, "N1": 0, "M1": 0}


def test_db_status_on_a_database_a_newer_tracker_wrote_says_so_and_exits_7(tracker):
    """Before, `db status` said "needs upgrade: run `tracker db upgrade`" and exited 0, and the upgrade it
    advised then refused (exit 7). Now it refuses like every other command: exit 7, one line."""
    engine = make_engine(resolve_url(tracker.db))
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))  # a later tracker's migration
    engine.dispose()
    for command in ("db status", "db status --json", "db upgrade", "patient list"):
        result = tracker(command, ok=False)
        assert result.exit_code == 7, (command, result.stdout, result.stderr)
        assert result.stdout == "" and result.stderr.count("\n") == 1
        assert "database schema '9999' is newer than this tracker" in result.stderr
