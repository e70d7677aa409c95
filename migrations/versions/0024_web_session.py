"""the web view's sessions kept in the database (signing out ends them)

A new table `web_session`: one row per sign-in to the staff web view, holding the SHA-256 of the random
session id its cookie carries, the account, when it began and when it ended (signed out). A page is served
only for a session whose row has not ended, so a copy of the cookie kept from before signing out is refused
(the cookie alone, signed but stateless, stayed good until its idle timeout). No existing table changes;
cookies from before this migration carry no session id, so their users sign in again.

Revision ID: 0024
Revises: 0023
"""
from typing import Sequence, Union

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0024'
down_revision: Union[str, None] = '0023'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('web_session',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sid_hash', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('ended_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['user_id'], ['staff_user.id'], name=op.f('fk_web_session_user_id_staff_user')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_web_session')),
    sa.UniqueConstraint('sid_hash', name=op.f('uq_web_session_sid_hash')),
    if_not_exists=True,  # tests that rewind a database's stamp to an older revision replay this on it
    )
    op.create_index(op.f('ix_web_session_user_id'), 'web_session', ['user_id'], unique=False, if_not_exists=True)


def downgrade() -> None:
    op.drop_index(op.f('ix_web_session_user_id'), table_name='web_session', if_exists=True)
    op.drop_table('web_session', if_exists=True)
