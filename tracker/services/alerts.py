"""The alert engine (issue 4). Interface used by the nightly job (issue 7):

    evaluate_clinic(session, library, as_of, settings) -> EvaluationSummary

evaluates every live course as of `as_of` and returns the alerts that were newly raised or re-opened by
this evaluation (not the ones already open). It is idempotent: evaluating twice raises nothing twice.

Scale (issue 6): courses, items and live alerts are read as plain rows (ORM objects only for the few rows
that change), new alerts and their audit events are bulk-inserted, and the nightly job evaluates the
threshold rules incrementally (`incremental=True`): thresholds are already evaluated the moment a result is
recorded or a course starts (after_result/after_start), so a clinic-wide pass only has to look at patients
with results or courses created since the last one, and at live threshold alerts of stopped courses (so they
still resolve). A changed protocol library or no record of a previous pass means a full pass. A full
pass asks SQL for the latest results that breach a superset of the rules' conditions (`_breaching`), so
the many normal results never reach Python; the rules then decide on those few, exactly as before.

The rules are pure (tracker/rules.py); this module loads their inputs with a handful of set-based queries
(no per-course queries except for the rare gate-overridden course), and reconciles the candidates with the
alert table: one live alert per condition key; a derived condition that is no longer produced is resolved
automatically; an alert resolved by hand stays resolved; a snoozed alert re-opens on its date.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from sqlalchemy import func
from sqlmodel import Session, select

from tracker.dates import utcnow
from tracker.db.tables import (
    Alert,
    Assessment,
    AuditEvent,
    Course,
    Item,
    LabResult,
    Patient,
    codes,
    join_codes,
    setting_value,
    store_setting,
)
from tracker.errors import ConflictError, InputError, NotFoundError
from tracker.core.protocol import ProtocolLibrary
from tracker.core.rules import (
    ALL_KINDS,
    DERIVED_KINDS,
    Algorithm,
    AlertCandidate,
    AlertSettings,
    FollowUp,
    evaluate_checkpoint,
    gate_candidates,
    limit_candidates,
    overdue_candidate,
    parse_algorithm,
    threshold_candidates,
)
from tracker.core.settings import Settings
from tracker.services import audit

SYSTEM_USER = "tracker"
AUTO = "auto: "  # prefix of automatic resolutions: such an alert re-opens if its condition comes back
MAX_SNOOZE_DAYS = 30
LIVE = ("open", "acknowledged", "snoozed")
FAILED_CATEGORIES = ("failure", "adverse_event")
_CHUNK = 500
# When the last clinic-wide threshold pass started, and the library it used (see `_threshold_scope`).
THRESHOLD_MARK = "alerts.thresholds_evaluated"
# Results stamped shortly before a pass began may commit after it read them: look back this far.
THRESHOLD_LOOKBACK = dt.timedelta(hours=1)
A = Alert.__table__
# Every course column the rules may read; not created_at (converting 100,000 timestamps for nothing costs).
COURSE_COLUMNS = tuple(c for c in Course.__table__.c if c.name != "created_at")


@dataclass
class RaisedAlert:
    """A bulk-inserted alert, as callers of evaluate_clinic read it (id, kind, severity, message...)."""

    id: int
    condition_key: str
    patient_id: int
    course_id: int | None
    kind: str
    severity: str
    message: str


@dataclass
class EvaluationSummary:
    raised: list = field(default_factory=list)  # Alert rows newly opened
    reopened: list = field(default_factory=list)  # Alert rows re-opened (snooze expired, condition back)
    resolved: list = field(default_factory=list)  # Alert rows auto-resolved
    outcomes: list = field(default_factory=list)  # checkpoint outcomes, one line each
    follow_ups: list = field(default_factory=list)  # Item rows added (repeat labs, partial re-checks)


def settings_of(config: Settings | None) -> AlertSettings:
    return config.alerts if config is not None else AlertSettings()


_ALGORITHMS: dict[str, Algorithm] = {}


def load_algorithm(config: Settings | None = None) -> Algorithm:
    """schedules/_algorithm.yaml, or the clinic's own copy in its schedules directory."""
    from tracker.protocol_files import clinic_schedules_dir
    from tracker.resources import schedules_dir

    clinic = clinic_schedules_dir(config.schedules_dir if config is not None else None)
    path = Path(schedules_dir()) / "_algorithm.yaml"
    if clinic is not None and (clinic / "_algorithm.yaml").is_file():
        path = clinic / "_algorithm.yaml"
    key = str(path)
    if key not in _ALGORITHMS:
        with open(path, encoding="utf-8") as fh:
            _ALGORITHMS[key] = parse_algorithm(yaml.safe_load(fh) or {}, str(path))
    return _ALGORITHMS[key]


def _chunks(values, size: int = _CHUNK):
    values = list(values)
    for i in range(0, len(values), size):
        yield values[i:i + size]


