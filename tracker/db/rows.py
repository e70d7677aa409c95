"""Plain rows for the hot reads (a whole-clinic review loads about a million results).

SQLAlchemy turns each fetched row into a `Row` through per-row processing; on SQLite that costs several times
the query itself. Here a Core select is compiled once (IN lists expanded), run on the driver's own cursor, and
each row becomes a named tuple, its values converted by the selected columns' own result processors (so a
DATE comes back as a `datetime.date`, exactly as through Core). Only plain parameters (ints, strings,
floats) go to the driver as they are; any other parameter (a date) through its type's bind processor, as
Core would.
"""

from __future__ import annotations

from collections import namedtuple
from functools import lru_cache

PLAIN_PARAMETERS = (int, str, float, type(None))


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
    compiled = query.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.construct_params()
    for name, value in params.items():
        if isinstance(value, PLAIN_PARAMETERS):
            continue
        bind = compiled.binds.get(name)
        process = bind.type._cached_bind_processor(dialect) if bind is not None else None
        if bind is None or (process is None and dialect.name == "sqlite"):
            raise TypeError(f"plain_rows: parameter {name}={value!r} has no bind processing; use session.execute")
        params[name] = process(value) if process is not None else value
    args = tuple(params[name] for name in compiled.positiontup) if compiled.positional else params
    columns = list(query.selected_columns)
    row_type = _row_type(tuple(c.key for c in columns))
    cursor = conn.connection.dbapi_connection.cursor()
    try:
        cursor.execute(str(compiled), args)
        # The driver's type of each column (PostgreSQL's OIDs; None on SQLite) picks the processor, as Core does.
        coltypes = [d[1] for d in cursor.description]
        raw = cursor.fetchall()
    finally:
        cursor.close()
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
