"""Shared fixtures: a real database file through real migrations, and a CLI runner bound to it.

Every test gets its own database. By default a SQLite file in tmp_path; with TRACKER_TEST_PG set (see
tests/pg.py, issue 6) a fresh PostgreSQL database on a real server.
"""

from __future__ import annotations

import json
import os
import shlex

import pytest
from click.testing import CliRunner

from tracker.cli import cli


@pytest.fixture
def db_url(tmp_path) -> str:
    """A fresh, empty database for this test (a path or URL, as given to --db)."""
    if os.environ.get("TRACKER_TEST_PG"):
        from tests.pg import fresh_database

        return fresh_database()
    return str(tmp_path / "tracker.db")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No test reads the developer's own database, config or clinic protocols."""
    monkeypatch.delenv("TRACKER_DB", raising=False)
    monkeypatch.delenv("TRACKER_SCHEDULES", raising=False)
    monkeypatch.setenv("TRACKER_CONFIG", str(tmp_path / "no-config.toml"))
    (tmp_path / "no-config.toml").write_text("")
    monkeypatch.setenv("USER", "tester")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))


class Tracker:
    """Runs `tracker --db <db> ...` in-process, like a user at a terminal would."""

    def __init__(self, db: str):
        self.db = db
        self.runner = CliRunner()

    def __call__(self, args, *, ok: bool = True, input: str | None = None, env: dict | None = None):
        if isinstance(args, str):
            args = shlex.split(args)
        result = self.runner.invoke(cli, ["--db", self.db, *args], input=input, env=env,
                                    catch_exceptions=False)
        if ok and result.exit_code != 0:
            raise AssertionError(f"tracker {' '.join(args)} exited {result.exit_code}:\n"
                                 f"stdout: {result.stdout}\nstderr: {result.stderr}")
        return result

    def json(self, args, **kwargs):
        if isinstance(args, str):
            args = shlex.split(args)
        return json.loads(self(args + ["--json"], **kwargs).stdout)


@pytest.fixture
def tracker(db_url) -> Tracker:
    return Tracker(db_url)


def dump_database(db: str) -> dict:
    """Every row of every table, to assert that a failed command changed nothing."""
    from sqlalchemy import MetaData, select

    from tracker.db.engine import make_engine, resolve_url

    engine = make_engine(resolve_url(db))
    meta = MetaData()
    meta.reflect(engine)
    out = {}
    with engine.connect() as conn:
        for name, table in sorted(meta.tables.items()):
            out[name] = [tuple(row) for row in conn.execute(select(table)).all()]
    engine.dispose()
    return out
