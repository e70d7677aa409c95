"""The SQL of the core's worklist windows (tracker/core/worklist.py): the one place a listing, the nightly
digest or a patient summary narrows the item table to what a worklist predicate may accept.

The clause is plain comparisons on `item.status`, `item.kind` and `item.due`, so the `item (status, due)`
and `item (patient_id, status, due)` indexes serve it. It only narrows: where rows come back to Python, the
core predicate still decides (tests/test_windows_sql.py checks the two agree on a real database).
"""

from __future__ import annotations

from sqlalchemy import and_

from tracker.core.worklist import ItemWindow
from tracker.db.tables import Item


def item_where(window: ItemWindow, item=Item):
    """The where-clause selecting the rows of `item` (the table, or an alias of it) that `window` admits."""
    clauses = [item.status == window.status, item.kind.in_(window.kinds)]
    if window.due_from is not None:
        clauses.append(item.due >= window.due_from)
    if window.due_before is not None:
        clauses.append(item.due < window.due_before)
    return and_(*clauses)
