"""Issue 15 item 5: migrations are safe and recoverable.

- Eight real processes opening a fresh database at once all succeed: one migrates, the others wait on the
  migration lock and find it current (SQLite and PostgreSQL).
- A migration killed (SIGKILL) at any statement leaves the database as it was; a rerun reaches the head
  with the same data as an uninterrupted upgrade (each run is one transaction). A `_alembic_tmp_` table
  left behind by an older tracker no longer blocks the upgrade.
- Any path works: a quote, spaces and non-ASCII in the path; the automatic backup is made with the online
  backup API (no path in SQL), private, rotated.
- A database with data at every earlier revision (0001..0007) is upgraded with all its data.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from freezegun import freeze_time

from tests.conftest import Tracker, dump_database, record_panels
from tests.nightly_support import write_config
from tests.test_concurrency import run_together
from tests.test_migrations import downgrade_sqlite
from tracker.cli import cli
from tracker.db.engine import SCHEMA_HEAD, current_revision, known_revisions, make_engine, open_engine, resolve_url
from tracker.services.backups import record_migration

ON_PG = bool(os.environ.get("TRACKER_TEST_PG"))
sqlite_only = pytest.mark.skipif(ON_PG, reason="a SQLite file's schema is rewound and its file copied")


def _mode(path) -> int:
    return os.stat(path).st_mode & 0o777


def test_eight_concurrent_first_opens_all_succeed_one_migrates(tmp_path):
    if ON_PG:
        from tests.pg import fresh_database

        db = fresh_database(migrated=False)
    else:
        db = str(tmp_path / "new clinic.db")  # does not exist yet: every process finds it missing
    commands = ["db init"] * 4 + [f"patient add P{n} --name Ann --dob 1980-01-01" for n in range(4)]
    results = run_together(db, commands)
    assert [r.returncode for r in results] == [0] * 8, [r.stderr for r in results]
    assert not any(r.stderr.strip() for r in results), [r.stderr for r in results]
    created = [r for r in results[:4] if "created at" in r.stdout]
    assert len(created) <= 1  # the others waited, then found it current ("already at")
    assert all("already at " + SCHEMA_HEAD in r.stdout for r in results[:4] if r not in created)
    engine = make_engine(resolve_url(db))
    assert current_revision(engine) == SCHEMA_HEAD
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT COUNT(*) FROM patient").scalar() == 4
    engine.dispose()


def clinic_with_everything(db: str, tmp_path: Path) -> None:
    """A clinic touching every table the migrations rewrite: patients (childbearing yes/unknown), courses and
    their calendars (a partial draw: item.received), results (reported values), an open lab alert and
    overdue alerts, an assessment, a pause, a nightly run with reminders delivered to jsonl."""
    tracker = Tracker(db)
    write_config(tmp_path / "site.toml", '[reminders]\nchannels = ["jsonl"]\n[reminders.jsonl]\n'
                                         f'path = "{tmp_path / "reminders.jsonl"}"\n')
    with freeze_time("2026-01-02"):
        tracker("patient add P1 --name 'Ada Byron' --dob 1980-01-01")
        tracker("therapy start P1 methotrexate --on 2026-01-05")
        tracker("patient add P2 --name 'Bo Chan' --dob 1975-05-05")
        tracker("therapy start P2 dupilumab --on 2026-01-05")
        tracker("assess P2 --on 2026-01-02 --easi 30 --dlqi 15")
    with freeze_time("2026-01-19"):
        record_panels(tracker, "P1", "2026-01-19", "cbc", skip=("hb",))  # a partial draw
        tracker("result add P1 alt 200 --on 2026-01-19")  # an alert
        tracker("therapy pause P2 dupilumab --on 2026-01-19 --reason 'infection'")
    with freeze_time("2026-03-02"):
        tracker("nightly --as-of 2026-03-02")


def _comparable(dump: dict, lost: dict | None = None) -> dict:
    """The dump without the migrations' own audit rows (their time and backup file differ run to run) and the
    audit chain's head (it moved past them), and with the `lost` columns ({table: [column index]}) emptied."""
    out = dict(dump)
    out["audit_event"] = [row for row in dump["audit_event"] if row[3] != "db.migrate"]
    out.pop("audit_head", None)
    for table, columns in (lost or {}).items():
        out[table] = [tuple(None if n in columns else value for n, value in enumerate(row)) for row in out[table]]
    return out


