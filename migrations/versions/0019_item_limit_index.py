"""a partial index on the course-limit items (issue 12 item 9, issue 19 item 2)

Whom a whole-clinic review reads includes every patient with a planned course-limit item
(core/review.py review_windows). Limit items have no date bound, so without an index on `kind` SQLite
answered that window by walking `item (status, due)` through every planned item of the clinic (a quarter
of a million at 100,000 patients, a second of a cold nightly). This index holds only the limit items (one
per course with a maximum duration). Queries reach it through `kind = 'limit'` written as a literal
(tracker/db/windows.py), as SQLite only uses a partial index when the query's terms imply its WHERE.
No data changes.

Revision ID: 0019
Revises: 0018
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0019'
down_revision: Union[str, None] = '0018'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

LIMIT_ITEM_SQL = "kind = 'limit'"


def upgrade() -> None:
    # if_not_exists: tests that rewind a database's stamp to an older revision replay this on it
    op.create_index('ix_item_limit_status', 'item', ['kind', 'status'], unique=False, if_not_exists=True,
                    sqlite_where=sa.text(LIMIT_ITEM_SQL), postgresql_where=sa.text(LIMIT_ITEM_SQL))


def downgrade() -> None:
    op.drop_index('ix_item_limit_status', table_name='item', if_exists=True)
