"""Alerts: evaluation entry points, and the lifecycle by hand (acknowledge, snooze, resolve) and views.

The engine itself is tracker/services/evaluate.py (whose charts to review; what-ifs) over the core's
`review` (tracker/core/review.py), applied by tracker/services/review_apply.py.
"""

from __future__ import annotations

import datetime as dt

from sqlmodel import Session, select

from tracker.core.alerts import ALL_KINDS
from tracker.core.protocol import ProtocolLibrary
from tracker.core.settings import Settings
from tracker.core.terms import SEVERITY_ORDER
from tracker.dates import utcnow
from tracker.db.tables import Alert, AuditEvent, Item, Patient
from tracker.errors import ConflictError, InputError, NotFoundError
from tracker.services import audit
from tracker.services.context import Clinic
from tracker.services.evaluate import SYSTEM_USER, EvaluationSummary, evaluate
from tracker.services.review_apply import AUTO, awaits_acknowledgement, resolve_alert
from tracker.services.row_shapes import CLEARED_STATE, alert_row

MAX_SNOOZE_DAYS = 30
LIVE = ("open", "acknowledged", "snoozed")



def evaluate_clinic(session: Session, library: ProtocolLibrary, as_of: dt.date, settings: Settings | None = None,
                    *, patient_ids=None, kinds=ALL_KINDS, user: str = SYSTEM_USER, incremental: bool = False,
                    write: bool = True, review_worker=None, worker_min_patients: int | None = None,
                    forked_min_charts: int | None = None) -> EvaluationSummary:
    """Review the clinic (or `patient_ids`) as of `as_of` and apply the alerts of `kinds` (`review_worker`,
    `worker_min_patients`, `forked_min_charts`: see `evaluate`)."""
    settings = settings or Settings()
    return evaluate(session, library, as_of, settings.alerts, patient_ids=patient_ids, kinds=kinds, user=user,
                    write=write, incremental=incremental, schedules_dir=settings.schedules_dir,
                    review_worker=review_worker, worker_min_patients=worker_min_patients,
                    forked_min_charts=forked_min_charts)


# --------------------------------------------------------------------------------------------------------
# Hooks: evaluation as data lands


def after_result(session: Session, library: ProtocolLibrary, patient: Patient, today: dt.date, user: str,
                 settings: Settings | None = None) -> EvaluationSummary:
    """A result just landed: the patient's review on the rules a result moves now (its thresholds and
    gates; the overdue alerts of items it completed clear, as the review no longer asks for them)."""
    return evaluate_clinic(session, library, today, settings, patient_ids=[patient.id],
                           kinds=("threshold", "gate", "overdue"), user=user)


def after_start(session: Session, library: ProtocolLibrary, patient: Patient, today: dt.date,
                user: str, settings: Settings | None = None) -> EvaluationSummary:
    """A course just started: an overridden gate and results already on record (TPMT low) raise now."""
    return evaluate_clinic(session, library, today, settings, patient_ids=[patient.id], kinds=("threshold", "gate"),
                           user=user)


# --------------------------------------------------------------------------------------------------------
# Lifecycle by hand


def get_alert(session: Session, alert_id: int) -> Alert:
    row = session.get(Alert, alert_id)
    if row is None:
        raise NotFoundError("alert", alert_id)
    return row


def _mrn(session: Session, row: Alert) -> str | None:
    return session.exec(select(Patient.mrn).where(Patient.id == row.patient_id)).first()


def _required(name: str, text: str | None) -> str:
    """A note or reason as every free text is kept: not empty, no invisible or control characters, capped."""
    from tracker.core.inputs import clean_text

    return clean_text(text, name)


def acknowledge(clinic: Clinic, alert_id: int, note: str) -> Alert:
    session, user = clinic.session, clinic.user
    row = get_alert(session, alert_id)
    note = _required("note", note)
    if row.status == "resolved":
        raise ConflictError(f"alert: {alert_id}: already resolved on {row.resolved_on}")
    before = audit.snapshot(row)
    if row.cleared_on is not None:
        # Cleared and now seen by a person: it resolves, as automatic (the condition coming back re-opens it).
        row.status, row.note, row.snoozed_until = "resolved", note, None
        row.resolved_on = clinic.today
        row.resolution = f"{AUTO}condition cleared on {row.cleared_on}; acknowledged by {user}: {note}"
    else:
        row.status, row.note, row.snoozed_until = "acknowledged", note, None
    row.updated_at = utcnow()
    session.add(row)
    audit.record(session, user, "alert.ack", "alert", row.id, _mrn(session, row), before, audit.snapshot(row))
    return row