def _lost_below(revision: str, db: str) -> dict:
    """What a database at `revision` never held, so cannot carry up: before 0005 an item recorded no
    received tests nor reading number (0005 gives existing items NULL, as its docstring says)."""
    if revision >= "0005":
        return {}
    with sqlite3.connect(db) as conn:
        names = [row[1] for row in conn.execute("PRAGMA table_info(item)")]
    return {"item": [names.index("received"), names.index("reading")]}


@pytest.fixture(scope="module")
def rich_database(tmp_path_factory) -> str:
    """A database at the head with data everywhere, built once for this module (SQLite)."""
    folder = tmp_path_factory.mktemp("rich")
    db = str(folder / "rich.db")
    saved = os.environ.get("TRACKER_CONFIG")
    try:
        clinic_with_everything(db, folder)
    finally:
        os.environ["TRACKER_CONFIG"] = saved or ""
    engine = make_engine(resolve_url(db))
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return db


def _copy(db: str, to: Path) -> str:
    shutil.copyfile(db, to)
    os.chmod(to, 0o600)
    return str(to)


@sqlite_only
@pytest.mark.parametrize("revision", sorted(known_revisions() - {SCHEMA_HEAD}))
def test_a_database_with_data_at_every_earlier_revision_is_upgraded_with_all_its_data(rich_database, tmp_path,
                                                                                      revision):
    head = dump_database(rich_database)
    assert all(head[table] for table in ("patient", "course", "item", "lab_result", "alert", "assessment",
                                         "course_pause", "reminder", "reminder_delivery", "nightly_run"))
    db = _copy(rich_database, tmp_path / "old.db")
    downgrade_sqlite(db, revision)  # the data as that revision held it (its own downgrades wrote it)
    assert current_revision(make_engine(resolve_url(db))) == revision
    open_engine(db, user="tester", record=record_migration).dispose()  # what any command does with it
    after = dump_database(db)
    assert _comparable(after) == _comparable(head, _lost_below(revision, db))
    migrations = [row for row in after["audit_event"] if row[3] == "db.migrate"]
    assert len(migrations) == 1 and json.loads(migrations[0][7]) == {"revision": revision}
    assert json.loads(migrations[0][8])["revision"] == SCHEMA_HEAD
    backup = Path(json.loads(migrations[0][8])["backup"])
    assert backup.parent == tmp_path / "backups" and backup.name.endswith(f"-before-{revision}.db")
    with sqlite3.connect(backup) as conn:  # the backup holds the database as it was before
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == (revision,)
    open_engine(db).dispose()  # current now: no second migration, no second audit row
    assert len([row for row in dump_database(db)["audit_event"] if row[3] == "db.migrate"]) == 1
    verified = CliRunner().invoke(cli, ["--db", db, "audit", "verify"])  # the chain went on past its rows
    assert verified.exit_code == 0 and verified.stdout.startswith("ok: "), verified.output


# A test-only runner: the real upgrade, with a SIGKILL delivered to itself at the Nth SQL statement.
KILL_AT = """
import os, signal, sys
from sqlalchemy import event
from tracker.db.engine import make_engine, resolve_url, upgrade_schema
db, at = sys.argv[1], int(sys.argv[2])
engine = make_engine(resolve_url(db))
count = 0
@event.listens_for(engine, "before_cursor_execute")
def _count(*_args):
    global count
    count += 1
    if count == at:
        os.kill(os.getpid(), signal.SIGKILL)
upgrade_schema(engine)
print(count)
"""