def _in_chunks(session: Session, make_query, ids) -> list:
    out = []
    for chunk in _chunks(sorted(set(ids))):
        out.extend(session.exec(make_query(chunk)).all())
    return out


# --------------------------------------------------------------------------------------------------------
# Evaluation


def evaluate_clinic(session: Session, library: ProtocolLibrary, as_of: dt.date,
                    config: Settings | None = None, *, patient_ids=None, kinds=ALL_KINDS,
                    user: str = SYSTEM_USER, incremental: bool = False) -> EvaluationSummary:
    """Evaluate the rules of `kinds` for every live course (or those of `patient_ids`) as of `as_of`.

    `incremental` (clinic-wide only; the nightly job): thresholds only where inputs changed since the last
    clinic-wide pass (module docstring)."""
    from tracker.services.plan_sync import course_protocol

    settings = settings_of(config)
    summary = EvaluationSummary()
    started = utcnow()
    # Plain rows, not ORM objects: the rules only read courses, and a clinic has many.
    query = select(*COURSE_COLUMNS).where(Course.status != "stopped")
    if patient_ids is not None:
        courses = _in_chunks(session, lambda c: query.where(Course.patient_id.in_(c)), patient_ids)
    else:
        courses = list(session.execute(query).all())
    # Courses share a few (drug, protocol version) pairs: look each pair up once, not per course.
    by_version: dict[tuple, object] = {}
    protocols = {}
    for c in courses:
        key = (c.drug, c.protocol_hash)
        if key not in by_version:
            by_version[key] = course_protocol(session, library, c)
        protocols[c.id] = by_version[key]
    candidates: list[AlertCandidate] = []
    partial: dict[str, set[int]] = {}  # kind -> the only patients whose alerts of that kind were evaluated
    if {"checkpoint_failed", "checkpoint_missed"} & set(kinds):
        candidates += _checkpoints(session, library, courses, protocols, as_of, settings, config, summary, user)
    if "threshold" in kinds:
        scope = _threshold_scope(session, library) if incremental and patient_ids is None else None
        if scope is not None:
            partial["threshold"] = scope
            scoped = [c for c in courses if c.patient_id in scope]
            candidates += _thresholds(session, library, scoped, protocols, summary) if scoped else []
        else:
            candidates += _thresholds(session, library, courses, protocols, summary,
                                      whole_clinic=patient_ids is None)
    if "gate" in kinds:
        candidates += _gates(session, courses, protocols)
    if "limit" in kinds:
        candidates += _limits(session, courses, protocols, as_of, settings)
    if "overdue" in kinds:
        candidates += _overdue(session, courses, as_of, settings)
    _reconcile(session, candidates, as_of, kinds, patient_ids, user, summary, partial)
    if patient_ids is None and "threshold" in kinds:
        store_setting(session, THRESHOLD_MARK, json.dumps({"at": started.isoformat(),
                                                          "library": library_signature(library)}))
    return summary


def library_signature(library: ProtocolLibrary) -> str:
    """What threshold outcomes depend on besides the data: every protocol's content and the test ranges."""
    protocols = sorted((p.id, p.content_hash) for p in library.protocols.values())
    ranges = sorted((code, t.ref_low, t.ref_high) for code, t in library.vocabulary.tests.items())
    return hashlib.sha256(json.dumps([protocols, ranges], default=str).encode()).hexdigest()[:16]


def _threshold_scope(session: Session, library: ProtocolLibrary) -> set[int] | None:
    """Patients whose threshold alerts may differ from the last clinic-wide pass, or None for everyone."""
    value = setting_value(session, THRESHOLD_MARK)
    if value is None:
        return None
    try:
        mark = json.loads(value)
        since = dt.datetime.fromisoformat(mark["at"]) - THRESHOLD_LOOKBACK
    except (ValueError, KeyError, TypeError):
        return None
    if mark.get("library") != library_signature(library):
        return None
    queries = (
        select(LabResult.patient_id).where(LabResult.created_at >= since).distinct(),
        select(Course.patient_id).where(Course.created_at >= since).distinct(),
        # A stopped course yields no candidates: its live threshold alerts must still resolve.
        select(Alert.patient_id).join(Course, Course.id == Alert.course_id)
        .where(Alert.kind == "threshold", Alert.status.in_(LIVE), Course.status == "stopped").distinct(),
    )
    return {patient_id for query in queries for patient_id in session.execute(query).scalars()}


def _course_items(session: Session, courses, *conditions) -> list[Item]:
    """Items of the given live courses: one query for a whole clinic, chunked for a few patients."""
    query = select(Item).join(Course, Course.id == Item.course_id).where(Course.status != "stopped", *conditions)
    if len(courses) > _CHUNK:
        return list(session.exec(query).all())
    return _in_chunks(session, lambda c: query.where(Item.course_id.in_(c)), [c.id for c in courses])


