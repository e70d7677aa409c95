"""one live alert per condition, one live course per patient and drug, held by the database (issue 15)

Until now these invariants were kept by check-then-act in the code, and concurrent commands broke them:
four `tracker alerts` at once doubled alerts, a double-clicked `therapy start` made several active courses.
This revision first settles the duplicates a database already holds, then adds two partial unique indexes
(SQLite and PostgreSQL both support them):

- `uq_course_live_patient_drug` on course(patient_id, drug) where status != 'stopped'.
  Duplicate live courses are the same therapy recorded more than once (nobody takes dupilumab twice), so
  the oldest one (lowest id) stays: it carries the history the clinic has been working from. Each newer
  duplicate is stopped as a recording error (stop_on = its own start, category `other`, the reason naming
  the course it duplicated); its planned items are cancelled (calendars drop them), its live alerts are
  resolved (its own calendar's conditions, e.g. overdue draws, also exist on the kept course), and
  its items already done stay as they are. Nothing is deleted.
- `uq_alert_live_condition` on alert(condition_key) where status is open, acknowledged or snoozed.
  Of several live alerts for one condition the oldest stays (its acknowledgement, note and snooze are
  the clinic's decisions so far); the newer ones are resolved with a reason naming the kept alert, so
  they never re-open by themselves (only automatic resolutions do).

Every change is written to the audit log as user `migration 0007`, with before and after.

Revision ID: 0007
Revises: 0006
"""
import datetime as dt
import json
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: Union[str, None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

USER = "migration 0007"
LIVE_ALERT_SQL = "status IN ('open', 'acknowledged', 'snoozed')"
LIVE_COURSE_SQL = "status != 'stopped'"
LIVE_ALERT = ("open", "acknowledged", "snoozed")

course = sa.table("course", sa.column("id", sa.Integer), sa.column("patient_id", sa.Integer),
                  sa.column("drug", sa.String), sa.column("status", sa.String), sa.column("start_on", sa.Date),
                  sa.column("stop_on", sa.Date), sa.column("stop_reason", sa.Text),
                  sa.column("stop_category", sa.String))
item = sa.table("item", sa.column("id", sa.Integer), sa.column("course_id", sa.Integer),
                sa.column("status", sa.String), sa.column("sequence", sa.Integer),
                sa.column("last_modified", sa.DateTime(timezone=True)))
course_pause = sa.table("course_pause", sa.column("id", sa.Integer), sa.column("course_id", sa.Integer),
                        sa.column("paused_on", sa.Date), sa.column("resumed_on", sa.Date))
alert = sa.table("alert", sa.column("id", sa.Integer), sa.column("condition_key", sa.String),
                 sa.column("patient_id", sa.Integer), sa.column("course_id", sa.Integer),
                 sa.column("status", sa.String), sa.column("resolved_on", sa.Date),
                 sa.column("resolution", sa.Text), sa.column("updated_at", sa.DateTime(timezone=True)))
patient = sa.table("patient", sa.column("id", sa.Integer), sa.column("mrn", sa.String))
audit_event = sa.table("audit_event", sa.column("at", sa.DateTime(timezone=True)), sa.column("user", sa.String),
                       sa.column("action", sa.String), sa.column("entity", sa.String),
                       sa.column("entity_id", sa.Integer), sa.column("mrn", sa.String),
                       sa.column("before", sa.Text), sa.column("after", sa.Text))


def _json(values: dict) -> str:
    return json.dumps(values, sort_keys=True, default=str)


def upgrade() -> None:
    conn = op.get_bind()
    now = dt.datetime.now(dt.timezone.utc)
    today = now.date()
    mrns = dict(conn.execute(sa.select(patient.c.id, patient.c.mrn)).all())
    events: list[dict] = []

    def audit(action, entity, entity_id, patient_id, before, after):
        events.append({"at": now, "user": USER, "action": action, "entity": entity, "entity_id": entity_id,
                       "mrn": mrns.get(patient_id), "before": _json(before), "after": _json(after)})

    def resolve(row, reason):
        conn.execute(alert.update().where(alert.c.id == row.id)
                     .values(status="resolved", resolved_on=today, resolution=reason, updated_at=now))
        audit("alert.resolve", "alert", row.id, row.patient_id, {"status": row.status},
              {"status": "resolved", "resolved_on": today.isoformat(), "resolution": reason})

    # 1. Duplicate live courses: the oldest stays, the newer ones are stopped as recording errors.
    live_courses = conn.execute(
        sa.select(course.c.id, course.c.patient_id, course.c.drug, course.c.status, course.c.start_on)
        .where(course.c.status != "stopped").order_by(course.c.patient_id, course.c.drug, course.c.id)).all()
    kept: dict[tuple, int] = {}
    for row in live_courses:
        first = kept.setdefault((row.patient_id, row.drug), row.id)
        if first == row.id:
            continue
        reason = f"duplicate of course #{first} (recorded twice); stopped by migration 0007"
        conn.execute(course.update().where(course.c.id == row.id).values(
            status="stopped", stop_on=row.start_on, stop_reason=reason, stop_category="other"))
        conn.execute(course_pause.update().where(course_pause.c.course_id == row.id,
                                                 course_pause.c.resumed_on.is_(None))
                     .values(resumed_on=course_pause.c.paused_on))
        conn.execute(item.update().where(item.c.course_id == row.id, item.c.status == "planned")
                     .values(status="cancelled", sequence=item.c.sequence + 1, last_modified=now))
        audit("therapy.stop", "course", row.id, row.patient_id, {"status": row.status},
              {"status": "stopped", "stop_on": row.start_on.isoformat(), "stop_reason": reason,
               "stop_category": "other", "duplicate_of": first})
        for live in conn.execute(sa.select(alert.c.id, alert.c.patient_id, alert.c.status)
                                 .where(alert.c.course_id == row.id, alert.c.status.in_(LIVE_ALERT))).all():
            resolve(live, f"course #{row.id} stopped as a duplicate of course #{first} by migration 0007")

    # 2. Duplicate live alerts: the oldest per condition stays, the newer ones are resolved by hand (for good).
    keys = conn.execute(sa.select(alert.c.condition_key).where(alert.c.status.in_(LIVE_ALERT))
                        .group_by(alert.c.condition_key).having(sa.func.count() > 1)).scalars().all()
    for key in keys:
        rows = conn.execute(sa.select(alert.c.id, alert.c.patient_id, alert.c.status)
                            .where(alert.c.condition_key == key, alert.c.status.in_(LIVE_ALERT))
                            .order_by(alert.c.id)).all()
        for row in rows[1:]:
            resolve(row, f"duplicate of alert #{rows[0].id} (raised twice); resolved by migration 0007")

    if events:
        conn.execute(audit_event.insert(), events)
    # IF NOT EXISTS: a rerun (after a kill, or a database stamped back by hand) completes instead of failing.
    op.create_index("uq_course_live_patient_drug", "course", ["patient_id", "drug"], unique=True, if_not_exists=True,
                    sqlite_where=sa.text(LIVE_COURSE_SQL), postgresql_where=sa.text(LIVE_COURSE_SQL))
    op.create_index("uq_alert_live_condition", "alert", ["condition_key"], unique=True, if_not_exists=True,
                    sqlite_where=sa.text(LIVE_ALERT_SQL), postgresql_where=sa.text(LIVE_ALERT_SQL))


def downgrade() -> None:
    # The duplicates settled by the upgrade stay settled: they were errors, not data to bring back.
    op.drop_index("uq_alert_live_condition", table_name="alert", if_exists=True)
    op.drop_index("uq_course_live_patient_drug", table_name="course", if_exists=True)
