"""Issue 12: the whole-clinic review and per-patient reviews decide alike (differential test on a synthetic
clinic of 500 patients), the SQL prefilter never drops a patient the core would alert on (hypothesis), and
the incremental nightly catches what a change makes alertable (a course moved onto a stricter protocol)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
from dataclasses import dataclass

import pytest
from freezegun import freeze_time
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlmodel import Session, select

from tests.conftest import Tracker
from tracker.core.alerts import AlertSettings
from tracker.core.prefilter import ThresholdBounds, threshold_bounds
from tracker.core.protocol import Protocol, Threshold
from tracker.core.thresholds import breach
from tracker.db.engine import open_engine
from tracker.db.tables import Alert, Patient
from tracker.protocol_files import load_library
from tracker.services.evaluate import evaluate

TODAY = dt.date(2026, 11, 2)


def _alerts(db: str, *, with_kind: bool = False) -> set[tuple]:
    engine = open_engine(db)
    with Session(engine) as session:
        middle = Alert.kind if with_kind else Alert.severity
        rows = session.exec(select(Alert.condition_key, Alert.status, middle, Alert.message)).all()
    engine.dispose()
    return set(rows)


def _twin_clinics(tmp_path, template: str, names: tuple[str, str], patients: int, seed: int) -> tuple[str, str]:
    """Two identical SQLite files holding one synthetic clinic as of TODAY."""
    first, second = (str(tmp_path / f"{name}.db") for name in names)
    shutil.copyfile(template, first)
    with freeze_time(TODAY.isoformat()):
        Tracker(first)(f"synth --patients {patients} --seed {seed}")
    engine = open_engine(first)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    shutil.copyfile(first, second)
    return first, second


def test_whole_clinic_review_equals_per_patient_reviews(tmp_path, migrated_template):
    whole, each = _twin_clinics(tmp_path, migrated_template, ("whole", "each"), 500, 11)
    library = load_library()

    engine = open_engine(whole)
    with Session(engine) as session:
        evaluate(session, library, TODAY, AlertSettings())
        session.commit()
    engine.dispose()
    engine = open_engine(each)
    with Session(engine) as session:
        for patient_id in session.exec(select(Patient.id)).all():
            evaluate(session, library, TODAY, AlertSettings(), patient_ids=[patient_id])
        session.commit()
    engine.dispose()
    clinic, patients = _alerts(whole), _alerts(each)
    assert len(clinic) > 50  # a plausible synthetic clinic (issue 14): fewer, real alerts
    assert clinic == patients


def test_a_whole_clinic_pass_leaves_nothing_for_a_second_pass_the_same_day(tmp_path, migrated_template):
    """A pass leaves the alerts its rules give for what it stored: on a synthetic clinic, evaluating again the
    same day, nothing new, raises, re-opens, resolves and books nothing. (The repeats a pass booked already
    overdue, after results older than their interval, were alerted only by the next pass.)"""
    [db] = [str(tmp_path / "clinic.db")]
    shutil.copyfile(migrated_template, db)
    with freeze_time(TODAY.isoformat()):
        Tracker(db)("synth --patients 300 --seed 5")
    library = load_library()
    engine = open_engine(db)
    passes = []
    for _ in range(2):
        with freeze_time(TODAY.isoformat()), Session(engine) as session:
            summary = evaluate(session, library, TODAY, AlertSettings())
            session.commit()
        passes.append((summary, _alerts(db)))
    engine.dispose()
    (first, after_first), (second, after_second) = passes
    assert len(first.raised) > 20 and first.follow_ups  # repeats booked, some of them overdue already
    assert (second.raised, second.reopened, second.resolved, second.follow_ups) == ([], [], [], [])
    assert after_second == after_first


def test_a_what_if_shows_the_alerts_a_pass_then_stores(tmp_path, migrated_template):
    """`tracker alerts --as-of` (a review that writes nothing) lists, kind and text, the alerts the pass of that
    day then stores, on a synthetic clinic (the overdue alerts of the repeats it books included)."""
    from collections import Counter

    db = str(tmp_path / "clinic.db")
    shutil.copyfile(migrated_template, db)
    with freeze_time(TODAY.isoformat()):
        Tracker(db)("synth --patients 300 --seed 5")
    library = load_library()
    engine = open_engine(db)
    with freeze_time(TODAY.isoformat()), Session(engine) as session:
        what_if = evaluate(session, library, TODAY, AlertSettings(), write=False)
        session.rollback()
    assert _alerts(db) == set()  # the what-if wrote nothing
    with freeze_time(TODAY.isoformat()), Session(engine) as session:
        evaluate(session, library, TODAY, AlertSettings())
        session.commit()
    engine.dispose()
    stored = Counter((kind, message) for _, status, kind, message in _alerts(db, with_kind=True) if status == "open")
    assert Counter((a.kind, a.message) for a in what_if.would_open) == stored
    assert any(m.startswith("Repeat ") and kind == "overdue" for kind, m in stored)


def test_incremental_passes_over_a_week_equal_full_passes(tmp_path, migrated_template):
    """A week of nightly passes, incremental (changed patients on every rule, the others with an item in a
    review window on the dated rules only, those of them whose draws are alerted as they ask already given to
    no reconciliation) and full, with results, assessments and course events between them: each day the alert
    tables agree."""
    from tracker.db.tables import Course, LabResult

    inc, full = _twin_clinics(tmp_path, migrated_template, ("incremental", "full"), 300, 5)
    library = load_library()
    engines = {db: open_engine(db) for db in (inc, full)}
    settled = 0  # incremental: patients whose draws were alerted as they ask already, given to no reconciliation
    for offset in range(8):
        day = TODAY + dt.timedelta(days=offset)
        for db, engine in engines.items():
            with Session(engine) as session:
                if offset in (2, 5):  # changes between passes: breaching results, a stopped course
                    patient_ids = session.exec(select(Patient.id).order_by(Patient.id)).all()
                    for pid in patient_ids[offset::40]:
                        session.add(LabResult(patient_id=pid, test="alt", value_num=400.0, unit="U/L",
                                              taken_on=day, created_at=dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)))
                    mrn, drug = session.exec(select(Patient.mrn, Course.drug).join(Course, Course.patient_id == Patient.id)
                                             .where(Course.status == "active").order_by(Course.id)
                                             .offset(offset)).first()
                    session.commit()
                    with freeze_time(day.isoformat()):
                        Tracker(db)(f"therapy stop {mrn} {drug} --on {day} --reason 'side effects'")
            with freeze_time(day.isoformat()), Session(engine) as session:
                summary = evaluate(session, library, day, AlertSettings(), incremental=db == inc)
                session.commit()
            settled += summary.settled if db == inc else 0
        assert _alerts(inc) == _alerts(full), day
    for engine in engines.values():
        engine.dispose()
    assert settled > 100


def test_incremental_passes_agree_with_full_passes_on_same_day_results_in_either_order(tmp_path, migrated_template):
    """Two or three results of one test on one day, the breaching one entered first or last (the core reads the
    worst of the latest day: tracker/core/thresholds.py day_candidates): incremental passes (the changed
    patients) and full passes (whose SQL prefilter must admit a breach that is not the last entered) leave the
    same alerts each day, the open alert naming the day's other values as they arrive."""
    from tracker.db.tables import LabResult

    inc, full = _twin_clinics(tmp_path, migrated_template, ("incremental", "full"), 200, 7)
    library = load_library()
    engines = {db: open_engine(db) for db in (inc, full)}
    stamp = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    for offset in range(4):
        day = TODAY + dt.timedelta(days=offset)
        for db, engine in engines.items():
            with Session(engine) as session:
                patient_ids = session.exec(select(Patient.id).order_by(Patient.id)).all()
                if offset == 1:  # a low count then a normal one, or the other way round, the same day
                    for n, pid in enumerate(patient_ids[::7]):
                        values = (0.4, 5.0) if n % 2 else (5.0, 0.4)
                        session.add_all(LabResult(patient_id=pid, test="neutrophils", value_num=v, unit="10^9/L",
                                                  taken_on=day, created_at=stamp) for v in values)
                        session.add_all(LabResult(patient_id=pid, test="alt", value_num=v, unit="U/L", taken_on=day,
                                                  created_at=stamp) for v in (values[0] * 100, values[1] * 100))
                if offset == 2:  # a third result of the day before: the open alert names it too
                    for pid in patient_ids[::14]:
                        session.add(LabResult(patient_id=pid, test="neutrophils", value_num=4.2, unit="10^9/L",
                                              taken_on=day - dt.timedelta(days=1), created_at=stamp))
                session.commit()
            with freeze_time(day.isoformat()), Session(engine) as session:
                evaluate(session, library, day, AlertSettings(), incremental=db == inc)
                session.commit()
        assert _alerts(inc) == _alerts(full), day
    for engine in engines.values():
        engine.dispose()
    named = [m for _, status, _, m in _alerts(full) if status == "open" and "same day also" in m]
    assert any("0.4 10^9/L" in m and "5 10^9/L, 4.2 10^9/L" in m for m in named), named
    assert any("alt 500 U/L" in m and "same day also: alt 40 U/L" in m for m in named), named