def _course_item_rows(session: Session, courses, *conditions, by_course: bool = False) -> list:
    """Like _course_items, as plain rows (for rules that only read items). `by_course`: always per chunk
    of courses, on the (course_id, status) index (for a minority of the clinic's courses)."""
    query = (select(*Item.__table__.c).join(Course, Course.id == Item.course_id)
             .where(Course.status != "stopped", *conditions))
    if len(courses) > _CHUNK and not by_course:
        return list(session.execute(query).all())
    return _in_chunks(session, lambda c: query.where(Item.course_id.in_(c)), [c.id for c in courses])


def _checkpoints(session, library, courses, protocols, as_of, settings, config, summary, user):
    by_id = {c.id: c for c in courses}
    items = [i for i in _course_items(session, courses, Item.kind == "checkpoint", Item.status == "planned",
                                      Item.due <= as_of) if i.course_id in by_id]
    if not items:
        return []
    patients = {by_id[i.course_id].patient_id for i in items}
    assessments: dict[int, list] = {}
    for a in _in_chunks(session, lambda c: select(Assessment).where(Assessment.patient_id.in_(c)), patients):
        assessments.setdefault(a.patient_id, []).append(a)
    excluded: dict[int, set[str]] = {}
    rows = _in_chunks(session, lambda c: select(Course.patient_id, Course.drug).where(
        Course.patient_id.in_(c), Course.stop_category.in_(FAILED_CATEGORIES)), patients)
    for patient_id, drug in rows:
        excluded.setdefault(patient_id, set()).add(drug)
    algorithm = load_algorithm(config)
    mrns = _mrns(session, patients)
    candidates = []
    now = utcnow()
    for item in sorted(items, key=lambda i: (i.due, i.id)):
        course = by_id[item.course_id]
        protocol = protocols[course.id]
        suggestions, _ = algorithm.suggest(course.drug, protocol.drug_class, excluded.get(course.patient_id, set()))
        outcome = evaluate_checkpoint(protocol, item, course, assessments.get(course.patient_id, []), as_of,
                                      settings, suggestions)
        if outcome.status == "pending":
            continue
        if outcome.alert is not None:
            candidates.append(outcome.alert)
        if outcome.status in ("met", "failed", "partial"):
            before = audit.snapshot(item, "status", "done_on", "done_note")
            item.status = "done"
            item.done_on = outcome.assessment.assessed_on
            item.done_note = f"{outcome.status}: assessment #{outcome.assessment.id}"
            item.sequence += 1
            item.last_modified = now
            session.add(item)
            audit.record(session, user, f"checkpoint.{outcome.status}", "item", item.id, mrns.get(course.patient_id),
                         before, {**audit.snapshot(item, "status", "done_on", "done_note"),
                                  "response": outcome.summary, "missing": list(outcome.missing)})
            summary.outcomes.append(f"{mrns.get(course.patient_id)} {course.drug}: {outcome.summary}")
        if outcome.follow_up is not None:
            added = _add_follow_up(session, course, protocol.id, outcome.follow_up)
            if added is not None:
                summary.follow_ups.append(added)
    return candidates


def _add_follow_up(session: Session, course: Course, drug: str, follow: FollowUp) -> Item | None:
    """Add a rule-made item unless the same one exists (same course, origin, kind, due, tests)."""
    import uuid

    tests = join_codes(follow.tests)
    exists = session.exec(select(Item.id).where(
        Item.course_id == course.id, Item.origin == follow.origin, Item.kind == follow.kind,
        Item.due == follow.due, Item.tests == tests)).first()
    if exists is not None:
        return None
    now = utcnow()
    item = Item(uid=str(uuid.uuid4()), course_id=course.id, patient_id=course.patient_id, drug=drug,
                kind=follow.kind, due=follow.due, tests=tests, title=follow.title, sources=join_codes(follow.sources),
                week=follow.week, measure=follow.measure, target=follow.target, status="planned",
                origin=follow.origin, created_at=now, last_modified=now)
    session.add(item)
    session.flush()
    return item


