"""Plain rows for the hot reads (a whole-clinic review loads about a million results).

SQLAlchemy turns each fetched row into a `Row` through per-row processing; on SQLite that costs several times
the query itself. Here a Core select is compiled once (IN lists expanded), run on the driver's own cursor, and
each row becomes a named tuple, its values converted by the selected columns' own result processors (so a
DATE comes back as a `datetime.date`, exactly as through Core). Compiling and binding are Core's own
(its compiled cache holds one form per query shape).
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Iterable, Iterator
from functools import lru_cache

from sqlalchemy import any_, literal
from sqlalchemy.types import ARRAY


@lru_cache(maxsize=64)
def _row_type(names: tuple[str, ...]):
    return namedtuple("PlainRow", names)


class _Memo(dict):
    """A result processor remembering its answers (the processed values here are dates, which repeat across
    a clinic's rows); a hit is a plain dict lookup."""

    def __init__(self, process):
        super().__init__()
        self.process = process

    def __missing__(self, value):
        converted = self[value] = self.process(value)
        return converted


def plain_rows(session, query) -> list:
    """The rows of Core select `query` as named tuples (attribute names: the selected columns' keys)."""
    session.flush()  # as Session.execute would (autoflush): a pending result must be seen
    conn = session.connection()
    dialect = conn.dialect
    # Core compiles (through its statement cache: the chunked IN lists of a clinic-wide pass share one
    # compiled form) and binds; the rows are then read from the driver's cursor, unprocessed.
    result = conn.execute(query)
    try:
        cursor = result.cursor
        # The driver's type of each column (PostgreSQL's OIDs; None on SQLite) picks the processor, as Core does.
        coltypes = [d[1] for d in cursor.description]
        raw = cursor.fetchall()
    finally:
        result.close()
    columns = list(query.selected_columns)
    row_type = _row_type(tuple(c.key for c in columns))
    convert = [(i, _Memo(p)) for i, c in enumerate(columns)
               if (p := c.type._cached_result_processor(dialect, coltypes[i])) is not None]
    new = tuple.__new__
    if not convert:
        return [new(row_type, row) for row in raw]
    if len(convert) == 1:  # the common case (one date column), without a per-row Python loop
        (i, memo), = convert
        return [new(row_type, row[:i] + (memo[row[i]],) + row[i + 1:]) for row in raw]
    rows = []
    for row in raw:
        values = list(row)
        for i, memo in convert:
            values[i] = memo[values[i]]
        rows.append(new(row_type, values))
    return rows


# --- sets of ids in a query -------------------------------------------------------------------------------

# Values per IN list where each value is a bound parameter (SQLite allows 32,766 since 3.32; older, 999).
IN_LIST = 500


def among(session, column, values):
    """`column IN values` for a set of ids or keys. PostgreSQL: `column = ANY(:array)`, one parameter however
    many values (an IN list binds, casts and renders one parameter per value: about 0.1 s of the client's per
    10,000 ids, several times a cold night). Elsewhere an IN list (see `narrowed`)."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(literal(list(values), ARRAY(column.type)))
    return column.in_(values)


def chunks(values: Iterable, size: int = IN_LIST) -> Iterator[list]:
    """`values` sorted, each once, in lists of `size`."""
    values = sorted(set(values))
    for i in range(0, len(values), size):
        yield values[i:i + size]


def narrowed(session, query, column, values) -> Iterator:
    """`query` with `column` `among` `values`, as the statements that together ask for all of them: one on
    PostgreSQL (one array), one per IN list of IN_LIST values elsewhere; none for no values."""
    if session.get_bind().dialect.name == "postgresql":
        values = sorted(set(values))
        sets = [values] if values else []
    else:
        sets = chunks(values)
    for subset in sets:
        yield query.where(among(session, column, subset))
