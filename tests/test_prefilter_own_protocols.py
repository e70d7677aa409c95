"""The whole-clinic prefilter judges a patient's latest results by the bounds of their own courses' protocols
(tracker/db/charts.py: `_breaching_on_own_protocols`), not the union over the clinic: it must still admit every
patient the core alerts on or books a threshold follow-up for (hypothesis, the real library; real SQLite, or with
TRACKER_TEST_PG a real PostgreSQL database, whose queries have shapes of their own). Results are a day apart or two
weeks apart (then some fall before the courses' start: baselines for the change-from-baseline rules), or in
pairs sharing a day (the core reads the worst of a test's latest day, whichever was entered last:
core/thresholds.py day_candidates)."""

from __future__ import annotations

import datetime as dt
import os

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine
from sqlmodel import Session, SQLModel

import tracker.db.tables as tables
from tests.test_review_differential import Result  # a result row as the core reads it
from tracker.core.alerts import AlertSettings
from tracker.core.algorithm import Algorithm
from tracker.core.chart import Chart, ChartCourse, build_results
from tracker.core.review import review
from tracker.db.charts import breaching_patients, live_courses
from tracker.protocol_files import load_library

START, TODAY = dt.date(2026, 1, 5), dt.date(2026, 3, 2)
STAMP = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
# Drugs with few lab rules (dupilumab) and many (methotrexate, the JAK inhibitors), so that a result one
# protocol reads may mean nothing to another.
DRUGS = ["dupilumab", "methotrexate", "upadacitinib", "abrocitinib", "azathioprine", "ciclosporin",
         "mycophenolate", "tralokinumab"]
NUMERIC = {"alt": (5, 600), "ast": (5, 600), "platelets": (10, 500), "neutrophils": (0.1, 8), "hb": (50, 170),
           "lymphocytes": (0.1, 4), "wbc": (0.5, 15), "creatinine": (30, 400), "egfr": (10, 120),
           "eosinophils": (0, 3), "mcv": (70, 120), "bp_systolic": (90, 200)}
CATEGORICAL = {"hbv": ["negative", "positive", "indeterminate"], "tb": ["negative", "positive"],
               "pregnancy": ["negative", "positive"]}


def _reading(test: str):
    if test in CATEGORICAL:
        return st.tuples(st.just(test), st.none(), st.sampled_from(CATEGORICAL[test]), st.none())
    low, high = NUMERIC[test]
    return st.tuples(st.just(test), st.floats(low, high, allow_nan=False), st.none(),
                     st.sampled_from([None, 40.0, 110.0]))


readings = st.sampled_from(sorted(NUMERIC) + sorted(CATEGORICAL)).flatmap(_reading)
_PG_ENGINE: list = []


def _empty_database():
    """SQLite in memory, or (TRACKER_TEST_PG) one migrated PostgreSQL database for the module, emptied."""
    if not os.environ.get("TRACKER_TEST_PG"):
        engine = create_engine("sqlite://")
        SQLModel.metadata.create_all(engine)
        return engine
    if not _PG_ENGINE:
        from tests.pg import fresh_database

        _PG_ENGINE.append(create_engine(fresh_database()))
    with _PG_ENGINE[0].begin() as conn:
        for table in ("lab_result", "course", "patient"):
            conn.exec_driver_sql(f"DELETE FROM {table}")
    return _PG_ENGINE[0]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(DRUGS), min_size=1, max_size=2, unique=True),
       st.lists(readings, min_size=1, max_size=8), st.booleans(), st.sampled_from([1, 14]), st.booleans())
