"""the files the lab inbox imported (issue 16 item 2: "an inbox folder that the nightly imports")

One row per file imported from `[labs] inbox`: the SHA-256 of its bytes (unique), its name, its format and
how many results it stored. A file whose content is already on record is moved to done/ without being
imported again (a crash between the import's commit and the move, or a laboratory sending a CSV twice: a CSV
carries no result ids to make its import idempotent as HL7 and FHIR results are). A new table: no existing
data to carry.

Revision ID: 0018
Revises: 0017
"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0018'
down_revision: Union[str, None] = '0017'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "lab_inbox_file",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("format", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("results", sa.Integer(), nullable=False),
        sa.Column("imported_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sha256", name=op.f("uq_lab_inbox_file_sha256")),
    )


def downgrade() -> None:
    op.drop_table("lab_inbox_file")
