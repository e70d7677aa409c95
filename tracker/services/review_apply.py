"""Applying reviews (tracker/core/review.py) to the database: reconcile the alert table, mark judged
checkpoints done, book follow-up items, audit every change.

One live alert per condition key; a derived condition the review no longer produces is resolved
automatically; an alert resolved by hand stays resolved; a snoozed alert re-opens on its date; a
checkpoint_failed alert clears when its course stops. Only the reviewed patients' alerts are touched
(and, in a clinic-wide pass, every snooze that has ended).
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass
from types import SimpleNamespace

from sqlalchemy import select

from tracker.core.alerts import DERIVED_KINDS, AlertSettings
from tracker.core.audit_chain import reusable_encoder
from tracker.core.gates import judged_base, judged_test
from tracker.core.review import Review, overdue_candidates, partial_note, past_limit_key
from tracker.core.vocabulary import Vocabulary
from tracker.dates import utcnow
from tracker.db.bulk import (
    analyze_if_outdated,
    bulk_insert,
    bulk_insert_new_making,
    bulk_insert_returning_ids,
)
from tracker.db.charts import LIVE_ALERT
from tracker.db.rows import narrowed
from tracker.db.tables import Alert, AuditEvent, Item, Patient, join_codes
from tracker.services import audit
from tracker.services.review_writes import AlertChanges, AuditRows, mark_judged, resolved_values

AUTO = "auto: "  # prefix of automatic resolutions: such an alert re-opens if its condition comes back
A = Alert.__table__
# Which kinds own which follow-ups and judged checkpoints (a caller may apply only some kinds).
CHECKPOINT_KINDS = ("checkpoint_failed", "checkpoint_missed")


@dataclass(frozen=True)
class BookedItem:
    """A follow-up item the rules booked, as callers read it (bulk-inserted, not an ORM object)."""

    id: int
    patient_id: int
    due: dt.date
    title: str
    kind: str  # lab (a repeat draw) or checkpoint (a re-check)


# Every column of an item that a follow-up leaves at the model's default (bulk inserts skip the ORM).
_ITEM_DEFAULTS = {name: field.default for name, field in Item.model_fields.items()
                  if not field.is_required() and field.default_factory is None and field.default is not None}


@dataclass
class RaisedAlert:
    """A bulk-inserted alert, as callers of evaluate read it (id, kind, severity, message...)."""

    id: int
    condition_key: str
    patient_id: int
    course_id: int | None
    kind: str
    severity: str
    message: str

def _in_chunks(session, query, column, ids) -> list:
    """The rows of `query` with `column` among `ids` (`narrowed`: PostgreSQL one statement, an array)."""
    return [row for narrow in narrowed(session, query, column, ids) for row in session.execute(narrow)]


def apply_reviews(session, reviews: list[Review], patient_ids, today: dt.date, kinds, user: str, summary,
                  settings: AlertSettings, vocabulary: Vocabulary, *, whole_clinic: bool = False) -> None:
    mrns = dict(_in_chunks(session, select(Patient.id, Patient.mrn), Patient.id, patient_ids))
    # Changes to existing rows are written set-shaped and audited together at the end (review_writes.py).
    audit_rows = AuditRows(user, utcnow())
    if CHECKPOINT_KINDS[0] in kinds or CHECKPOINT_KINDS[1] in kinds:
        mark_judged(session, [(r, j) for r in reviews for j in r.judged], audit_rows, mrns, summary.outcomes)
    booked = _add_follow_ups(session, wanted_follow_ups(reviews, kinds))
    summary.follow_ups.extend(BookedItem(row["id"], row["patient_id"], row["due"], row["title"], row["kind"])
                              for row in booked)
    candidates = [a for r in reviews for a in r.alerts if a.kind in kinds]
    if "overdue" in kinds:
        # A repeat booked already overdue (after a result that reached tracker late) alerts now, as the next
        # pass's review of the stored item would: the core's overdue rule asked about the booked items (draws
        # and re-checks, never baseline tests: no course names needed).
        candidates += overdue_candidates([SimpleNamespace(**row) for row in booked], today,
                                         settings.overdue_grace_days, vocabulary)
    _reconcile(session, candidates, patient_ids, today, kinds, user, summary, mrns, whole_clinic, audit_rows)
    if CHECKPOINT_KINDS[0] in kinds:
        _clear_failures(session, reviews, {c.condition_key for c in candidates}, today, summary, mrns, audit_rows)
    audit_rows.write(session)


def _clear_failures(session, reviews, wanted: set[str], today, summary, mrns, audit_rows) -> None:
    """Resolve the live checkpoint_failed alerts a later outcome settles (core: FailuresCleared): the same
    checkpoint judged again on a closer assessment, or an earlier `review` checkpoint after a met one.
    Resolved as automatic, so the failure re-opens if a judgement brings it back."""
    cleared = [(r, c) for r in reviews for c in r.cleared]
    if not cleared:
        return
    query = (select(A.c.id, Item.week).join(Item, Item.id == A.c.item_id)
             .where(A.c.kind == "checkpoint_failed", A.c.status.in_(LIVE_ALERT)))
    live = _in_chunks(session, query, A.c.course_id, [c.course_id for _, c in cleared])
    changes = AlertChanges(session, audit_rows)
    rows = changes.load([alert_id for alert_id, _ in live])
    for alert_id, week in live:
        alert = rows[alert_id]
        if alert["condition_key"] in wanted or alert["status"] == "resolved":
            continue
        for r, c in cleared:
            if c.settles(alert["course_id"], alert["item_id"], week):
                summary.resolved.append(changes.resolve(alert, today, f"{AUTO}{c.reason}", mrns.get(r.patient_id)))
                break
    changes.write()


def wanted_follow_ups(reviews: list[Review], kinds) -> list:
    """The (course, FollowUp) pairs of `reviews` whose rule's kind is among `kinds`."""
    return [(course, follow) for r in reviews for course, follow in r.follow_ups
            if ("threshold" if follow.origin == "threshold" else "checkpoint_failed") in kinds]


