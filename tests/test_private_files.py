"""Issue 15 item 4: patient data never lands in files others can read, whatever the umask: the database and
its -wal/-shm, pre-migration backups, ICS exports, CSV rejects and jsonl reminders are 0600, the data
directory 0700; an existing database readable by others is warned about in one line."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from freezegun import freeze_time

from tests.nightly_support import small_clinic, write_config
from tests.test_migrations import downgrade_sqlite
from tracker.cli import cli
from tracker.db.engine import open_engine

sqlite_only = pytest.mark.skipif(bool(os.environ.get("TRACKER_TEST_PG")), reason="files of a SQLite database")


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(autouse=True)
def permissive_umask():
    """The usual default: new files 0644 and directories 0755 unless tracker asks otherwise."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_new_database_its_wal_and_shm_and_the_default_data_directory_are_private(tmp_path):
    result = CliRunner().invoke(cli, ["patient", "add", "P1", "--name", "Ann Lee", "--dob", "1980-01-01"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    data_dir = tmp_path / "xdg-data" / "tracker"  # XDG_DATA_HOME is set by the autouse fixture
    assert mode(data_dir) == 0o700
    db = data_dir / "tracker.db"
    assert mode(db) == 0o600
    engine = open_engine(str(db))
    with engine.connect() as conn:  # while a connection is open SQLite keeps its -wal and -shm files
        conn.exec_driver_sql("SELECT count(*) FROM patient").scalar()
        assert mode(f"{db}-wal") == 0o600 and mode(f"{db}-shm") == 0o600
    engine.dispose()
    assert result.stderr == ""  # a private database is not warned about


def test_an_explicit_new_database_file_is_private(tmp_path):
    db = tmp_path / "clinic.db"
    result = CliRunner().invoke(cli, ["--db", str(db), "db", "init"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    assert mode(db) == 0o600


@sqlite_only
def test_the_backup_taken_before_a_migration_is_private(tracker, tmp_path):
    tracker("patient add P1 --name 'Ann Lee' --dob 1980-01-01")
    downgrade_sqlite(tracker.db, "0005")
    tracker("patient list")  # opening it upgrades, after copying it aside
    folder = Path(tracker.db).parent / "backups"
    (backup,) = folder.glob("tracker-*-before-0005.db")
    assert mode(backup) == 0o600 and mode(folder) == 0o700


@freeze_time("2026-01-10")
def test_ics_exports_rejects_and_jsonl_reminders_are_private(tracker, tmp_path):
    small_clinic(tracker)
    out = tmp_path / "p1.ics"
    tracker(f"export ics --patient P1 --out {out}")
    assert mode(out) == 0o600
    os.chmod(out, 0o644)  # a file left readable by an older version is made private when rewritten
    tracker(f"export ics --patient P1 --out {out}")
    assert mode(out) == 0o600

    labs = tmp_path / "labs.csv"
    labs.write_text("mrn,test,value,unit,taken_on,ref_low,ref_high\nP1,alt,30,U/L,2026-01-08,,\n"
                    "P1,alt,abc,U/L,2026-01-09,,\n")
    tracker(["result", "import", str(labs), "--skip-bad"])
    assert mode(tmp_path / "labs.rejects.csv") == 0o600

    write_config(tmp_path / "site.toml", '[reminders]\nchannels = ["jsonl"]\n[reminders.jsonl]\n'
                                         'path = "reminders.jsonl"\n')
    tracker("nightly --as-of 2026-01-10")
    assert mode(tmp_path / "reminders.jsonl") == 0o600


@sqlite_only
def test_an_existing_database_readable_by_others_is_warned_about_in_one_line(tracker):
    tracker("patient add P1 --name 'Ann Lee' --dob 1980-01-01")
    assert tracker("patient list").stderr == ""
    os.chmod(tracker.db, 0o644)
    shared = tracker("patient list")
    assert shared.exit_code == 0
    assert shared.stderr.splitlines() == [
        f"warning: database {Path(tracker.db).resolve()} is readable by others (mode 0644); "
        f"make it private with: chmod 600 {Path(tracker.db).resolve()}"]
