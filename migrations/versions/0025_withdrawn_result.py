"""lab results withdrawn from the record (entered in error), kept apart

Two new tables. `withdrawn_result`: a lab result that `tracker result withdraw` took off the record (the
laboratory retracted it), its row as it was under the id it had, with who withdrew it, when and why; the row
leaves `lab_result`, so no chart, gate or nightly scan reads it. `withdrawn_lab_source`: every source id such a
result carried (its own and those its corrections replaced), so that its message or Observation imported again
is recognised as withdrawn rather than stored again. No existing table changes.

Revision ID: 0025
Revises: 0024
"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0025'
down_revision: Union[str, None] = '0024'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('withdrawn_result',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('patient_id', sa.Integer(), nullable=False),
    sa.Column('test', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('value_num', sa.Float(), nullable=True),
    sa.Column('value_text', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
    sa.Column('unit', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
    sa.Column('taken_on', sa.Date(), nullable=False),
    sa.Column('ref_low', sa.Float(), nullable=True),
    sa.Column('ref_high', sa.Float(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('reported_value', sa.Float(), nullable=True),
    sa.Column('reported_unit', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
    sa.Column('source_id', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('reported_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('withdrawn_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('withdrawn_by', sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['patient_id'], ['patient.id'], name=op.f('fk_withdrawn_result_patient_id_patient')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_withdrawn_result')),
    if_not_exists=True,  # tests that rewind a database's stamp to an older revision replay this on it
    )
    op.create_index(op.f('ix_withdrawn_result_patient_id'), 'withdrawn_result', ['patient_id'], unique=False,
                    if_not_exists=True)
    op.create_table('withdrawn_lab_source',
    sa.Column('source_id', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('result_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['result_id'], ['withdrawn_result.id'],
                            name=op.f('fk_withdrawn_lab_source_result_id_withdrawn_result')),
    sa.PrimaryKeyConstraint('source_id', name=op.f('pk_withdrawn_lab_source')),
    if_not_exists=True,
    )
    op.create_index(op.f('ix_withdrawn_lab_source_result_id'), 'withdrawn_lab_source', ['result_id'], unique=False,
                    if_not_exists=True)


def downgrade() -> None:
    op.drop_index(op.f('ix_withdrawn_lab_source_result_id'), table_name='withdrawn_lab_source', if_exists=True)
    op.drop_table('withdrawn_lab_source', if_exists=True)
    op.drop_index(op.f('ix_withdrawn_result_patient_id'), table_name='withdrawn_result', if_exists=True)
    op.drop_table('withdrawn_result', if_exists=True)