def follow_up_rows(session, wanted: list) -> list[dict]:
    """The item rows to book for `wanted` ((course, FollowUp) pairs): each unless the same one exists (same
    course, origin, kind, due, tests), one query per chunk of courses. Reads only."""
    if not wanted:
        return []
    existing = {tuple(row) for row in _in_chunks(  # (course, origin, kind, due, tests): one item
        session, select(Item.course_id, Item.origin, Item.kind, Item.due, Item.tests)
        .where(Item.origin.in_(("threshold", "partial"))), Item.course_id, {course.id for course, _ in wanted})}
    now, rows = utcnow(), []
    for course, follow in wanted:
        tests = join_codes(follow.tests)
        key = (course.id, follow.origin, follow.kind, follow.due, tests)
        if key in existing:
            continue
        existing.add(key)
        rows.append({**_ITEM_DEFAULTS, "uid": str(uuid.uuid4()), "course_id": course.id,
                     "patient_id": course.patient_id, "drug": course.protocol.id, "kind": follow.kind,
                     "due": follow.due, "tests": tests, "title": follow.title,
                     "sources": join_codes(follow.sources), "week": follow.week, "measure": follow.measure,
                     "target": follow.target, "status": "planned", "origin": follow.origin,
                     "created_at": now, "last_modified": now})
    return rows


def _add_follow_ups(session, wanted: list) -> list[dict]:
    """Book the rule-made items of `wanted` not booked already (`follow_up_rows`) in one bulk insert (a
    clinic-wide pass books thousands of repeats; ORM objects cost more than the insert); returns their rows,
    each with its `id`."""
    if not wanted:
        return []
    rows = follow_up_rows(session, wanted)
    session.flush()
    ids = bulk_insert_returning_ids(session.connection(), Item.__table__, rows)
    return [{**row, "id": row_id} for row_id, row in zip(ids, rows)]