def snooze(clinic: Clinic, alert_id: int, until: dt.date, reason: str) -> Alert:
    session, user, today = clinic.session, clinic.user, clinic.today
    row = get_alert(session, alert_id)
    reason = _required("reason", reason)
    if row.status == "resolved":
        raise ConflictError(f"alert: {alert_id}: already resolved on {row.resolved_on}")
    if until <= today:
        raise InputError("until", until.isoformat(), f"must be after today ({today})")
    if until > today + dt.timedelta(days=MAX_SNOOZE_DAYS):
        raise InputError("until", until.isoformat(),
                         f"an alert can be snoozed for at most {MAX_SNOOZE_DAYS} days "
                         f"(until {today + dt.timedelta(days=MAX_SNOOZE_DAYS)})")
    before = audit.snapshot(row)
    row.status, row.snoozed_until, row.note, row.updated_at = "snoozed", until, reason, utcnow()
    session.add(row)
    audit.record(session, user, "alert.snooze", "alert", row.id, _mrn(session, row), before, audit.snapshot(row))
    return row


def resolve(clinic: Clinic, alert_id: int, reason: str) -> Alert:
    session, user, today = clinic.session, clinic.user, clinic.today
    row = get_alert(session, alert_id)
    reason = _required("reason", reason)
    if row.status == "resolved":
        raise ConflictError(f"alert: {alert_id}: already resolved on {row.resolved_on}")
    resolve_alert(session, row, today, reason, user, _mrn(session, row))
    return row


# --------------------------------------------------------------------------------------------------------
# Views


def list_alerts(session: Session, include_all: bool = False, mrn: str | None = None,
                clinician: str | None = None) -> list[dict]:
    query = select(Alert, Patient.mrn).join(Patient, Patient.id == Alert.patient_id)
    if not include_all:
        query = query.where(Alert.status == "open")
    if clinician is not None:
        query = query.where(Patient.clinician == clinician)
    if mrn:
        from tracker.core.inputs import encodable

        if not encodable(mrn):  # undecodable command-line bytes: no patient has that MRN
            return []
        query = query.where(Patient.mrn == mrn)
    rows = [alert_row(a, m) for a, m in session.exec(query).all()]
    return sorted(rows, key=lambda r: (r["status"] == "resolved", SEVERITY_ORDER.get(r["severity"], 3),
                                       r["mrn"] or "", r["raised_on"], r["id"]))


