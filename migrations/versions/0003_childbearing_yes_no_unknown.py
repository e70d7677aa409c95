"""childbearing potential is yes / no / unknown (issue 13)

`patient.childbearing_potential` was a boolean that defaulted to false, so a patient never asked read as
"no" and got no pregnancy test. It becomes `patient.childbearing` (text: yes | no | unknown): patients
flagged true become "yes", everyone else "unknown" (false meant "not flagged", not a recorded "no"). The
core decides whether "unknown" counts as "yes" (a female patient of childbearing age). Downgrade maps
"yes" back to true and the rest to false.

Revision ID: 0003
Revises: 0002
"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0003'
down_revision: Union[str, None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.add_column(sa.Column('childbearing', sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False,
                                      server_default='unknown'))
    patient = sa.table('patient', sa.column('childbearing_potential', sa.Boolean),
                       sa.column('childbearing', sa.String))
    op.get_bind().execute(patient.update().where(patient.c.childbearing_potential.is_(True))
                          .values(childbearing='yes'))
    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.alter_column('childbearing', server_default=None)
        batch_op.drop_column('childbearing_potential')


def downgrade() -> None:
    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.add_column(sa.Column('childbearing_potential', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    patient = sa.table('patient', sa.column('childbearing_potential', sa.Boolean),
                       sa.column('childbearing', sa.String))
    op.get_bind().execute(patient.update().where(patient.c.childbearing == 'yes')
                          .values(childbearing_potential=True))
    with op.batch_alter_table('patient', schema=None) as batch_op:
        batch_op.alter_column('childbearing_potential', server_default=None)
        batch_op.drop_column('childbearing')
