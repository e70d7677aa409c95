"""PostgreSQL: the writing transaction of each result, assessment and audit row, for the incremental nightly (issue 19)

The incremental nightly reviews the patients with a row written after its last pass's mark. On PostgreSQL
ids are not committed in order, so the mark is the pass's snapshot (tracker/services/evaluate.py
`_current_mark`): the next pass looks for rows written by a transaction that snapshot did not see. Before
this migration it asked `age(xmin) <= age(:mark_xmin)` of every row: no index can answer that, so every
next-day nightly read the whole of lab_result, assessment and audit_event (about 2 s of a 5 s night at
100,000 patients). Now each new row records its transaction id (`pg_current_xact_id()`, 64-bit, never
wraps) in `changed_xid`, and a BRIN index on it (rows are appended in transaction order, so a block range
of 1 MB summarises a narrow band of ids; the index is a few pages and costs nothing to keep) lets the
next pass read only the table's tail.

Existing rows get 0 (written before any mark that can use the column: the first pass after the upgrade
is a full one, as its mark is of the old kind). SQLite needs nothing (one writer at a time:
ids are committed in order). The column is not in the models (SQLite has no such type or default).

Revision ID: 0021
Revises: 0020
"""
from typing import Sequence, Union

from alembic import op

revision: str = '0021'
down_revision: Union[str, None] = '0020'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

TABLES = ("lab_result", "assessment", "audit_event")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        # if not exists: tests that rewind a database's stamp to an older revision replay this on it
        # 0 for the rows already there (a constant default: no table rewrite), the writer's id for new ones
        op.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS changed_xid bigint NOT NULL DEFAULT 0")
        op.execute(f"ALTER TABLE {table} ALTER COLUMN changed_xid SET DEFAULT pg_current_xact_id()::text::bigint")
        op.execute(f"CREATE INDEX IF NOT EXISTS ix_{table}_changed_xid ON {table} USING brin (changed_xid)")
        # Statistics of the new column (all 0, in table order): without them the planner guesses a third of
        # the table matches and scans it all instead of the index (a sample of 30,000 rows: quick).
        op.execute(f"ANALYZE {table} (changed_xid)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"DROP INDEX IF EXISTS ix_{table}_changed_xid")
        op.execute(f"ALTER TABLE {table} DROP COLUMN IF EXISTS changed_xid")
