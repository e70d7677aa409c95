"""one problem, one alert; critical alerts wait for acknowledgement (issue 14 items 1 and 5)

A course's overdue baseline set was one alert per test (`overdue:item<N>`); it becomes one alert per course,
`overdue:course<C>:baseline`, listing the missing tests. Existing alerts about baseline items are rewritten
to the course key, live or resolved, so a set resolved by hand stays resolved. Where a course had several
live ones, the oldest live one stays (its status, notes and history kept) and the others are resolved
automatically, naming the alert they were merged into. Threshold keys keep their format (the leading rule's
id); an alert of a rule that now only appears inside another rule's alert resolves itself at the next
evaluation.

`alert.cleared_on`: a critical alert whose condition cleared before anyone acknowledged it stays open,
"cleared, awaiting acknowledgement", from that day. Existing rows get NULL (none has cleared that way yet).

Revision ID: 0008
Revises: 0006
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: Union[str, None] = '0007'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

OLD_PREFIX = "overdue:item"
LIVE = ("open", "acknowledged", "snoozed")


def upgrade() -> None:
    with op.batch_alter_table('alert', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cleared_on', sa.Date(), nullable=True))
    conn = op.get_bind()
    alert = sa.table("alert", sa.column("id", sa.Integer), sa.column("condition_key", sa.String),
                     sa.column("course_id", sa.Integer), sa.column("item_id", sa.Integer),
                     sa.column("status", sa.String), sa.column("resolved_on", sa.Date),
                     sa.column("resolution", sa.Text), sa.column("raised_on", sa.Date))
    item = sa.table("item", sa.column("id", sa.Integer), sa.column("kind", sa.String))
    rows = conn.execute(
        sa.select(alert.c.id, alert.c.course_id, alert.c.status, alert.c.raised_on)
        .join(item, item.c.id == alert.c.item_id)
        .where(alert.c.condition_key.like(OLD_PREFIX + "%"), item.c.kind == "baseline",
               alert.c.course_id.is_not(None))
        .order_by(alert.c.id)).all()
    if not rows:
        return
    kept: dict[int, int] = {}
    merged = []
    for r in rows:
        if r.status not in LIVE:
            continue
        if r.course_id not in kept:
            kept[r.course_id] = r.id
        else:
            merged.append({"alert_id": r.id, "on": r.raised_on,
                           "why": f"auto: merged into alert #{kept[r.course_id]} (one alert per course's "
                                  "overdue baseline set)"})
    # The merged ones are resolved first: one live alert per key is held by an index (0007).
    if merged:
        conn.execute(alert.update().where(alert.c.id == sa.bindparam("alert_id"))
                     .values(status="resolved", resolved_on=sa.bindparam("on"), resolution=sa.bindparam("why")),
                     merged)
    conn.execute(alert.update().where(alert.c.id == sa.bindparam("alert_id"))
                 .values(condition_key=sa.bindparam("key")),
                 [{"alert_id": r.id, "key": f"overdue:course{r.course_id}:baseline"} for r in rows])


def downgrade() -> None:
    conn = op.get_bind()
    alert = sa.table("alert", sa.column("id", sa.Integer), sa.column("condition_key", sa.String),
                     sa.column("item_id", sa.Integer))
    rows = conn.execute(sa.select(alert.c.id, alert.c.item_id).where(
        alert.c.condition_key.like("overdue:course%:baseline"))).all()
    if rows:
        conn.execute(alert.update().where(alert.c.id == sa.bindparam("alert_id"))
                     .values(condition_key=sa.bindparam("key")),
                     [{"alert_id": r.id, "key": f"{OLD_PREFIX}{r.item_id}"} for r in rows])
    with op.batch_alter_table('alert', schema=None) as batch_op:
        batch_op.drop_column('cleared_on')
