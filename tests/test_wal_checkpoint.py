"""Issue 19: the nightly commits on SQLite without the automatic checkpoint of its write-ahead log, which a
thread runs on a connection of its own while the reminders are delivered (`commit_without_checkpoint`)."""

from __future__ import annotations

import sqlite3

from sqlmodel import Session

from tracker.db.engine import commit_without_checkpoint, for_writing, open_engine
from tracker.db.tables import setting_value, store_setting

BIG = "x" * 100_000


def _in_database_file(db: str) -> int:
    """The rows of the commit that the database file itself holds (the log ignored)."""
    with sqlite3.connect(f"file:{db}?immutable=1", uri=True) as file_only:
        return file_only.execute("SELECT count(*) FROM setting WHERE key LIKE 'test.big.%'").fetchone()[0]


def test_a_large_commit_leaves_its_checkpoint_to_the_thread_and_the_connection_as_it_was(tracker):
    tracker("patient add P1 --name 'Ada Byron' --dob 1980-01-01")  # a migrated database
    engine = open_engine(tracker.db)
    with Session(for_writing(engine)) as session:
        for n in range(60):  # ~6 MB: past the automatic checkpoint's 1,000 pages
            store_setting(session, f"test.big.{n}", BIG)
        session.flush()
        raw = session.connection().connection.dbapi_connection
        checkpoint = commit_without_checkpoint(session)
    if engine.dialect.name != "sqlite":
        assert checkpoint is None  # PostgreSQL: a plain commit
    else:
        assert _in_database_file(tracker.db) == 0  # committed to the log only
        assert raw.execute("PRAGMA wal_autocheckpoint").fetchone() == (1000,)  # the pooled connection as it was
        checkpoint.start()
        checkpoint.join()
        assert _in_database_file(tracker.db) == 60  # the thread checkpointed the commit into the file
    with Session(engine) as session:
        assert setting_value(session, "test.big.59") == BIG
    engine.dispose()


def test_an_in_memory_database_commits_without_a_checkpoint_thread():
    from sqlalchemy import text

    from tracker.db.engine import make_engine

    engine = make_engine("sqlite://")
    with Session(engine) as session:
        session.execute(text("CREATE TABLE t (n INTEGER)"))
        session.execute(text("INSERT INTO t VALUES (1)"))
        assert commit_without_checkpoint(session) is None
        assert session.execute(text("SELECT n FROM t")).scalar() == 1
    engine.dispose()