def _thresholds(session, library, courses, protocols, summary, whole_clinic: bool = False):
    """Each live course's thresholds against the latest result per (patient, test), read per chunk of
    patients on the (patient_id, test, taken_on) index. A whole-clinic pass first asks SQL which latest
    results may breach (`_breaching`): only those patients and tests reach the rules, since a result
    outside that superset of every rule's condition cannot raise anything."""
    analytes = {t.analyte for c in courses for t in protocols[c.id].thresholds}
    if not analytes:
        return []
    if whole_clinic:
        newest = _breaching(session, library, courses, protocols)
        breaching = {patient_id for patient_id, _ in newest}
        courses = [c for c in courses if c.patient_id in breaching]
        latest, previous, baselines = _breaching_inputs(session, courses, protocols, newest)
    else:
        latest, previous, baselines = {}, {}, {}
        by_patient: dict[int, list] = {}
        for course in courses:
            by_patient.setdefault(course.patient_id, []).append(course)
        for chunk in _chunks(sorted(by_patient)):
            chunk_courses = [c for p in chunk for c in by_patient[p]]
            for whole, part in zip((latest, previous, baselines),
                                   _threshold_inputs(session, chunk_courses, protocols, analytes, chunk)):
                whole.update(part)
    return _threshold_candidates(session, library, courses, protocols, summary, latest, previous, baselines)


def _baseline_value(c, test: str):
    """A course's baseline for change rules, correlated on the course alias `c`: the value of the latest
    `test` result on or before the course start (one seek on the (patient_id, test, taken_on) index)."""
    b = LabResult.__table__.alias("b")
    return (select(b.c.value_num).where(b.c.patient_id == c.c.patient_id, b.c.test == test,
                                        b.c.taken_on <= c.c.start_on)
            .order_by(b.c.taken_on.desc(), b.c.id.desc()).limit(1).correlate(c).scalar_subquery())


def _breaching(session, library, courses, protocols) -> dict[tuple[int, str], int]:
    """{(patient, test): latest result id} for the latest results that breach some threshold of a protocol in use, by a
    condition that is a superset of each rule's own (so the rules, re-applied in Python, decide): the
    loosest `below`/`above` per test, every `above_uln` factor (the result's ref_high, else the
    vocabulary's), `equals`, and for change rules the loosest % against the course's baseline (the latest
    result on or before its start) for a result taken after the start of a live course of the patient."""
    from sqlalchemy import and_, case, exists, literal, not_, null, or_

    used = {id(protocols[c.id]): protocols[c.id] for c in courses}
    below, above, uln, equals, rise, fall = {}, {}, {}, {}, {}, {}
    for protocol in used.values():
        for t in protocol.thresholds:
            a = t.analyte
            if t.below is not None:
                below[a] = max(below.get(a, t.below), t.below)
            elif t.above is not None:
                above[a] = min(above.get(a, t.above), t.above)
            elif t.above_uln is not None:
                uln.setdefault(a, set()).add(t.above_uln)
            elif t.equals is not None:
                equals.setdefault(a, set()).update(t.equals)
            elif t.rise_pct is not None:
                rise[a] = min(rise.get(a, t.rise_pct), t.rise_pct)
            elif t.fall_pct is not None:
                fall[a] = min(fall.get(a, t.fall_pct), t.fall_pct)
    r = LabResult.__table__.alias("r")
    later = LabResult.__table__.alias("later")
    vocabulary = library.vocabulary
    conditions = {}  # test -> its superset condition
    for a in sorted(set(below) | set(above) | set(uln) | set(equals)):
        terms = []
        if a in below:
            terms.append(r.c.value_num < below[a])
        if a in above:
            terms.append(r.c.value_num > above[a])
        default = vocabulary.tests[a].ref_high if a in vocabulary else None
        high = func.coalesce(r.c.ref_high, literal(default) if default is not None else null())
        terms += [r.c.value_num > factor * high for factor in sorted(uln.get(a, ()))]
        if a in equals:
            terms.append(func.coalesce(r.c.value_text, "").in_(sorted(equals[a])))
        conditions[a] = or_(*terms)
    pairs: dict[tuple[int, str], int] = {}
    if conditions:
        # One scan of the results (CASE on the test: cheaper per row than an OR of tests), each candidate
        # row then checked for a later one with a seek on the (patient_id, test, taken_on) index.
        newer = exists().where(later.c.patient_id == r.c.patient_id, later.c.test == r.c.test,
                               or_(later.c.taken_on > r.c.taken_on,
                                   and_(later.c.taken_on == r.c.taken_on, later.c.id > r.c.id)))
        query = select(r.c.patient_id, r.c.test, r.c.id).where(case(conditions, value=r.c.test), not_(newer))
        pairs.update(((patient_id, test), result_id) for patient_id, test, result_id in session.execute(query))
    c = Course.__table__.alias("c")
    for a in sorted(set(rise) | set(fall)):
        # Per live course (not per result: these tests are common): its latest result and its baseline,
        # both one seek on the (patient_id, test, taken_on) index.
        x = LabResult.__table__.alias("x")
        newest = (select(x.c.id).where(x.c.patient_id == c.c.patient_id, x.c.test == a)
                  .order_by(x.c.taken_on.desc(), x.c.id.desc()).limit(1).correlate(c).scalar_subquery())
        baseline = _baseline_value(c, a)
        change = (r.c.value_num - baseline) / func.nullif(baseline, 0) * 100
        terms = []
        if a in rise:
            terms.append(change > rise[a])
        if a in fall:
            terms.append(change < -fall[a])
        query = (select(c.c.patient_id, r.c.id).select_from(c.join(r, r.c.id == newest))
                 .where(c.c.status != "stopped", r.c.taken_on > c.c.start_on, or_(*terms)).distinct())
        pairs.update(((patient_id, a), result_id) for patient_id, result_id in session.execute(query))
    return pairs


