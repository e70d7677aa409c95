"""Withdrawing a lab result from the record (`tracker result withdraw`): the laboratory retracted it (entered in
error, sent for the wrong patient), so nothing may read it again.

The result's row moves to `withdrawn_result` (its values, who withdrew it, when and why) and leaves
`lab_result`: every clinical read (charts, gates, the nightly's scan, worklists) sees the record without it. The
source ids it carried (its own and those its corrections replaced) move to `withdrawn_lab_source`, so that its
message imported again is recognised, not stored again. Its live alerts are resolved by the withdrawal ("result
#N withdrawn: REASON", by whoever withdrew it): their condition was this result, which nothing reads again.
Alerts that named it keep their text but no longer point at it (the audit row lists them). The items it
completed are open again unless the patient's remaining results complete them (core/panels.py
`undone_by_withdrawal` says which): a baseline item as its gate reads the remaining results; a lab draw as the
remaining results that counted for it when they came (core `counted_for`), taken up to the day it was
completed, answer it. A planned draw it counted for loses its test unless another result supplies it. A repeat
draw the threshold rules booked on it alone (wanted on the record with it, not without it) is cancelled. A live
course started on the result (a hard gate it met, now unmet: core/gates.py `gates_unmet_by_withdrawal`) is
marked as started with its gate overridden, naming the withdrawal, so that the overridden gate's critical alert
is raised until a passing result is recorded, as for any course started without its gate. The patient is then
evaluated at once, as after a new result: a draw open again past its grace raises an overdue alert. Audited as
`result.withdraw`, with the result's row before and what changed after.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlmodel import select

from tracker.core.inputs import clean_text
from tracker.core.panels import (LAB_EARLY_DAYS, answers_repeat, counted_for, members, repeat_booked_on,
                                 undone_by_withdrawal)
from tracker.dates import utcnow
from tracker.db.charts import results_chart
from tracker.db.snapshots import course_protocol
from tracker.db.tables import (Alert, Course, Item, LabResult, Patient, ReplacedLabSource, WithdrawnLabSource,
                               WithdrawnResult, codes, join_codes)
from tracker.errors import ConflictError, NotFoundError
from tracker.services import audit
from tracker.services.context import Clinic

# A withdrawn result keeps every column lab_result has (withdrawn_result has them all, and who, when and why).
KEPT = tuple(column.name for column in LabResult.__table__.columns)


@dataclass
class Withdrawal:
    withdrawn: WithdrawnResult
    patient: Patient
    reopened: list[Item] = field(default_factory=list)  # items the result had completed, open again
    cancelled: list[Item] = field(default_factory=list)  # repeats booked on the result, not wanted without it
    resolved: list[Alert] = field(default_factory=list)  # its live alerts, resolved by the withdrawal
    evaluation: object | None = None  # alerts raised/resolved as the record lost the result (services.alerts)


def withdraw_result(clinic: Clinic, result_id: int, reason: str) -> Withdrawal:
    session, library, user = clinic.session, clinic.library, clinic.user
    reason = clean_text(reason, "reason")
    result = session.get(LabResult, result_id)
    if result is None:
        earlier = session.get(WithdrawnResult, result_id)
        if earlier is not None:
            raise ConflictError(f"result #{result_id} was withdrawn already, on {earlier.withdrawn_at:%Y-%m-%d} "
                                f"by {earlier.withdrawn_by}")
        raise NotFoundError("result", result_id)
    patient = session.get(Patient, result.patient_id)
    now = utcnow()
    before = audit.snapshot(result)
    replaced = list(session.exec(select(ReplacedLabSource).where(ReplacedLabSource.result_id == result.id)))
    sources = sorted({*(r.source_id for r in replaced), *([result.source_id] if result.source_id else [])})
    alerts = list(session.exec(select(Alert).where(Alert.result_id == result.id).order_by(Alert.id)))
    items = list(session.exec(select(Item).where(Item.patient_id == patient.id, Item.kind.in_(("baseline", "lab")))
                              .order_by(Item.id)))
    undone = undone_by_withdrawal(items, result.id, result.test, result.taken_on, library.vocabulary)

    chart_before = results_chart(session, patient)
    repeats_before = _repeats_booked(clinic, patient)
    withdrawn = WithdrawnResult(**{name: getattr(result, name) for name in KEPT}, withdrawn_at=now,
                                withdrawn_by=user, reason=reason)
    session.add(withdrawn)
    from tracker.services.review_apply import resolve_alert

    closed = []
    for alert in alerts:
        alert.result_id = None
        if alert.status != "resolved":
            # Its condition was this result, which no rule can read again: resolved by the person who withdrew it,
            # not left to clear (a critical alert would wait for an acknowledgement of a value that never was,
            # beside the alert a remaining result of the day raises: two alerts for one problem).
            resolve_alert(session, alert, clinic.today, f"result #{result.id} withdrawn: {reason}", user, patient.mrn)
            closed.append(alert)
        session.add(alert)
    for row in replaced:
        session.delete(row)
    session.flush()  # the references gone before the result itself
    session.delete(result)
    session.flush()
    session.add_all(WithdrawnLabSource(source_id=s, result_id=withdrawn.id) for s in sources)

    reopened = _reopen(session, library, patient, withdrawn, undone, now)
    overridden = _gates_left_unmet(clinic, patient, chart_before, withdrawn)
    cancelled = _cancel_repeats(session, patient, repeats_before - _repeats_booked(clinic, patient), withdrawn, now)
    audit.record(session, user, "result.withdraw", "lab_result", withdrawn.id, patient.mrn, before,
                 {"reason": reason, "withdrawn_at": audit.json_ready(now), "source_ids": sources,
                  "reopened_items": [i.id for i in reopened],
                  "still_done_items": [i.id for i in undone.completed if i.status == "done"],
                  "counted_items": [i.id for i in undone.counted],
                  "cancelled_repeats": [i.id for i in cancelled],
                  "alerts_unlinked": [a.id for a in alerts], "alerts_resolved": [a.id for a in closed],
                  "gate_overridden": {str(c.id): c.gate_override for c in overridden}})
    session.flush()
    from tracker.services.alerts import after_result

    evaluation = after_result(session, library, patient, clinic.today, user, clinic.settings)
    return Withdrawal(withdrawn, patient, reopened, cancelled, closed, evaluation)


def _repeats_booked(clinic: Clinic, patient: Patient) -> set[tuple]:
    """The repeat draws the threshold rules book on the patient's record as it stands, as (course, origin, kind,
    due, tests): how a pass tells a booked follow-up (services/review_apply.py `follow_up_rows`)."""
    from tracker.db.charts import ProtocolsOfCourses
    from tracker.protocol_files import load_algorithm
    from tracker.services.chart_reviews import review_charts

    session, library = clinic.session, clinic.library
    session.flush()
    reviews = review_charts(session, ProtocolsOfCourses(session, library), library, [patient.id], clinic.today,
                            clinic.settings.alerts, load_algorithm(clinic.settings.schedules_dir), with_results=True)
    return {(course.id, follow.origin, follow.kind, follow.due, join_codes(follow.tests))
            for review in reviews for course, follow in review.follow_ups if follow.origin == "threshold"}


def _cancel_repeats(session, patient: Patient, unwanted: set[tuple], withdrawn: WithdrawnResult,
                    now: dt.datetime) -> list[Item]:
    """Cancel the planned repeats the rules booked on the withdrawn result alone (`unwanted`: wanted on the
    record with it, not without it); a repeat done already stays done."""
    if not unwanted:
        return []
    items = session.exec(select(Item).where(Item.patient_id == patient.id, Item.origin == "threshold",
                                            Item.status == "planned").order_by(Item.id)).all()
    cancelled = []
    for item in items:
        if (item.course_id, item.origin, item.kind, item.due, item.tests) in unwanted:
            item.status, item.done_note = "cancelled", f"booked on result #{withdrawn.id}, withdrawn"
            item.sequence += 1
            item.last_modified = now
            session.add(item)
            cancelled.append(item)
    session.flush()
    return cancelled


def _gates_left_unmet(clinic: Clinic, patient: Patient, before, withdrawn: WithdrawnResult) -> list[Course]:
    """The patient's live courses, started on their gates, whose hard gate the withdrawal leaves unmet: each is
    marked as started with its gate overridden, the reason naming the withdrawal (module docstring)."""
    from tracker.core.chart import ChartCourse
    from tracker.core.gates import gates_unmet_by_withdrawal
    from tracker.core.worklist import course_is_live

    session, library = clinic.session, clinic.library
    after = results_chart(session, patient)
    marked = []
    for course in session.exec(select(Course).where(Course.patient_id == patient.id, Course.status != "stopped",
                                                    Course.gate_override.is_(None)).order_by(Course.id)):
        if not course_is_live(course.status, course.stop_on, clinic.today):
            continue
        held = ChartCourse(course.id, course.patient_id, course.drug, course.status, course.start_on,
                           course_protocol(session, library, course), None, course.stop_on)
        unmet = gates_unmet_by_withdrawal(before, after, held, library.vocabulary, clinic.today,
                                          clinic.childbearing_ages)
        if unmet:
            course.gate_override = (f"{', '.join(f.test for f in unmet)} unmet since result #{withdrawn.id} was "
                                    f"withdrawn: {withdrawn.reason}")
            session.add(course)
            marked.append(course)
    return marked


def _reopen(session, library, patient: Patient, withdrawn: WithdrawnResult, undone, now: dt.datetime) -> list[Item]:
    """Undo what the withdrawn result answered (module docstring); returns the items it had completed that are
    open now. An item whose status and day done end as they were keeps its sequence (its calendar entry did
    not change)."""
    from tracker.services.plan_sync import complete_from_results
    from tracker.services.results import complete_items

    vocabulary = library.vocabulary
    touched = (*undone.completed, *undone.counted)
    was = {i.id: (i.status, i.done_on, i.sequence, i.last_modified) for i in touched}
    completed_on = {i.id: i.done_on for i in undone.completed}
    for item in undone.completed:
        # A draw merged into a completed host went back to being merged (cancelled), as before its host was done.
        item.status = "cancelled" if item.merged_into_id is not None else "planned"
        item.done_on = item.done_note = None
        item.received = None
    for item in undone.counted:
        received = codes(item.received)
        if not _supplied(session, patient.id, withdrawn.test, item.due):
            received = [c for c in received if c != withdrawn.test]
        item.received = join_codes(received) or None
    for item in touched:
        session.add(item)
    session.flush()

    baseline = [i for i in undone.completed if i.kind == "baseline"]
    for course_id in sorted({i.course_id for i in baseline}):
        protocol = course_protocol(session, library, session.get(Course, course_id))
        complete_from_results(session, patient.id, [i for i in baseline if i.course_id == course_id], protocol)
    for draw in [i for i in undone.completed if i.kind == "lab" and i.merged_into_id is None]:
        # What the remaining results taken up to the day it was completed give it (a later result counted for a
        # later draw), of those that counted for it when they came (not for an earlier draw: core counted_for);
        # its merged draws complete with it again (complete_items: absorbed_into).
        wanted = sorted(set().union(*(members(t, vocabulary) for t in codes(draw.tests))))
        remaining = session.exec(select(LabResult).where(
            LabResult.patient_id == patient.id, LabResult.test.in_(wanted),
            LabResult.taken_on >= draw.due - dt.timedelta(days=LAB_EARLY_DAYS),
            LabResult.taken_on <= completed_on[draw.id]).order_by(LabResult.taken_on, LabResult.id)).all()
        course_draws = session.exec(select(Item).where(Item.course_id == draw.course_id, Item.kind == "lab")).all()
        remaining = [r for r in remaining if counted_for(draw, r.taken_on, r.created_at, course_draws)]
        if draw.origin == "threshold":  # a repeat: never answered by the result that booked it, nor one before
            booked = repeat_booked_on(draw, session.exec(select(LabResult).where(
                LabResult.patient_id == patient.id, LabResult.test.in_(wanted))).all())
            remaining = [r for r in remaining if answers_repeat(draw, r.taken_on, booked)]
        for result in remaining:
            complete_items(session, library, patient, result, planned=[draw])
    for item in touched:
        status, done_on, sequence, modified = was[item.id]
        if (item.status, item.done_on) == (status, done_on):
            # Its calendar entry (status, day done) is as it was, whichever result of the day its note now
            # names or whatever it now holds: no update for subscribers (as mark_answered bumps only on done).
            item.sequence, item.last_modified = sequence, modified
        else:
            item.sequence, item.last_modified = sequence + 1, now
        session.add(item)
    session.flush()
    return [i for i in undone.completed if i.status != "done" and i.merged_into_id is None]


def _supplied(session, patient_id: int, test: str, due: dt.date) -> bool:
    """Whether a remaining result of `test` could have counted for an item due on `due` (taken no earlier than
    LAB_EARLY_DAYS before it)."""
    query = select(LabResult.id).where(LabResult.patient_id == patient_id, LabResult.test == test,
                                       LabResult.taken_on >= due - dt.timedelta(days=LAB_EARLY_DAYS))
    return session.exec(query.limit(1)).first() is not None