def alerts_as_of(session: Session, library: ProtocolLibrary, as_of: dt.date, settings: Settings | None = None,
                 mrn: str | None = None, include_all: bool = False) -> list[dict]:
    """What-if: the alerts that would be open on `as_of`, computed without writing anything.

    Live alerts whose condition would still hold are shown with their rule's text on `as_of` (day counts as
    of that day, as for a would-be alert), checkpoint_failed decisions as they stand (a snooze ending by
    then as open); a condition that would be raised has no id and the status `would
    open` (`would re-open` when it had cleared by itself); a condition resolved by hand stays resolved."""
    from tracker.core.alerts import DERIVED_KINDS

    patient = None
    if mrn:
        from tracker.services.patients import get_patient

        patient = get_patient(session, mrn)
    from tracker.db.tables import codes
    from tracker.services.coded_rows import codes_of

    summary = evaluate_clinic(session, library, as_of, settings,
                              patient_ids=[patient.id] if patient else None, write=False)
    coded = codes_of(library)
    wanted = {c.condition_key: c for c in summary.would_open}
    query = (select(Alert, Patient.mrn).join(Patient, Patient.id == Alert.patient_id)
             .where(Alert.status.in_(LIVE)))
    if patient is not None:
        query = query.where(Alert.patient_id == patient.id)
    rows, live_keys = [], set()
    live = session.exec(query).all()
    settled = _settled_failures(session, summary.would_clear, [row for row, _ in live], wanted)
    resolving = _waiting_yet_resolved(session, [row for row, _ in live if row.kind in DERIVED_KINDS
                                                and row.condition_key not in wanted and awaits_acknowledgement(row)],
                                      summary.would_open, as_of)
    for row, row_mrn in live:
        live_keys.add(row.condition_key)
        cleared = row.kind in DERIVED_KINDS and row.condition_key not in wanted
        if cleared and (not awaits_acknowledgement(row) or row.id in resolving):
            continue  # would resolve by then
        if row.id in settled:
            continue  # a later checkpoint outcome would settle it
        shown = alert_row(row, row_mrn)
        if not cleared and row.kind in DERIVED_KINDS and row.condition_key in wanted:
            # Its rule's text on `as_of`, as a would-be alert's: the day counts ("due ..., N days", "is N days
            # overdue", "on day N") are those of that day, not of the day it was raised.
            cand = wanted[row.condition_key]
            shown.update(message=cand.message, value=cand.value, limit=cand.limit_text)
        if row.status == "snoozed" and row.snoozed_until is not None and row.snoozed_until <= as_of:
            shown["status"] = "open"
        if cleared:  # a critical alert nobody acknowledged waits for a person
            shown["cleared_on"] = shown["cleared_on"] or as_of.isoformat()
            shown["state"] = CLEARED_STATE
        elif row.cleared_on is not None:  # the condition would be back
            shown["cleared_on"], shown["state"] = None, shown["status"]
        rows.append(shown)
    unseen = [k for k in wanted if k not in live_keys]
    newest: dict[str, Alert] = {}
    for chunk in (unseen[i:i + 500] for i in range(0, len(unseen), 500)):
        for row in session.exec(select(Alert).where(Alert.condition_key.in_(chunk))).all():
            if row.condition_key not in newest or row.id > newest[row.condition_key].id:
                newest[row.condition_key] = row
    ids = {wanted[k].patient_id for k in unseen}
    mrns = dict(session.exec(select(Patient.id, Patient.mrn).where(Patient.id.in_(ids))).all()) if ids else {}
    for key in unseen:
        cand, old = wanted[key], newest.get(key)
        if old is not None and not (old.resolution or "").startswith(AUTO):
            continue  # resolved by hand: that decision stands
        rows.append({"id": None, "mrn": mrns.get(cand.patient_id), "drug": cand.drug, "kind": cand.kind,
                     "severity": cand.severity, "status": "would re-open" if old is not None else "would open",
                     "raised_on": as_of.isoformat(), "message": cand.message,
                     "suggestions": list(cand.suggestions), "sources": list(cand.sources), "value": cand.value,
                     "limit": cand.limit_text, "note": None, "snoozed_until": None, "reopened_on": None,
                     "resolved_on": None, "resolution": None, "cleared_on": None,
                     "state": "would re-open" if old is not None else "would open", "condition_key": key, "course_id": cand.course_id,
                     "item_id": cand.item_id if (cand.item_id or 0) > 0 else None, "result_id": cand.result_id})
        if (cand.item_id or 0) < 0:  # an item the pass would book: its tests from here, as none is on record
            rows[-1]["codes"] = coded(codes(summary.would_book[cand.item_id].tests), [cand.drug])
    if not include_all:
        rows = [r for r in rows if r["status"] in ("open", "would open", "would re-open")]
    return sorted(rows, key=lambda r: (SEVERITY_ORDER.get(r["severity"], 3), r["mrn"] or "", r["raised_on"],
                                       r["id"] or 0, r["condition_key"]))


def _waiting_yet_resolved(session: Session, waiting, candidates, as_of: dt.date) -> set[int]:
    """Ids of `waiting` (critical alerts whose condition is gone, which a pass leaves awaiting
    acknowledgement) that a pass on `as_of` resolves instead, as review_apply._reconcile does: their course has
    ended by then (the pass's roll forward marks it stopped first), or a newer result of their test alerts on
    the same course (`_superseded`)."""
    from tracker.core.worklist import course_is_live
    from tracker.db.tables import Course
    from tracker.services.review_apply import _superseded

    courses = sorted({row.course_id for row in waiting if row.course_id})
    ended = {course_id for course_id, status, stop_on in session.exec(
        select(Course.id, Course.status, Course.stop_on).where(Course.id.in_(courses))).all()
        if not course_is_live(status, stop_on, as_of)} if courses else set()
    return {row.id for row in waiting if row.course_id in ended} | _superseded(session, waiting, candidates)


def _settled_failures(session: Session, cleared, live, wanted) -> set[int]:
    """Ids of the live checkpoint_failed alerts the review's FailuresCleared would resolve (as
    review_apply._clear_failures does when the review is applied)."""
    failed = [row for row in live if row.kind == "checkpoint_failed" and row.condition_key not in wanted]
    if not cleared or not failed:
        return set()
    weeks = dict(session.exec(select(Item.id, Item.week).where(Item.id.in_([r.item_id for r in failed
                                                                             if r.item_id]))).all())
    return {row.id for row in failed for c in cleared
            if c.settles(row.course_id, row.item_id, weeks.get(row.item_id))}


def show_alert(session: Session, alert_id: int) -> dict:
    row = get_alert(session, alert_id)
    out = alert_row(row, _mrn(session, row))
    events = session.exec(select(AuditEvent).where(AuditEvent.entity == "alert", AuditEvent.entity_id == row.id)
                          .order_by(AuditEvent.id)).all()
    out["history"] = [{"at": e.at.isoformat(), "user": e.user, "action": e.action} for e in events]
    return out