def _reconcile(session, candidates, patient_ids, today, kinds, user, summary, mrns, whole_clinic,
               audit_rows) -> None:
    from tracker.db.tables import Course

    wanted = {c.condition_key: c for c in candidates}
    scope = select(A.c.id, A.c.condition_key, A.c.patient_id, A.c.course_id, A.c.result_id, A.c.kind,
                   A.c.status, A.c.snoozed_until, A.c.message, A.c.severity, A.c.cleared_on).where(A.c.kind.in_(kinds), A.c.status.in_(LIVE_ALERT))
    live_rows = _in_chunks(session, scope, A.c.patient_id, patient_ids)
    if whole_clinic:  # every snooze that ended re-opens, reviewed or not
        seen = {row.id for row in live_rows}
        live_rows += [row for row in session.execute(scope.where(A.c.status == "snoozed",
                                                                 A.c.snoozed_until <= today))
                      if row.id not in seen]
    reviewed = set(patient_ids)
    live = {row.condition_key: row for row in live_rows}
    unseen = [k for k in wanted if k not in live]
    previous: dict[str, tuple] = {}  # condition key -> (id, resolution) of its newest alert
    for alert_id, key, resolution in _in_chunks(
            session, select(A.c.id, A.c.condition_key, A.c.resolution), A.c.condition_key, unseen):
        if key not in previous or alert_id > previous[key][0]:
            previous[key] = (alert_id, resolution)
    missing = {r.patient_id for r in live_rows} - set(mrns)
    if missing:
        mrns.update(_in_chunks(session, select(Patient.id, Patient.mrn), Patient.id, missing))
    now = utcnow()

    new_rows, reopen, back = [], [], []
    for key, cand in wanted.items():
        if key in live:
            if live[key].cleared_on is not None:  # a cleared critical alert whose condition came back
                back.append(live[key].id)
            continue
        old = previous.get(key)
        if old is not None:
            if (old[1] or "").startswith(AUTO):  # cleared by itself, now back
                reopen.append((old[0], cand))
            continue  # resolved by hand: that decision stands for this condition
        new_rows.append({
            "condition_key": key, "patient_id": cand.patient_id, "course_id": cand.course_id,
            "item_id": cand.item_id, "result_id": cand.result_id, "drug": cand.drug, "kind": cand.kind,
            "severity": cand.severity, "status": "open", "raised_on": today, "message": cand.message,
            "suggestions": join_codes(cand.suggestions), "sources": join_codes(cand.sources), "value": cand.value,
            "limit_text": cand.limit_text, "created_at": now, "updated_at": now})
    changes = AlertChanges(session, audit_rows)
    if reopen:
        loaded = changes.load([alert_id for alert_id, _ in reopen])
        for alert_id, cand in reopen:
            old = loaded[alert_id]
            summary.reopened.append(changes.change(
                old, "alert.reopen", mrns.get(old["patient_id"]),
                {"status": "open", "reopened_on": today, "resolved_on": None, "resolution": None,
                 "message": cand.message, "value": cand.value}, why="condition back"))
    if back:
        loaded = changes.load(back)
        for alert_id in back:
            old = loaded[alert_id]
            summary.reopened.append(changes.change(old, "alert.condition_back", mrns.get(old["patient_id"]),
                                                   {"cleared_on": None},
                                                   why="condition back before acknowledgement"))
    raised = _insert_alerts(session, new_rows, user, mrns, now) if new_rows else []
    summary.raised.extend(raised)
    # A live alert's text is rewritten, under the same key, when what it says changes; each rewrite is audited
    # (`alert.update`, the text before and after), as every other change of an alert is. Gate and threshold
    # alerts say what their results are as they arrive: a gate's "no tb result on record" becomes "tb positive
    # on ..." (one problem, one alert); a threshold's names the day's other results ("neutrophils 0.8 ...
    # (same day also: neutrophils 3 10^9/L; conflicting results, the worst counts)") and the rules they breach
    # ("Also breached: > 3 x ULN ..."): rewritten whenever the review's text differs (neither holds a day
    # count), so the stored alert, a what-if and a fresh evaluation say the same. An overdue alert keeps naming
    # what is still missing as results arrive (`partial_note`), and only then is rewritten: its count of days
    # is left as raised, never rewritten alone, so an unchanged draw writes nothing and a day passing adds no
    # audit row per overdue alert (a clinic's overdue alerts would flood the log with "N+1 days" every night;
    # a what-if shows the day's count).
    rewrites = [(row, cand) for key, cand in wanted.items() if (row := live.get(key)) is not None
                and ((cand.kind == "overdue" and partial_note(row.message) != partial_note(cand.message))
                     or (cand.kind in ("gate", "threshold") and row.message != cand.message))]

    gone = [r for r in live_rows
            if r.kind in DERIVED_KINDS and r.condition_key not in wanted and r.patient_id in reviewed]
    gone_ids = {r.id for r in gone}
    waiting = {r.id for r in gone if awaits_acknowledgement(r)}
    failed_rows = [r for r in live_rows if r.kind == "checkpoint_failed" and r.course_id]
    # The courses stopped among those of the gone alerts (and failed checkpoints): an alert gone because its
    # course stopped says so, not "condition no longer present" (nor waits for an acknowledgement).
    stopped = {row[0] for row in _in_chunks(
        session, select(Course.id).where(Course.status == "stopped"), Course.id,
        {r.course_id for r in [*failed_rows, *gone] if r.course_id})}
    superseding = _superseding(session, gone, candidates)  # gone alerts whose problem a candidate carries
    carriers = _carriers(session, {cand.condition_key for cand, _ in superseding.values()}, live, reopen, raised,
                         previous)
    changed = []  # (row, what)
    for row in live_rows:
        snooze_ended = row.status == "snoozed" and row.snoozed_until is not None and row.snoozed_until <= today
        if row.id in gone_ids:
            if row.course_id in stopped and row.id not in superseding:
                changed.append((row, "stopped"))
            elif row.id in waiting and row.id not in superseding:
                if row.cleared_on is None:
                    changed.append((row, "cleared"))
                if snooze_ended:  # cleared while snoozed: back in the open list for a person to acknowledge
                    changed.append((row, "snooze"))
            else:
                changed.append((row, "gone"))
        elif row.kind == "checkpoint_failed" and row.course_id in stopped:
            changed.append((row, "stopped"))
        elif snooze_ended:
            changed.append((row, "snooze"))
    loaded = changes.load([*(row.id for row, _ in rewrites), *(row.id for row, _ in changed)])
    for plain, cand in rewrites:
        row = loaded[plain.id]
        values = {"message": cand.message} if cand.kind == "overdue" else {
            "message": cand.message, "value": cand.value, "result_id": cand.result_id}
        changes.change(row, "alert.update", mrns.get(row["patient_id"]), values,
                       why="what is still missing changed" if cand.kind == "overdue"
                       else "its text as the rules now read its results")
    for plain, what in changed:
        row = loaded[plain.id]
        mrn = mrns.get(row["patient_id"])
        if what == "gone" and row["id"] in superseding:  # the condition is present, on a newer alert
            cand, detail = superseding[row["id"]]
            carrier = carriers.get(cand.condition_key)  # (none only if another writer resolved it meanwhile)
            by = f"alert #{carrier}" if carrier is not None else "a newer alert"
            summary.resolved.append(changes.resolve(row, today, f"{AUTO}superseded by {by} as of {today} ({detail})",
                                                    mrn))
        elif what == "gone":
            summary.resolved.append(changes.resolve(row, today, f"{AUTO}condition no longer present as of {today}",
                                                    mrn))
        elif what == "cleared":
            changes.change(row, "alert.cleared", mrn, {"cleared_on": today},
                           why=f"condition no longer present as of {today}; awaiting acknowledgement")
        elif what == "stopped":
            summary.resolved.append(changes.resolve(row, today, f"{AUTO}course stopped", mrn))
        else:
            summary.reopened.append(changes.change(row, "alert.reopen", mrn,
                                                   {"status": "open", "reopened_on": today, "snoozed_until": None},
                                                   why="snooze ended"))
    changes.write()


