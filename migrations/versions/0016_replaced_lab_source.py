"""source ids of lab results replaced by a correction (issue 16 leftovers: corrected HL7 / amended FHIR results)

A corrected HL7 result (OBX-11 `C`) arrives in a new message with a new source id and replaces the values of
the result it corrects; that result then carries the correction's source id. The table `replaced_lab_source`
keeps the source ids it carried before (source_id, the result, when), so importing the first message again
is recognised as on record. A new table only: existing results and their source ids are carried as they are.

Revision ID: 0016
Revises: 0015
"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0016'
down_revision: Union[str, None] = '0015'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('replaced_lab_source',
    sa.Column('source_id', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('result_id', sa.Integer(), nullable=False),
    sa.Column('replaced_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['result_id'], ['lab_result.id'], name=op.f('fk_replaced_lab_source_result_id_lab_result')),
    sa.PrimaryKeyConstraint('source_id', name=op.f('pk_replaced_lab_source'))
    )
    op.create_index(op.f('ix_replaced_lab_source_result_id'), 'replaced_lab_source', ['result_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_replaced_lab_source_result_id'), table_name='replaced_lab_source')
    op.drop_table('replaced_lab_source')