def _run_kill_at(db: str, at: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", KILL_AT, db, str(at)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}, timeout=300)


@sqlite_only
def test_a_migration_killed_at_any_point_is_completed_by_a_rerun(rich_database, tmp_path):
    # From 0002: 0003 and 0004 rebuild the patient and lab_result tables (batch copies), 0007 settles
    # duplicates and writes audit rows, 0008 rewrites keys and rebuilds alert.
    old = _copy(rich_database, tmp_path / "old.db")
    downgrade_sqlite(old, "0002")
    reference = _copy(old, tmp_path / "reference.db")
    whole = _run_kill_at(reference, 0)  # never killed: counts the statements
    assert whole.returncode == 0, whole.stderr
    statements = int(whole.stdout)
    expected = _comparable(dump_database(reference))
    points = sorted({1, 2, 3, statements // 4, statements // 2, 3 * statements // 4, statements - 1, statements})
    left = {}
    for at in points:
        db = _copy(old, tmp_path / f"killed-{at}.db")
        killed = _run_kill_at(db, at)
        assert killed.returncode == -signal.SIGKILL, (at, killed.stderr)
        left[at] = current_revision(make_engine(resolve_url(db)))  # all of it or nothing of it was kept
        open_engine(db).dispose()  # the rerun
        assert current_revision(make_engine(resolve_url(db))) == SCHEMA_HEAD
        assert _comparable(dump_database(db)) == expected, at
        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            assert not conn.execute("SELECT name FROM sqlite_master WHERE name LIKE '_alembic_tmp_%'").fetchall()
    assert set(left.values()) <= {"0002", SCHEMA_HEAD}
    assert [at for at, revision in left.items() if revision == "0002"] == points[:-2]  # all but after the commit


@sqlite_only
def test_a_leftover_batch_table_from_an_older_tracker_no_longer_blocks_the_upgrade(rich_database, tmp_path):
    db = _copy(rich_database, tmp_path / "old.db")
    downgrade_sqlite(db, "0003")
    with sqlite3.connect(db) as conn:  # what a kill during 0004's rebuild left before this fix
        conn.execute("CREATE TABLE _alembic_tmp_lab_result AS SELECT * FROM lab_result WHERE 0")
    results = dump_database(db)["lab_result"]
    open_engine(db).dispose()
    assert current_revision(make_engine(resolve_url(db))) == SCHEMA_HEAD
    assert [row[:4] for row in dump_database(db)["lab_result"]] == [row[:4] for row in results]


@sqlite_only
def test_any_path_is_upgraded_and_backed_up_privately(tracker, tmp_path):
    folder = tmp_path / "it's a clinic ø"
    folder.mkdir()
    db = str(folder / "Zürich 'main' clinic.db")
    tracker.db = db
    tracker("patient add P1 --name 'Ann Lee' --dob 1980-01-01")
    downgrade_sqlite(db, "0005")
    assert tracker.json("patient list")[0]["mrn"] == "P1"  # upgraded on open
    assert current_revision(make_engine(resolve_url(db))) == SCHEMA_HEAD
    (backup,) = (folder / "backups").glob("Zürich 'main' clinic-*-before-0005.db")
    assert _mode(backup) == 0o600 and _mode(folder / "backups") == 0o700
    with sqlite3.connect(backup) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT mrn FROM patient").fetchall() == [("P1",)]


@sqlite_only
def test_pre_migration_backups_are_rotated_to_the_configured_number(tracker, tmp_path):
    write_config(tmp_path / "site.toml", "[backups]\nkeep = 2\n")
    tracker("patient add P1 --name 'Ann Lee' --dob 1980-01-01")
    for _ in range(3):
        downgrade_sqlite(tracker.db, "0006")
        tracker("patient list")
    names = sorted(p.name for p in (tmp_path / "backups").iterdir())
    assert len(names) == 2 and all(name.endswith("-before-0006.db") for name in names)
    assert "[backups]\nkeep = 2  # clinic default" in tracker("config show").stdout
