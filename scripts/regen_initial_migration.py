"""Regenerate migrations/versions/0001_initial.py from tracker/db/tables.py.

Only while nothing has been released: once a database exists in the field, add a new revision instead.
"""

import tempfile
from pathlib import Path

from alembic import command
from sqlalchemy import create_engine

from tracker.db.engine import _alembic_config

versions = Path(__file__).resolve().parent.parent / "migrations" / "versions"
for old in versions.glob("0001_*.py"):
    old.unlink()
with tempfile.TemporaryDirectory() as tmp:
    engine = create_engine(f"sqlite:///{tmp}/empty.db")
    with engine.begin() as conn:
        cfg = _alembic_config(conn)
        command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001")
for new in versions.glob("0001_*.py"):
    new.rename(versions / "0001_initial.py")
print("wrote", versions / "0001_initial.py")
