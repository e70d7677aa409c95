"""What a stopped course leaves undone is cancelled with it, never left overdue.

Before: after `therapy stop`, the stopped drug's baseline tests that were never done stayed planned, so
`tracker overdue`, `patient show`, the calendar and the nightly digest kept asking staff to chase tests for
a drug the patient no longer takes (core: worklist.course_has_ended).
"""

from __future__ import annotations

import datetime as dt

from freezegun import freeze_time
from sqlmodel import Session, select

from tracker.cli import cli
from tracker.core.worklist import ENDED_UNDONE_NOTE, course_has_ended, course_is_live
from tracker.db.engine import make_engine, resolve_url
from tracker.db.tables import Item


def test_a_course_has_ended_once_its_stop_date_has_come():
    day = dt.date(2026, 3, 1)
    assert course_has_ended(day, day) and course_has_ended(day, day + dt.timedelta(days=1))
    assert not course_has_ended(day + dt.timedelta(days=1), day)  # a stop announced for a later day
    assert not course_has_ended(None, day)  # a live course
    assert course_is_live("active", None, day) and course_is_live("paused", day + dt.timedelta(days=1), day)
    assert not course_is_live("active", day, day)  # its announced stop came, the nightly has not run yet
    assert not course_is_live("stopped", None, day)


def _dupilumab_with_advisory_baseline_undone(tracker):
    with freeze_time("2026-11-01"):
        tracker("patient add M1 --name 'Ann Test' --dob 1980-01-01 --sex m")
        tracker("therapy start M1 dupilumab --on 2026-11-01")  # helminth screen, vaccination review: advisory


def test_a_stop_cancels_the_baseline_tests_never_done(tracker):
    _dupilumab_with_advisory_baseline_undone(tracker)
    with freeze_time("2026-12-03"):
        assert len(tracker.json("overdue")) == 2  # the two advisory baseline tests, a month late
        out = tracker("therapy stop M1 dupilumab --on 2026-12-01 --reason 'moved away'")
        assert "3 cancelled" in out.stdout  # the week-16 checkpoint after the stop, and the two tests
        assert tracker.json("overdue") == []
        rows = tracker.json("calendar M1 --all")
        assert {r["kind"]: r["status"] for r in rows if r["kind"] == "baseline"} == {"baseline": "cancelled"}
        assert not any(r["overdue"] for r in rows)
        assert "OVERDUE" not in tracker("patient show M1").stdout
        nightly = tracker("nightly")
        assert "Nothing new to remind." in nightly.stdout


def test_a_stop_announced_for_a_later_day_keeps_the_course_monitored_until_then(tracker):
    _dupilumab_with_advisory_baseline_undone(tracker)
    with freeze_time("2026-12-03"):
        out = tracker("therapy stop M1 dupilumab --on 2026-12-10 --reason 'moving away'")
        assert "dupilumab for M1 stops on 2026-12-10 (live until then)" in out.stdout
        assert len(tracker.json("overdue")) == 2  # still on the drug until the 10th
        [course] = tracker.json("patient show M1")["courses"]
        assert (course["status"], course["stop"]) == ("active", "2026-12-10")
    with freeze_time("2026-12-09"):
        tracker("nightly")
        assert len(tracker.json("overdue")) == 2
    with freeze_time("2026-12-10"):
        tracker("nightly")  # the stop date has come: the nightly closes what is left
        assert tracker.json("overdue") == []
        baseline = [r for r in tracker.json("calendar M1 --all") if r["kind"] == "baseline"]
        assert [r["status"] for r in baseline] == ["cancelled", "cancelled"]
        assert all(r["sequence"] == 1 for r in baseline)  # calendar subscribers see the cancellation
        [course] = tracker.json("patient show M1")["courses"]
        assert course["status"] == "stopped"
        assert [r["action"] for r in tracker.json("audit --action therapy.")][0] == "therapy.stop.reached"
    with Session(make_engine(resolve_url(tracker.db))) as session:  # marked as missed, for a quality audit
        notes = session.exec(select(Item.done_note).where(Item.kind == "baseline")).all()
    assert notes == [ENDED_UNDONE_NOTE] * 2


def test_a_draw_of_a_live_course_merged_into_the_stopped_one_comes_back_as_its_own(tracker):
    # Methotrexate draws 02-02 and 02-16 carry azathioprine's 02-04 and 02-18 (tests/test_multi_drug.py).
    with freeze_time("2026-01-02"):
        tracker("patient add P1 --name 'Ada Byron' --dob 1980-01-01 --sex f --childbearing-potential no")
        tracker("therapy start P1 methotrexate --on 2026-01-05")
        tracker("therapy start P1 azathioprine --on 2026-01-07 --override-gate 'TPMT sent, result pending'")
    with freeze_time("2026-02-20"):
        tracker("therapy stop P1 methotrexate --on 2026-02-20 --reason 'nausea' --category adverse_event")
        overdue = tracker.json("overdue")
        labs = {(r["drug"], r["due"]): r for r in overdue if r["kind"] == "lab"}
        # Azathioprine's own draws are overdue again; methotrexate's are cancelled with the course.
        assert ("azathioprine", "2026-02-04") in labs and ("azathioprine", "2026-02-18") in labs
        assert labs[("azathioprine", "2026-02-04")]["drugs"] == ["azathioprine"]
        assert not any(r["drug"] == "methotrexate" for r in overdue)
        calendar = tracker.json("calendar P1 --all --to 2026-03-31")
        assert all(r["status"] in ("cancelled", "done") for r in calendar if r["drug"] == "methotrexate")


