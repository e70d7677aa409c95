"""alert identity from the rule's semantic id, not its display text (issue 12)

Threshold alert keys were `threshold:course<N>:<Threshold.describe()>:result<M>`: display text, so adding
`unit:` to a protocol line or rewording it resolved every live alert of the rule and raised new ones. They
become `threshold:course<N>:<rule id>:result<M>` (tracker.core.protocol.threshold_rule_id: test,
comparison, limit and whether the rule needs confirming). Gate keys named the missing test with a count of
results on record ("pregnancy (2 results needed, 1 on record)"), which changed as results arrived; they
keep the test code only. Every alert is rewritten, live or resolved, so no open, snoozed or hand-resolved
alert changes state on upgrade. The parsing below is frozen here on purpose: a migration must keep giving
the same answer whatever later code does.

Revision ID: 0002
Revises: 0001
"""
import re
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: Union[str, None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_THRESHOLD = re.compile(r"^threshold:course(\d+):(.*):result(\d+)$")
_GATE = re.compile(r"^gate:course(\d+):(\S+) \(.*\)$")
_NUMBER = r"(-?[0-9.]+(?:e[+-]?\d+)?)"
_FORMS = (  # (pattern on the old condition text, new rule id)
    (re.compile(rf"^(\S+) > {_NUMBER} x ULN$"), "{0}>{1}xULN"),
    (re.compile(rf"^(\S+) > {_NUMBER}% above baseline$"), "{0}+{1}%"),
    (re.compile(rf"^(\S+) falls > {_NUMBER}% below baseline$"), "{0}-{1}%"),
    (re.compile(rf"^(\S+) < {_NUMBER}(?: .*)?$"), "{0}<{1}"),
    (re.compile(rf"^(\S+) > {_NUMBER}(?: .*)?$"), "{0}>{1}"),
)


def rule_id(condition: str) -> str | None:
    confirmed = condition.endswith(" (confirmed on repeat)")
    if confirmed:
        condition = condition[: -len(" (confirmed on repeat)")]
    text = None
    for pattern, form in _FORMS:
        match = pattern.match(condition)
        if match:
            text = form.format(match.group(1), f"{float(match.group(2)):g}")
            break
    if text is None:
        match = re.match(r"^(\S+) is (.+)$", condition)
        if not match:
            return None
        text = f"{match.group(1)}={'|'.join(sorted(match.group(2).split(' or ')))}"
    return f"{text}!confirmed" if confirmed else text


def new_key(key: str) -> str | None:
    match = _THRESHOLD.match(key)
    if match:
        rule = rule_id(match.group(2))
        return f"threshold:course{match.group(1)}:{rule}:result{match.group(3)}" if rule else None
    match = _GATE.match(key)
    if match:
        return f"gate:course{match.group(1)}:{match.group(2)}"
    return None


def upgrade() -> None:
    conn = op.get_bind()
    alert = sa.table("alert", sa.column("id", sa.Integer), sa.column("condition_key", sa.String))
    rows = conn.execute(sa.select(alert.c.id, alert.c.condition_key).where(
        sa.or_(alert.c.condition_key.like("threshold:%"), alert.c.condition_key.like("gate:%")))).all()
    updates = [{"alert_id": alert_id, "key": new} for alert_id, key in rows
               if (new := new_key(key)) is not None and new != key]
    if updates:
        conn.execute(alert.update().where(alert.c.id == sa.bindparam("alert_id"))
                     .values(condition_key=sa.bindparam("key")), updates)


def downgrade() -> None:
    # The display text cannot be recovered from a rule id; keys stay in the new form (they are only compared
    # with keys the same code produces).
    pass
