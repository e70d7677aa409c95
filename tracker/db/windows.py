"""The SQL of the core's worklist windows (tracker/core/worklist.py): the one place a listing, the nightly
digest or a patient summary narrows the item table to what a worklist predicate may accept.

The clause is plain comparisons on `item.status`, `item.kind` and `item.due`, so the `item (status, due)`
and `item (patient_id, status, due)` indexes serve it (and the limit items' partial index, migration 0019). It only narrows: where rows come back to Python, the
core predicate still decides (tests/test_windows_sql.py checks the two agree on a real database).
"""

from __future__ import annotations

from sqlalchemy import and_, literal

from tracker.core.worklist import ItemWindow
from tracker.db.tables import Item


def item_where(window: ItemWindow, item=Item):
    """The where-clause selecting the rows of `item` (the table, or an alias of it) that `window` admits."""
    if len(window.kinds) == 1:
        # One kind as a literal `kind = 'limit'`: SQLite uses a partial index (ix_item_limit_status, migration
        # 0019) only when the query's own terms imply its WHERE, which a bound parameter never does.
        kind = item.kind == literal(window.kinds[0], literal_execute=True)
    else:
        kind = item.kind.in_(window.kinds)
    clauses = [item.status == window.status, kind]
    if window.due_from is not None:
        clauses.append(item.due >= window.due_from)
    if window.due_before is not None:
        clauses.append(item.due < window.due_before)
    return and_(*clauses)