def test_alerts_names_the_day_of_the_last_evaluation_by_tracker_evaluate_too(tracker):
    # Found on the way: after `tracker evaluate`, `tracker alerts` said "never evaluated" (it read the
    # nightly's last day only).
    _dupilumab_with_advisory_baseline_undone(tracker)
    def listed():  # not through the fixture, which evaluates before every `alerts`
        return tracker.runner.invoke(cli, ["--db", tracker.db, "alerts"], catch_exceptions=False).stdout

    with freeze_time("2026-12-03"):
        assert "never evaluated" in listed()
        tracker("evaluate")
        assert "(evaluated 2026-12-03)" in listed()


def test_a_result_before_an_announced_stop_is_judged_as_on_the_drug(tracker):
    # Before: a stop announced for a later day marked the course stopped at once, so a methotrexate patient's
    # ALT of 400 U/L in the days before the stop raised no alert at all.
    with freeze_time("2026-11-01"):
        tracker("patient add M2 --name 'Bo Test' --dob 1980-01-01 --sex m")
        tracker("therapy start M2 methotrexate --on 2026-11-01 --override-gate 'screened elsewhere'")
    with freeze_time("2026-12-03"):
        tracker("therapy stop M2 methotrexate --on 2026-12-20 --reason 'planned'")
        tracker("result add M2 alt 400 --on 2026-12-03")
        alerts = tracker.json("alerts --mrn M2")
        assert any(a["kind"] == "threshold" and a["severity"] == "critical" for a in alerts)
        # and the same drug cannot start twice while it is still live
        refused = tracker("therapy start M2 methotrexate --on 2026-12-04 --override-gate x", ok=False)
        assert refused.exit_code != 0


def test_a_what_if_past_an_announced_stop_sees_the_course_stopped(tracker):
    _dupilumab_with_advisory_baseline_undone(tracker)
    with freeze_time("2026-11-20"):
        tracker("therapy stop M1 dupilumab --on 2026-12-10 --reason 'moving away' --category failure")
        before = tracker.json("alerts --as-of 2026-12-05")
        assert any(a["kind"] == "overdue" for a in before)  # on the drug then, its baseline 34 days late
        assert [a for a in tracker.json("alerts --as-of 2026-12-20") if a["drug"] == "dupilumab"] == []


def test_the_night_seeks_the_live_courses_whose_announced_stop_has_come(tracker, db_url):
    """Issue 19, migration 0023: the courses the nightly ends (PostgreSQL's two halves, `courses_to_end`): a
    live one whose announced stop has come, not one announced for later nor one without a stop; the live
    half seeks the partial index of announced stops, not every live course's row (88,902 at 100,000
    patients) for its stop date."""
    from sqlalchemy import text

    from tracker.db.engine import open_engine
    from tracker.db.tables import Course
    from tracker.services.plan_sync import courses_to_end

    with freeze_time("2026-11-01"):
        for mrn, drug in (("M1", "dupilumab"), ("M2", "dupilumab"), ("M3", "methotrexate")):
            tracker(f"patient add {mrn} --name 'Ann Test' --dob 1980-01-01 --sex m")
            tracker(f"therapy start {mrn} {drug} --on 2026-11-01")
    with freeze_time("2026-12-03"):
        tracker("therapy stop M1 dupilumab --on 2026-12-10 --reason 'moving away'")
        tracker("therapy stop M2 dupilumab --on 2026-12-20 --reason 'moving away'")
    engine = open_engine(db_url)
    with Session(engine) as session:
        ids = dict(session.exec(select(Course.stop_on, Course.id).where(Course.stop_on.is_not(None))).all())
        assert sorted(session.execute(courses_to_end(dt.date(2026, 12, 10))).scalars()) == [ids[dt.date(2026, 12, 10)]]
        assert list(session.execute(courses_to_end(dt.date(2026, 12, 9))).scalars()) == []
        if engine.dialect.name == "postgresql":
            session.execute(text("SET LOCAL enable_seqscan = off"))  # three courses: a scan would do
            compiled = courses_to_end(dt.date(2026, 12, 10)).compile(dialect=engine.dialect)
            plan = "\n".join(session.connection().exec_driver_sql("EXPLAIN " + str(compiled),
                                                                    compiled.params).scalars())
            live_half = plan.split("Index Cond: ((status)::text = 'stopped'")[0]
            assert "ix_course_live_stop_on" in live_half, plan
    engine.dispose()
