"""`tracker report quality` and the web view's Quality page: load the rows the report reads, set-shaped
(one query for the period's draws and checkpoints with the weeks ahead, one for its alerts, one for their
first acknowledgements), and hand them to the pure core (tracker/core/quality.py). Reads only."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from sqlalchemy import and_, case, func, or_, select

from tracker.core.inputs import date_range
from tracker.core.quality import (
    CHECKPOINT_KIND,
    DRAW_KINDS,
    FORECAST_WEEKS,
    QualityAlert,
    QualityItem,
    QualityReport,
    Windows,
    quality_report,
)
from tracker.core.worklist import ENDED_UNDONE_NOTE
from tracker.db.rows import plain_rows
from tracker.db.tables import Alert, AuditEvent, Course, Item, codes
from tracker.errors import InputError
from tracker.services.context import Clinic

ACK_ACTION = "alert.ack"  # the audit action of an acknowledgement (services/alerts.py: acknowledge)
AUTO = "auto: "  # an automatic resolution's prefix (services/review_apply.py AUTO)


def check_period(start: dt.date, end: dt.date, today: dt.date) -> None:
    """A period must end by today: figures are as of its last day, and a later day has not happened yet."""
    date_range(start, end)
    if end > today:
        raise InputError("to", end.isoformat(), f"is after today ({today.isoformat()})")


def quality(clinic: Clinic, start: dt.date, end: dt.date, drug: str | None = None) -> QualityReport:
    """The monitoring-quality report for items due and alerts raised from `start` to `end` (inclusive)."""
    check_period(start, end, clinic.today)
    if drug is not None:
        drug = clinic.library.get(drug).id  # an alias or brand names its protocol; an unknown name is refused
    alerts = clinic.settings.alerts
    windows = Windows(alerts.overdue_grace_days, alerts.checkpoint_window_days, alerts.ack_within_days)
    items = load_items(clinic.session, start, end + dt.timedelta(weeks=FORECAST_WEEKS), drug)
    period = [i for i in items if i.due <= end]
    ahead = [i for i in items if i.due > end]
    return quality_report(period, load_alerts(clinic, start, end, drug), start, end, windows, drug=drug,
                          ahead=ahead)


def load_items(session, start: dt.date, last: dt.date, drug: str | None) -> list[QualityItem]:
    """The draws and checkpoints due from `start` to `last` that were not cancelled, read grouped: one row per
    set of identical items with their count (a year of a 100,000-patient clinic is ~330,000 items but ~35,000
    such rows). A course's stop date is read only where it falls before the item's due date (the core leaves
    those items out; an earlier stop cannot). One range read of the index on item (kind, due, ...)."""
    stopped = case((and_(Course.status == "stopped", Course.stop_on < Item.due), Course.stop_on)).label("stopped_on")
    columns = (Item.kind, Item.status, Item.due, Item.done_on, Item.drug, Item.merged_drugs, stopped)
    query = (select(*columns, func.count().label("n"))
             .join(Course, Course.id == Item.course_id)
             .where(Item.kind.in_((*DRAW_KINDS, CHECKPOINT_KIND)), Item.due >= start, Item.due <= last,
                    Item.status.in_(("planned", "done")))
             .group_by(*columns))
    if drug is not None:
        # Narrows only (a merged draw names its other drugs in text); the core matches the drug exactly.
        query = query.where(or_(Item.drug == drug, Item.merged_drugs.contains(drug)))
    # The tasks a stop cancelled undone are missed ones (core: quality.counts); read apart, so the main read
    # stays on the covering index (the note is not in it; only cancelled rows are looked up).
    undone = (select(Item.kind, Item.due, Item.drug, Item.merged_drugs, func.count().label("n"))
              .where(Item.kind.in_((*DRAW_KINDS, CHECKPOINT_KIND)), Item.due >= start, Item.due <= last,
                     Item.status == "cancelled", Item.done_note == ENDED_UNDONE_NOTE)
              .group_by(Item.kind, Item.due, Item.drug, Item.merged_drugs))
    if drug is not None:
        undone = undone.where(or_(Item.drug == drug, Item.merged_drugs.contains(drug)))

    def drugs(row) -> tuple:
        return (row.drug, *codes(row.merged_drugs)) if row.merged_drugs else (row.drug,)

    return ([QualityItem(row.kind, row.status, row.due, row.done_on, drugs(row), row.stopped_on, row.n)
             for row in plain_rows(session, query)]
            + [QualityItem(row.kind, "cancelled", row.due, None, drugs(row), None, row.n, ended_undone=True)
               for row in plain_rows(session, undone)])


def load_alerts(clinic: Clinic, start: dt.date, end: dt.date, drug: str | None) -> list[QualityAlert]:
    """The alerts raised in the period, each with the day a person first answered it (its first
    acknowledgement in the audit log, or its resolution by hand) in the clinic's time zone."""
    session = clinic.session
    raised = and_(Alert.raised_on >= start, Alert.raised_on <= end)
    if drug is not None:
        raised = and_(raised, Alert.drug == drug)
    acks = (select(AuditEvent.entity_id.label("alert_id"), func.min(AuditEvent.at).label("first_ack"))
            .where(AuditEvent.action == ACK_ACTION, AuditEvent.entity == "alert",
                   AuditEvent.entity_id.in_(select(Alert.id).where(raised)))
            .group_by(AuditEvent.entity_id))
    first_ack = {row.alert_id: row.first_ack for row in plain_rows(session, acks)}
    zone = zoneinfo.ZoneInfo(clinic.settings.timezone or _local_zone())
    rows = plain_rows(session, select(Alert.id, Alert.drug, Alert.raised_on, Alert.status, Alert.resolved_on,
                                      Alert.resolution).where(raised))
    out = []
    for row in rows:
        answered = _local_day(first_ack.get(row.id), zone)
        auto_resolved = None
        if row.status == "resolved" and row.resolved_on is not None:
            if (row.resolution or "").startswith(AUTO):
                auto_resolved = row.resolved_on
            elif answered is None or row.resolved_on < answered:
                answered = row.resolved_on  # resolved by hand: a person answered it
        out.append(QualityAlert(row.drug, row.raised_on, answered, auto_resolved))
    return out


def _local_zone() -> str:
    from tracker.dates import local_zone

    return local_zone()


def _local_day(at: dt.datetime | None, zone) -> dt.date | None:
    """An audit timestamp (UTC; SQLite gives it back without its zone) as the clinic's date."""
    if at is None:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.timezone.utc)
    return at.astimezone(zone).date()


def report_json(report: QualityReport) -> dict:
    """The report's stable JSON shape (`--json`, and what the HTML templates read): dates as ISO text,
    shares as fractions (None when nothing was decided), the windows used with the clinic defaults named."""
    import dataclasses

    from tracker.core.settings import CLINIC_DEFAULT_KEYS

    def plain(value):
        if isinstance(value, dt.date):
            return value.isoformat()
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    windows = {"overdue_grace_days": report.windows.grace_days,
               "checkpoint_window_days": report.windows.checkpoint_days,
               "ack_within_days": report.windows.ack_days}
    return {
        "from": report.start.isoformat(),
        "to": report.end.isoformat(),
        "drug": report.drug,
        "windows": {**windows, "clinic_default": [k for k in windows if f"alerts.{k}" in CLINIC_DEFAULT_KEYS]},
        "clinic": plain(dataclasses.asdict(report.clinic)),
        "drugs": [plain(dataclasses.asdict(g)) for g in report.drugs],
        "forecast": [plain(dataclasses.asdict(w)) for w in report.forecast],
    }
