"""lab results remember the message or observation they came from (issue 16, HL7 v2 and FHIR import)

`source_id` names where a result was read: `hl7:<sending facility>|<MSH-10 message control id>|<OBX-1>` for an
HL7 v2 ORU^R01 result, `fhir:<Observation id>` for a FHIR Observation. A unique index holds it, so importing
the same message twice cannot store a result twice (the import skips what is on record; the index is the
guarantee). Results entered by hand or from a CSV file have none (NULL, which the index admits many times);
existing results are all of that kind and keep NULL.

Revision ID: 0010
Revises: 0009
"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0010'
down_revision: Union[str, None] = '0009'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.add_column("lab_result", sa.Column("source_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
    op.create_index("uq_lab_result_source_id", "lab_result", ["source_id"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_lab_result_source_id", table_name="lab_result")
    with op.batch_alter_table("lab_result") as batch:
        batch.drop_column("source_id")
