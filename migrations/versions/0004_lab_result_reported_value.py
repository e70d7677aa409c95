"""lab results keep the value and unit as reported beside the converted value (issue 13, units)

A numeric result is now converted to the vocabulary's unit when it is recorded (tracker/units.py);
`reported_value` and `reported_unit` keep what the laboratory sent. Existing numeric results were stored as
given, so what is on record is what was reported: both columns are filled from value_num and unit. Results
stored before this revision in a unit other than the vocabulary's are not converted here (a migration
cannot read the clinic's vocabulary); they keep showing the unit they were recorded with.

Revision ID: 0004
Revises: 0002
"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0004'
down_revision: Union[str, None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column("lab_result", sa.Column("reported_value", sa.Float(), nullable=True))
    op.add_column("lab_result", sa.Column("reported_unit", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True))
    lab_result = sa.table("lab_result", sa.column("value_num", sa.Float), sa.column("unit", sa.String),
                          sa.column("reported_value", sa.Float), sa.column("reported_unit", sa.String))
    op.get_bind().execute(lab_result.update().where(lab_result.c.value_num.is_not(None))
                          .values(reported_value=lab_result.c.value_num, reported_unit=lab_result.c.unit))


def downgrade() -> None:
    with op.batch_alter_table("lab_result") as batch:
        batch.drop_column("reported_unit")
        batch.drop_column("reported_value")
