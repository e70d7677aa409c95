"""an index on item (kind, due, status, done_on, drug, merged_drugs, course_id) (issue 17 item 3)

`tracker report quality` and the web view's Quality page read every lab draw and checkpoint due in a period
(a year of a 100,000-patient clinic: ~330,000 items, grouped in the query). This index holds every column
that read needs, in the order it narrows (kind, then the due-date range), so the read is a range scan of the
index alone instead of a lookup of each row in the item table: half its time at 100,000 patients
(benchmarks/RESULTS.md). No data changes.

Revision ID: 0017
Revises: 0016
"""
from typing import Sequence, Union

from alembic import op

revision: str = '0017'
down_revision: Union[str, None] = '0016'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

COLUMNS = ['kind', 'due', 'status', 'done_on', 'drug', 'merged_drugs', 'course_id']


def upgrade() -> None:
    # if_not_exists: tests that rewind a database's stamp to an older revision replay this on it
    op.create_index('ix_item_kind_due_quality', 'item', COLUMNS, unique=False, if_not_exists=True)


def downgrade() -> None:
    op.drop_index('ix_item_kind_due_quality', table_name='item', if_exists=True)
