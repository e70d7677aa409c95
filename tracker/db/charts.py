"""Loading charts: whose to load for a review, and each patient's Chart (tracker/core/chart.py).

SQL here only narrows which rows to load; every rule is the core's. The narrowings are derived from the
core: the threshold bounds (tracker/core/prefilter.py) choose the patients whose results of a test's latest day
(core: Chart.latest_day, the worst of which counts) may breach,
the review's item windows (tracker/core/review.py) which planned items a chart holds, and the tests the
patient's protocols read which results it holds. Loading is set-based, in chunks of patients.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, namedtuple
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import groupby
from operator import attrgetter

from sqlalchemy import and_, case, exists, func, literal, not_, null, or_, select, text

from tracker.core.alerts import AlertSettings
from tracker.core.chart import Chart, ChartCourse, build_results
from tracker.core.prefilter import ThresholdBounds
from tracker.core.protocol import Protocol
from tracker.core.review import (
    Review,
    draws_alerts_settled,
    review_of_draws,
    review_windows,
    reviewed_from_draws,
    tests_read,
)
from tracker.core.terms import FAILED_STOP_CATEGORIES
from tracker.core.vocabulary import Vocabulary
from tracker.core.worklist import course_is_live
from tracker.db.tables import Alert, Assessment, Course, Item, LabResult, Patient
from tracker.db.rows import among, chunks, narrowed, plain_rows
from tracker.db.snapshots import course_protocol
from tracker.db.windows import item_where

CHUNK = 500
LIVE_ALERT = ("open", "acknowledged", "snoozed")
R = LabResult.__table__
I = Item.__table__
C = Course.__table__
# What a chart reads of each table (plain rows: a clinic has many).
RESULT_COLUMNS = (R.c.id, R.c.patient_id, R.c.test, R.c.value_num, R.c.value_text, R.c.unit, R.c.taken_on,
                  R.c.ref_high, R.c.reported_value, R.c.reported_unit)
ITEM_COLUMNS = (I.c.id, I.c.course_id, I.c.patient_id, I.c.drug, I.c.kind, I.c.due, I.c.status, I.c.week,
                I.c.origin, I.c.title, I.c.sources, I.c.tests, I.c.received)
# Read with each windowed item: its course's version (the protocol's name) and whether it is live today.
WINDOWED_COURSE_COLUMNS = (C.c.drug.label("course_drug"), C.c.protocol_hash.label("course_protocol_hash"),
                           C.c.status.label("course_status"), C.c.stop_on.label("course_stop_on"))
COURSE_COLUMNS = (C.c.id, C.c.patient_id, C.c.drug, C.c.status, C.c.start_on, C.c.stop_on, C.c.gate_override,
                  C.c.protocol_hash)
# A stopped course as a chart holds it (Chart.stopped_courses: what continuous runs and failures read).
StoppedCourse = namedtuple("StoppedCourse", "patient_id drug start_on stop_on stop_category id status")


def live_courses(session, patient_ids=None) -> list:
    """Live (not stopped) courses as plain rows, of `patient_ids` or of the whole clinic."""
    query = select(*COURSE_COLUMNS).where(C.c.status != "stopped")
    if patient_ids is None:
        return plain_rows(session, query)
    return [row for narrow in narrowed(session, query, C.c.patient_id, patient_ids)
            for row in plain_rows(session, narrow)]


# A course's (drug, protocol version): all that ProtocolsOfCourses reads of a course, where no course row is at
# hand (a windowed item's course, a review worker's follow-up).
CourseVersion = namedtuple("CourseVersion", "drug protocol_hash")


class ProtocolsOfCourses:
    """The protocol each course was planned with, looked up once per (drug, version)."""

    def __init__(self, session, library):
        self._lookup = lambda course: course_protocol(session, library, course)
        self._cache: dict[tuple, Protocol] = {}

    def __call__(self, course) -> Protocol:
        key = (course.drug, course.protocol_hash)
        if key not in self._cache:
            self._cache[key] = self._lookup(course)
        return self._cache[key]


# --------------------------------------------------------------------------------------------------------
# Whom to review


@dataclass(frozen=True)
class ReviewSet:
    """Whom a pass reviews: `full` on every rule, `dated` (only in an incremental pass) on the rules of
    DATED_KINDS alone, which read no results (tracker/core/alerts.py)."""

    full: frozenset[int]
    dated: frozenset[int] = frozenset()


def patients_to_review(session, protocol_of: ProtocolsOfCourses, vocabulary: Vocabulary, today: dt.date,
                       settings: AlertSettings, *, changed: set[int] | None = None,
                       items_by_patient: dict[int, list] | None = None, helper=None) -> ReviewSet:
    """Patients whose review may differ from what the alert table holds.

    Full pass (`changed` None): on every rule, the patients whose change-driven conditions (threshold, gate:
    core/alerts.py CHANGE_DRIVEN_KINDS) may hold or may have to clear: a result of a test's latest day that
    may breach (the core's bounds), an overridden gate, or a live alert. On the dated rules only (no results loaded), the
    others with a planned item in a review window: with no result that may breach, no overridden gate and
    no live alert, the change-driven rules have nothing to say about them.
    Incremental pass (after a full pass with the same protocols): the changed patients (a result, an
    assessment, a course event) on every rule, and the others with an item in a review window on the dated
    rules: nothing but a change moves the change-driven ones.
    `items_by_patient`: the clinic's `windowed_items`, if the caller has read them already;
    `helper`: see `breaching_patients`."""
    if items_by_patient is not None:
        windowed = set(items_by_patient)
    else:
        windowed = set(session.execute(_windowed(today, settings).with_only_columns(I.c.patient_id).distinct())
                       .scalars())
    if changed is not None:
        return ReviewSet(frozenset(changed), frozenset(windowed - changed))
    # The full pass only (a typical night reads none of this): the live courses' versions, each once, and the
    # few courses of interest, not every live course (a row each: ~890,000 at 1,000,000 patients).
    ids = set(session.execute(select(C.c.patient_id).where(C.c.status != "stopped", C.c.gate_override.is_not(None)))
              .scalars())
    ids.update(breaching_patients(session, versions_in_use(session), protocol_of, vocabulary, helper))
    ids.update(session.execute(select(Alert.patient_id).where(Alert.status.in_(LIVE_ALERT)).distinct()).scalars())
    return ReviewSet(frozenset(ids), frozenset(windowed - ids))


def _pre_start_readings(course, test: str, readings: int, *, numbered: bool = False):
    """The latest `readings` numeric `test` results on or before a course's start, newest first, correlated on
    the course alias (core: Chart.lab_baseline's readings): their values `v` and, if `numbered`, their places
    `n` (1: the latest); a seek on the (patient_id, test, taken_on) index."""
    b = R.alias("b")
    order = (b.c.taken_on.desc(), b.c.id.desc())
    columns = [b.c.value_num.label("v")]
    if numbered:
        columns.append(func.row_number().over(order_by=order).label("n"))
    return (select(*columns).where(b.c.patient_id == course.c.patient_id, b.c.test == test,
                                   b.c.taken_on <= course.c.start_on, b.c.value_num.is_not(None))
            .order_by(*order).limit(readings).correlate(course))


def _baseline_value(course, test: str, readings: int = 1):
    """A course's baseline for change rules, correlated on the course alias (core: Chart.lab_baseline):
    the mean of its `readings` latest pre-start readings (one: the latest)."""
    latest = _pre_start_readings(course, test, readings)
    if readings == 1:
        return latest.scalar_subquery()
    rows = latest.subquery()
    return select(func.avg(rows.c.v)).scalar_subquery()


def bounds_condition(r, test: str, bounds: ThresholdBounds, default_uln: float | None, baseline=None):
    """`ThresholdBounds.may_breach` as SQL on result alias `r` (and a course's baseline expression)."""
    terms = []
    if bounds.below is not None:
        terms.append(r.c.value_num < bounds.below)
    if bounds.above is not None:
        terms.append(r.c.value_num > bounds.above)
    high = func.coalesce(r.c.ref_high, literal(default_uln) if default_uln is not None else null())
    terms += [r.c.value_num > factor * high for factor in sorted(bounds.uln_factors)]
    if bounds.equals:
        terms.append(func.coalesce(r.c.value_text, "").in_(sorted(bounds.equals)))
    if baseline is not None:
        change = (r.c.value_num - baseline) / func.nullif(baseline, 0) * 100
        if bounds.rise_pct is not None:
            terms.append(change > bounds.rise_pct)
        if bounds.fall_pct is not None:
            terms.append(change < -bounds.fall_pct)
    return or_(*terms) if terms else literal(False)


def latest_breach_candidates(session, bounds: dict, vocabulary: Vocabulary, *, after_id: int | None = None,
                             up_to_id: int | None = None):
    """The results of their test's latest day (patient_id, test, value_num, value_text, ref_high) that may
    breach an absolute bound of `bounds` (the union over the protocols in use): one scan of the clinic's
    results, the largest read of a full pass; of the results with an id in (`after_id`, `up_to_id`] if given
    (a share of the scan: whether a result is of its test's latest day is still asked of all of the patient's
    results). Every result of that day, not only the one entered last: the core reads the worst of the day
    (Chart.latest_day), so a breaching result entered before a normal one the same day still counts. The
    same one seek per candidate as for "the latest result" (a later day's result, or the newest day)."""
    absolute = {test: b for test, b in bounds.items() if b.absolute}
    if not absolute:
        return []
    r, later = R.alias("r"), R.alias("later")
    # The CASE compares a result's test with each WHEN in turn until one matches: most of the scan's CPU (a
    # count of the table with it, at 100,000 patients: PostgreSQL 1.4 s in one process, SQLite 1.25 s; without
    # it 0.2 and 0.04 s). With the commonest tests first a result takes about half as many comparisons (1.0
    # and 0.92 s). The order changes no result: the WHENs are distinct tests.
    common = _test_frequencies(session)
    conditions = {test: bounds_condition(r, test, b, _uln(vocabulary, test))
                  for test, b in sorted(absolute.items(), key=lambda item: (-common[item[0]], item[0]))}
    columns = (r.c.patient_id, r.c.test, r.c.value_num, r.c.value_text, r.c.ref_high)
    if session.get_bind().dialect.name == "postgresql":
        # PostgreSQL plans NOT EXISTS as a hash anti-join of every result against the candidates (it
        # expects a million candidates and finds ~56,000 at 100,000 patients): a hash of all 4.4 million
        # results spilling to disk. Instead the candidates come from a parallel scan fenced off (OFFSET 0:
        # planned on its own, not merged into the outer query), and each is kept if its day is its (patient,
        # test)'s newest: one backward seek on the (patient_id, test, taken_on) index per candidate.
        admitted = (select(r.c.taken_on, *columns).where(case(conditions, value=r.c.test),
                                                         *_id_range(r, after_id, up_to_id))
                    .offset(0).subquery("s"))
        newest_day = (select(later.c.taken_on).where(later.c.patient_id == admitted.c.patient_id,
                                                     later.c.test == admitted.c.test)
                      .order_by(later.c.taken_on.desc()).limit(1).correlate(admitted))
        query = select(*(admitted.c[c.name] for c in columns)).where(
            admitted.c.taken_on == newest_day.scalar_subquery())
        with _cheap_rows_from_workers(session):
            return session.execute(query)  # planned, run and fetched here: psycopg's cursor is client-side
    else:
        # One scan of the results (CASE on the test: cheaper per row than an OR of tests), each candidate
        # then checked for one of a later day with a seek on the (patient_id, test, taken_on) index. No
        # DISTINCT (the caller dedupes): with it SQLite walks the results in the index's order, a random read
        # of the table per row; without it, one sequential scan (~40% less CPU at 100k patients).
        newer = exists().where(later.c.patient_id == r.c.patient_id, later.c.test == r.c.test,
                               later.c.taken_on > r.c.taken_on)
        query = select(*columns).where(case(conditions, value=r.c.test), not_(newer), *_id_range(r, after_id, up_to_id))
    return session.execute(query)


# How many of the clinic's results `_test_frequencies` reads, spread evenly over their ids.
TEST_SAMPLE = 1000


def _test_frequencies(session) -> Counter:
    """How many results each test has among TEST_SAMPLE of the clinic's, evenly spread from the lowest id to the
    highest (one probe of the primary key each): enough to rank the commonest tests, at 100,000 patients a
    tenth of all results each (the blood count's five, ALT, creatinine, albumin), the others about a
    fiftieth or less. Counting every result would cost more than the scan it orders (SQLite: 1.6 s)."""
    # Each alone in its subquery: SQLite finds a lone min() or max() in the primary key, but scans the table
    # for both in one (0.4 s at 100,000 patients).
    low, high = session.execute(select(select(func.min(R.c.id)).scalar_subquery(),
                                       select(func.max(R.c.id)).scalar_subquery())).one()
    counts: Counter = Counter()
    if low is None:
        return counts
    sample = range(low, high + 1, -(-(high - low + 1) // TEST_SAMPLE))  # the step rounded up: at most TEST_SAMPLE
    for query in narrowed(session, select(R.c.test), R.c.id, sample):
        counts.update(session.execute(query).scalars())
    return counts


# The cost PostgreSQL's planner gives moving a row from a parallel worker to the process that runs the query
# (its default: 0.1), for the scan of results alone (`_cheap_rows_from_workers`).
SCAN_PARALLEL_TUPLE_COST = "0.01"


@contextmanager
def _cheap_rows_from_workers(session):
    """The scan of every result planned with rows from parallel workers costed cheap (PostgreSQL), then the
    transaction's setting as it was. The planner cannot estimate the scan's CASE of bounds and takes it for
    half the table: at 1,000,000 patients 22 million candidates (554,100 found), which at the default cost
    made moving them from two workers look dearer than one process scanning alone, so one process did
    (13 s of a 16 s statement); split three ways the same scan took 3.8 s. At 100,000 patients the
    planner split it already. Set for the transaction (`set_config`'s `is_local`), restored after."""
    current = text("SELECT current_setting('parallel_tuple_cost')")
    change = text("SELECT set_config('parallel_tuple_cost', :cost, true)")
    before = session.execute(current).scalar_one()
    session.execute(change, {"cost": SCAN_PARALLEL_TUPLE_COST})
    yield  # a statement that fails aborts the transaction, whose rollback undoes the setting too
    session.execute(change, {"cost": before})


def _id_range(table, after_id: int | None, up_to_id: int | None) -> list:
    return ([table.c.id > after_id] if after_id is not None else []) + (
        [table.c.id <= up_to_id] if up_to_id is not None else [])


def _bounds_in_use(courses, protocol_of: ProtocolsOfCourses, vocabulary: Vocabulary):
    """The protocol of each (drug, version) among `courses` (or `versions_in_use`: one lookup per version, not
    one per course: a whole clinic has ~100,000 live courses), the union of their threshold bounds per test,
    and each version's own."""
    from tracker.core.prefilter import threshold_bounds

    versions = {(c.drug, c.protocol_hash): c for c in courses}
    protocols = {key: protocol_of(course) for key, course in versions.items()}
    bounds = threshold_bounds({id(p): p for p in protocols.values()}.values(), vocabulary)
    own = {key: threshold_bounds([protocol], vocabulary) for key, protocol in protocols.items()}
    return protocols, bounds, own


def breaching_patients(session, versions, protocol_of: ProtocolsOfCourses, vocabulary: Vocabulary,
                       helper=None) -> set[int]:
    """Patients with a result of a test's latest day that may breach a threshold of one of their own live
    courses' protocols (core bounds), or on a protocol estimating a clearance from creatinine. `versions`: the (drug,
    protocol_hash) of every live course (`versions_in_use`, or the courses themselves). `helper` (a review worker) does
    `prefilter_share` on a connection of its own: this connection scans the results up to its `split_at`, then
    takes `helper.prefilter_share()`, or does that share itself if the helper could not (None)."""
    from tracker.core.renal import estimates_clearance_from_creatinine

    protocols, bounds, own = _bounds_in_use(versions, protocol_of, vocabulary)
    # A Cockcroft-Gault clearance depends on age, weight and sex, not on a bound of one result: every patient
    # on such a protocol may breach (few: baricitinib and apremilast courses).
    clearance = {key for key, protocol in protocols.items() if estimates_clearance_from_creatinine(protocol)}
    out: set[int] = set()
    if clearance:
        out.update(patient_id for patient_id, drug, protocol_hash in session.execute(
            select(C.c.patient_id, C.c.drug, C.c.protocol_hash)
            .where(C.c.status != "stopped", C.c.drug.in_(sorted({drug for drug, _ in clearance}))))
            if (drug, protocol_hash) in clearance)
    split_at = helper.split_at if helper is not None else None
    candidates = list(latest_breach_candidates(session, bounds, vocabulary, up_to_id=split_at))
    share = helper.prefilter_share() if helper is not None else None
    if share is None:
        share = _share(session, protocols, bounds, own, vocabulary, split_at)
    changed, rest = share
    candidates += rest
    return out | _breaching_on_own_protocols(session, candidates, own, vocabulary) | changed


def versions_in_use(session) -> list:
    """The (drug, protocol_hash) of the live courses, each once."""
    return plain_rows(session, select(C.c.drug, C.c.protocol_hash).where(C.c.status != "stopped").distinct())


def prefilter_share(session, protocol_of: ProtocolsOfCourses, vocabulary: Vocabulary, after_id: int | None):
    """What a review worker does of `breaching_patients` (services/review_worker.py): the patients with a
    result of a test's latest day that may have moved from their course's baseline past a relative bound (a few seeks per live
    course), and the scan of the results with an id past `after_id` (none if None)."""
    return _share(session, *_bounds_in_use(versions_in_use(session), protocol_of, vocabulary), vocabulary, after_id)


def _share(session, protocols: dict, bounds: dict, own: dict, vocabulary: Vocabulary, after_id: int | None):
    """`prefilter_share` given the versions' protocols and bounds: (patients changed from baseline, the scan's
    candidates past `after_id` as tuples, none if None)."""
    changed = _changed_from_baseline(session, bounds, own, protocols)
    rest = ([tuple(row) for row in latest_breach_candidates(session, bounds, vocabulary, after_id=after_id)]
            if after_id is not None else [])
    return changed, rest


def _changed_from_baseline(session, bounds: dict, own: dict, protocols: dict) -> set[int]:
    """Patients of a live course with a result of a test's latest day that may have risen or fallen from the
    course's baseline past a relative bound of the protocols in use."""
    out: set[int] = set()
    c, r = C.alias("c"), R.alias("r")
    postgresql = session.get_bind().dialect.name == "postgresql"
    for test, b in sorted(bounds.items()):
        if not b.relative:
            continue
        # Per live course (these tests are common): the results of its test's latest day (the core reads the
        # worst of them: Chart.latest_day), one seek for the day and one for its results, and its baseline.
        x, y = R.alias("x"), R.alias("y")
        newest_day = (select(y.c.taken_on).where(y.c.patient_id == c.c.patient_id, y.c.test == test)
                      .order_by(y.c.taken_on.desc()).limit(1).correlate(c).scalar_subquery())
        newest = (select(x.c.id, x.c.taken_on, x.c.value_num, x.c.value_text, x.c.ref_high)
                  .where(x.c.patient_id == c.c.patient_id, x.c.test == test, x.c.taken_on == newest_day)
                  .correlate(c))
        relative = ThresholdBounds(rise_pct=b.rise_pct, fall_pct=b.fall_pct)
        # Each course's protocol says how many pre-start readings its baseline averages; any of the counts
        # in use may apply (a superset of what the core judges per course).
        counts = sorted({protocol.baseline_readings(test) for protocol in protocols.values()})
        # Only the courses of a drug with a version whose own rules read a change of this test: the two
        # seeks per course are the query's cost, and most courses (dupilumab's) have no such rule.
        drugs = sorted({key[0] for key, b in own.items() if test in b and b[test].relative})
        if postgresql:
            # PostgreSQL hashes the whole result table to join `r.id = (newest id)` (seconds at 100,000
            # patients); as a LATERAL subquery the newest day's results are the seeks per course intended.
            latest = newest.lateral("r")
            joined = c.join(latest, literal(True))
            # Every baseline of the test from one LATERAL: one seek for the course's latest pre-start
            # readings (as many as the largest count), each count's mean over the first of them (the mean
            # of one reading is that reading). One LATERAL a count sought the same readings again (a seek
            # per course each); a LATERAL, not a scalar subquery, so that the change's numerator and
            # denominator read one computed baseline instead of a subplan each.
            readings = _pre_start_readings(c, test, max(counts), numbered=True).subquery("readings")
            means = select(*(func.avg(readings.c.v).filter(readings.c.n <= n).label(f"v{n}")
                             for n in counts)).lateral("baseline")
            joined = joined.join(means, literal(True))
            baselines = {n: means.c[f"v{n}"] for n in counts}
            after_start = latest.c.taken_on > c.c.start_on
        else:
            latest = r
            joined = c.join(r, and_(r.c.patient_id == c.c.patient_id, r.c.test == test, r.c.taken_on == newest_day))
            baselines = {n: _baseline_value(c, test, n) for n in counts}
            # On the newest day, not on `r`: SQLite would seek `r` by the range `taken_on > start_on` (every
            # result since the start, the newest day sought again for each) instead of the newest day alone.
            after_start = newest_day > c.c.start_on
        query = (select(c.c.patient_id).select_from(joined)
                 .where(c.c.status != "stopped", c.c.drug.in_(drugs), after_start,
                        or_(*(bounds_condition(latest, test, relative if n == 1 else _loosened(relative), None,
                                               baselines[n])
                              for n in counts))).distinct())
        out.update(session.execute(query).scalars())
    return out


def _breaching_on_own_protocols(session, candidates, own: dict, vocabulary: Vocabulary) -> set[int]:
    """The patients of `candidates` (results of their test's latest day admitted by the bounds of every protocol in use: patient_id,
    test, value_num, value_text, ref_high) whose result may breach the bounds (`own`: per (drug, version)) of
    a protocol of one of their own live courses (core: `ThresholdBounds.may_breach`). The SQL's union of
    bounds admits, say, an ALT over the ULN for a dupilumab patient because methotrexate's rules read ALT:
    about a third of a cold night's candidates at 100,000 patients, each a chart loaded and reviewed for
    nothing."""
    # The candidates are few: their patients' live courses only.
    candidates = list(candidates)
    versions_of: dict[int, set] = {}
    query = select(C.c.patient_id, C.c.drug, C.c.protocol_hash).where(C.c.status != "stopped")
    for narrow in narrowed(session, query, C.c.patient_id, {row[0] for row in candidates}):
        for patient_id, drug, protocol_hash in session.execute(narrow):
            versions_of.setdefault(patient_id, set()).add((drug, protocol_hash))
    out: set[int] = set()
    for patient_id, test, value_num, value_text, ref_high in candidates:
        if patient_id in out:
            continue
        uln = ref_high if ref_high is not None else _uln(vocabulary, test)
        for key in versions_of.get(patient_id, ()):
            bounds = own[key].get(test)
            if bounds is not None and bounds.absolute and bounds.may_breach(value_num, value_text, uln):
                out.add(patient_id)
                break
    return out


def _loosened(bounds: ThresholdBounds) -> ThresholdBounds:
    """Relative bounds a hair looser: SQL's AVG and Python's mean may round the last bit differently, and
    the prefilter must stay a superset of what the core alerts on."""
    slack = 1e-6
    return ThresholdBounds(rise_pct=bounds.rise_pct - slack if bounds.rise_pct is not None else None,
                           fall_pct=bounds.fall_pct - slack if bounds.fall_pct is not None else None)


def _uln(vocabulary: Vocabulary, test: str) -> float | None:
    return vocabulary.tests[test].ref_high if test in vocabulary else None


# --------------------------------------------------------------------------------------------------------
# Charts


def _windowed(today: dt.date, settings: AlertSettings):
    """The items a chart holds: those of live courses in a review window (core: review_windows), each with
    what a review of draws alone reads of its course (`draws_reviews`)."""
    windows = or_(*(item_where(w, I.c) for w in review_windows(today, settings)))
    return (select(*ITEM_COLUMNS, *WINDOWED_COURSE_COLUMNS).join(C, C.c.id == I.c.course_id)
            .where(C.c.status != "stopped", windows))


def windowed_items(session, today: dt.date, settings: AlertSettings) -> dict[int, list]:
    """The items every chart of the clinic holds, by patient, in one query: for a clinic-wide pass, which
    reads them to choose whom to review (`patients_to_review`) and again for each group's charts
    (`load_charts`)."""
    by_patient: dict[int, list] = {}
    for row in plain_rows(session, _windowed(today, settings)):
        by_patient.setdefault(row.patient_id, []).append(row)
    return by_patient


def draws_reviews(protocol_of: ProtocolsOfCourses, items_by_patient: dict[int, list], patient_ids, today: dt.date,
                  settings: AlertSettings, vocabulary: Vocabulary) -> dict[int, Review]:
    """The reviews on the dated rules of those of `patient_ids` whose windowed items (`windowed_items`) are
    draws alone (core: `reviewed_from_draws`, `review_of_draws`), from those items and their courses' columns: no
    chart to load. The items of a course whose announced stop has come are left out, as `load_charts` leaves
    them (and the course) out of a chart."""
    out: dict[int, Review] = {}
    for patient_id in sorted(set(patient_ids)):  # in patient order, as load_charts gives the others
        items = items_by_patient.get(patient_id)
        if not reviewed_from_draws(items):
            continue
        names = {item.course_id: protocol_of(CourseVersion(item.course_drug, item.course_protocol_hash)).name
                 for item in items if course_is_live(item.course_status, item.course_stop_on, today)}
        out[patient_id] = review_of_draws(patient_id, items, names, today, settings, vocabulary)
    return out


def settled_by_draws(session, items_by_patient: dict[int, list], patient_ids, today: dt.date,
                     settings: AlertSettings, kinds, vocabulary: Vocabulary) -> set[int]:
    """Those of `patient_ids` whose windowed items (`windowed_items`) are draws alone and whose live alerts
    on `kinds` (the dated rules) already are what a review of those draws asks for (core:
    `draws_alerts_settled`): reviewing and reconciling them would write nothing. One read of the live alerts
    on `kinds`: the clinic's, nearly all of them those patients' (asked for by an array of some 11,000
    patients at 100,000, PostgreSQL took twice as long)."""
    live: dict[int, list] = {}
    for patient_id, *row in session.execute(
            select(Alert.patient_id, Alert.condition_key, Alert.status, Alert.snoozed_until, Alert.cleared_on,
                   Alert.message).where(Alert.kind.in_(kinds), Alert.status.in_(LIVE_ALERT))):
        live.setdefault(patient_id, []).append(row)
    settled = set()
    for patient_id in sorted(set(patient_ids)):
        items = items_by_patient.get(patient_id, ())
        live_courses = {item.course_id for item in items
                        if course_is_live(item.course_status, item.course_stop_on, today)}
        if draws_alerts_settled(items, live_courses, today, settings, live.get(patient_id, ()), vocabulary):
            settled.add(patient_id)
    return settled


def load_charts(session, protocol_of: ProtocolsOfCourses, vocabulary: Vocabulary, patient_ids: Iterable[int],
                today: dt.date, settings: AlertSettings, *, with_results: bool = True,
                items_by_patient: dict[int, list] | None = None,
                extra_items: dict[int, list] | None = None) -> Iterator[Chart]:
    """The chart of each patient in `patient_ids` (in id order), loaded per chunk of patients; without
    results if the caller reviews only rules that read none (DATED_KINDS). `items_by_patient`: the clinic's
    `windowed_items`, read by the caller, instead of reading them here again. `extra_items` (a what-if's, by
    patient): items as a pass would leave them, each in place of the stored item with its id or else added,
    kept if a review window admits it (core: review_windows), as this load would keep it."""
    windowed = _windowed(today, settings)
    windows = review_windows(today, settings)
    patient_ids = sorted(set(patient_ids))
    tests_of: dict[frozenset, tuple[str, ...]] = {}

    def own_tests(courses: Iterable[ChartCourse]) -> tuple[str, ...]:
        """The tests a review of these courses reads, worked out once per set of protocol versions."""
        key = frozenset(id(c.protocol) for c in courses)  # ProtocolsOfCourses: one object per version
        if key not in tests_of:
            tests_of[key] = tuple(sorted(tests_read([c.protocol for c in courses], vocabulary)))
        return tests_of[key]

    clinic_items = items_by_patient
    if clinic_items is None and len(patient_ids) > CHUNK:
        # More than one chunk: the windowed items of the whole clinic in one query, kept for these patients.
        # Per chunk, SQLite answers the windows (an OR of index ranges) before the patient filter, walking
        # every windowed item of the clinic again for each chunk (~45 times in a cold night).
        wanted = set(patient_ids)
        clinic_items = {}
        for row in plain_rows(session, windowed):
            if row.patient_id in wanted:
                clinic_items.setdefault(row.patient_id, []).append(row)
    for chunk in chunks(patient_ids, CHUNK):
        # Every course of the chunk in one query, live and stopped apart in Python: a `status = 'stopped'`
        # filter makes SQLite walk the status index through every stopped course of the clinic per chunk.
        courses: dict[int, list] = {}
        failed: dict[int, set] = {}
        adverse: dict[int, set] = {}
        stopped: dict[int, list] = {}
        for row in plain_rows(session, select(*COURSE_COLUMNS, C.c.stop_category)
                              .where(among(session, C.c.patient_id, chunk))):
            if course_is_live(row.status, row.stop_on, today):
                courses.setdefault(row.patient_id, []).append(ChartCourse(
                    row.id, row.patient_id, row.drug, row.status, row.start_on, protocol_of(row),
                    row.gate_override, row.stop_on))
                continue  # else stopped, or its announced stop date has come
            stopped.setdefault(row.patient_id, []).append(StoppedCourse(row.patient_id, row.drug, row.start_on,
                                                                        row.stop_on, row.stop_category, row.id,
                                                                        row.status))
            if row.stop_category in FAILED_STOP_CATEGORIES:
                failed.setdefault(row.patient_id, set()).add(row.drug)
            if row.stop_category == "adverse_event":
                adverse.setdefault(row.patient_id, set()).add(row.drug)
        items: dict[int, list] = {}
        if clinic_items is not None:
            items = {p: clinic_items[p] for p in chunk if p in clinic_items}
        else:
            for row in plain_rows(session, windowed.where(among(session, I.c.patient_id, chunk))):
                items.setdefault(row.patient_id, []).append(row)
        for patient_id in [p for p in chunk if p in extra_items] if extra_items else ():
            extra = extra_items[patient_id]
            instead = {i.id for i in extra}
            items[patient_id] = [*(i for i in items.get(patient_id, ()) if i.id not in instead),
                                 *(i for i in extra if any(w.admits(i) for w in windows))]
        ended = {c.id for cs in stopped.values() for c in cs if c.status != "stopped"}
        if ended:  # courses whose announced stop came before the nightly marked them: not their items either
            items = {p: [i for i in rows if i.course_id not in ended] for p, rows in items.items()}
        results: dict[int, list] = {}
        if with_results:
            # Each patient's results of the tests its own live courses' protocols read (core: tests_read), as a
            # load of the patient alone gives: the chunk's patients grouped by that set of tests, one query per
            # set (a handful: a clinic has few combinations of drugs). Asking for the union of the chunk's
            # tests loaded a third more rows at 100,000 patients (a dupilumab patient's CBCs, because a
            # methotrexate patient shared the chunk), all read and none used.
            by_tests: dict[tuple, list[int]] = {}
            for patient_id in chunk:
                tests = own_tests(courses.get(patient_id, ()))
                if tests:
                    by_tests.setdefault(tests, []).append(patient_id)
            for tests, patients in by_tests.items():
                # In the index's order (no sort on SQLite), so grouping and build_results' sort are cheap.
                rows = plain_rows(session, select(*RESULT_COLUMNS)
                                  .where(among(session, R.c.patient_id, patients), R.c.test.in_(tests))
                                  .order_by(R.c.patient_id, R.c.test, R.c.taken_on, R.c.id))
                results.update((patient_id, list(group))
                               for patient_id, group in groupby(rows, key=attrgetter("patient_id")))
        assessed = sorted({p for p, rows in items.items() if any(i.kind == "checkpoint" for i in rows)})
        assessments: dict[int, list] = {}
        if assessed:
            query = select(Assessment).where(among(session, Assessment.patient_id, assessed))
            for row in session.execute(query).scalars():
                assessments.setdefault(row.patient_id, []).append(row)
        patients = session.execute(select(Patient.id, Patient.mrn, Patient.sex, Patient.childbearing,
                                          Patient.dob, Patient.weight_kg).where(among(session, Patient.id, chunk)))
        for patient_id, mrn, sex, childbearing, dob, weight_kg in sorted(patients):
            yield Chart(patient_id, mrn, sex, childbearing, dob, tuple(courses.get(patient_id, ())),
                        tuple(items.get(patient_id, ())), build_results(results.get(patient_id, ())),
                        tuple(sorted(assessments.get(patient_id, ()), key=lambda a: (a.assessed_on, a.id))),
                        frozenset(failed.get(patient_id, ())),
                        adverse_event_drugs=frozenset(adverse.get(patient_id, ())),
                        stopped_courses=tuple(stopped.get(patient_id, ())), weight_kg=weight_kg)


def results_chart(session, patient) -> Chart:
    """A chart with every result of `patient` and nothing else: what gates and baseline items read."""
    rows = session.execute(select(*RESULT_COLUMNS).where(R.c.patient_id == patient.id))
    return Chart(patient.id, patient.mrn, patient.sex, patient.childbearing, patient.dob,
                 results=build_results(rows))