@dataclass
class Result:
    id: int
    test: str
    value_num: float | None
    value_text: str | None
    unit: str | None
    taken_on: dt.date
    ref_high: float | None


limits = st.floats(0.1, 500, allow_nan=False)
thresholds = st.one_of(
    st.builds(lambda v: Threshold(analyte="x", below=v, action="review", clinic_default=True), limits),
    st.builds(lambda v: Threshold(analyte="x", above=v, action="review", clinic_default=True), limits),
    st.builds(lambda v: Threshold(analyte="x", above_uln=v, action="review", clinic_default=True), st.floats(0.5, 10)),
    st.builds(lambda v: Threshold(analyte="x", rise_pct=v, action="review", clinic_default=True), st.floats(1, 200)),
    st.builds(lambda v: Threshold(analyte="x", fall_pct=v, action="review", clinic_default=True), st.floats(1, 99)),
    st.builds(lambda v: Threshold(analyte="x", equals=v, action="review", clinic_default=True),
              st.lists(st.sampled_from(["low", "absent", "positive"]), min_size=1, max_size=2)),
    # Issue 14 item 2: renal rules acting on a still-low repeat only, or only without a pre-start value
    # (core/renal.py: rule_applies narrows when they act; their comparison is one of the shapes above).
    st.builds(lambda v, w: Threshold(analyte="x", fall_pct=v, after_repeat_below=w, action="withhold",
                                     clinic_default=True), st.floats(1, 99), limits),
    st.builds(lambda v: Threshold(analyte="x", below=v, after_repeat_below=v, without_baseline=True,
                                  action="discuss", clinic_default=True), limits),
    st.builds(lambda v: Threshold(analyte="x", above_uln=v, without_baseline=True, action="discuss",
                                  clinic_default=True), st.floats(0.5, 10)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(thresholds, min_size=1, max_size=6), st.one_of(st.none(), st.floats(0, 1000, allow_nan=False)),
       st.sampled_from([None, "low", "absent", "normal"]), st.one_of(st.none(), st.floats(1, 300)),
       st.one_of(st.none(), st.floats(0, 500, allow_nan=False)))
def test_prefilter_bounds_admit_every_result_a_rule_alerts_on(rules, value, text, ref_high, baseline):
    protocol = Protocol.model_construct(thresholds=rules)
    bounds = threshold_bounds([protocol])["x"]
    result = Result(1, "x", value, text, None, TODAY, ref_high)
    for rule in rules:
        hit, _, _ = breach(rule, result, baseline, ref_high)
        if hit:
            assert bounds.may_breach(value, text, ref_high, baseline), rule.describe()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 400, allow_nan=False), st.sampled_from([None, 10.0, 40.0]),
                          st.sampled_from([None, "low", "absent"])), min_size=1, max_size=12))