def _breaching_inputs(session, courses, protocols, newest: dict[tuple[int, str], int]):
    """What `_threshold_inputs` gives, for just the latest results in `newest` (by id): those rows, the
    result before each (for rules needing a confirming repeat; the next one down the same order), and
    the baselines of the change rules' tests for `courses`."""
    from sqlalchemy import and_, or_

    confirmed = {t.analyte for c in courses for t in protocols[c.id].thresholds if t.confirmed}
    change = {t.analyte for c in courses for t in protocols[c.id].thresholds if t.rise_pct or t.fall_pct}
    r = LabResult.__table__.alias("r")
    columns = (r.c.id, r.c.patient_id, r.c.test, r.c.value_num, r.c.value_text, r.c.unit, r.c.taken_on, r.c.ref_high)
    latest: dict[int, list] = {}
    previous: dict[tuple[int, str], object] = {}
    patients = {c.patient_id for c in courses}
    ids = sorted(result_id for (patient_id, _), result_id in newest.items() if patient_id in patients)
    for chunk in _chunks(ids):
        for row in session.execute(select(*columns).where(r.c.id.in_(chunk))):
            latest.setdefault(row.patient_id, []).append(row)
    again = sorted(result_id for (patient_id, test), result_id in newest.items()
                   if patient_id in patients and test in confirmed)
    if again:
        p = LabResult.__table__.alias("p")
        x = LabResult.__table__.alias("x")
        before = (select(x.c.id).where(x.c.patient_id == r.c.patient_id, x.c.test == r.c.test,
                                       or_(x.c.taken_on < r.c.taken_on,
                                           and_(x.c.taken_on == r.c.taken_on, x.c.id < r.c.id)))
                  .order_by(x.c.taken_on.desc(), x.c.id.desc()).limit(1).correlate(r).scalar_subquery())
        prev_columns = (p.c.id, p.c.patient_id, p.c.test, p.c.value_num, p.c.value_text, p.c.unit, p.c.taken_on,
                        p.c.ref_high)
        for chunk in _chunks(again):
            query = select(*prev_columns).select_from(r.join(p, p.c.id == before)).where(r.c.id.in_(chunk))
            for row in session.execute(query):
                previous[(row.patient_id, row.test)] = row
    baselines: dict[tuple[int, str], float | None] = {}
    c = Course.__table__.alias("c")
    for a in sorted(change):
        course_ids = sorted(course.id for course in courses if (course.patient_id, a) in newest)
        value = _baseline_value(c, a)
        for chunk in _chunks(course_ids):
            for course_id, base in session.execute(select(c.c.id, value).where(c.c.id.in_(chunk))):
                baselines[(course_id, a)] = base
    return latest, previous, baselines


def _threshold_inputs(session, courses, protocols, analytes, patients):
    """(latest results by patient, previous result by (patient, test), baseline value by (course, test)),
    for `patients` or (None) the whole clinic."""
    rank = func.row_number().over(partition_by=(LabResult.patient_id, LabResult.test),
                                  order_by=(LabResult.taken_on.desc(), LabResult.id.desc())).label("rank")
    ranked = select(LabResult.id, rank).where(LabResult.test.in_(analytes))
    if patients is not None:
        ranked = ranked.where(LabResult.patient_id.in_(patients))
    ranked = ranked.subquery()
    latest: dict[int, list] = {}
    previous: dict[tuple[int, str], object] = {}  # for rules that need a confirming repeat
    # Plain rows, not ORM objects: the rules only read these columns, and a clinic has many results.
    columns = (LabResult.id, LabResult.patient_id, LabResult.test, LabResult.value_num, LabResult.value_text,
               LabResult.unit, LabResult.taken_on, LabResult.ref_high, ranked.c.rank)
    for result in session.execute(select(*columns).join(ranked, ranked.c.id == LabResult.id)
                                  .where(ranked.c.rank <= 2)):
        if result.rank == 1:
            latest.setdefault(result.patient_id, []).append(result)
        else:
            previous[(result.patient_id, result.test)] = result

    # Baseline for change rules: the latest result on or before the course start.
    change = {t.analyte for c in courses for t in protocols[c.id].thresholds if t.rise_pct or t.fall_pct}
    baselines: dict[tuple[int, str], float | None] = {}
    if change:
        brank = func.row_number().over(partition_by=(Course.id, LabResult.test),
                                       order_by=(LabResult.taken_on.desc(), LabResult.id.desc())).label("rank")
        base = (select(Course.id.label("course_id"), LabResult.test, LabResult.value_num, brank)
                .join(LabResult, LabResult.patient_id == Course.patient_id)
                .where(Course.status != "stopped", LabResult.test.in_(change), LabResult.taken_on <= Course.start_on))
        if patients is not None:
            base = base.where(Course.patient_id.in_(patients))
        base = base.subquery()
        for course_id, test, value, _ in session.execute(select(base).where(base.c.rank == 1)):
            baselines[(course_id, test)] = value
    return latest, previous, baselines


