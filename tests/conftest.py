"""Shared fixtures: a real database file through real migrations, and a CLI runner bound to it.

Every test gets its own database. By default a SQLite file in tmp_path; with TRACKER_TEST_PG set (see
tests/pg.py, issue 6) a fresh PostgreSQL database on a real server.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, settings

from tracker.cli import cli

# Property tests judge their properties, never the machine's speed: on a loaded 2-core runner Hypothesis's
# "too slow" health checks and per-example deadlines failed pure core tests (a flaky test is a failing test).
settings.register_profile("tracker", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile("tracker")


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory) -> str:
    """A SQLite file brought to the current schema by the real migrations, once per test session."""
    from tracker.db.engine import open_engine

    path = tmp_path_factory.mktemp("template") / "template.db"
    engine = open_engine(str(path))
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    return str(path)


@pytest.fixture
def db_url(tmp_path, migrated_template) -> str:
    """A fresh database at the current schema for this test (a path or URL, as given to --db)."""
    return fresh_db(tmp_path, migrated_template)


def fresh_db(tmp_path, migrated_template, name: str = "tracker.db") -> str:
    """A fresh database at the current schema (a test's own, or a second one beside it).

    SQLite: a copy named `name` of a file migrated once per session by the real migrations
    (test_migrations.py migrates from empty itself). PostgreSQL (TRACKER_TEST_PG): a new database on a real
    server.
    """
    if os.environ.get("TRACKER_TEST_PG"):
        from tests.pg import fresh_database

        return fresh_database()
    path = tmp_path / name
    shutil.copyfile(migrated_template, path)
    os.chmod(path, 0o600)  # as tracker creates it (copyfile uses the umask; others' access is warned about)
    return str(path)


def pytest_sessionfinish(session, exitstatus):
    """PostgreSQL: the databases this test process made are dropped as its session ends (tests/pg.py)."""
    import sys

    pg = sys.modules.get("tests.pg")
    if pg is not None:
        pg.drop_created()


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
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))  # (pint's parsed definitions: tracker/units.py)
    # With no configured zone "today" is the machine's: pin it, so results do not depend on where tests run.
    import pendulum

    pendulum.set_local_timezone(pendulum.timezone("UTC"))
    yield
    pendulum.set_local_timezone()


class Tracker:
    """Runs `tracker --db <db> ...` in-process, like a user at a terminal would."""

    def __init__(self, db: str):
        self.db = db
        self.runner = CliRunner()

    def __call__(self, args, *, ok: bool = True, input: str | None = None, env: dict | None = None):
        if isinstance(args, str):
            args = shlex.split(args)
        if args[:1] == ["alerts"] and "--as-of" not in args:
            # `tracker alerts` lists what was stored; a scenario's clinic stores it as the nightly job would,
            # each day it looks (tests/test_alerts_lifecycle.py checks the list alone writes nothing).
            self(["evaluate"], ok=False, env=env)  # a refusal shows in the listing itself
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


# Normal values for what makes each panel complete (schedules/vocabulary.yaml `required`, first choice of
# each "any of" entry), to record a whole draw in one call.
PANEL_VALUES = {
    "cbc": {"wbc": 6.0, "neutrophils": 3.5, "lymphocytes": 1.8, "platelets": 250, "hb": 135},
    "cmp": {"alt": 25, "creatinine": 80, "albumin": 42},
    "lipids": {"total_cholesterol": 4.5, "hdl": 1.4, "triglycerides": 1.2},
    "bp": {"bp_systolic": 120, "bp_diastolic": 75},
}


def record_panels(tracker, mrn: str, day: str, *panels: str, skip: tuple = ()) -> list[str]:
    """Record every required analyte of `panels` for `mrn` taken on `day` (except `skip`); their stdouts."""
    return [tracker(f"result add {mrn} {code} {value} --on {day}").stdout
            for panel in panels for code, value in PANEL_VALUES[panel].items() if code not in skip]