def test_prefilter_sql_selects_exactly_what_the_bounds_admit(rows):
    """The SQL of tracker/db/charts.py for absolute bounds, on a real SQLite database."""
    from sqlalchemy import create_engine
    from sqlalchemy import select as sa_select

    from tracker.db.charts import R, bounds_condition

    bounds = ThresholdBounds(below=20, above=300, uln_factors={3.0}, equals={"absent"})
    engine = create_engine("sqlite://")
    R.metadata.create_all(engine, tables=[R, Patient.__table__])
    with engine.begin() as conn:
        conn.execute(Patient.__table__.insert(), [{"id": 1, "mrn": "P", "name": "P", "dob": TODAY,
                                                   "created_at": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
                                                   "updated_at": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)}])
        conn.execute(R.insert(), [{"id": i + 1, "patient_id": 1, "test": "x", "value_num": v, "ref_high": h,
                                   "value_text": t, "taken_on": TODAY, "created_at": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)}
                                  for i, (v, h, t) in enumerate(rows)])
        r = R.alias("r")
        chosen = set(conn.execute(sa_select(r.c.id).where(bounds_condition(r, "x", bounds, 40.0))).scalars())
    expected = {i + 1 for i, (v, h, t) in enumerate(rows)
                if bounds.may_breach(v, t, h if h is not None else 40.0)}
    assert chosen == expected


