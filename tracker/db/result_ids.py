"""Lab result ids are never reused, even for a result withdrawn from the record.

A withdrawn result keeps its id in `withdrawn_result` (migration 0025), and alerts' condition keys, items' done
notes (`result #N`), the audit log and the import's `_corrected` all name results by id. PostgreSQL draws ids
from a sequence, which never hands one out twice. SQLite's `lab_result.id` is a plain INTEGER PRIMARY KEY (no
AUTOINCREMENT): a new row takes the largest id + 1, so the newest result once withdrawn would see its id given
to the next result. There, the next id is worked out over both tables and given explicitly; writers hold the
database's write lock from the start of their transaction (db/engine.py `for_writing`), so nobody else can take
it meanwhile.
"""

from __future__ import annotations

from sqlalchemy import func, select


def next_result_id(conn) -> int | None:
    """The id the next lab_result row must take (SQLite), or None: the database's own (its sequence)."""
    if conn.dialect.name != "sqlite":
        return None
    from tracker.db.tables import LabResult, WithdrawnResult

    highest = conn.execute(select(func.max(LabResult.__table__.c.id))).scalar() or 0
    withdrawn = conn.execute(select(func.max(WithdrawnResult.__table__.c.id))).scalar() or 0
    return max(highest, withdrawn) + 1
