"""The alert engine's shell: choose whose charts to review, load them, review each with the core
(`tracker.core.review.review`), then apply the reviews to the alert table, or, for a what-if, don't.

    evaluate(session, library, today, settings, ...) -> EvaluationSummary

One code path for one patient (`result add`, `therapy start`) and for the whole clinic (`tracker alerts`,
the nightly job); only the set of patients differs. `write=False` (`tracker alerts --as-of`) reviews and
returns what would be open without writing anything.

The nightly job's passes are incremental by change ids, not clocks: a full pass stores the highest result,
assessment and audit-event ids it has seen (and the protocol library's signature); the next pass reviews
the patients with a result, an assessment, a course event or a patient change past those ids, plus those
whose review moves with the date alone (items in a review window, overridden gates). A new protocol library
or no mark means a full pass. On PostgreSQL, where ids are not committed in order, the mark is the pass's
snapshot instead, and rows carry their writer's transaction id (`changed_xid`, migration 0021).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import heapq
import json
from dataclasses import dataclass, field, replace
from operator import attrgetter
from types import SimpleNamespace

from sqlalchemy import and_, func, or_, select, text

from tracker.core.alerts import ALL_KINDS, DATED_KINDS, AlertCandidate, AlertSettings
from tracker.core.protocol import ProtocolLibrary
from tracker.db.charts import (
    ProtocolsOfCourses,
    ReviewSet,
    patients_to_review,
    settled_by_draws,
    windowed_items,
)
from tracker.db.tables import Assessment, AuditEvent, Course, Item, LabResult, setting_value, store_setting
from tracker.protocol_files import load_algorithm
from tracker.services.audit import SYSTEM_USER  # re-exported: the alert engine's user
from tracker.services.chart_reviews import review_charts

# The change ids the last full-or-incremental clinic-wide pass had seen (see the module docstring).
REVIEW_MARK = "alerts.review_mark"
# Audited entities whose changes can change a patient's review (course events; a patient's sex, date of
# birth or childbearing potential: yes / no / unknown, which decide whether pregnancy rules apply).
CHANGE_ENTITIES = ("course", "patient")


@dataclass
class EvaluationSummary:
    raised: list = field(default_factory=list)  # alerts newly opened
    reopened: list = field(default_factory=list)  # alerts re-opened (snooze ended, condition back)
    resolved: list = field(default_factory=list)  # alerts auto-resolved
    outcomes: list = field(default_factory=list)  # checkpoint outcomes, one line each
    follow_ups: list = field(default_factory=list)  # Item rows added (repeat labs, partial re-checks)
    would_open: list[AlertCandidate] = field(default_factory=list)  # what-ifs: the alerts that should be open
    would_clear: list = field(default_factory=list)  # what-ifs: checkpoint failures settled (FailuresCleared)
    # What-ifs: the follow-up items a pass would book, by negative id (none on record), as would_open names them.
    would_book: dict = field(default_factory=dict)
    settled: int = 0  # reviewed from their draws, already alerted as those ask: nothing to apply (in `reviewed`)
    reviewed: int = 0  # patients reviewed
    worker: str | None = None  # a review worker's part (services/review_worker.py): "ok", or why it failed
    # An incremental pass's fork for its dated group's charts (review_worker.ForkedChartReviews): "ok", or why
    # it failed (the pass then reviewed them itself).
    chart_fork: str | None = None




def library_signature(library: ProtocolLibrary) -> str:
    """What reviews depend on besides the data: every protocol's content, the test ranges and the values
    that pass a gate."""
    protocols = sorted((p.id, p.content_hash) for p in library.protocols.values())
    ranges = sorted((code, t.ref_low, t.ref_high, t.passes, t.repeat_or_refer)
                    for code, t in library.vocabulary.tests.items())
    return hashlib.sha256(json.dumps([protocols, ranges], default=str).encode()).hexdigest()[:16]


def evaluate(session, library: ProtocolLibrary, today: dt.date, settings: AlertSettings, *,
             patient_ids=None, kinds=ALL_KINDS, user: str = SYSTEM_USER, write: bool = True,
             incremental: bool = False, schedules_dir: str | None = None,
             review_worker=None, worker_min_patients: int | None = None,
             forked_min_charts: int | None = None) -> EvaluationSummary:
    """Review the patients of `patient_ids` (None: whoever the clinic-wide pass needs) as of `today`, and
    apply the reviews' alerts of `kinds` (all of them unless a caller only asks for some).
    A full clinic-wide pass shares its work with a second process (services/review_worker.py): the
    `review_worker` the caller started (and closes, if the pass does not use it), or else one started here
    for a clinic of at least `worker_min_patients` patients (None: none). An incremental one has its dated
    group's charts reviewed in a fork if there are at least `forked_min_charts` (None: never;
    `ForkedChartReviews`). The caller has committed its own writes and holds the write lock."""
    from tracker.services.review_apply import apply_reviews
    from tracker.services.review_worker import ForkedChartReviews, ReviewWorker

    summary = EvaluationSummary()
    protocol_of = ProtocolsOfCourses(session, library)
    algorithm = load_algorithm(schedules_dir)
    whole_clinic = patient_ids is None
    mark = _current_mark(session, library) if whole_clinic and write else None
    items_by_patient, worker, forked = None, None, None
    try:
        if whole_clinic:
            changed = _changed_since(session, library, mark) if incremental else None
            if review_worker is not None and write and changed is None:
                worker = review_worker
                worker.begin(session, library, algorithm, today, settings)
            elif worker_min_patients is not None and write and changed is None:
                worker = ReviewWorker.start(session, library, algorithm, today, settings, worker_min_patients)
            # The clinic's items in a review window, read once: whom to review, then the items of both groups'
            # charts. The groups hold different patients, so the first group's writes (its follow-ups, its
            # judged checkpoints) change no item that a chart of the second holds. (Its clinic-wide part
            # does change alerts of the second group's patients: ended snoozes re-open, failures on stopped
            # courses resolve; the second group reads them after.)
            items_by_patient = windowed_items(session, today, settings)
            to_review = patients_to_review(session, protocol_of, library.vocabulary, today, settings,
                                           changed=changed, items_by_patient=items_by_patient,
                                           helper=worker)
            if (forked_min_charts is not None and worker is None and changed is not None
                    and any(k in DATED_KINDS for k in kinds)):
                # An incremental pass: its dated group's charts reviewed in a fork meanwhile, if many.
                forked = ForkedChartReviews.start(session, library, algorithm, sorted(to_review.dated), today,
                                                  settings, items_by_patient, forked_min_charts)
        else:
            to_review = ReviewSet(frozenset(patient_ids))
        groups = [(sorted(to_review.full), tuple(kinds), True),
                  (sorted(to_review.dated), tuple(k for k in kinds if k in DATED_KINDS), False)]
        # With a worker: the full group's second half is its, then the whole dated group (while this process
        # applies the full group's reviews). Each group's reviews in patient order, as one process gives them.
        theirs = [([] if not group_kinds else ids[len(ids) // 2:] if with_results else ids)
                  for ids, group_kinds, with_results in groups] if worker else [[], []]
        if worker:
            worker.review(*theirs)
        for (ids, group_kinds, with_results), their_ids in zip(groups, theirs):
            if write and group_kinds and not with_results and not their_ids and items_by_patient is not None:
                # Patients reviewed from their draws whose live alerts already are what those ask for (most
                # of a typical night's dated group): their reviews would apply nothing, so none is made.
                settled = settled_by_draws(session, items_by_patient, ids, today, settings, group_kinds,
                                           library.vocabulary)
                ids = [p for p in ids if p not in settled]
                summary.reviewed += len(settled)
                summary.settled += len(settled)
            # (a clinic-wide pass applies even with no one to review: ended snoozes re-open)
            skipped = not group_kinds or (not ids and not whole_clinic)
            # The dated group's charts reviewed in a fork meanwhile (`forked`): this process reviews the rest.
            apart = forked.patient_ids if forked is not None and not with_results else []
            mine = ids[:len(ids) - len(their_ids)]
            if apart:
                elsewhere = set(apart)
                mine = [p for p in mine if p not in elsewhere]
            reviews = [] if skipped else review_charts(
                session, protocol_of, library, mine, today, settings, algorithm,
                with_results=with_results, items_by_patient=items_by_patient)
            if apart:
                theirs_reviewed = forked.reviews(protocol_of)
                summary.chart_fork = f"failed: {forked.failure}" if theirs_reviewed is None else "ok"
                if theirs_reviewed is None:  # the fork failed: its charts here
                    theirs_reviewed = [] if skipped else review_charts(
                        session, protocol_of, library, apart, today, settings, algorithm,
                        with_results=False, items_by_patient=items_by_patient)
                reviews = list(heapq.merge(reviews, theirs_reviewed, key=attrgetter("patient_id")))
            if worker:
                # The worker replies once per group, however few its patients (none too): always read here,
                # so that each reply is taken for its own group.
                theirs_reviewed = worker.reviews(protocol_of)
                if theirs_reviewed is None and their_ids and not skipped:  # the worker failed: this part here
                    theirs_reviewed = review_charts(session, protocol_of, library, their_ids, today, settings,
                                                    algorithm, with_results=with_results,
                                                    items_by_patient=items_by_patient)
                reviews += theirs_reviewed or []
            if skipped:
                continue
            summary.reviewed += len(reviews)
            if not write:
                summary.would_open += [a for r in reviews for a in r.alerts if a.kind in group_kinds]
                if "checkpoint_failed" in group_kinds:
                    summary.would_clear += [c for r in reviews for c in r.cleared]
                _follow_ups_if_booked(session, protocol_of, library, algorithm, reviews, today, settings,
                                      group_kinds, summary)
                continue
            first_booked = len(summary.follow_ups)
            apply_reviews(session, reviews, ids, today, group_kinds, user, summary, settings, library.vocabulary,
                          whole_clinic=whole_clinic)
            whole_clinic = False  # the clinic-wide part (ended snoozes) once
            _judge_rechecks_due(session, protocol_of, library, algorithm, today, settings, group_kinds, user,
                                summary, summary.follow_ups[first_booked:])
    finally:
        if worker is not None:
            worker.close()
            summary.worker = f"failed: {worker.failure}" if worker.failure else "ok"
        if forked is not None:
            forked.close()
    if not write:
        return summary
    if mark is not None:
        store_setting(session, REVIEW_MARK, json.dumps({**mark, "on": today.isoformat()}))
    return summary


def _judge_rechecks_due(session, protocol_of, library: ProtocolLibrary, algorithm, today: dt.date,
                        settings: AlertSettings, kinds, user: str, summary: EvaluationSummary, booked) -> None:
    """Judge in this pass the checkpoint re-checks it booked already due (a partial response judged on an
    assessment entered after the re-check's week), as the next pass would: their patients reviewed again on
    the checkpoint rules, charts read afresh (the re-check now in them), until none is booked due. (A repeat
    draw booked overdue alerts at once: `apply_reviews`.)"""
    from tracker.services.review_apply import CHECKPOINT_KINDS, apply_reviews

    kinds = tuple(k for k in kinds if k in CHECKPOINT_KINDS)
    while kinds and (again := sorted({b.patient_id for b in booked if b.kind == "checkpoint" and b.due <= today})):
        reviews = review_charts(session, protocol_of, library, again, today, settings, algorithm,
                                with_results=False)
        first_booked = len(summary.follow_ups)
        apply_reviews(session, reviews, again, today, kinds, user, summary, settings, library.vocabulary)
        booked = summary.follow_ups[first_booked:]


def _follow_ups_if_booked(session, protocol_of, library: ProtocolLibrary, algorithm, reviews, today: dt.date,
                          settings: AlertSettings, kinds, summary: EvaluationSummary) -> None:
    """A what-if's share of what a pass does with the follow-ups it books (nothing is booked here): the
    overdue alerts of the repeats overdue already (`apply_reviews`), and the re-checks due already judged
    (`_judge_rechecks_due`) on charts as the pass would leave them (its judged checkpoints done, the re-checks
    in them); a failure such a re-check settles is not shown open (`_clear_failures`). The items are kept in
    `summary.would_book` under negative ids, none on record; their alerts are named `new-item<n>`."""
    from tracker.core.review import overdue_candidates
    from tracker.services.review_apply import CHECKPOINT_KINDS, follow_up_rows, wanted_follow_ups

    rows = follow_up_rows(session, wanted_follow_ups(reviews, kinds))
    if not rows:
        return
    # Every column of an item, those the pass would leave empty included; negative ids across the pass's groups.
    blank, first = dict.fromkeys(Item.model_fields), len(summary.would_book) + 1
    items = [SimpleNamespace(**{**blank, **row, "id": -n}) for n, row in enumerate(rows, first)]
    summary.would_book.update((item.id, item) for item in items)
    found = []
    if "overdue" in kinds:
        found += overdue_candidates(items, today, settings.overdue_grace_days, library.vocabulary)
    checkpoint_kinds = tuple(k for k in kinds if k in CHECKPOINT_KINDS)
    rechecks: dict[int, list] = {}
    for item in items:
        if checkpoint_kinds and item.kind == "checkpoint" and item.due <= today:
            rechecks.setdefault(item.patient_id, []).append(item)
    if rechecks:
        judged = {j.item_id: j for r in reviews if r.patient_id in rechecks for j in r.judged}
        week_of = {}
        for row in session.execute(select(Item.__table__).where(Item.id.in_(sorted(judged)))).mappings():
            week_of[row["id"]] = row["week"]
            rechecks[row["patient_id"]].append(SimpleNamespace(**{**row, "status": "done",
                                                                  "done_on": judged[row["id"]].done_on}))
        again = review_charts(session, protocol_of, library, sorted(rechecks), today, settings, algorithm,
                              with_results=False, extra_items=rechecks)
        found += [a for r in again for a in r.alerts if a.kind in checkpoint_kinds and (a.item_id or 0) < 0]
        if "checkpoint_failed" in kinds:
            still = {a.condition_key for r in again for a in r.alerts}
            settled = [c for r in again for c in r.cleared if any(i < 0 for i in c.item_ids)]
            summary.would_clear += settled
            summary.would_open = [a for a in summary.would_open if not (
                a.kind == "checkpoint_failed" and a.condition_key not in still
                and any(c.settles(a.course_id, a.item_id, week_of.get(a.item_id)) for c in settled))]
    summary.would_open += [replace(a, condition_key=a.condition_key.replace("item-", "new-item")) for a in found]


def last_reviewed_on(session) -> dt.date | None:
    """The day the last whole-clinic pass (nightly or `tracker evaluate`) reviewed, or None."""
    value = setting_value(session, REVIEW_MARK)
    try:
        return dt.date.fromisoformat(json.loads(value)["on"]) if value else None
    except (ValueError, KeyError, TypeError):
        return None  # a mark written before the day was kept


def _current_mark(session, library: ProtocolLibrary) -> dict:
    """The highest ids now on record: what this pass will have seen.

    On PostgreSQL ids are not committed in order: a transaction that took id 41 may commit after this pass
    read 42 as the highest. There the mark is this pass's snapshot, taken first: the transactions it did not
    see (its xmax and up, and those running, its xip), whose rows the next pass reviews (newer_than_mark,
    through each row's `changed_xid`, migration 0021). Every row this pass reads later is in it or newer."""
    mark = {}
    if session.get_bind().dialect.name == "postgresql":
        xmax, xip = session.execute(text(
            "SELECT pg_snapshot_xmax(s)::text, ARRAY(SELECT pg_snapshot_xip(s)::text::bigint ORDER BY 1) "
            "FROM pg_current_snapshot() s")).one()
        mark["xmax"], mark["xip"] = int(xmax), list(xip)
    mark.update({
        "result": session.execute(select(func.max(LabResult.id))).scalar() or 0,
        "assessment": session.execute(select(func.max(Assessment.id))).scalar() or 0,
        "audit": session.execute(select(func.max(AuditEvent.id))).scalar() or 0,
        "library": library_signature(library),
    })
    return mark


def newer_than_mark(column, last_id: int, snapshot: tuple[int, list[int]] | None):
    """Rows past the mark: a higher id (SQLite), or (PostgreSQL) written by a transaction the mark's
    snapshot did not see (`changed_xid`, a BRIN index: the tables' tails)."""
    if snapshot is None:
        return column > last_id
    xmax, xip = snapshot
    table = column.table.name
    newer = text(f"{table}.changed_xid >= :mark_xmax").bindparams(mark_xmax=xmax)
    if not xip:
        return newer
    return or_(newer, text(f"{table}.changed_xid = ANY(CAST(:mark_xip AS bigint[]))").bindparams(mark_xip=xip))


def _usable_mark(session, library: ProtocolLibrary) -> dict | None:
    """The last pass's mark, if an incremental pass can start from it: well formed, of this protocol library."""
    value = setting_value(session, REVIEW_MARK)
    try:
        mark = json.loads(value) if value else None
        int(mark["result"]), int(mark["assessment"]), int(mark["audit"])
    except (ValueError, KeyError, TypeError):
        return None
    return mark if mark.get("library") == library_signature(library) else None


def full_pass_due(session, library: ProtocolLibrary) -> bool:
    """Whether the next incremental clinic-wide pass will review the whole clinic (no usable mark: a cold
    start, a new protocol library). PostgreSQL may also find a mark unusable only then (see `_changed_since`)."""
    return _usable_mark(session, library) is None


def _changed_since(session, library: ProtocolLibrary, now: dict | None = None) -> set[int] | None:
    """Patients with a change past the last pass's mark, or None (a full pass) without a usable mark.
    `now`: this pass's own mark, if taken (PostgreSQL: its snapshot's xmax; else it is asked for)."""
    mark = _usable_mark(session, library)
    if mark is None:
        return None
    result, assessment, audit = int(mark["result"]), int(mark["assessment"]), int(mark["audit"])
    snapshot = None
    if session.get_bind().dialect.name == "postgresql":
        try:
            snapshot = int(mark["xmax"]), [int(x) for x in mark["xip"]]
        except (ValueError, KeyError, TypeError):
            return None  # a mark of before migration 0021 (rows then had no changed_xid): a full pass
        xmax = (now or {}).get("xmax") or int(session.execute(
            text("SELECT pg_snapshot_xmax(pg_current_snapshot())::text")).scalar())
        if xmax < snapshot[0]:
            return None  # transaction ids went back: the database was restored into another server
    # No DISTINCT (the set dedupes): with it SQLite walks the (patient_id, ...) index of every result in the
    # clinic (0.15 s a night at 100,000 patients) instead of seeking the ids past the mark.
    changed = set(session.execute(select(LabResult.patient_id).where(
        newer_than_mark(LabResult.id, result, snapshot))).scalars())
    changed.update(session.execute(select(Assessment.patient_id).where(
        newer_than_mark(Assessment.id, assessment, snapshot))).scalars())
    # A laboratory's correction rewrites a result in place (its id and, on PostgreSQL, its changed_xid stay):
    # its `result.correct` event names it.
    events = select(AuditEvent.entity, AuditEvent.entity_id).where(
        newer_than_mark(AuditEvent.id, audit, snapshot),
        or_(AuditEvent.entity.in_(CHANGE_ENTITIES),
            and_(AuditEvent.entity == "lab_result", AuditEvent.action == "result.correct")),
        AuditEvent.entity_id.is_not(None), ~AuditEvent.action.startswith("access.")).distinct()  # reads change nothing
    courses, patients, results = set(), set(), set()
    for entity, entity_id in session.execute(events):
        {"course": courses, "lab_result": results}.get(entity, patients).add(entity_id)
    changed |= patients
    if courses:
        changed.update(session.execute(select(Course.patient_id).where(Course.id.in_(sorted(courses)))).scalars())
    if results:
        changed.update(session.execute(select(LabResult.patient_id).where(LabResult.id.in_(sorted(results)))).scalars())
    return changed