def awaits_acknowledgement(row) -> bool:
    """A critical lab alert nobody has acknowledged does not resolve itself when its condition clears: it
    stays open as "cleared, awaiting acknowledgement" (a normal count after a neutropenia alert must still
    be seen by a person). Warnings, and alerts already acknowledged, resolve themselves; so do alerts of
    the other kinds, which clear by what a person did (a passing gate result, a course stopped, a draw
    taken). Also resolved: a cleared alert whose course was stopped, or whose test has a newer result
    that alerts on the same course (one problem, one alert: the newer alert carries it)."""
    return row.kind == "threshold" and row.severity == "critical" and row.status in ("open", "snoozed")


def _superseded(session, rows, candidates) -> set[int]:
    """Ids of `rows` (alerts gone) whose problem a candidate carries (`_superseding`)."""
    return set(_superseding(session, rows, candidates))


def _superseding(session, rows, candidates) -> dict[int, tuple]:
    """Of `rows` (alerts whose condition the review no longer gives), those whose problem a candidate carries
    on, by id: (the candidate, what it judges, for the resolution's text). A gate or screen alert: a gate
    candidate of the same course and test (`judged_base`: its key names another result judged, a new day
    that does not pass); a threshold alert: a threshold candidate on the same course for a result of the same
    test (the rules read each test's latest day: the newer result's alert carries the problem). Their
    condition is not gone; they resolve as superseded. Reads the tests of the threshold results only when a
    gone threshold alert's course has a threshold candidate."""
    from tracker.db.tables import LabResult

    out: dict[int, tuple] = {}
    gates = {judged_base(c.condition_key): c for c in candidates if c.kind == "gate"}
    for r in rows:
        cand = gates.get(judged_base(r.condition_key)) if r.kind == "gate" else None
        if cand is not None:
            out[r.id] = (cand, f"{judged_test(cand.condition_key)}: its latest result judged")
    limits = {c.condition_key: c for c in candidates if c.kind == "limit"}
    for r in rows:  # a course near its limit, now past it: the past-limit alert carries the problem
        cand = limits.get(past_limit_key(r.condition_key)) if r.kind == "limit" else None
        if cand is not None:
            out[r.id] = (cand, f"{cand.value}, past its maximum")
    alerting = [c for c in candidates if c.kind == "threshold" and c.result_id is not None]
    courses = {c.course_id for c in alerting}
    rows = [r for r in rows if r.kind == "threshold" and r.result_id and r.course_id in courses]
    if not rows:
        return out
    alerting = [c for c in alerting if c.course_id in {r.course_id for r in rows}]
    results = {row.id: row for row in _in_chunks(
        session, select(LabResult.id, LabResult.test, LabResult.taken_on), LabResult.id,
        {r.result_id for r in rows} | {c.result_id for c in alerting})}
    now_alerting = {}  # (course, test) -> its candidate (the newest result's, should there be two)
    for c in sorted(alerting, key=lambda c: c.result_id):
        if (result := results.get(c.result_id)) is not None:
            now_alerting[(c.course_id, result.test)] = (c, result)
    for r in rows:
        found = now_alerting.get((r.course_id, getattr(results.get(r.result_id), "test", None)))
        if found is not None:
            cand, result = found
            what = " ".join(part for part in (result.test, cand.value) if part)
            out[r.id] = (cand, f"{what} on {result.taken_on}")
    return out