def test_prefilter_admits_every_patient_their_own_protocols_alert_on(drugs, values, other_patient, spacing, pairs):
    library = load_library()
    per_day = 2 if pairs else 1  # results 1 and 2 on one day, 3 and 4 on the next, ...
    rows = [Result(i + 1, test, num, text, None,
                   TODAY - dt.timedelta(days=spacing * ((len(values) - i + per_day - 1) // per_day)), ref_high)
            for i, (test, num, text, ref_high) in enumerate(values)]
    engine = _empty_database()
    with Session(engine) as session:
        session.add(tables.Patient(id=1, mrn="P1", name="P", dob=dt.date(1980, 1, 1), sex="f", childbearing="yes",
                                   created_at=STAMP, updated_at=STAMP))
        session.flush()  # the patient before its courses (PostgreSQL checks the foreign key)
        for n, drug in enumerate(drugs, start=1):
            protocol = library.get(drug)
            session.add(tables.Course(id=n, patient_id=1, drug=drug, start_on=START, protocol_version=protocol.version,
                                      protocol_hash=protocol.content_hash, created_at=STAMP))
        if other_patient:  # a patient on every other protocol: the clinic's union of bounds is wider than P1's
            session.add(tables.Patient(id=2, mrn="P2", name="Q", dob=dt.date(1980, 1, 1), created_at=STAMP,
                                       updated_at=STAMP))
            session.flush()
            for n, drug in enumerate((d for d in DRUGS if d not in drugs), start=10):
                protocol = library.get(drug)
                session.add(tables.Course(id=n, patient_id=2, drug=drug, start_on=START,
                                          protocol_version=protocol.version, protocol_hash=protocol.content_hash,
                                          created_at=STAMP))
        session.add_all(tables.LabResult(id=r.id, patient_id=1, test=r.test, value_num=r.value_num,
                                         value_text=r.value_text, ref_high=r.ref_high, unit=None, taken_on=r.taken_on,
                                         created_at=STAMP) for r in rows)
        session.commit()
        chosen = breaching_patients(session, live_courses(session), lambda course: library.get(course.drug),
                                    library.vocabulary)
    courses = tuple(ChartCourse(n, 1, drug, "active", START, library.get(drug)) for n, drug in enumerate(drugs, 1))
    chart = Chart(1, "P1", "f", "yes", dt.date(1980, 1, 1), courses=courses, results=build_results(rows))
    outcome = review(chart, TODAY, AlertSettings(), Algorithm(), library.vocabulary)
    moved = [a.message for a in outcome.alerts if a.kind == "threshold"]
    moved += [f.title for _, f in outcome.follow_ups if f.origin == "threshold"]
    if moved:
        assert 1 in chosen, moved
    assert 2 not in chosen  # no results: nothing of P2's can breach


SAME_DAY = st.lists(st.tuples(st.sampled_from(["neutrophils", "alt", "platelets", "creatinine", "egfr"]),
                              st.lists(st.floats(0.1, 600, allow_nan=False), min_size=2, max_size=3)),
                    min_size=1, max_size=3)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(DRUGS), SAME_DAY, st.booleans())
def test_prefilter_admits_a_breach_of_the_latest_day_whichever_was_entered_last(drug, days, earlier):
    """Two or three results of a test on its latest day, in any order of entry (and an earlier day's, if
    `earlier`): the prefilter admits the patient whenever the core alerts or books a follow-up."""
    library = load_library()
    rows, next_id = [], 1
    for test, values in days:
        if earlier:
            rows.append(Result(next_id, test, values[-1], None, None, START - dt.timedelta(days=3), None))
            next_id += 1
        for value in values:
            rows.append(Result(next_id, test, value, None, None, TODAY, None))
            next_id += 1
    engine = _empty_database()
    protocol = library.get(drug)
    with Session(engine) as session:
        session.add(tables.Patient(id=1, mrn="P1", name="P", dob=dt.date(1950, 1, 1), sex="m", childbearing="no",
                                   created_at=STAMP, updated_at=STAMP))
        session.flush()
        session.add(tables.Course(id=1, patient_id=1, drug=drug, start_on=START, protocol_version=protocol.version,
                                  protocol_hash=protocol.content_hash, created_at=STAMP))
        session.add_all(tables.LabResult(id=r.id, patient_id=1, test=r.test, value_num=r.value_num, unit=None,
                                         taken_on=r.taken_on, created_at=STAMP) for r in rows)
        session.commit()
        chosen = breaching_patients(session, live_courses(session), lambda course: library.get(course.drug),
                                    library.vocabulary)
    chart = Chart(1, "P1", "m", "no", dt.date(1950, 1, 1), courses=(ChartCourse(1, 1, drug, "active", START, protocol),),
                  results=build_results(rows))
    outcome = review(chart, TODAY, AlertSettings(), Algorithm(), library.vocabulary)
    moved = [a.message for a in outcome.alerts if a.kind == "threshold"]
    moved += [f.title for _, f in outcome.follow_ups if f.origin == "threshold"]
    if moved:
        assert 1 in chosen, moved
