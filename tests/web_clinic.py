"""A demo clinic with stored alerts and staff accounts, built once per test module (and per xdist
worker), for the web view's tests (tests/test_web.py, tests/test_web_browser.py)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

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


@contextmanager
def tracker_serve(db: str, tmp_path, *args: str):
    """`tracker serve --port 0 --web-port 0 ARGS` as a subprocess on free loopback ports, until the block
    ends: yields (feeds base URL, web base URL), read from what it prints as it starts (no sleeps)."""
    (tmp_path / "empty.toml").write_text("")
    env = {**os.environ, "TRACKER_CONFIG": str(tmp_path / "empty.toml"), "TZ": "UTC",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("TRACKER_DB", None)
    proc = subprocess.Popen([sys.executable, "-m", "tracker", "--db", db, "serve", "--port", "0", "--web-port", "0",
                             *args], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    feeds = web = None
    try:
        for line in proc.stderr:  # blocks until the server says where it listens (or exits)
            if match := re.search(r"feeds on (http://127\.0\.0\.1:\d+)/", line):
                feeds = match.group(1)
            if match := re.search(r"web view on (https?://127\.0\.0\.1:\d+)/", line):
                web = match.group(1)
                break
        assert feeds and web, f"tracker serve did not start (exit {proc.poll()})"
        rest: list[str] = []
        threading.Thread(target=lambda: rest.extend(proc.stderr), daemon=True).start()  # keep the pipe drained
        yield feeds, web
    finally:
        proc.terminate()
        proc.wait(timeout=30)