def _carriers(session, keys: set[str], live: dict, reopen: list, raised: list, previous: dict) -> dict[str, int]:
    """The id of the alert of each condition of `keys` after this pass's inserts and re-openings: live
    already, re-opened, just raised, or resolved by hand before (that alert still names the problem). A
    condition another writer raised meanwhile (its insert skipped here) is looked up: one query, rarely."""
    if not keys:
        return {}
    found = {key: previous[key][0] for key in keys if key in previous}
    found.update((key, row.id) for key, row in live.items() if key in keys)
    found.update((cand.condition_key, alert_id) for alert_id, cand in reopen if cand.condition_key in keys)
    found.update((alert.condition_key, alert.id) for alert in raised if alert.condition_key in keys)
    missing = keys - found.keys()
    if missing:
        found.update(_in_chunks(session, select(A.c.condition_key, A.c.id).where(A.c.status.in_(LIVE_ALERT)),
                                A.c.condition_key, missing))
    return found


def _insert_alerts(session, rows: list[dict], user: str, mrns: dict, now: dt.datetime) -> list:
    """Insert new alerts and their `alert.raise` audit events in bulk (tracker.db.bulk); the audit rows are
    what audit.record would write for each. Returns the alerts actually inserted."""

    session.flush()  # rows the rules added (follow-up items) go first
    conn = session.connection()
    empty = dict.fromkeys(Alert.model_fields)
    # Dates and timestamps as ISO text; the encoder calls `default` only for values JSON has no form for.
    encode = reusable_encoder(json.JSONEncoder(sort_keys=True, default=audit.json_default))  # (its .encode)
    def raise_event(alert_id: int, values: dict) -> dict:
        return {"at": now, "user": user, "action": "alert.raise", "entity": "alert", "entity_id": alert_id,
                "mrn": mrns.get(values["patient_id"]), "before": None,
                "after": encode({**empty, **values, "id": alert_id})}

    # A condition another writer raised meanwhile is skipped by the database (one live alert per condition,
    # migration 0007), and gets no second `alert.raise`. Each alert's audit row is made as it is written.
    inserted = bulk_insert_new_making(conn, A, rows, "condition_key", raise_event)
    if conn.dialect.name == "postgresql":
        # Later lookups of alerts in this transaction (the next review group's earlier alerts by condition
        # key) run a plan cached while the table was empty: a scan of every alert just raised per 500 keys
        # (cold nightly at 1,000,000 patients: ~10 s each, minutes in all). ANALYZE sees the transaction's own
        # rows and invalidates those plans; a typical night's few new alerts move no plan and analyze nothing.
        analyze_if_outdated(conn, ("alert",))
    events = [event for _, _, event in inserted]
    raised = [RaisedAlert(alert_id, values["condition_key"], values["patient_id"], values["course_id"],
                          values["kind"], values["severity"], values["message"]) for alert_id, values, _ in inserted]
    audit.link_rows(conn, events)  # their places in the audit chain
    bulk_insert(conn, AuditEvent.__table__, events)
    return raised


def resolve_alert(session, row: Alert, on: dt.date, reason: str, user: str, mrn: str | None) -> None:
    before = audit.snapshot(row)
    for name, value in resolved_values(on, reason).items():
        setattr(row, name, value)
    row.updated_at = utcnow()
    session.add(row)
    audit.record(session, user, "alert.resolve", "alert", row.id, mrn, before, audit.snapshot(row))
