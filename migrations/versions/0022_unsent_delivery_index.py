"""a partial index on the deliveries not yet sent, in place of the index on every delivery's state (issue 19)

Each night reads the deliveries still to send (the digest, the count left undelivered per channel,
`nightly status`) as `state <> 'sent'`: an index on `state` cannot answer an inequality, so both engines
read every delivery ever made, a table that grows by each night's reminders times its channels (a year of a
100,000-patient clinic: millions of rows read every night for a few thousand). This index holds only the
unsent ones (pending or failed), by channel: a night reads what it sends. Queries reach it through
`state <> 'sent'` written as a literal (tracker/db/tables.py UNSENT_SQL), as SQLite only uses a partial
index when the query's terms imply its WHERE. No data changes.

Revision ID: 0022
Revises: 0021
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0022'
down_revision: Union[str, None] = '0021'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

UNSENT_SQL = "state <> 'sent'"


def upgrade() -> None:
    # if_(not_)exists: tests that rewind a database's stamp to an older revision replay this on it
    op.create_index('ix_reminder_delivery_unsent', 'reminder_delivery', ['channel', 'reminder_id'], unique=False,
                    if_not_exists=True, sqlite_where=sa.text(UNSENT_SQL), postgresql_where=sa.text(UNSENT_SQL))
    op.drop_index('ix_reminder_delivery_state', table_name='reminder_delivery', if_exists=True)


def downgrade() -> None:
    op.create_index('ix_reminder_delivery_state', 'reminder_delivery', ['state'], unique=False, if_not_exists=True)
    op.drop_index('ix_reminder_delivery_unsent', table_name='reminder_delivery', if_exists=True)
