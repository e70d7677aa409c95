"""Fresh PostgreSQL databases for tests, on the real server that .ci/postgres.sh starts.

TRACKER_TEST_PG is a base URL (postgresql+psycopg://user:pass@host:port/postgres) for a role that may
create databases. Like the SQLite fixture (a copy of a file migrated once per session), each call returns
a new database at the current schema: a copy (CREATE DATABASE ... TEMPLATE) of a template database that
the real migrations built once per test process. `fresh_database(migrated=False)` gives an empty one.
All of them are dropped as the test session ends (`drop_created`).
"""

from __future__ import annotations

import atexit
import os
import uuid

_CREATED: list[str] = []
_REGISTERED: list[bool] = []


def _admin_conninfo() -> tuple[str, str]:
    """(libpq conninfo for the admin database, base URL without the database name)."""
    from sqlalchemy.engine import make_url

    url = make_url(os.environ["TRACKER_TEST_PG"])
    if not url.drivername.startswith("postgresql"):
        raise RuntimeError(f"TRACKER_TEST_PG must be a postgresql URL, got {url.drivername}")
    url = url.set(drivername="postgresql+psycopg")
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return conninfo, url.render_as_string(hide_password=False).rsplit("/", 1)[0]


def _connect():
    import psycopg

    conninfo, _ = _admin_conninfo()
    return psycopg.connect(conninfo, autocommit=True)


_TEMPLATE: list[str] = []


def _create(template: str) -> str:
    name = f"tracker_test_{uuid.uuid4().hex[:12]}"
    with _connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" ENCODING \'UTF8\'')
    if not _REGISTERED:
        atexit.register(drop_created)
        _REGISTERED.append(True)
    _CREATED.append(name)
    return name


def _migrated_template() -> str:
    if not _TEMPLATE:
        from tracker.db.engine import open_engine

        name = _create("template0")
        _, base = _admin_conninfo()
        open_engine(f"{base}/{name}").dispose()  # the real migrations, once
        _TEMPLATE.append(name)
    return _TEMPLATE[0]


def fresh_database(migrated: bool = True) -> str:
    """Create a database (at the current schema, or empty) and return its SQLAlchemy URL."""
    name = _create(_migrated_template() if migrated else "template0")
    _, base = _admin_conninfo()
    return f"{base}/{name}"


def drop_created() -> None:
    """Drop every database this process made. tests/conftest.py calls it as the test session ends: a
    pytest-xdist worker's exit handlers run after it has reported its end, and the controller ends a worker
    still exiting after 10 s (`xdist.workermanage`, EXIT_TIMEOUT): dropping some 330 databases there was cut
    short, and each full run on two workers left about 400 behind (some 9 MB each). At exit again, for what
    is left (a run outside pytest's session)."""
    import sys

    if not _CREATED:
        return
    try:
        conn = _connect()
    except Exception:  # the server may already be gone; its data directory is temporary anyway
        return
    with conn:
        for name in reversed(list(_CREATED)):  # each on its own: one that cannot be dropped leaves the others
            try:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception as exc:  # left in the list: tried again at exit
                print(f"tests/pg.py: database {name} not dropped: {exc}", file=sys.stderr)
            else:
                _CREATED.remove(name)
    _TEMPLATE.clear()
