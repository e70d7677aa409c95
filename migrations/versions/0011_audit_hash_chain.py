"""the audit log as a hash chain (issue 15 item 6)

audit_event gains `seq` (the row's position in the chain, unique), `prev_hash` and `hash`
(tracker/core/audit_chain.py: SHA-256 over the previous row's hash and the row's fields), and a one-row
table `audit_head` keeps where the chain ends. Existing rows are chained in id order, the order they were
written in. From now on tracker appends each row under the head's lock (services/audit.py) and
`tracker audit verify` walks the chain.

Revision ID: 0011
Revises: 0010
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

from tracker.core.audit_chain import HASHED_FIELDS, Head

revision: str = '0011'
down_revision: Union[str, None] = '0010'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

BATCH = 5000


def upgrade() -> None:
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seq', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('prev_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('hash', sa.String(length=64), nullable=True))
        batch_op.create_index('uq_audit_event_seq', ['seq'], unique=True)
    head_table = op.create_table(
        'audit_head',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('hash', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_head')),
    )
    conn = op.get_bind()
    audit_event = sa.table("audit_event", sa.column("id", sa.Integer), sa.column("at", sa.DateTime(timezone=True)),
                           *(sa.column(name) for name in HASHED_FIELDS[1:]), sa.column("seq", sa.Integer),
                           sa.column("prev_hash", sa.String), sa.column("hash", sa.String))
    head = Head()
    last_id = 0
    while True:  # in batches by id: a large log is never held in memory whole
        fields = [audit_event.c[name] for name in HASHED_FIELDS]
        rows = conn.execute(sa.select(audit_event.c.id, *fields).where(audit_event.c.id > last_id)
                            .order_by(audit_event.c.id).limit(BATCH)).mappings().all()
        if not rows:
            break
        links = []
        for row in rows:
            seq, prev_hash, hash_ = head.link(dict(row))
            links.append({"row_id": row["id"], "seq": seq, "prev_hash": prev_hash, "hash": hash_})
            head = Head(seq, hash_)
        conn.execute(audit_event.update().where(audit_event.c.id == sa.bindparam("row_id"))
                     .values(seq=sa.bindparam("seq"), prev_hash=sa.bindparam("prev_hash"), hash=sa.bindparam("hash")),
                     links)
        last_id = rows[-1]["id"]
    op.bulk_insert(head_table, [{"id": 1, "seq": head.seq, "hash": head.hash}])


def downgrade() -> None:
    op.drop_table('audit_head')
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.drop_index('uq_audit_event_seq')
        batch_op.drop_column('hash')
        batch_op.drop_column('prev_hash')
        batch_op.drop_column('seq')
