"""indexes for the staff web view's Today page at 100,000 patients (issue 17 item 6)

- `item (status, kind, due)`: a Today section's count (planned tasks of the task kinds in a due range) read
  from the index alone; with `(status, due)` the kind of every row in the range was read from the table.
- `item (due) WHERE received IS NOT NULL AND status NOT IN ('done', 'cancelled')`: the planned items that have
  received part of what they need (partial draws), a small share of the table, found without reading the
  others. The condition names the statuses left out rather than `status = 'planned'`: a query holding that
  equality would be planned on `(status, due)` instead (SQLite, without statistics), reading every planned
  item in the range.
- `course (planned_through) WHERE status != 'stopped'`: whether any live course's plan falls short of a date
  (the page rolls plans forward only then), one seek instead of a scan of the courses.
No data changes.

Revision ID: 0015
Revises: 0014
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0015'
down_revision: Union[str, None] = '0014'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

PARTIAL_SQL = "received IS NOT NULL AND status NOT IN ('done', 'cancelled')"
LIVE_COURSE_SQL = "status != 'stopped'"


def upgrade() -> None:
    # if_not_exists: tests that rewind a database's stamp to an older revision replay this on it
    op.create_index('ix_item_status_kind_due', 'item', ['status', 'kind', 'due'], unique=False, if_not_exists=True)
    op.create_index('ix_item_partial_due', 'item', ['due'], unique=False, if_not_exists=True,
                    sqlite_where=sa.text(PARTIAL_SQL), postgresql_where=sa.text(PARTIAL_SQL))
    op.create_index('ix_course_live_planned_through', 'course', ['planned_through'], unique=False,
                    if_not_exists=True, sqlite_where=sa.text(LIVE_COURSE_SQL),
                    postgresql_where=sa.text(LIVE_COURSE_SQL))


def downgrade() -> None:
    op.drop_index('ix_course_live_planned_through', table_name='course', if_exists=True)
    op.drop_index('ix_item_partial_due', table_name='item', if_exists=True)
    op.drop_index('ix_item_status_kind_due', table_name='item', if_exists=True)
