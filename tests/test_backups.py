"""Issue 15 item 5 (and item 2's restore part): `tracker db backup` and `tracker db restore`.

A backup is consistent while others write, private, rotated in `backups/` and audited; a restore checks
the file, is refused while a nightly runs, keeps the current database aside, migrates the restored one
and records itself there; reminders emitted after a restore never share an id with lines the undone run
delivered, and none is lost. SQLite; the PostgreSQL ones (pg_dump/pg_restore) need TRACKER_TEST_PG.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from freezegun import freeze_time

from tests.conftest import dump_database
from tests.nightly_support import jsonl_rows, small_clinic, write_config
from tests.test_migrations import downgrade_sqlite
from tracker.db.engine import SCHEMA_HEAD, current_revision, make_engine, resolve_url

ON_PG = bool(os.environ.get("TRACKER_TEST_PG"))
sqlite_only = pytest.mark.skipif(ON_PG, reason="SQLite files")
pg_only = pytest.mark.skipif(not ON_PG, reason="needs TRACKER_TEST_PG (a real PostgreSQL server)")


def _mode(path) -> int:
    return os.stat(path).st_mode & 0o777


def _mrns(tracker) -> list[str]:
    return sorted(p["mrn"] for p in tracker.json("patient list"))


def _audit(db: str, action: str) -> list[dict]:
    engine = make_engine(resolve_url(db))
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(f"SELECT after FROM audit_event WHERE action = '{action}' ORDER BY id").all()
    engine.dispose()
    return [json.loads(after) for (after,) in rows]


@sqlite_only
def test_backup_is_private_named_by_utc_time_audited_and_a_working_database(tracker, tmp_path):
    tracker("patient add P1 --name 'Ann Lee' --dob 1980-01-01")
    with freeze_time("2026-12-03T12:34:56Z"):
        made = tracker.json("db backup")
    path = Path(made["file"])
    assert path.parent == tmp_path / "backups" and path.name == "tracker-20261203T123456Z-manual.db"
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700 and made["size"] == path.stat().st_size
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT mrn FROM patient").fetchall() == [("P1",)]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # one file, no -wal needed
    assert _audit(tracker.db, "db.backup") == [{"file": str(path), "size": made["size"], "rotated": []}]
    out = tracker("db backup").stdout
    assert out.startswith("backup written: ") and out.count("\n") == 1


@sqlite_only
def test_backup_is_consistent_while_another_connection_writes(tracker, tmp_path):
    from tracker.db.backups import make_backup

    tracker("patient add P1 --name 'Ann Lee' --dob 1980-01-01")
    writer = sqlite3.connect(tracker.db, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    writer.execute("INSERT INTO patient (mrn, name, dob, childbearing, created_at, updated_at) "
                   "VALUES ('P2', 'Bo Chan', '1980-01-01', 'unknown', '2026-01-01', '2026-01-01')")
    made = make_backup(make_engine(resolve_url(tracker.db)), tmp_path / "during.db")  # does not wait for it
    writer.execute("COMMIT")
    writer.close()
    with sqlite3.connect(made.path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("SELECT mrn FROM patient").fetchall() == [("P1",)]  # as committed when it ran
    assert _mrns(tracker) == ["P1", "P2"]


@sqlite_only
def test_backups_in_the_folder_are_rotated_and_out_files_are_left_alone(tracker, tmp_path):
    write_config(tmp_path / "site.toml", "[backups]\nkeep = 2\n")
    tracker("patient add P1 --name 'Ann Lee' --dob 1980-01-01")
    made = [tracker.json("db backup") for _ in range(3)]
    assert made[2]["rotated"] == [Path(made[0]["file"]).name]
    assert sorted(p.name for p in (tmp_path / "backups").iterdir()) == sorted(Path(m["file"]).name for m in made[1:])
    out = tmp_path / "mine 'x'.db"
    assert tracker.json(["db", "backup", "--out", str(out)])["rotated"] == []
    assert out.exists() and _mode(out) == 0o600 and len(list((tmp_path / "backups").iterdir())) == 2
    again = tracker(["db", "backup", "--out", str(out)], ok=False)  # never overwritten
    assert again.exit_code == 2 and "already exists" in again.stderr and again.stderr.count("\n") == 1


@sqlite_only
def test_restore_keeps_the_current_database_aside_and_is_audited_in_the_restored_one(tracker, tmp_path):
    tracker("patient add P1 --name 'Ann Lee' --dob 1980-01-01")
    backup = tracker.json("db backup")["file"]
    tracker("patient add P2 --name 'Bo Chan' --dob 1975-05-05")
    with freeze_time("2026-12-03T13:00:00Z"):
        done = tracker.json(["db", "restore", backup])
    assert _mrns(tracker) == ["P1"]
    aside = Path(done["kept_aside"])
    assert aside == Path(f"{tracker.db}.before-restore-20261203T130000Z") and _mode(aside) == 0o600
    with sqlite3.connect(aside) as conn:
        assert sorted(conn.execute("SELECT mrn FROM patient").fetchall()) == [("P1",), ("P2",)]
    assert (done["from_revision"], done["to_revision"]) == (SCHEMA_HEAD, SCHEMA_HEAD)
    (event,) = _audit(tracker.db, "db.restore")
    assert event["file"] == backup and event["kept_aside"] == str(aside) and event["revision"] == SCHEMA_HEAD
    assert not [p for p in tmp_path.iterdir() if ".restoring-" in p.name]  # the staging copy is gone
    with sqlite3.connect(tracker.db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@sqlite_only
def test_an_older_backup_is_restored_and_brought_to_the_current_schema(tracker, tmp_path):
    tracker("patient add P1 --name 'Ann Lee' --dob 1980-01-01")
    old = str(tmp_path / "old.db")
    tracker(["db", "backup", "--out", old])
    downgrade_sqlite(old, "0005")
    done = tracker.json(["db", "restore", old])
    assert (done["from_revision"], done["to_revision"]) == ("0005", SCHEMA_HEAD)
    assert current_revision(make_engine(resolve_url(tracker.db))) == SCHEMA_HEAD
    assert _mrns(tracker) == ["P1"]
    with sqlite3.connect(old) as conn:  # the file given is only read
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == ("0005",)


@sqlite_only
def test_a_file_that_is_not_a_tracker_database_is_refused_and_nothing_changes(tracker, tmp_path):
    tracker("patient add P1 --name 'Ann Lee' --dob 1980-01-01")
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 100)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    torn = tmp_path / "torn.db"
    tracker(["db", "backup", "--out", str(torn)])
    torn.write_bytes(torn.read_bytes()[: 3 * 4096])  # cut short: pages missing
    before = dump_database(tracker.db)
    for bad, says in ((text, "not a tracker database"), (other, "not a tracker database"),
                      (torn, "restore: "), (tmp_path / "missing.db", "no such file")):
        result = tracker(["db", "restore", str(bad)], ok=False)
        assert result.exit_code in (2, 11) and says in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1
    assert dump_database(tracker.db) == before
    assert not [p for p in tmp_path.iterdir() if "before-restore" in p.name or ".restoring-" in p.name]


def test_restore_is_refused_while_a_nightly_runs(tracker, tmp_path):
    from tracker.locks import nightly_lock

    tracker("patient add P1 --name 'Ann Lee' --dob 1980-01-01")
    backup = tracker.json("db backup")["file"]
    tracker("patient add P2 --name 'Bo Chan' --dob 1975-05-05")
    before = dump_database(tracker.db)
    with nightly_lock(make_engine(resolve_url(tracker.db))):  # a nightly run in progress
        result = tracker(["db", "restore", backup], ok=False)
    assert result.exit_code == 9 and result.stderr.count("\n") == 1
    assert "restore refused: a nightly run is in progress" in result.stderr
    assert dump_database(tracker.db) == before
    tracker(["db", "restore", backup])  # once it has finished
    assert _mrns(tracker) == ["P1"]


def _jsonl_config(tmp_path) -> Path:
    out = tmp_path / "reminders.jsonl"
    write_config(tmp_path / "site.toml", f'[reminders]\nchannels = ["jsonl"]\n[reminders.jsonl]\npath = "{out}"\n')
    return out


def test_reminders_after_a_restore_get_new_ids_and_none_is_lost(tracker, tmp_path):
    """The run undone by the restore delivered lines with reminder ids 1..n; the restored database hands
    those row ids out again. The lines of the rerun must carry uids the file has not seen (before: they
    were taken for already written, marked sent and never delivered)."""
    small_clinic(tracker)
    out = _jsonl_config(tmp_path)
    backup = tracker.json("db backup")["file"]
    tracker("nightly --as-of 2026-01-16")
    first = jsonl_rows(out)
    assert first
    tracker(["db", "restore", backup])
    tracker("nightly --as-of 2026-01-16")
    second = jsonl_rows(out)[len(first):]
    assert {r["reminder_id"] for r in second} & {r["reminder_id"] for r in first}  # row ids were reused
    assert not {r["reminder_uid"] for r in second} & {r["reminder_uid"] for r in first}
    assert sorted(r["dedupe_key"] for r in second) == sorted(r["dedupe_key"] for r in first)  # none lost
    assert all(re.fullmatch(r"[0-9a-f]{12}-\d+", r["reminder_uid"]) for r in first + second)
    third = tracker("nightly --as-of 2026-01-16")  # and nothing twice
    assert "already done" in third.stderr and len(jsonl_rows(out)) == len(first) + len(second)


@sqlite_only
def test_reminders_pending_in_the_backup_and_delivered_by_the_undone_run_are_not_sent_again(tracker, tmp_path):
    """A reminder emitted before the backup keeps its uid: if the undone run already wrote it, the rerun
    finds it in the file and does not write it twice."""
    small_clinic(tracker)
    out = _jsonl_config(tmp_path)
    tracker("nightly --as-of 2026-01-16")
    before_backup = len(jsonl_rows(out))
    with sqlite3.connect(tracker.db) as conn:  # as if the backup were taken between emitting and delivering
        conn.execute("UPDATE reminder_delivery SET state = 'pending'")
        conn.execute("DELETE FROM setting WHERE key = 'nightly.jsonl_marked'")
    backup = tracker.json("db backup")["file"]
    out.write_text("")
    tracker("nightly --as-of 2026-01-16")  # the run to be undone delivers them
    delivered = jsonl_rows(out)
    assert len(delivered) == before_backup
    tracker(["db", "restore", backup])
    tracker("nightly --as-of 2026-01-16")
    assert jsonl_rows(out) == delivered  # found in the file by uid: not written again
    with sqlite3.connect(tracker.db) as conn:
        assert conn.execute("SELECT DISTINCT state FROM reminder_delivery").fetchall() == [("sent",)]


@pg_only
def test_postgres_backup_with_pg_dump_and_restore_with_pg_restore(tracker, tmp_path):
    tracker("patient add P1 --name 'Ann Lee' --dob 1980-01-01")
    out = tmp_path / "clinic.dump"
    made = tracker.json(["db", "backup", "--out", str(out)])
    assert made["engine"] == "postgresql" and _mode(out) == 0o600 and out.stat().st_size == made["size"]
    tracker("patient add P2 --name 'Bo Chan' --dob 1975-05-05")
    done = tracker.json(["db", "restore", str(out)])
    assert _mrns(tracker) == ["P1"]
    assert Path(done["kept_aside"]).exists() and _mode(done["kept_aside"]) == 0o600
    assert [e["file"] for e in _audit(tracker.db, "db.restore")] == [str(out)]
    text = tmp_path / "notes.txt"
    text.write_text("no dump")
    bad = tracker(["db", "restore", str(text)], ok=False)
    assert bad.exit_code == 11 and "not a pg_dump custom-format file" in bad.stderr
    assert _mrns(tracker) == ["P1"]


@pg_only
def test_postgres_without_pg_dump_a_backup_is_refused_in_one_line(tracker, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no pg_dump on it
    result = tracker("db backup", ok=False)
    assert result.exit_code == 11 and "pg_dump is not installed" in result.stderr
    assert result.stderr.count("\n") == 1


@pg_only
@pytest.mark.parametrize("with_pg_dump", [True, False])
def test_postgres_is_backed_up_before_a_migration_or_warned_about(tmp_path, monkeypatch, capsys, with_pg_dump):
    from tests.pg import fresh_database
    from tracker.db.engine import open_engine, upgrade_schema
    from tracker.services.backups import record_migration

    url = fresh_database(migrated=False)
    engine = make_engine(resolve_url(url))
    upgrade_schema(engine, "0005")  # a clinic on an older tracker
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO patient (mrn, name, dob, childbearing, created_at, updated_at) "
                             "VALUES ('P1', 'Ann Lee', '1980-01-01', 'unknown', now(), now())")
    engine.dispose()
    if not with_pg_dump:
        monkeypatch.setenv("PATH", str(tmp_path))
    open_engine(url, user="tester", record=record_migration).dispose()
    assert current_revision(make_engine(resolve_url(url))) == SCHEMA_HEAD
    (event,) = _audit(url, "db.migrate")
    assert event["revision"] == SCHEMA_HEAD
    folder = Path(os.environ["XDG_DATA_HOME"]) / "tracker" / "backups"
    if with_pg_dump:
        (dump,) = folder.glob("*-before-0005.dump")
        assert event["backup"] == str(dump) and _mode(dump) == 0o600
    else:
        assert event["backup"] is None and not list(folder.glob("*.dump"))
        assert "warning: no backup before migrating: backup: pg_dump is not installed" in capsys.readouterr().err


@sqlite_only
def test_restore_onto_a_new_path_creates_it_and_a_refused_one_leaves_nothing(tracker, tmp_path):
    tracker("patient add P1 --name 'Ann Lee' --dob 1980-01-01")
    backup = tracker.json("db backup")["file"]
    tracker.db = str(tmp_path / "new machine.db")
    assert tracker.json(["db", "restore", backup])["kept_aside"] is None  # nothing there to keep
    assert _mrns(tracker) == ["P1"]
    tracker.db = str(tmp_path / "typo.db")
    assert tracker(["db", "restore", str(tmp_path / "nothing.db")], ok=False).exit_code == 2
    assert not (tmp_path / "typo.db").exists()


def test_a_backup_refused_as_busy_leaves_no_file_and_rotates_nothing(tracker, tmp_path, monkeypatch):
    """Before, the backup was written and older ones rotated away, then its audit row waited for the write
    lock and was refused (exit 4 "database busy ... try again"): each retry added a file, and rotation could
    drop a good old backup."""
    from tracker.db import engine as engine_module
    from tracker.db.backups import backups_dir
    from tracker.db.engine import for_writing

    monkeypatch.setattr(engine_module, "LOCK_WAIT_S", 0.2)  # wait a moment, not the clinic's 30 s
    write_config(tmp_path / "site.toml", "[backups]\nkeep = 2\n")
    tracker("patient add P1 --name 'Ann Lee' --dob 1980-01-01")
    for _ in range(2):
        tracker("db backup")
    engine = make_engine(resolve_url(tracker.db))
    folder = backups_dir(engine)
    kept = sorted(p.name for p in folder.iterdir())
    out = tmp_path / "mine.backup"
    with for_writing(engine).connect() as held:
        held.begin()  # another writer's transaction: it holds the write lock until it ends
        for args in (["db", "backup"], ["db", "backup", "--out", str(out)]):
            result = tracker(args, ok=False)
            assert result.exit_code == 4 and "database busy" in result.stderr, result.stderr
            assert result.stderr.count("\n") == 1
        held.rollback()
    engine.dispose()
    assert sorted(p.name for p in folder.iterdir()) == kept and not out.exists()
    assert len(_audit(tracker.db, "db.backup")) == 2
    assert len(tracker.json("db backup")["rotated"]) == 1  # once the lock is free: made, recorded, rotated


def _whole(engine, path: Path) -> None:
    """`path` is a whole backup of a tracker database (SQLite: integrity_check and a known revision;
    PostgreSQL: a custom-format dump that pg_restore lists)."""
    from tracker.db.backups import pg_check_dump, sqlite_revision
    from tracker.db.engine import known_revisions

    if engine.dialect.name == "sqlite":
        assert sqlite_revision(path, known_revisions()) == SCHEMA_HEAD
    else:
        pg_check_dump(path)


@pytest.mark.parametrize("second_at", ["2026-12-03T12:34:56Z", "2026-12-03T12:34:57Z"], ids=["same-second", "next"])
def test_two_backups_at_once_each_keep_their_own_partial_and_file(tracker, second_at):
    """Two `tracker db backup`s at once: the second runs whole while the first's file is written but not
    yet renamed (the first's `on_written`: no sleeps). Before, both wrote `<name>.partial`: the second
    removed the first's (in the same second it unlinked it to write its own under that name; a second later
    its rotation took it for a killed backup's), so the first failed with FileNotFoundError after the second
    was recorded. Now each has a partial of its own, and both are whole, named apart and recorded."""
    from tracker.db.backups import backups_dir
    from tracker.services.backups import backup

    tracker("patient add P1 --name 'Ann Lee' --dob 1980-01-01")
    engine = make_engine(resolve_url(tracker.db))
    seconds = []

    def run_second(partial: Path) -> None:
        with freeze_time(second_at):
            seconds.append(backup(engine, None, "tester"))
        assert partial.exists() and partial.name not in {p.name for p in seconds[0].rotated}

    try:
        with freeze_time("2026-12-03T12:34:56Z"):
            first = backup(engine, None, "tester", on_written=run_second)
        (second,) = seconds
        assert first.path != second.path
        assert sorted(backups_dir(engine).iterdir()) == sorted([first.path, second.path])  # no partial left
        for made in (first, second):
            _whole(engine, made.path)
    finally:
        engine.dispose()
    assert [e["file"] for e in _audit(tracker.db, "db.backup")] == [str(second.path), str(first.path)]


def test_partials_left_by_killed_backups_are_removed_by_the_next_backup(tracker):
    """A partial no process holds (a backup killed half-way: the kernel dropped its lock) is removed by the
    next backup's rotation, in today's naming and in the former `<name>.partial`."""
    from tracker.db.backups import _stem, backups_dir

    engine = make_engine(resolve_url(tracker.db))
    try:
        folder, ext = backups_dir(engine), "db" if engine.dialect.name == "sqlite" else "dump"
        folder.mkdir(parents=True, exist_ok=True)
        left = [folder / f"{_stem(engine)}-20261203T010203Z-manual.{ext}.4242-0a1b2c3d.partial",
                folder / f"{_stem(engine)}-20261203T010204Z-manual.{ext}.partial"]
        for path in left:
            path.write_bytes(b"half a backup")
        made = tracker.json("db backup")
        assert sorted(folder.iterdir()) == [Path(made["file"])]
        assert made["rotated"] == []  # partials are not backups: not listed as rotated
    finally:
        engine.dispose()




@sqlite_only
def test_a_killed_sqlite_backups_journal_goes_with_its_partial(tracker):
    """A SQLite backup killed while copying leaves its partial and SQLite's rollback journal of it
    (`<partial>-journal`; `-wal`/`-shm` if killed while going back to one file). The next backup removes
    the partial and, before, left the journal for ever; now it goes with its partial. A partial a backup is
    writing keeps its journal."""
    from tracker.db.backups import _new_partial, backups_dir

    folder = backups_dir(make_engine(resolve_url(tracker.db)))
    folder.mkdir(parents=True, exist_ok=True)
    left = folder / "tracker-20261203T010203Z-manual.db.4242-0a1b2c3d.partial"
    sidecars = [Path(f"{left}{suffix}") for suffix in ("-journal", "-wal", "-shm")]
    for path in (left, *sidecars):
        path.write_bytes(b"half a backup")
    writing, fd = _new_partial(folder / "tracker-20261203T010205Z-manual.db")  # held: a backup at work
    try:
        Path(f"{writing}-journal").write_bytes(b"its journal")
        made = tracker.json("db backup")
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            [Path(made["file"]).name, writing.name, f"{writing.name}-journal"])  # before: and the 3 sidecars
    finally:
        os.close(fd)

# A real backup process killed (SIGKILL) once its partial file is whole, before it takes its name: what a
# backup killed half-way leaves (a partial no process holds).
_KILLED_BACKUP = """
import os, signal, sys
from tracker.db.backups import make_backup
from tracker.db.engine import make_engine, resolve_url

make_backup(make_engine(resolve_url(sys.argv[1])), sys.argv[2],
            on_written=lambda partial: os.kill(os.getpid(), signal.SIGKILL))
"""


def test_a_killed_out_backups_partial_is_removed_by_the_next_backup_to_that_file(tracker, tmp_path):
    """`db backup --out FILE` killed half-way leaves `FILE.<pid>-<random>.partial` (the patients' data)
    beside FILE, outside backups/ where rotation looks. Before, the next `--out FILE` (the same command run
    again) left it there for ever (the former single `FILE.partial` was reused, so removed); now the
    next backup to FILE removes the partials no process holds (either naming), and only those."""
    tracker("patient add P1 --name 'Ann Lee' --dob 1980-01-01")
    out = tmp_path / "usb" / "clinic backup.db"
    out.parent.mkdir()
    killed = subprocess.run([sys.executable, "-c", _KILLED_BACKUP, tracker.db, str(out)],
                            capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    (left,) = out.parent.iterdir()
    assert re.fullmatch(re.escape(out.name) + r"\.\d+-[0-9a-f]+\.partial", left.name) and left.stat().st_size > 0
    former = out.with_name(out.name + ".partial")  # a killed backup's partial in the former naming
    former.write_bytes(b"half a backup")
    other = out.with_name("other.db.4242-0a1b2c3d.partial")  # another file's: not this backup's business
    other.write_bytes(b"half a backup")
    made = tracker.json(["db", "backup", "--out", str(out)])
    assert made["file"] == str(out)
    assert sorted(p.name for p in out.parent.iterdir()) == sorted([out.name, other.name])  # before: and `left`, `former`


def _file_size_limit(limit: int):
    def limit_writes() -> None:  # a full disk, for this process alone: writes past `limit` bytes fail (EFBIG)
        import resource

        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limit_writes


@sqlite_only
def test_a_sqlite_backup_onto_a_full_disk_is_refused_in_one_line_and_leaves_nothing(tracker, tmp_path):
    """A SQLite backup whose file cannot be written whole (a full USB stick; here a real `tracker` process
    that may write no file past 64 KiB, the database being larger) is refused in one line, exit 11, as
    pg_dump's failure is, leaving no file and no partial. Before: a traceback (sqlite3.OperationalError:
    disk I/O error)."""
    tracker("patient add P1 --name 'Ann Lee' --dob 1980-01-01")
    assert Path(tracker.db).stat().st_size > 64 * 1024
    out = tmp_path / "stick" / "clinic.db"
    out.parent.mkdir()
    for args in (["--out", str(out)], []):
        done = subprocess.run([sys.executable, "-m", "tracker", "--db", tracker.db, "db", "backup", *args],
                              capture_output=True, text=True, preexec_fn=_file_size_limit(64 * 1024))
        assert done.returncode == 11 and done.stderr.startswith("error: backup: "), done.stderr
        assert done.stderr.count("\n") == 1 and "could not be written" in done.stderr, done.stderr  # before: a traceback
    assert list(out.parent.iterdir()) == [] and list((tmp_path / "backups").iterdir()) == []
    assert _audit(tracker.db, "db.backup") == []

# A real `tracker` process that says on stderr when it is about to take the database's write lock (SQLite
# `BEGIN IMMEDIATE`, PostgreSQL the writers' advisory lock), then runs the command given as usual.
_ANNOUNCING_WRITER = """
import sys
from sqlalchemy import event
from sqlalchemy.engine import Engine

@event.listens_for(Engine, "before_cursor_execute")
def announce(conn, cursor, statement, *args):
    if statement.startswith(("BEGIN IMMEDIATE", "SELECT pg_advisory_xact_lock")):
        print("taking the write lock", file=sys.stderr, flush=True)

from tracker.cli import cli
cli.main(sys.argv[1:], prog_name="tracker")
"""


def _aside_mrns(tracker, aside: Path) -> list[str]:
    if not ON_PG:
        with sqlite3.connect(aside) as conn:
            return sorted(mrn for (mrn,) in conn.execute("SELECT mrn FROM patient"))
    listed = subprocess.run(["pg_restore", "--data-only", "--table=patient", "--file=-", str(aside)],
                            capture_output=True, text=True, check=True).stdout
    rows = listed.split("COPY public.patient ", 1)[1].split("\n\\.\n", 1)[0].splitlines()[1:]
    mrns = [row.split("\t") for row in rows]
    header = listed.split("COPY public.patient (", 1)[1].split(")", 1)[0].split(", ")
    return sorted(row[header.index("mrn")] for row in mrns)


def test_a_write_started_while_a_restore_runs_waits_and_lands_in_the_restored_database(tracker, tmp_path):
    """Finding D2 (session 20): a write that committed after the current database was kept aside and before
    the backup replaced it was in neither, lost. The restore now holds the database's write lock (the one
    every writer takes) from before the copy aside until the restored database is in place: a writer
    started meanwhile waits, then writes into the restored database. The restore is paused at that point
    (its `on_locked`) while a real writer process starts and reaches the lock; nothing sleeps."""
    from tracker.services.backups import restore

    tracker("patient add P1 --name 'Ann Lee' --dob 1980-01-01")
    backup = tracker.json(["db", "backup", "--out", str(tmp_path / ("clinic.dump" if ON_PG else "clinic.db"))])
    tracker("patient add P2 --name 'Bo Chan' --dob 1975-05-05")  # after the backup: kept aside only
    paused, go, done = threading.Event(), threading.Event(), {}

    def hold() -> None:
        paused.set()
        assert go.wait(120)

    def run() -> None:
        try:
            done["restored"] = restore(make_engine(resolve_url(tracker.db)), backup["file"], "tester",
                                       on_locked=hold)
        except BaseException as exc:  # reported by the test below
            done["error"] = exc
            paused.set()

    restoring = threading.Thread(target=run)
    restoring.start()
    try:
        assert paused.wait(120) and "error" not in done, done
        writer = subprocess.Popen([sys.executable, "-c", _ANNOUNCING_WRITER, "--db", tracker.db, "patient", "add",
                                   "NEW2", "--name", "During Restore", "--dob", "1990-01-01"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert writer.stderr.readline() == "taking the write lock\n"
        assert writer.poll() is None  # waiting for the restore's lock (before: it wrote at once)
    finally:
        go.set()
        restoring.join()
    out, err = writer.communicate(timeout=120)
    assert "error" not in done, done
    assert writer.returncode == 0 and "added NEW2" in out, err
    assert _mrns(tracker) == ["NEW2", "P1"]  # written into the restored database, after it was in place
    assert _aside_mrns(tracker, done["restored"].kept_aside) == ["P1", "P2"]


def test_a_restore_waits_for_a_write_in_progress_and_is_refused_busy_leaving_everything_as_it_was(
        tracker, tmp_path, monkeypatch):
    """The restore takes the write lock before it keeps anything aside: a writer in the middle of its
    transaction makes it wait (LOCK_WAIT_S), then refuse like any writer (exit 4 "database busy"), with
    the database as it was and no copy aside; the writer's row commits. (Before, the restore made its copy
    aside without the lock and then waited for ever to write.)"""
    from tracker.db import engine as engine_module
    from tracker.db.backups import backups_dir
    from tracker.db.engine import for_writing

    monkeypatch.setattr(engine_module, "LOCK_WAIT_S", 0.2)  # wait a moment, not the clinic's 30 s
    tracker("patient add P1 --name 'Ann Lee' --dob 1980-01-01")
    backup = tracker.json(["db", "backup", "--out", str(tmp_path / ("clinic.dump" if ON_PG else "clinic.db"))])
    engine = make_engine(resolve_url(tracker.db))
    before = dump_database(tracker.db)
    with for_writing(engine).connect() as held:
        held.begin()  # another writer's transaction, not yet committed
        held.exec_driver_sql("INSERT INTO patient (mrn, name, dob, childbearing, created_at, updated_at) "
                             "VALUES ('W1', 'Wen Li', '1980-01-01', 'unknown', '2026-01-01', '2026-01-01')")
        result = tracker(["db", "restore", backup["file"]], ok=False)
        assert result.exit_code == 4 and "database busy" in result.stderr, result.stderr
        assert result.stderr.count("\n") == 1
        held.commit()
    engine.dispose()
    after = dump_database(tracker.db)
    assert sorted(after["patient"]) != sorted(before["patient"]) and _mrns(tracker) == ["P1", "W1"]
    assert {k: v for k, v in after.items() if k != "patient"} == {k: v for k, v in before.items() if k != "patient"}
    folder = tmp_path if not ON_PG else backups_dir(make_engine(resolve_url(tracker.db)))
    assert not [p for p in folder.iterdir() if "before-restore" in p.name or ".restoring-" in p.name]
