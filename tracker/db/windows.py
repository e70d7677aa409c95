"""Item windows (tracker/core/worklist.py) as SQL: the only place their narrowing is written."""

from __future__ import annotations

from sqlalchemy import and_

from tracker.core.worklist import ItemWindow


def window_clause(window: ItemWindow, table):
    """The where-clause selecting the rows of item `table` that `window` admits."""
    terms = [table.c.status == window.status, table.c.kind.in_(window.kinds)]
    if window.due_from is not None:
        terms.append(table.c.due >= window.due_from)
    if window.due_before is not None:
        terms.append(table.c.due < window.due_before)
    return and_(*terms)
