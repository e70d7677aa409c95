"""A demo clinic with stored alerts and staff accounts, built once per test module (and per xdist
worker), for the web view's tests (tests/test_web.py, tests/test_web_browser.py)."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.conftest import Tracker

PASSWORD = "correct horse battery"
DEMO_PATIENTS = 30  # enough for several open alerts of different patients


@pytest.fixture(scope="module")
def demo_clinic(tmp_path_factory, migrated_template) -> str:
    """A database (path or URL) holding the demo clinic, evaluated once (alerts stored), with accounts
    `nina` (clinician) and `rita` (readonly)."""
    base = tmp_path_factory.mktemp("web-demo")
    (base / "empty.toml").write_text("")
    env = {"TRACKER_CONFIG": str(base / "empty.toml"), "USER": "tester", "TRACKER_DB": None,
           "TRACKER_SCHEDULES": None}
    if os.environ.get("TRACKER_TEST_PG"):
        from tests.pg import fresh_database

        db = fresh_database()
    else:
        db = str(base / "demo.db")
        shutil.copyfile(migrated_template, db)
        os.chmod(db, 0o600)
    tracker = Tracker(db)
    tracker(["demo", "--patients", str(DEMO_PATIENTS)], env=env)
    tracker(["evaluate"], env=env)
    tracker(["user", "add", "nina", "--role", "clinician", "--password-stdin"], input=PASSWORD + "\n", env=env)
    tracker(["user", "add", "rita", "--role", "readonly", "--password-stdin"], input=PASSWORD + "\n", env=env)
    return db


def copy_of(db: str, tmp_path) -> str:
    """A test's own copy of the module's clinic (SQLite); PostgreSQL tests share the module's database."""
    if "://" in db:
        return db
    path = tmp_path / "clinic.db"
    shutil.copyfile(db, path)
    if os.path.exists(db + "-wal"):  # not yet checkpointed into the file
        shutil.copyfile(db + "-wal", str(path) + "-wal")
    os.chmod(path, 0o600)
    return str(path)


def query(db: str, sql: str, **params):
    from sqlalchemy import text

    from tracker.db.engine import make_engine, resolve_url

    engine = make_engine(resolve_url(db))
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql), params).all()
    finally:
        engine.dispose()
