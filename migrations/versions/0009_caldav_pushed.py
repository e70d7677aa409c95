"""what `tracker calendar push` last put in a CalDAV collection (issue 16 item 4)

One row per calendar object resource pushed: the collection (its URL without credentials), the event's UID,
a hash of what was sent and the ETag the server answered. A push compares against it, so an unchanged
event is not sent again and an item no longer in the calendar is deleted from the collection. A new table:
no existing data to carry.

Revision ID: 0009
Revises: 0008
"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0009'
down_revision: Union[str, None] = '0008'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "caldav_object",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("collection", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("uid", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("content_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("etag", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("pushed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("collection", "uid", name=op.f("uq_caldav_object_collection_uid")),
    )


def downgrade() -> None:
    op.drop_table("caldav_object")
