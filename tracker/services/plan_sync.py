"""Keeping each course's stored items in step with its plan.

`sync_course` re-plans a course and reconciles the result with what is stored: done items are never
touched, planned items that still apply keep their row (and uid), a planned item the re-plan only moves
to another date (after a dose change, pause or resume; the same planned item by the core's rule,
core/plan.py same_planned_items) keeps its row and uid with the new date, items that no longer apply are
cancelled (kept, so calendar subscribers see STATUS:CANCELLED), new items get a fresh random uid.
An item's identity across re-plans is its key: (kind, due, the tests its own plan asked for, week, and the
reading of a baseline rule planned one item per reading; core/plan.py item_identity).

After each re-plan the patient's open lab draws are merged across courses (tracker/core/merge.py has the
rule). An item's SEQUENCE and LAST-MODIFIED move only when its visible state really changed over the
whole operation, so re-planning an unchanged course, or re-merging the same draws, changes nothing.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field

from sqlalchemy import or_, union_all
from sqlmodel import Session, select

from tracker.core.durations import Duration
from tracker.dates import utcnow
from tracker.db.snapshots import course_protocol
from tracker.db.tables import Course, CoursePause, DoseChange, Item, Patient, codes, join_codes
from tracker.core.gates import CHILDBEARING_AGES, baseline_received, baseline_result, may_conceive
from tracker.core.merge import Draw, group_draws
from tracker.core.plan import (
    ADJUSTED_NOTE,
    CourseFacts,
    IntervalAdjustment,
    Pause,
    PatientFacts,
    PlannedItem,
    item_identity,
    item_slot,
    lab_title,
    may_move,
    may_return,
    plan_course,
    same_planned_items,
)
from tracker.core.protocol import Protocol, ProtocolLibrary
from tracker.core.worklist import ENDED_UNDONE_NOTE, course_has_ended
from tracker.services.horizons import EXTEND_TO, KEEP_AHEAD  # how far ahead plans are kept

# Fields whose change a calendar subscriber should see (bumps SEQUENCE).
MATERIAL = ("status", "due", "tests", "title", "detail", "sources", "gate", "measure", "target", "adjusted",
            "merged_drugs", "merged_into_id", "done_on")


@dataclass
class SyncResult:
    added: list[Item] = field(default_factory=list)
    cancelled: list[Item] = field(default_factory=list)
    changed: list[Item] = field(default_factory=list)
    merged: list[Item] = field(default_factory=list)  # this course's draws now merged with another's
    kept: int = 0


def course_facts(session: Session, course: Course, patient: Patient,
                 childbearing_ages: tuple[int, int] = CHILDBEARING_AGES) -> CourseFacts:
    """What the planner reads of a course; pregnancy rules apply by the patient's facts on the start date."""
    changes = session.exec(select(DoseChange.changed_on).where(DoseChange.course_id == course.id)).all()
    pauses = session.exec(select(CoursePause).where(CoursePause.course_id == course.id)).all()
    adjustment = None
    if course.adjust_every and course.adjust_from:
        adjustment = IntervalAdjustment(Duration.parse(course.adjust_every), course.adjust_from,
                                        course.adjust_reason)
    return CourseFacts(
        start=course.start_on,
        stop=course.stop_on,
        dose_changes=tuple(sorted(changes)),
        pauses=tuple(Pause(p.paused_on, p.resumed_on) for p in sorted(pauses, key=lambda p: p.paused_on)),
        patient=PatientFacts(sex=patient.sex, childbearing_potential=may_conceive(
            patient.sex, patient.childbearing, patient.dob, course.start_on, childbearing_ages)),
        adjustment=adjustment,
    )


def own_tests(item: Item) -> list[str]:
    """The tests the item's own plan asked for (`tests` may be a merged union)."""
    return codes(item.plan_tests if item.plan_tests is not None else item.tests)


def item_key(item: Item) -> tuple:
    return item_identity(item.kind, item.due, own_tests(item), item.week, item.reading)


def is_absorbed(item: Item) -> bool:
    """Merged into another course's draw: stored cancelled, but still live for its own course."""
    return item.status == "cancelled" and item.merged_into_id is not None


def _fields(planned: PlannedItem, protocol: Protocol) -> dict:
    return {
        "title": planned.title,
        "detail": planned.detail,
        "sources": join_codes(planned.sources),
        "gate": planned.gate,
        "measure": planned.measure,
        "target": planned.target,
        "adjusted": ADJUSTED_NOTE in (planned.detail or ""),
        "reading": planned.reading,
    }


def bump(item: Item, now: dt.datetime) -> None:
    """Record a material change (ICS SEQUENCE and LAST-MODIFIED)."""
    item.sequence += 1
    item.last_modified = now


