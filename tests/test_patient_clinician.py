"""Issue 17 item 1: a patient's responsible clinician (migration 0014): recorded and changed (audited), refused
in one line by the rules of a name, shown by `patient show/list`, and the filter of `due` and `alerts`."""

from __future__ import annotations

import sqlite3

from tests.conftest import dump_database
from tests.test_migrations import downgrade_sqlite
from tracker.db.engine import SCHEMA_HEAD, current_revision, make_engine, open_engine, resolve_url


def two_patients(tracker):
    tracker("patient add P1 --name 'Ann Lee' --dob 1980-01-01 --sex f --clinician 'Dr Rhea Stone'")
    tracker("patient add P2 --name 'Bob Ray' --dob 1970-01-01 --sex m")
    for mrn in ("P1", "P2"):
        tracker(f"therapy start {mrn} dupilumab --on 2026-01-06")


def test_clinician_is_recorded_shown_and_audited(tracker):
    two_patients(tracker)
    listed = {p["mrn"]: p["clinician"] for p in tracker.json("patient list")}
    assert listed == {"P1": "Dr Rhea Stone", "P2": None}
    assert "Dr Rhea Stone" in tracker("patient list").stdout
    assert tracker.json("patient show P1")["patient"]["clinician"] == "Dr Rhea Stone"
    assert "clinician Dr Rhea Stone" in tracker("patient show P1").stdout
    tracker("patient update P2 --clinician '  Dr Sam Ode '")  # trimmed, as a name is
    assert tracker.json("patient show P2")["patient"]["clinician"] == "Dr Sam Ode"
    tracker("patient update P1 --no-clinician")
    assert tracker.json("patient show P1")["patient"]["clinician"] is None
    import json

    from tests.web_clinic import query

    audit = query(tracker.db, "SELECT before, after FROM audit_event WHERE action = 'patient.update' ORDER BY id")
    changes = [(json.loads(b).get("clinician"), json.loads(a).get("clinician")) for b, a in audit]
    assert changes == [(None, "Dr Sam Ode"), ("Dr Rhea Stone", None)]


def test_bad_clinician_is_refused_in_one_line_and_changes_nothing(tracker):
    two_patients(tracker)
    before = dump_database(tracker.db)
    for args, words in (("patient update P2 --clinician '   '", "clinician: '   ': must not be empty"),
                        ("patient update P2 --clinician 'Dr\u200bX'", "clinician: "),
                        (f"patient update P2 --clinician {'x' * 201}", "at most 200"),
                        ("patient add P3 --name 'C D' --dob 1990-01-01 --clinician ''", "clinician: '': must not")):
        result = tracker(args, ok=False)
        assert result.exit_code == 2 and result.stderr.count("\n") == 1 and words in result.stderr, result.stderr
    result = tracker("patient update P2 --clinician 'Dr A' --no-clinician", ok=False)
    assert result.exit_code == 2 and "not both" in result.stderr
    assert dump_database(tracker.db) == before


def test_due_and_alerts_filter_by_clinician(tracker):
    two_patients(tracker)
    everyone = {r["mrn"] for r in tracker.json("due --days 30 --as-of 2026-01-06")}
    assert everyone == {"P1", "P2"}
    mine = tracker.json(["due", "--days", "30", "--as-of", "2026-01-06", "--clinician", "Dr Rhea Stone"])
    assert mine and {r["mrn"] for r in mine} == {"P1"}
    assert "for Dr Rhea Stone" in tracker(["due", "--days", "30", "--as-of", "2026-01-06", "--clinician",
                                          "Dr Rhea Stone"]).stdout
    tracker("patient update P2 --clinician 'Dr Sam Ode'")
    for as_of in ([], ["--as-of", "2026-03-01"]):  # as stored, and a what-if
        everyone = tracker.json(["alerts", *as_of])
        hers = tracker.json(["alerts", "--clinician", "Dr Rhea Stone", *as_of])
        his = tracker.json(["alerts", "--clinician", "Dr Sam Ode", *as_of])
        assert {a["mrn"] for a in hers} == {"P1"} and {a["mrn"] for a in his} == {"P2"}
        key = lambda rows: sorted(a["condition_key"] for a in rows)  # noqa: E731
        assert key(hers + his) == key(everyone)
    assert "for Dr Sam Ode's patients" in tracker(["alerts", "--clinician", "Dr Sam Ode"]).stdout


def test_a_clinician_nobody_has_is_refused_with_near_names(tracker):
    two_patients(tracker)
    for command in ("due", "alerts"):
        result = tracker([command, "--clinician", "Dr Rhea Stoen"], ok=False)
        assert result.exit_code == 3 and result.stderr.count("\n") == 1
        assert "clinician: 'Dr Rhea Stoen': not found (did you mean Dr Rhea Stone?)" in result.stderr


def test_0014_existing_patients_keep_their_data_and_get_no_clinician(tracker, tmp_path):
    db = str(tmp_path / "old.db")
    open_engine(db).dispose()
    downgrade_sqlite(db, "0013")
    with sqlite3.connect(db) as conn:
        assert "clinician" not in [row[1] for row in conn.execute("PRAGMA table_info(patient)")]
        conn.execute("INSERT INTO patient (mrn, name, dob, sex, weight_kg, childbearing, created_at, updated_at) "
                     "VALUES ('O1', 'Old One', '1980-01-01', 'f', 61.5, 'no', '2026-01-01 00:00:00', "
                     "'2026-01-01 00:00:00')")
    conn.close()
    tracker.db = db
    [row] = tracker.json("patient list")
    assert current_revision(make_engine(resolve_url(db))) == SCHEMA_HEAD
    assert (row["mrn"], row["name"], row["weight_kg"], row["childbearing"], row["clinician"]) == (
        "O1", "Old One", 61.5, "no", None)
    with sqlite3.connect(db) as conn:
        indexes = [row[1] for row in conn.execute("PRAGMA index_list(patient)")]
    conn.close()
    assert "ix_patient_clinician" in indexes
    tracker("patient update O1 --clinician 'Dr New'")
    downgrade_sqlite(db, "0013")
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT mrn, name, weight_kg FROM patient").fetchall() == [("O1", "Old One", 61.5)]
    conn.close()


def test_synth_and_demo_assign_fictional_clinicians(tracker, tmp_path):
    tracker("synth --patients 8")
    from tests.web_clinic import query

    names = {r[0] for r in query(tracker.db, "SELECT clinician FROM patient")}
    assert len(names) > 1 and None not in names
