"""when the laboratory reported a result (issue 16: corrections that arrive out of order)

A laboratory may correct a result twice, and the two corrections may reach tracker in either order (an
inbox folder read in name order, an MLLP link resending after an outage). Applied as they arrive, the
older correction would overwrite the newer one. `lab_result.reported_at` keeps the report time the
laboratory gave (HL7 OBR-22, else MSH-7; FHIR Observation.issued, else meta.lastUpdated), so a correction
reported before the values on record is not applied (tracker/core/lab_corrections.py). Nullable: results
typed, read from CSV or imported before this revision have none, and a correction of them is applied in the
order received, as before. No data changes.

Revision ID: 0020
Revises: 0019
"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0020'
down_revision: Union[str, None] = '0019'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('lab_result', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reported_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('lab_result', schema=None) as batch_op:
        batch_op.drop_column('reported_at')