def bump_patient_items(session: Session, patient_id: int, now: dt.datetime) -> None:
    """Staff calendars name the patient in every SUMMARY: after an MRN or name change, re-send them all."""
    for item in session.exec(select(Item).where(Item.patient_id == patient_id)).all():
        bump(item, now)
        session.add(item)


def _state(item: Item) -> tuple:
    return tuple(getattr(item, name) for name in MATERIAL)


def _patient_items(session: Session, patient_id: int) -> list[Item]:
    return list(session.exec(select(Item).where(Item.patient_id == patient_id, Item.origin == "plan")).all())


def sync_course(
    session: Session,
    course: Course,
    patient: Patient,
    protocol: Protocol,
    today: dt.date,
    horizon: dt.date | None = None,
    *,
    merge_window: int,
    childbearing_ages: tuple[int, int] = CHILDBEARING_AGES,
    moves: bool = False,
) -> SyncResult:
    """Re-plan `course` and reconcile its stored items, then re-merge the patient's draws (`merge_window`:
    the site's `[calendar] merge_window_days`, always given by the caller; `childbearing_ages`: the site's
    `[alerts] childbearing_age_from/_to`). With `moves` (a dose change, pause or resume: the same rules on
    shifted dates), a planned item the re-plan only moves keeps its row; otherwise (a new protocol version,
    an interval adjustment, a stop) what no longer applies is cancelled and the new plan's items are new."""
    horizon = horizon or EXTEND_TO.after(max(today, course.start_on))
    # The horizon never shrinks: items already planned further ahead stay valid.
    if course.planned_through and course.planned_through > horizon:
        horizon = course.planned_through
    facts = course_facts(session, course, patient, childbearing_ages)
    planned = plan_course(protocol, facts, horizon)
    now = utcnow()
    result = SyncResult()

    everything = _patient_items(session, patient.id)
    before = {item.id: _state(item) for item in everything}
    stored = [item for item in everything if item.course_id == course.id]
    by_key: dict[tuple, Item] = {}
    for item in stored:
        # Prefer a live row (planned, done or absorbed) over a cancelled twin with the same key.
        current = by_key.get(item_key(item))
        if current is None or (current.status == "cancelled" and not is_absorbed(current)):
            by_key[item_key(item)] = item

    moved_to = _moves(by_key, planned, today) if moves else {}
    moved = {item.id for item in moved_to.values()}
    wanted = set()
    for plan_item in planned:
        wanted.add(plan_item.key)
        values = _fields(plan_item, protocol)
        item = by_key.get(plan_item.key)
        if item is None and plan_item.key in moved_to:
            item = moved_to[plan_item.key]  # the same planned item on its new date: keeps its row and UID
            item.due = plan_item.due
        if item is None:
            item = Item(
                uid=str(uuid.uuid4()),
                course_id=course.id,
                patient_id=patient.id,
                drug=protocol.id,
                kind=plan_item.kind,
                due=plan_item.due,
                tests=join_codes(plan_item.tests),
                plan_tests=join_codes(plan_item.tests),
                week=plan_item.week,
                status="planned",
                created_at=now,
                last_modified=now,
                **values,
            )
            session.add(item)
            result.added.append(item)
            continue
        if item.status == "done":
            continue
        for key, value in values.items():
            setattr(item, key, value)
        if item.status == "cancelled" and not is_absorbed(item):
            item.status = "planned"
        # A merged draw's union and title are set again by the merge pass below.
        item.tests = join_codes(own_tests(item))
        item.merged_drugs = None
        session.add(item)

    for key, item in by_key.items():
        live = item.status == "planned" or is_absorbed(item)
        if key not in wanted and live and item.due <= horizon and item.id not in moved:
            item.status = "cancelled"
            item.merged_into_id = None
            item.tests = join_codes(own_tests(item))
            item.merged_drugs = None
            session.add(item)

    if course.stop_on is not None:
        # Follow-ups the alert engine booked (repeat draws, partial-response rechecks) end with the course too.
        for item in session.exec(select(Item).where(Item.course_id == course.id, Item.origin != "plan",
                                                    Item.status == "planned", Item.due > course.stop_on)).all():
            item.status = "cancelled"
            bump(item, now)
            session.add(item)
            result.cancelled.append(item)
    if course_has_ended(course.stop_on, today):
        # What the stopped course left undone (a baseline never drawn, a missed draw or checkpoint) is
        # cancelled, not left overdue; a draw of another course merged into one of these is re-merged below.
        for item in stored + result.added:
            if item.status == "planned" or is_absorbed(item):
                item.status = "cancelled"
                item.done_note = ENDED_UNDONE_NOTE
                item.merged_into_id = None
                item.tests = join_codes(own_tests(item))
                item.merged_drugs = None
                session.add(item)

    course.planned_through = horizon
    session.add(course)
    session.flush()
    merge_patient_draws(session, patient.id, merge_window)
    if result.added:
        complete_from_results(session, patient.id, [i for i in result.added if i.kind == "baseline"], protocol)

    # Bump what a subscriber would see as changed, once, and report this course's changes.
    for item in _patient_items(session, patient.id):
        if item.id not in before:
            if item.course_id == course.id and (item.merged_drugs or item.merged_into_id):
                result.merged.append(item)
            continue
        old = before[item.id]
        if _state(item) == old:
            if item.course_id == course.id:
                result.kept += 1
            continue
        bump(item, now)
        session.add(item)
        if item.course_id != course.id:
            continue
        was_merged = old[MATERIAL.index("merged_drugs")] or old[MATERIAL.index("merged_into_id")]
        if item.merged_drugs or item.merged_into_id:
            if not was_merged:
                result.merged.append(item)
            else:
                result.changed.append(item)
        elif item.status == "cancelled" and old[0] != "cancelled" or (item.status == "cancelled" and was_merged):
            result.cancelled.append(item)
        else:
            result.changed.append(item)
    session.flush()
    return result


