"""an index on item.last_modified (issue 16 item 6)

A feed's validators (ETag, Last-Modified) start from the latest change of the items it shows; for the whole
clinic's feed that is max(item.last_modified) over every item, which this index answers with one seek, so a
304 costs milliseconds at 100,000 patients instead of a scan of the item table. No data changes.

Revision ID: 0012
Revises: 0011
"""
from typing import Sequence, Union

from alembic import op

revision: str = '0012'
down_revision: Union[str, None] = '0011'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # if_not_exists: tests that rewind a database's stamp to an older revision replay this on it
    op.create_index('ix_item_last_modified', 'item', ['last_modified'], unique=False, if_not_exists=True)


def downgrade() -> None:
    op.drop_index('ix_item_last_modified', table_name='item', if_exists=True)
