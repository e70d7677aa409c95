"""partial draws and baseline readings (issue 13)

`item.received`: the test codes whose results have counted towards a planned draw or baseline test so far
(space-separated). A draw is done only when its panels' required analytes are in (tracker/core/panels.py);
until then it stays planned and is shown as `partial`, naming what is missing. Existing rows get NULL
(nothing received: before this revision any counting result completed the item, so open items had none).

`item.reading`: which reading of a baseline rule with `times: N` an item is (1..N), for rules planned as one
item per reading (ciclosporin's two blood pressures and creatinines); NULL for every other item. Reading 1
keeps the identity an existing single item had, so upgraded courses keep their rows and uids.

Revision ID: 0005
Revises: 0002
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: Union[str, None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('item', schema=None) as batch_op:
        batch_op.add_column(sa.Column('received', sa.String(length=400), nullable=True))
        batch_op.add_column(sa.Column('reading', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('item', schema=None) as batch_op:
        batch_op.drop_column('reading')
        batch_op.drop_column('received')