def _moves(by_key: dict[tuple, Item], planned: list[PlannedItem], today: dt.date) -> dict[tuple, Item]:
    """Stored items the re-plan moves rather than cancels (or brings back rather than adds), by the plan key
    they move to (the core decides which are the same planned item: core/plan.py same_planned_items)."""
    keys = {plan_item.key for plan_item in planned}
    appeared = [(index, item_slot(p.kind, p.tests, p.week, p.reading), p.due)
                for index, p in enumerate(planned) if p.key not in by_key]
    if not appeared:
        return {}
    vanished, cancelled = [], []
    for key, item in by_key.items():
        if key in keys:
            continue
        entry = (item.id, item_slot(item.kind, own_tests(item), item.week, item.reading), item.due)
        if item.merged_into_id is None and may_move(item.status, item.received, item.due, today):
            vanished.append(entry)
        elif may_return(item.status, item.merged_into_id is not None, item.received, item.due, today):
            cancelled.append(entry)
    stored = {item.id: item for item in by_key.values()}
    return {planned[index].key: stored[item_id]
            for item_id, index in same_planned_items(vanished, appeared, cancelled)}


def merge_patient_draws(session: Session, patient_id: int, window: int) -> None:
    """Recompute which of the patient's open lab draws are taken together (rule: tracker/core/merge.py).

    Sets fields only; the caller bumps SEQUENCE for what really changed."""
    items = [i for i in _patient_items(session, patient_id) if i.kind == "lab"]
    by_id = {i.id: i for i in items}
    # An absorbed draw whose host was completed is complete too (e.g. the host was closed by hand).
    for item in items:
        host = by_id.get(item.merged_into_id) if is_absorbed(item) else None
        if host is not None and host.status == "done":
            item.status, item.done_on, item.done_note = "done", host.done_on, host.done_note
    open_items = [i for i in items if i.status == "planned" or is_absorbed(i)]
    draws = [Draw(i.id, i.course_id, i.drug, i.due, tuple(own_tests(i))) for i in open_items]
    for group in group_draws(draws, window):
        host = by_id[group.host.id]
        host.status = "planned"
        host.merged_into_id = None
        host.tests = join_codes(group.tests)
        host.merged_drugs = join_codes(group.other_drugs) or None
        name = host.title.partition(" monitoring: ")[0]
        host.title = lab_title(name, group.tests, group.other_drugs)
        session.add(host)
        for draw in group.members:
            member = by_id[draw.id]
            member.status = "cancelled"
            member.merged_into_id = host.id
            member.tests = join_codes(own_tests(member))
            member.merged_drugs = None
            session.add(member)
    session.flush()


def absorbed_into(session: Session, host_ids: list[int]) -> list[Item]:
    """Draws merged into these hosts (to complete them together)."""
    if not host_ids:
        return []
    return list(session.exec(select(Item).where(Item.merged_into_id.in_(host_ids),
                                                Item.status == "cancelled")).all())


def baseline_satisfied_by(session: Session, patient, protocol: Protocol, item: Item, vocabulary):
    """The latest result that completes a baseline item, or None (core: gates.baseline_result)."""
    from tracker.db.charts import results_chart

    return baseline_result(results_chart(session, patient), protocol, codes(item.tests), item.due, vocabulary,
                           item.reading)


