"""Issue 18 item 4: one value per measure per patient per day. A second assessment of a measure on the same
day is refused (exit 4, one line, database unchanged) unless `--replace` replaces the first, audited with
before and after; the replacement is a new row, so the incremental nightly re-judges the patient."""

from __future__ import annotations

import datetime as dt
import json
import os
from types import SimpleNamespace

from freezegun import freeze_time

from tests.conftest import dump_database
from tracker.core.assessment_days import same_day_plan


def row(id, on, **measures):
    values = {m: None for m in ("easi", "iga", "itch_nrs", "dlqi", "poem")}
    values.update(measures)
    return SimpleNamespace(id=id, assessed_on=dt.date.fromisoformat(on), **values)


# --- the pure rule --------------------------------------------------------------------------------------


def test_a_measure_already_recorded_that_day_conflicts_and_other_measures_or_days_do_not():
    existing = [row(1, "2026-03-02", easi=20, iga=3), row(2, "2026-03-01", dlqi=10)]
    day = dt.date(2026, 3, 2)
    plan = same_day_plan(existing, day, {"easi": 12.0, "dlqi": None})
    assert [a.id for a in plan.conflicts] == [1] and plan.measures == ("easi",)
    assert plan.merged == {"easi": 12.0, "iga": 3}  # the IGA recorded with it is kept
    assert same_day_plan(existing, day, {"dlqi": 8}).conflicts == ()  # another measure: a second row is fine
    assert same_day_plan(existing, dt.date(2026, 3, 3), {"easi": 5}).conflicts == ()


def test_a_replacement_merges_every_conflicting_row_the_new_values_winning():
    existing = [row(3, "2026-03-02", easi=20), row(4, "2026-03-02", dlqi=10, poem=9)]
    plan = same_day_plan(existing, dt.date(2026, 3, 2), {"easi": 7.0, "dlqi": 4})
    assert [a.id for a in plan.conflicts] == [3, 4] and plan.measures == ("easi", "dlqi")
    assert plan.merged == {"easi": 7.0, "dlqi": 4, "poem": 9}


# --- through the CLI ------------------------------------------------------------------------------------


def test_a_second_baseline_reading_is_refused_in_one_line_and_changes_nothing(tracker):
    with freeze_time("2026-01-05"):
        tracker("patient add P1 --name 'Pat Test' --dob 1985-03-01")
        tracker("assess P1 --on 2026-01-02 --easi 20 --dlqi 12")
        tracker("therapy start P1 dupilumab --on 2026-01-05 --override-gate 'screened elsewhere'")
        before = dump_database(tracker.db)
        result = tracker("assess P1 --on 2026-01-02 --easi 5", ok=False)
        assert result.exit_code == 4
        assert result.stderr.count("\n") == 1
        assert result.stderr.startswith("error: on: '2026-01-02': P1 already has easi recorded that day")
        assert "--replace" in result.stderr
        assert dump_database(tracker.db) == before
        tracker("assess P1 --on 2026-01-02 --poem 9")  # a measure not yet recorded that day is a new row


def test_replace_swaps_the_row_keeps_other_measures_and_is_audited_with_before_and_after(tracker):
    with freeze_time("2026-01-05"):
        tracker("patient add P1 --name 'Pat Test' --dob 1985-03-01")
        tracker("assess P1 --on 2026-01-02 --easi 20 --dlqi 12")
        out = tracker("assess P1 --on 2026-01-02 --easi 18 --replace").stdout
    assert out.startswith("replaced assessment for P1 on 2026-01-02: EASI 18, DLQI 12")
    rows = dump_database(tracker.db)["assessment"]
    assert len(rows) == 1 and rows[0][0] == 2  # a new id: the old row is gone
    [event] = [e for e in dump_database(tracker.db)["audit_event"] if e[3] == "assessment.replace"]
    before, after = (json.loads(v) if isinstance(v, str) else v for v in event[7:9])  # before, after
    assert [(r["id"], r["easi"], r["dlqi"]) for r in before["replaced"]] == [(1, 20.0, 12)]
    assert (after["id"], after["easi"], after["dlqi"]) == (2, 18.0, 12)


def test_the_nightly_after_a_replacement_reviews_the_patient_again(tracker, db_url):
    """The incremental nightly finds changes by ids past its mark: the replacement's new id is one."""
    from sqlmodel import Session, select

    from tracker.db.engine import make_engine, resolve_url
    from tracker.db.tables import Patient
    from tracker.protocol_files import library
    from tracker.services.evaluate import _changed_since

    with freeze_time("2026-01-05"):
        tracker("patient add P1 --name 'Pat Test' --dob 1985-03-01")
        tracker("patient add P2 --name 'Other Test' --dob 1985-03-01")
        tracker("assess P1 --on 2026-01-02 --easi 20 --dlqi 12")
        tracker("therapy start P1 dupilumab --on 2026-01-05 --override-gate 'screened elsewhere'")
    with freeze_time("2026-04-27"):
        tracker("assess P1 --on 2026-04-27 --easi 16 --dlqi 11")  # week 16: failed (EASI-20 only)
        tracker("nightly")
        assert [a["kind"] for a in tracker.json("alerts --mrn P1")].count("checkpoint_failed") == 1
    engine = make_engine(resolve_url(db_url))

    def changed() -> set:
        with Session(engine) as session:
            return _changed_since(session, library(None))

    with Session(engine) as session:
        p1 = session.exec(select(Patient.id).where(Patient.mrn == "P1")).one()
    # On PostgreSQL the mark also keeps the oldest transaction running anywhere on the server (another test's,
    # under pytest -n), so a pass may list more than it must: a superset, never less.
    before = changed()
    with freeze_time("2026-04-28"):
        tracker("assess P1 --on 2026-04-27 --easi 4 --dlqi 2 --replace")  # the visit's real scores: EASI-75
    after = changed()
    engine.dispose()
    assert p1 in after and after <= before | {p1}
    if not os.environ.get("TRACKER_TEST_PG"):
        assert (before, after) == (set(), {p1})  # the pass saw everything; then P1 only
    with freeze_time("2026-04-28"):
        tracker("nightly")
        alerts = [a for a in tracker.json("alerts --all --mrn P1") if a["kind"].startswith("checkpoint")]
    assert [(a["kind"], a["status"]) for a in alerts] == [("checkpoint_failed", "resolved")]
