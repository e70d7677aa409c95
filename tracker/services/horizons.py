"""How far ahead plans are kept (services/plan_sync.py: roll_forward), and the one-seek check of whether a
listing would extend any: a listing asks this before loading the planner, which it then almost never needs
(the nightly job keeps plans a year ahead)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, text

from tracker.core.durations import Duration
from tracker.db.tables import LIVE_COURSE_SQL, Course

# The plan is extended when it reaches less than 12 months ahead, to 13 months, so each course is
# re-planned about once a month rather than every night.
KEEP_AHEAD = Duration(12, "m")
EXTEND_TO = Duration(13, "m")


def plans_fall_short(session, today: dt.date, needed: dt.date) -> bool:
    """Whether `listings.refresh(clinic, needed)` would extend any plan: a live course planned through less
    than roll_forward's threshold (one seek of the partial index of migration 0015)."""
    threshold = max(KEEP_AHEAD.after(today), needed)
    return session.execute(select(Course.id).where(text(LIVE_COURSE_SQL), Course.planned_through < threshold)
                           .limit(1)).first() is not None