def complete_from_results(session: Session, patient_id: int, items: list[Item], protocol: Protocol) -> None:
    """Mark new baseline items done when results on record already satisfy them; the others note what
    has arrived so far (a partial CBC names the analytes still missing)."""
    from tracker.protocol_files import load_vocabulary

    from tracker.db.charts import results_chart

    vocabulary = load_vocabulary()
    chart = results_chart(session, session.get(Patient, patient_id))
    for item in items:
        result = baseline_result(chart, protocol, codes(item.tests), item.due, vocabulary, item.reading)
        if result is not None:
            item.status = "done"
            item.done_on = result.taken_on
            item.done_note = f"result #{result.id}"
        elif item.reading is None:  # a later reading waits for a day of its own, not for analytes
            item.received = join_codes(sorted(baseline_received(chart, protocol, codes(item.tests), item.due,
                                                                vocabulary))) or None
        session.add(item)


def roll_forward(session: Session, library: ProtocolLibrary, today: dt.date, needed: dt.date | None = None, *,
                 merge_window: int, childbearing_ages: tuple[int, int] = CHILDBEARING_AGES,
                 end_courses: bool = True) -> int:
    """Extend every live course whose plan reaches less than 12 months (or `needed`) ahead, and (with
    `end_courses`: the nightly, `tracker evaluate`) end the courses whose stop date has come, closing what
    they still have planned (a scan of the stopped courses: listings leave it to those runs)."""
    threshold = max(KEEP_AHEAD.after(today), needed or today)
    stale = session.exec(
        select(Course, Patient)
        .join(Patient, Patient.id == Course.patient_id)
        .where(Course.status != "stopped", Course.planned_through < threshold)
    ).all()
    for course, patient in stale:
        horizon = max(EXTEND_TO.after(today), needed or today)
        sync_course(session, course, patient, course_protocol(session, library, course), today, horizon,
                    merge_window=merge_window, childbearing_ages=childbearing_ages)
    if not end_courses:
        return len(stale)
    # Courses whose announced stop date has come, and stopped courses that still have items planned (stopped
    # before this rule): ended and re-synced once, which cancels those items (core: worklist.course_has_ended).
    if session.get_bind().dialect.name != "postgresql":
        # SQLite: one pass over the course table, probing `item (course_id, status)` for the stopped ones.
        planned = select(Item.id).where(Item.course_id == Course.id, Item.status == "planned").exists()
        ended = session.exec(
            select(Course, Patient).join(Patient, Patient.id == Course.patient_id)
            .where(Course.stop_on <= today, or_(Course.status != "stopped", planned))).all()
    else:
        # PostgreSQL: two index-shaped halves, then the few found with their patients. Written as SQLite's
        # one OR joined to patient, PostgreSQL walked all 100,000 patients probing course for each (0.3-0.4 s
        # of a next-day nightly; the halves: 0.1 s). On SQLite the halves take 0.15 s of CPU where its one
        # scan takes 0.04 s.
        ended_ids = sorted(session.execute(courses_to_end(today)).scalars())
        from tracker.db.rows import chunks

        ended = [row for chunk in chunks(ended_ids) for row in session.exec(
            select(Course, Patient).join(Patient, Patient.id == Course.patient_id)
            .where(Course.id.in_(chunk)).order_by(Course.id)).all()]
    for course, patient in ended:
        if course.status != "stopped":
            from tracker.services import audit

            before = audit.snapshot(course)
            end_course(session, course)
            audit.record(session, audit.SYSTEM_USER, "therapy.stop.reached", "course", course.id, patient.mrn, before,
                         audit.snapshot(course))
        sync_course(session, course, patient, course_protocol(session, library, course), today,
                    merge_window=merge_window, childbearing_ages=childbearing_ages)
    return len(stale) + len(ended)


def courses_to_end(today: dt.date):
    """PostgreSQL's two halves of the courses `roll_forward` ends (ids): the live courses whose announced stop
    date has come, sought in their partial index by stop date (migration 0023: before it, every live course's
    row was read for its stop date), and the stopped courses that still have items planned, through `course
    (status, drug)`, probing `item (course_id, status)` for each."""
    due = select(Course.id).where(Course.status != "stopped", Course.stop_on <= today)
    left = select(Course.id).where(Course.status == "stopped", Course.stop_on <= today, select(Item.id).where(
        Item.course_id == Course.id, Item.status == "planned").exists())
    return union_all(due, left)


def end_course(session: Session, course: Course) -> None:
    """Mark a course stopped on its stop date: a pause still open ends with it."""
    pause = session.exec(select(CoursePause).where(CoursePause.course_id == course.id,
                                                   CoursePause.resumed_on.is_(None))).first()
    if pause is not None:
        pause.resumed_on = max(course.stop_on, pause.paused_on)
        session.add(pause)
    course.status = "stopped"
    session.add(course)


__all__ = ["sync_course", "roll_forward", "courses_to_end", "end_course", "course_facts", "SyncResult", "bump",
           "merge_patient_draws", "absorbed_into"]
