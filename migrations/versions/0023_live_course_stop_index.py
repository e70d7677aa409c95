"""a partial index on the announced stop dates of live courses (issue 19)

Each night ends the live courses whose announced stop date has come (`roll_forward`): `status <> 'stopped'
AND stop_on <= today`. PostgreSQL found them through the partial index of live courses by plan horizon
(migration 0015) and read every live course's row for its stop date (88,902 rows at 100,000 patients, 15-30
ms of a typical night's server time, ten times that at 1,000,000). This index holds the live courses with an
announced stop, by date: the night seeks the few whose day has come. No data changes.

Revision ID: 0023
Revises: 0022
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0023'
down_revision: Union[str, None] = '0022'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# Only live courses with an announced stop: a few (a stop date on a query implies IS NOT NULL on both engines).
ANNOUNCED_STOP_SQL = "status != 'stopped' AND stop_on IS NOT NULL"


def upgrade() -> None:
    # if_not_exists: tests that rewind a database's stamp to an older revision replay this on it
    op.create_index('ix_course_live_stop_on', 'course', ['stop_on'], unique=False, if_not_exists=True,
                    sqlite_where=sa.text(ANNOUNCED_STOP_SQL),
                    postgresql_where=sa.text(ANNOUNCED_STOP_SQL))


def downgrade() -> None:
    op.drop_index('ix_course_live_stop_on', table_name='course', if_exists=True)
