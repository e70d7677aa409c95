"""`tracker export ics`: one patient's (or the whole clinic's) calendar, with the site's export settings."""

from __future__ import annotations

import datetime as dt

from tracker.services.context import Clinic


def export_ics(clinic: Clinic, *, mrn: str | None, audience: str, start: dt.date | None = None,
               end: dt.date | None = None, alarm: bool | None = None, alarm_lead_hours: float | None = None):
    """The calendar to write (`CalendarText`: `.text`, `.events`, `.encode()`). Like `tracker calendar --to`, plans that do not reach `end` yet are
    extended first (with the site's merge window)."""
    from tracker.dates import utcnow
    from tracker.exporters.collect import calendar_text
    from tracker.services.listings import refresh
    from tracker.services.patients import get_patient

    patient = get_patient(clinic.session, mrn) if mrn else None
    if end:
        refresh(clinic, end)
    return calendar_text(clinic.session, clinic.library, clinic.settings.export, patient=patient,
                         audience=audience, stamp=utcnow(), start=start, end=end, alarm=alarm,
                         alarm_lead_hours=alarm_lead_hours)
