"""a patient's responsible clinician (issue 17 item 1)

`patient.clinician`: the name of the clinician responsible for the patient (free text, as a name), NULL
until someone records one; existing patients keep every value and get NULL. Indexed, because the worklists
(`tracker due/alerts --clinician`, the web view's Today filter) select by it.

Revision ID: 0014
Revises: 0013
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0014'
down_revision: Union[str, None] = '0013'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.add_column(sa.Column('clinician', sa.String(length=200), nullable=True))
        batch_op.create_index('ix_patient_clinician', ['clinician'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.drop_index('ix_patient_clinician')
        batch_op.drop_column('clinician')
