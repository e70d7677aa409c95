"""an unevaluable checkpoint has its own condition key (issue 14)

A checkpoint that could not be judged (a measure or the baseline missing) shared the key
`checkpoint_missed:item<N>` with a checkpoint that had no assessment at all. It becomes
`checkpoint_unevaluable:item<N>` (kind stays `checkpoint_missed`), so the two conditions are told apart
and a missed checkpoint that gets an incomplete assessment is a new problem, not the old one. Only the
unevaluable alerts are rewritten: they are the ones whose message said "cannot be judged" (the wording the
code used until now; frozen here on purpose). Live or resolved, every alert keeps its state.

Revision ID: 0006
Revises: 0002
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: Union[str, None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

OLD_PREFIX = "checkpoint_missed:item"
NEW_PREFIX = "checkpoint_unevaluable:item"
UNEVALUABLE_WORDS = "% cannot be judged on the %"


def upgrade() -> None:
    conn = op.get_bind()
    alert = sa.table("alert", sa.column("id", sa.Integer), sa.column("condition_key", sa.String),
                     sa.column("message", sa.Text))
    rows = conn.execute(sa.select(alert.c.id, alert.c.condition_key).where(
        alert.c.condition_key.like(OLD_PREFIX + "%"), alert.c.message.like(UNEVALUABLE_WORDS))).all()
    updates = [{"alert_id": alert_id, "key": NEW_PREFIX + key[len(OLD_PREFIX):]} for alert_id, key in rows]
    if updates:
        conn.execute(alert.update().where(alert.c.id == sa.bindparam("alert_id"))
                     .values(condition_key=sa.bindparam("key")), updates)


def downgrade() -> None:
    conn = op.get_bind()
    alert = sa.table("alert", sa.column("id", sa.Integer), sa.column("condition_key", sa.String))
    rows = conn.execute(sa.select(alert.c.id, alert.c.condition_key).where(
        alert.c.condition_key.like(NEW_PREFIX + "%"))).all()
    updates = [{"alert_id": alert_id, "key": OLD_PREFIX + key[len(NEW_PREFIX):]} for alert_id, key in rows]
    if updates:
        conn.execute(alert.update().where(alert.c.id == sa.bindparam("alert_id"))
                     .values(condition_key=sa.bindparam("key")), updates)