def _threshold_candidates(session, library, courses, protocols, summary, latest, previous, baselines):
    vocabulary = library.vocabulary
    candidates = []
    for course in courses:
        protocol = protocols[course.id]
        wanted = {t.analyte for t in protocol.thresholds}
        for result in latest.get(course.patient_id, []):
            if result.test not in wanted:
                continue
            ref_high = vocabulary.tests[result.test].ref_high if result.test in vocabulary else None
            alerts, follow_ups = threshold_candidates(protocol, course, result, baselines.get((course.id, result.test)),
                                                      ref_high, previous.get((course.patient_id, result.test)))
            candidates += alerts
            for follow in follow_ups:
                added = _add_follow_up(session, course, protocol.id, follow)
                if added is not None:
                    summary.follow_ups.append(added)
    return candidates


def _gates(session, courses, protocols):
    from tracker.services.courses import missing_gate_tests

    overridden = [c for c in courses if c.gate_override]
    candidates = []
    for course in overridden:  # rare: only courses started with --override-gate
        patient = session.get(Patient, course.patient_id)
        missing = missing_gate_tests(session, patient, protocols[course.id], course.start_on)
        candidates += gate_candidates(protocols[course.id], course, missing)
    return candidates


def _limits(session, courses, protocols, as_of, settings):
    with_limits = [c for c in courses if protocols[c.id].limits is not None]
    if not with_limits:
        return []
    first: dict[int, Item] = {}
    for item in _course_item_rows(session, with_limits, Item.kind == "limit", Item.status == "planned",
                                  by_course=True):
        if item.course_id not in first or item.due < first[item.course_id].due:
            first[item.course_id] = item
    candidates = []
    for course in with_limits:
        candidates += limit_candidates(protocols[course.id], course, first.get(course.id), as_of,
                                       settings.limit_lead_days)
    return candidates


def _overdue(session, courses, as_of, settings):
    cutoff = as_of - dt.timedelta(days=settings.overdue_grace_days)
    items = _course_item_rows(session, courses, Item.kind.in_(("lab", "baseline")), Item.status == "planned",
                              Item.due < cutoff)
    live = {c.id for c in courses}
    return [c for c in (overdue_candidate(i, as_of, settings.overdue_grace_days) for i in items
                        if i.course_id in live) if c is not None]


# --------------------------------------------------------------------------------------------------------
# Reconciling candidates with the alert table


def _mrns(session: Session, patient_ids) -> dict[int, str]:
    return dict(_in_chunks(session, lambda c: select(Patient.id, Patient.mrn).where(Patient.id.in_(c)), patient_ids))