def test_incremental_nightly_reviews_a_course_replanned_onto_a_stricter_protocol(tracker, tmp_path, monkeypatch):
    """The nightly used to look only at rows created since its last pass; a replan is a course event."""
    with freeze_time("2026-03-01"):
        tracker("patient add M1 --name 'Max Test' --dob 1970-01-01")
        tracker("therapy start M1 methotrexate --on 2026-01-05")
        tracker("result add M1 alt 35 --on 2026-02-28")
        tracker("nightly")
        assert [a for a in tracker.json("alerts") if a["kind"] == "threshold"] == []
    clinic = tmp_path / "clinic"
    clinic.mkdir()
    # A clinic protocol: the built-in methotrexate with a new version and an extra, stricter ALT rule.
    import yaml

    with open(load_library().protocols["methotrexate"].origin, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    data["version"] = data["version"] + 1
    data["thresholds"].append({"analyte": "alt", "above": 30, "action": "review", "severity": "warning",
                               "clinic_default": True})
    (clinic / "methotrexate.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setenv("TRACKER_SCHEDULES", str(clinic))
    with freeze_time("2026-03-02"):
        tracker("nightly")  # the library changed: a full pass, but the course still has its old version
        assert [a for a in tracker.json("alerts --as-of 2026-03-02") if a["kind"] == "threshold"] == []
        tracker("therapy replan M1 methotrexate")
    with freeze_time("2026-03-03"):
        tracker("nightly")  # incremental: the replan is a change
        nightly = [a["condition_key"] for a in tracker.json("alerts --all --as-of 2026-03-03")
                   if a["kind"] == "threshold" and a["id"] is not None]
    assert nightly and all("alt>30" in key for key in nightly)


# --- issue 13: a course's baseline may be the mean of several pre-start readings ------------------------


readings = st.floats(20, 400, allow_nan=False)
_MEAN_BASELINE_ENGINES: dict = {}


def _mean_baseline_engine(name: str):
    """One engine per test process and engine name, its tables emptied by each example: SQLite in memory
    (the tables from the models), and, when TRACKER_TEST_PG is set, a PostgreSQL database through the real
    migrations (its own SQL: one LATERAL per test for every baseline count)."""
    from sqlalchemy import create_engine
    from sqlmodel import SQLModel

    if name not in _MEAN_BASELINE_ENGINES:
        if name == "sqlite":
            engine = create_engine("sqlite://")
            SQLModel.metadata.create_all(engine)
        else:
            from tests.pg import fresh_database

            engine = open_engine(fresh_database())
        _MEAN_BASELINE_ENGINES[name] = engine
    return _MEAN_BASELINE_ENGINES[name]


MEAN_BASELINE_ENGINES = ["sqlite"] + (["postgresql"] if os.environ.get("TRACKER_TEST_PG") else [])
# A reading: its value (or none: a result without a number) and how many days before (0: on) or after the
# course's start it was taken; days repeat (two results on one day: the higher id is the later result), and
# ids need not follow the days.
VALUE = st.one_of(st.none(), readings, readings)
COURSE_READINGS = st.tuples(st.lists(st.tuples(VALUE, st.integers(0, 8)), min_size=1, max_size=4),
                            st.lists(st.tuples(VALUE, st.integers(1, 8)), min_size=1, max_size=3))


@pytest.mark.parametrize("engine_name", MEAN_BASELINE_ENGINES)
@settings(max_examples=80, deadline=None)
@given(st.lists(COURSE_READINGS, min_size=1, max_size=3), st.sampled_from(["creatinine", "egfr"]))
def test_prefilter_sql_admits_every_patient_a_mean_baseline_rule_alerts_on(engine_name, courses, test):
    """tracker/db/charts.py's relative-rule SQL averages the latest N pre-start readings as the core does
    (Chart.lab_baseline, `lab_baseline: mean_of: N`): it never misses a patient the core alerts on. The
    patients alternate between ciclosporin (its baseline: the mean of two readings) and methotrexate (the
    latest reading), so that one query reads both counts; readings share days, lack values, come in any
    order of ids. On PostgreSQL (its own SQL) the patients chosen are also exactly those SQLite's SQL chooses."""
    import tracker.db.tables as tables
    from tracker.core.algorithm import Algorithm
    from tracker.core.chart import Chart, ChartCourse, build_results
    from tracker.core.review import review
    from tracker.db.charts import breaching_patients, live_courses

    library = load_library()
    start = dt.date(2026, 1, 5)
    stamp = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    patients, next_id = [], 1
    for number, (before, after) in enumerate(courses, start=1):
        drug = ("ciclosporin", "methotrexate")[number % 2]
        rows = [Result(next_id + i, test, v, None, None, start - dt.timedelta(days=days), None)
                for i, (v, days) in enumerate(before)]
        rows += [Result(next_id + len(before) + i, test, v, None, None, start + dt.timedelta(days=days), None)
                 for i, (v, days) in enumerate(after)]
        next_id += len(rows)
        patients.append((number, library.get(drug), rows))

    def chosen_by(name: str) -> set[int]:
        engine = _mean_baseline_engine(name)
        with Session(engine) as session:
            for table in ("lab_result", "course", "patient"):
                session.connection().exec_driver_sql(f"DELETE FROM {table}")
            for number, protocol, rows in patients:
                session.add(tables.Patient(id=number, mrn=f"P{number}", name="P", dob=dt.date(1970, 1, 1),
                                           created_at=stamp, updated_at=stamp))
                session.flush()
                session.add(tables.Course(id=number, patient_id=number, drug=protocol.id, start_on=start,
                                          protocol_version=protocol.version, protocol_hash=protocol.content_hash,
                                          created_at=stamp))
                session.add_all(tables.LabResult(id=r.id, patient_id=number, test=test, value_num=r.value_num,
                                                 unit=None, taken_on=r.taken_on, created_at=stamp) for r in rows)
                session.flush()
            session.commit()
            by_course = {number: protocol for number, protocol, _ in patients}
            return breaching_patients(session, live_courses(session), lambda course: by_course[course.id],
                                      library.vocabulary)

    chosen = chosen_by(engine_name)
    for number, protocol, rows in patients:
        course = ChartCourse(number, number, protocol.id, "active", start, protocol)
        chart = Chart(number, f"P{number}", "m", courses=(course,), results=build_results(rows))
        alerts = review(chart, start + dt.timedelta(days=60), AlertSettings(), Algorithm(), library.vocabulary).alerts
        relative = [a for a in alerts if a.kind == "threshold" and ("+" in a.condition_key.split(":")[2]
                                                                    or "-" in a.condition_key.split(":")[2])]
        if relative:
            assert number in chosen, [a.message for a in relative]
    if engine_name != "sqlite":
        assert chosen == chosen_by("sqlite")


@pytest.mark.skipif(not os.environ.get("TRACKER_TEST_PG"), reason="PostgreSQL commits ids out of order")
def test_an_incremental_pass_reviews_a_result_committed_after_its_mark_under_a_lower_id(tracker, db_url):
    """A slow writer takes result id N, a quick one N+1 and commits, the nightly marks N+1; the slow one then
    commits: the next night still reviews its patient (the mark keeps the transactions its snapshot did not
    see: the slow one was running; its row's `changed_xid` names it)."""
    from sqlalchemy import text as sql

    with freeze_time("2026-03-01"):
        for mrn in ("M1", "M2"):
            tracker(f"patient add {mrn} --name 'Max Test' --dob 1970-01-01 --sex m")
            tracker(f"therapy start {mrn} methotrexate --on 2026-01-05")
        tracker("nightly")  # a full pass: the mark is stored
    engine = open_engine(db_url)
    ids = {mrn: pid for pid, mrn in engine.connect().execute(sql("SELECT id, mrn FROM patient")).all()}
    insert = sql("INSERT INTO lab_result (patient_id, test, value_num, unit, taken_on, created_at) "
                 "VALUES (:p, 'alt', :v, 'U/L', '2026-03-01', now())")
    with engine.connect() as slow:
        slow.execute(insert, {"p": ids["M1"], "v": 400.0})  # id N, not committed yet
        with engine.begin() as quick:
            quick.execute(insert, {"p": ids["M2"], "v": 20.0})  # id N+1, committed
        with freeze_time("2026-03-02"):
            tracker("nightly")  # marks N+1
        slow.commit()
    with freeze_time("2026-03-03"):
        tracker("nightly")
    # The alert table as the nightly left it (`tracker alerts` would evaluate the clinic itself).
    with engine.connect() as conn:
        alerts = conn.execute(sql("SELECT message FROM alert WHERE kind = 'threshold' AND patient_id = :p"),
                              {"p": ids["M1"]}).scalars().all()
    engine.dispose()
    assert alerts and all("alt" in message for message in alerts)


def _changed(db_url) -> set | None:
    from tracker.protocol_files import library
    from tracker.services.evaluate import _changed_since

    engine = open_engine(db_url)
    with Session(engine) as session:
        found = _changed_since(session, library(None))
    engine.dispose()
    return found


def _mrn_ids(db_url) -> dict[str, int]:
    engine = open_engine(db_url)
    with Session(engine) as session:
        ids = {mrn: pid for pid, mrn in session.exec(select(Patient.id, Patient.mrn)).all()}
    engine.dispose()
    return ids


def test_a_laboratory_correction_after_the_mark_is_reviewed_by_the_next_incremental_pass(tracker, db_url, tmp_path):
    """A correction rewrites a result in place (same id; on PostgreSQL the same changed_xid): its
    `result.correct` event makes the next pass review the patient, on both engines."""
    from tests.test_lab_corrections import ALT_CORRECTED
    from tests.test_lab_import import oru

    first, correction = tmp_path / "oru1.hl7", tmp_path / "oru2.hl7"
    first.write_text(oru(alt="130"))
    correction.write_text(oru(id="MSG00002", obx=[ALT_CORRECTED.format(alt="30")]))
    with freeze_time("2026-01-20"):
        for mrn in ("M1", "M2"):
            tracker(f"patient add {mrn} --name 'Max Test' --dob 1970-01-01 --sex m")
            tracker(f"therapy start {mrn} methotrexate --on 2026-01-05")
        tracker(["result", "import", str(first)])
        tracker("nightly")
        assert _changed(db_url) == set()
        assert "1 corrected" in tracker(["result", "import", str(correction)]).stdout
    assert _changed(db_url) == {_mrn_ids(db_url)["M1"]}


@pytest.mark.skipif(not os.environ.get("TRACKER_TEST_PG"), reason="PostgreSQL: the mark is a snapshot")
def test_a_long_transaction_elsewhere_does_not_widen_the_next_incremental_pass(tracker, db_url):
    """Issue 19: the mark used to keep the server's oldest running transaction, so one left open (by anyone,
    in any database) made every later pass review all that was written since it began. The mark now keeps
    only the transactions its snapshot did not see: what was written and committed before it is not
    reviewed again, a transaction still open elsewhere or not."""
    from sqlalchemy import text as sql

    with freeze_time("2026-03-01"):
        for mrn in ("M1", "M2", "M3"):
            tracker(f"patient add {mrn} --name 'Max Test' --dob 1970-01-01 --sex m")
            tracker(f"therapy start {mrn} methotrexate --on 2026-01-05")
        tracker("nightly")  # a full pass: the mark is stored
    ids = _mrn_ids(db_url)
    engine = open_engine(db_url)
    with engine.connect() as idle:
        idle.execute(sql("SELECT pg_current_xact_id()"))  # an open transaction with an id, writing nothing here
        with freeze_time("2026-03-02"):
            tracker("result add M1 alt 30 --on 2026-03-02")
            tracker("nightly")
            tracker("result add M2 alt 31 --on 2026-03-02")
            tracker("assess M3 --on 2026-03-02 --easi 10 --dlqi 5")
        assert _changed(db_url) == {ids["M2"], ids["M3"]}  # not M1: its result was before the mark
        idle.rollback()
    engine.dispose()


@pytest.mark.skipif(not os.environ.get("TRACKER_TEST_PG"), reason="PostgreSQL: the mark is a snapshot")
def test_a_mark_of_before_the_change_column_or_of_another_server_means_a_full_pass(tracker, db_url):
    """A mark stored before migration 0021 (an `xmin`, no snapshot) cannot be compared with `changed_xid`
    (every row then written has 0): the next pass is a full one, whose mark is of the new kind. Nor can a
    mark ahead of the server's transaction ids (a database restored into another server)."""
    import json

    from sqlalchemy import text as sql

    with freeze_time("2026-03-01"):
        tracker("patient add M1 --name 'Max Test' --dob 1970-01-01 --sex m")
        tracker("therapy start M1 methotrexate --on 2026-01-05")
        tracker("nightly")
    engine = open_engine(db_url)
    with engine.begin() as conn:
        mark = json.loads(conn.execute(sql("SELECT value FROM setting WHERE key = 'alerts.review_mark'")).scalar())
        assert {"xmax", "xip"} <= mark.keys() and "xmin" not in mark
        old = {k: v for k, v in mark.items() if k not in ("xmax", "xip")} | {"xmin": "745"}
        conn.execute(sql("UPDATE setting SET value = :v WHERE key = 'alerts.review_mark'"), {"v": json.dumps(old)})
    assert _changed(db_url) is None
    with freeze_time("2026-03-02"):
        tracker("nightly")
    assert _changed(db_url) == set()
    # Restored into another server whose transaction ids are behind the mark's: a full pass again.
    with engine.begin() as conn:
        mark = json.loads(conn.execute(sql("SELECT value FROM setting WHERE key = 'alerts.review_mark'")).scalar())
        ahead = mark | {"xmax": mark["xmax"] + 10 ** 9}
        conn.execute(sql("UPDATE setting SET value = :v WHERE key = 'alerts.review_mark'"), {"v": json.dumps(ahead)})
    assert _changed(db_url) is None
    engine.dispose()


# --- issue 14 item 2: creatinine clearance read from an estimate when none is on record -----------------


renal_values = st.one_of(st.none(), st.floats(5, 400, allow_nan=False))


@settings(max_examples=80, deadline=None)
@given(renal_values, renal_values, renal_values, st.one_of(st.none(), st.floats(30, 150, allow_nan=False)),
       st.sampled_from(["f", "m", None]), st.sampled_from(["baricitinib", "apremilast"]))
def test_prefilter_sql_admits_every_patient_a_clearance_rule_alerts_on(crcl, creatinine, egfr, weight, sex, drug):
    """A Cockcroft-Gault or eGFR estimate standing in for a clearance not on record (core/renal.py) never
    escapes the whole-clinic prefilter (tracker/db/charts.py breaching_patients)."""
    from sqlalchemy import create_engine
    from sqlmodel import SQLModel

    import tracker.db.tables as tables
    from tracker.core.algorithm import Algorithm
    from tracker.core.chart import Chart, ChartCourse, build_results
    from tracker.core.review import review
    from tracker.db.charts import breaching_patients, live_courses

    library = load_library()
    protocol = library.get(drug)
    start, day = dt.date(2026, 1, 5), dt.date(2026, 3, 2)
    stamp = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    values = [("crcl", crcl, day - dt.timedelta(days=1)), ("creatinine", creatinine, day), ("egfr", egfr, day),
              ("weight", weight, start)]
    rows = [Result(i + 1, test, v, None, None, taken, None) for i, (test, v, taken) in enumerate(values) if v is not None]
    engine = create_engine("sqlite://")
    SQLModel.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(tables.Patient(id=1, mrn="P1", name="P", dob=dt.date(1950, 1, 1), sex=sex, created_at=stamp,
                                   updated_at=stamp))
        session.add(tables.Course(id=1, patient_id=1, drug=drug, start_on=start, protocol_version=protocol.version,
                                  protocol_hash=protocol.content_hash, created_at=stamp))
        session.add_all(tables.LabResult(id=r.id, patient_id=1, test=r.test, value_num=r.value_num, unit=None,
                                         taken_on=r.taken_on, created_at=stamp) for r in rows)
        session.commit()
        chosen = breaching_patients(session, live_courses(session), lambda course: protocol, library.vocabulary)
        # Without the Cockcroft-Gault estimate, the bounds alone (eGFR standing in) must still admit.
        no_cg = protocol.model_copy(update={"clearance": protocol.clearance.model_copy(update={"estimate": ["egfr"]})})
        chosen_no_cg = breaching_patients(session, live_courses(session), lambda course: no_cg, library.vocabulary)
    for used, picked in ((protocol, chosen), (no_cg, chosen_no_cg)):
        course = ChartCourse(1, 1, drug, "active", start, used)
        chart = Chart(1, "P1", sex, dob=dt.date(1950, 1, 1), courses=(course,), results=build_results(rows))
        alerts = review(chart, day, AlertSettings(), Algorithm(), library.vocabulary).alerts
        crcl_alerts = [a.message for a in alerts if a.kind == "threshold" and ":crcl" in a.condition_key]
        if crcl_alerts:
            assert picked == {1}, crcl_alerts