def _reconcile(session, candidates, as_of, kinds, patient_ids, user, summary: EvaluationSummary,
               partial: dict[str, set[int]] | None = None) -> None:
    partial = partial or {}
    wanted = {c.condition_key: c for c in candidates}
    # Live alerts as plain rows; ORM objects are loaded only for the few that change.
    scope = select(A.c.id, A.c.condition_key, A.c.patient_id, A.c.course_id, A.c.kind, A.c.status,
                   A.c.snoozed_until).where(A.c.kind.in_(kinds), A.c.status.in_(LIVE))
    if patient_ids is not None:
        live_rows = _in_chunks(session, lambda c: scope.where(A.c.patient_id.in_(c)), patient_ids)
    else:
        live_rows = list(session.execute(scope).all())
    live = {row.condition_key: row for row in live_rows}
    unseen = [k for k in wanted if k not in live]
    previous: dict[str, tuple] = {}  # condition key -> (id, resolution) of its newest alert
    for alert_id, key, resolution in _in_chunks(
            session, lambda c: select(A.c.id, A.c.condition_key, A.c.resolution).where(A.c.condition_key.in_(c)),
            unseen):
        if key not in previous or alert_id > previous[key][0]:
            previous[key] = (alert_id, resolution)
    mrns = _mrns(session, {c.patient_id for c in candidates} | {r.patient_id for r in live_rows})
    now = utcnow()

    new_rows, reopen = [], []
    for key, cand in wanted.items():
        if key in live:
            continue
        old = previous.get(key)
        if old is not None:
            if (old[1] or "").startswith(AUTO):  # cleared by itself, now back
                reopen.append((old[0], cand))
            continue  # resolved by hand: that decision stands for this condition
        new_rows.append({
            "condition_key": key, "patient_id": cand.patient_id, "course_id": cand.course_id,
            "item_id": cand.item_id, "result_id": cand.result_id, "drug": cand.drug, "kind": cand.kind,
            "severity": cand.severity, "status": "open", "raised_on": as_of, "message": cand.message,
            "suggestions": join_codes(cand.suggestions), "sources": join_codes(cand.sources), "value": cand.value,
            "limit_text": cand.limit_text, "created_at": now, "updated_at": now})
    if reopen:
        loaded = _alerts_by_id(session, [alert_id for alert_id, _ in reopen])
        for alert_id, cand in reopen:
            old = loaded[alert_id]
            before = audit.snapshot(old)
            old.status, old.reopened_on, old.resolved_on, old.resolution = "open", as_of, None, None
            old.message, old.value = cand.message, cand.value
            old.updated_at = now
            session.add(old)
            audit.record(session, user, "alert.reopen", "alert", old.id, mrns.get(old.patient_id), before,
                         {**audit.snapshot(old), "why": "condition back"})
            summary.reopened.append(old)
    if new_rows:
        summary.raised.extend(_insert_alerts(session, new_rows, user, mrns, now))

    stopped: set[int] = set()
    failed_rows = [r for r in live_rows if r.kind == "checkpoint_failed" and r.course_id]
    if failed_rows:
        stopped = set(_in_chunks(session, lambda c: select(Course.id).where(Course.id.in_(c),
                                                                          Course.status == "stopped"),
                                 [r.course_id for r in failed_rows]))
    changes = []  # (row, what)
    for row in live_rows:
        evaluated = row.kind not in partial or row.patient_id in partial[row.kind]
        if row.kind in DERIVED_KINDS and row.condition_key not in wanted and evaluated:
            changes.append((row, "gone"))
        elif row.kind == "checkpoint_failed" and row.course_id in stopped:
            changes.append((row, "stopped"))
        elif row.status == "snoozed" and row.snoozed_until is not None and row.snoozed_until <= as_of:
            changes.append((row, "snooze"))
    loaded = _alerts_by_id(session, [row.id for row, _ in changes])
    for plain, what in changes:
        row = loaded[plain.id]
        if what == "gone":
            _resolve(session, row, as_of, f"{AUTO}condition no longer present as of {as_of}", user,
                     mrns.get(row.patient_id))
            summary.resolved.append(row)
        elif what == "stopped":
            _resolve(session, row, as_of, f"{AUTO}course stopped", user, mrns.get(row.patient_id))
            summary.resolved.append(row)
        else:
            before = audit.snapshot(row)
            row.status, row.reopened_on, row.snoozed_until, row.updated_at = "open", as_of, None, now
            session.add(row)
            audit.record(session, user, "alert.reopen", "alert", row.id, mrns.get(row.patient_id), before,
                         {**audit.snapshot(row), "why": "snooze ended"})
            summary.reopened.append(row)
    session.flush()


def _alerts_by_id(session: Session, ids) -> dict[int, Alert]:
    return {row.id: row for row in _in_chunks(session, lambda c: select(Alert).where(Alert.id.in_(c)), ids)}


def _insert_alerts(session: Session, rows: list[dict], user: str, mrns: dict, now: dt.datetime) -> list:
    """Insert new alerts and their `alert.raise` audit events in bulk (tracker.db.bulk); the audit rows are
    what audit.record would write for each."""
    from tracker.db.bulk import bulk_insert, bulk_insert_returning_ids

    session.flush()  # rows the rules added (follow-up items) go first
    conn = session.connection()
    empty = dict.fromkeys(Alert.model_fields)
    # Dates and timestamps as ISO text; the encoder calls `default` only for values JSON has no form for.
    encode = json.JSONEncoder(sort_keys=True, default=_iso_or_str).encode
    ids = bulk_insert_returning_ids(conn, A, rows)
    events, raised = [], []
    for alert_id, values in zip(ids, rows):
        snapshot = {**empty, **values, "id": alert_id}
        events.append({"at": now, "user": user, "action": "alert.raise", "entity": "alert",
                       "entity_id": alert_id, "mrn": mrns.get(values["patient_id"]), "before": None,
                       "after": encode(snapshot)})
        raised.append(RaisedAlert(alert_id, values["condition_key"], values["patient_id"], values["course_id"],
                                  values["kind"], values["severity"], values["message"]))
    bulk_insert(conn, AuditEvent.__table__, events)
    return raised


def _iso_or_str(value) -> str:
    return value.isoformat() if isinstance(value, (dt.date, dt.datetime)) else str(value)


def _resolve(session, row: Alert, on: dt.date, reason: str, user: str, mrn: str | None) -> None:
    before = audit.snapshot(row)
    row.status, row.resolved_on, row.resolution, row.updated_at = "resolved", on, reason, utcnow()
    session.add(row)
    audit.record(session, user, "alert.resolve", "alert", row.id, mrn, before, audit.snapshot(row))


# --------------------------------------------------------------------------------------------------------
# Hooks: evaluation as data lands (only rules that need no site config)


def after_result(session: Session, library: ProtocolLibrary, patient: Patient, result: LabResult,
                 completed: list[Item], today: dt.date, user: str) -> EvaluationSummary:
    """A result just landed: its thresholds and gates now; the overdue alerts of items it completed clear."""
    summary = evaluate_clinic(session, library, today, None, patient_ids=[patient.id],
                              kinds=("threshold", "gate"), user=user)
    keys = [f"overdue:item{i.id}" for i in completed]
    for row in _in_chunks(session, lambda c: select(Alert).where(Alert.condition_key.in_(c),
                                                                 Alert.status.in_(LIVE)), keys):
        _resolve(session, row, result.taken_on, f"{AUTO}item done by result #{result.id}", user, patient.mrn)
        summary.resolved.append(row)
    return summary


def after_start(session: Session, library: ProtocolLibrary, patient: Patient, today: dt.date,
                user: str) -> EvaluationSummary:
    """A course just started: an overridden gate and results already on record (TPMT low) raise now."""
    return evaluate_clinic(session, library, today, None, patient_ids=[patient.id], kinds=("threshold", "gate"),
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
    if text is None or not text.strip():
        raise InputError(name, text or "", "must not be empty")
    return text.strip()


def acknowledge(session: Session, alert_id: int, note: str, user: str) -> Alert:
    row = get_alert(session, alert_id)
    note = _required("note", note)
    if row.status == "resolved":
        raise ConflictError(f"alert: {alert_id}: already resolved on {row.resolved_on}")
    before = audit.snapshot(row)
    row.status, row.note, row.snoozed_until, row.updated_at = "acknowledged", note, None, utcnow()
    session.add(row)
    audit.record(session, user, "alert.ack", "alert", row.id, _mrn(session, row), before, audit.snapshot(row))
    return row


def snooze(session: Session, alert_id: int, until: dt.date, reason: str, user: str, today: dt.date) -> Alert:
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


def resolve(session: Session, alert_id: int, reason: str, user: str, today: dt.date) -> Alert:
    row = get_alert(session, alert_id)
    reason = _required("reason", reason)
    if row.status == "resolved":
        raise ConflictError(f"alert: {alert_id}: already resolved on {row.resolved_on}")
    _resolve(session, row, today, reason, user, _mrn(session, row))
    return row


# --------------------------------------------------------------------------------------------------------
# Views


def alert_row(row: Alert, mrn: str | None) -> dict:
    """The stable JSON shape of an alert."""
    return {
        "id": row.id,
        "mrn": mrn,
        "drug": row.drug,
        "kind": row.kind,
        "severity": row.severity,
        "status": row.status,
        "raised_on": row.raised_on.isoformat(),
        "message": row.message,
        "suggestions": codes(row.suggestions),
        "sources": codes(row.sources),
        "value": row.value,
        "limit": row.limit_text,
        "note": row.note,
        "snoozed_until": row.snoozed_until.isoformat() if row.snoozed_until else None,
        "reopened_on": row.reopened_on.isoformat() if row.reopened_on else None,
        "resolved_on": row.resolved_on.isoformat() if row.resolved_on else None,
        "resolution": row.resolution,
        "condition_key": row.condition_key,
        "course_id": row.course_id,
        "item_id": row.item_id,
        "result_id": row.result_id,
    }


SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


def list_alerts(session: Session, include_all: bool = False, mrn: str | None = None) -> list[dict]:
    query = select(Alert, Patient.mrn).join(Patient, Patient.id == Alert.patient_id)
    if not include_all:
        query = query.where(Alert.status == "open")
    if mrn:
        query = query.where(Patient.mrn == mrn)
    rows = [alert_row(a, m) for a, m in session.exec(query).all()]
    return sorted(rows, key=lambda r: (r["status"] == "resolved", SEVERITY_ORDER.get(r["severity"], 3),
                                       r["mrn"] or "", r["raised_on"], r["id"]))


def show_alert(session: Session, alert_id: int) -> dict:
    row = get_alert(session, alert_id)
    out = alert_row(row, _mrn(session, row))
    events = session.exec(select(AuditEvent).where(AuditEvent.entity == "alert", AuditEvent.entity_id == row.id)
                          .order_by(AuditEvent.id)).all()
    out["history"] = [{"at": e.at.isoformat(), "user": e.user, "action": e.action} for e in events]
    return out
