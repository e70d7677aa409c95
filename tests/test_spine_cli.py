"""Issue 2 acceptance through the CLI on a real SQLite file, with a frozen 'today'."""

from __future__ import annotations

import json

from freezegun import freeze_time

from tests.conftest import record_panels


def add_patient(tracker, mrn="P001", dob="1980-05-01", extra="--childbearing-potential no"):
    tracker(f"patient add {mrn} --name 'Ann Lee' --dob {dob} --sex f {extra}")


def items(tracker, mrn, *extra):
    return tracker.json(["calendar", mrn, *extra])


@freeze_time("2024-01-01")
def test_patient_add_list_show_update(tracker):
    add_patient(tracker, extra="--weight-kg 64.5 --childbearing-potential")
    listed = tracker.json("patient list")
    assert listed == [{"mrn": "P001", "name": "Ann Lee", "dob": "1980-05-01", "sex": "f", "weight_kg": 64.5,
                       "childbearing": "yes", "may_conceive": True, "clinician": None, "courses": []}]
    tracker("patient update P001 --weight-kg 66 --name 'Ann Lee-Smith'")
    shown = tracker.json("patient show P001")
    assert shown["patient"]["weight_kg"] == 66
    assert shown["patient"]["name"] == "Ann Lee-Smith"
    human = tracker("patient show P001").stdout
    assert "P001" in human and "Ann Lee-Smith" in human


@freeze_time("2024-01-01")
def test_methotrexate_calendar_and_json_contract(tracker):
    add_patient(tracker)
    out = tracker("therapy start P001 MTX --on 2024-01-01 --dose '15 mg weekly'").stdout
    assert "started methotrexate for P001" in out
    rows = items(tracker, "P001", "--to", "2024-06-30")
    labs = [r for r in rows if r["kind"] == "lab"]
    assert [r["due"] for r in labs] == ["2024-01-15", "2024-01-29", "2024-02-12", "2024-03-12", "2024-04-12",
                                         "2024-05-12"]
    first = labs[0]
    assert set(first) >= {"id", "uid", "mrn", "drug", "kind", "due", "tests", "status", "overdue", "title",
                          "sources"}
    assert first["drug"] == "methotrexate" and first["mrn"] == "P001"
    assert first["tests"] == ["cbc", "cmp"] and first["status"] == "planned" and first["overdue"] is False
    assert "CKS-MTX" in first["sources"]
    assert len({r["uid"] for r in rows}) == len(rows)
    assert [r["due"] for r in rows if r["kind"] == "checkpoint"] == ["2024-03-25"]
    # Items are kept at least 12 months ahead.
    everything = items(tracker, "P001")
    assert max(r["due"] for r in everything) >= "2025-01-01"


def test_dose_change_keeps_done_items_moves_old_and_never_duplicates(tracker):
    with freeze_time("2024-01-01"):
        add_patient(tracker)
        tracker("therapy start P001 methotrexate --on 2024-01-01 --dose 10mg")
        before = {r["due"]: r for r in items(tracker, "P001")}
    with freeze_time("2024-01-16"):
        out = record_panels(tracker, "P001", "2024-01-15", "cbc", "cmp")[-1]
        assert "completed: 2024-01-15" in out
    with freeze_time("2024-03-11"):
        tracker("therapy dose P001 methotrexate --on 2024-03-11 --dose 15mg")
        after = items(tracker, "P001", "--all")
    by_due = {}
    for row in after:
        by_due.setdefault((row["due"], row["kind"]), []).append(row)
    keys = [(r["due"], r["kind"], tuple(r["tests"])) for r in after]
    assert len(keys) == len(set(keys)), "no duplicate items"
    done = by_due[("2024-01-15", "lab")][0]
    assert done["status"] == "done" and done["uid"] == before["2024-01-15"]["uid"]
    # The old schedule's next draw (03-12) is the same planned item, moved to the new schedule's first
    # (issue 16: same UID, new date) rather than cancelled beside a new one.
    assert ("2024-03-12", "lab") not in by_due
    assert by_due[("2024-03-25", "lab")][0]["status"] == "planned"
    assert by_due[("2024-03-25", "lab")][0]["uid"] == before["2024-03-12"]["uid"]
    assert by_due[("2024-04-08", "lab")][0]["status"] == "planned"
    # Items before the change that were not done stay in the calendar (and are overdue now).
    assert by_due[("2024-01-29", "lab")][0]["status"] == "planned"
    assert by_due[("2024-01-29", "lab")][0]["overdue"] is True


def test_pause_resume_stop_replan(tracker):
    with freeze_time("2024-01-01"):
        add_patient(tracker)
        tracker("therapy start P001 methotrexate --on 2024-01-01")
    with freeze_time("2024-01-20"):
        tracker("therapy pause P001 methotrexate --on 2024-01-20 --reason infection")
        paused = [r for r in items(tracker, "P001") if r["due"] >= "2024-01-20"]
        assert [r["kind"] for r in paused] == [], "nothing is due while paused (checkpoint waits for resume)"
        assert "methotrexate (paused)" in tracker.json("patient list")[0]["courses"]
    with freeze_time("2024-02-03"):
        tracker("therapy resume P001 methotrexate --on 2024-02-03")
        resumed = [r["due"] for r in items(tracker, "P001") if r["kind"] == "lab"]
        assert resumed[:3] == ["2024-01-15", "2024-02-17", "2024-03-02"]
        assert [r["due"] for r in items(tracker, "P001") if r["kind"] == "checkpoint"] == ["2024-04-08"]
    with freeze_time("2024-02-20"):
        tracker("therapy stop P001 methotrexate --on 2024-02-20 --reason 'no response' --category failure")
        live = items(tracker, "P001", "--from", "2024-02-21")
        assert live == []
        cancelled = [r for r in items(tracker, "P001", "--all", "--from", "2024-02-21")]
        assert cancelled and all(r["status"] == "cancelled" for r in cancelled)


@freeze_time("2024-03-01")
def test_switch_stops_one_and_starts_the_other(tracker):
    add_patient(tracker)
    tracker("therapy start P001 methotrexate --on 2024-01-01")
    out = tracker("therapy switch P001 methotrexate dupilumab --on 2024-03-01 --reason 'EASI-50 not met' "
                  "--category failure").stdout
    assert "stopped methotrexate" in out and "started dupilumab" in out
    shown = tracker.json("patient show P001")
    assert [(c["drug"], c["status"]) for c in shown["courses"]] == [("methotrexate", "stopped"),
                                                                    ("dupilumab", "active")]


@freeze_time("2024-03-01")
def test_azathioprine_cannot_start_without_tpmt(tracker):
    add_patient(tracker)
    refused = tracker("therapy start P001 azathioprine --on 2024-03-01", ok=False)
    assert refused.exit_code == 5
    assert "tpmt" in refused.stderr and refused.stderr.count("\n") == 1
    assert tracker.json("patient show P001")["courses"] == []
    tracker("result add P001 tpmt normal --on 2024-02-20")
    tracker("therapy start P001 azathioprine --on 2024-03-01")
    tpmt = [r for r in items(tracker, "P001") if r["tests"] == ["tpmt"]]
    assert tpmt[0]["status"] == "done" and tpmt[0]["done_on"] == "2024-02-20"


@freeze_time("2024-03-01")
def test_gate_override_and_tpmt_absent(tracker):
    add_patient(tracker)
    started = tracker("therapy start P001 imuran --on 2024-03-01 --override-gate 'urgent, TPMT sent'")
    assert "started azathioprine" in started.stdout and "tpmt" in started.stderr
    audit_after = tracker.json("patient show P001")["courses"][0]
    assert audit_after["gate_override"] == "urgent, TPMT sent"
    add_patient(tracker, mrn="P002")
    tracker("result add P002 tpmt absent --on 2024-02-20")
    refused = tracker("therapy start P002 azathioprine --on 2024-03-01 --override-gate anyway", ok=False)
    assert refused.exit_code == 5 and "absent" in refused.stderr


def test_due_and_overdue_worklists(tracker):
    with freeze_time("2024-01-01"):
        add_patient(tracker, "P001")
        add_patient(tracker, "P002")
        tracker("therapy start P001 methotrexate --on 2024-01-01")
        tracker("therapy start P002 dupilumab --on 2024-01-01")
        record_panels(tracker, "P001", "2023-12-28", "cbc")
    with freeze_time("2024-01-25"):
        due = tracker.json("due --days 7")
        assert [(r["mrn"], r["due"], r["kind"]) for r in due] == [("P001", "2024-01-29", "lab")]
        overdue = tracker.json("overdue")
        got = {(r["mrn"], r["due"], r["kind"], tuple(r["tests"])) for r in overdue}
        assert ("P001", "2024-01-15", "lab", ("cbc", "cmp")) in got
        assert ("P001", "2024-01-01", "baseline", ("cbc",)) not in got  # the CBC result satisfied it
        assert ("P002", "2024-01-01", "baseline", ("vaccination_review",)) in got
        assert all(r["overdue"] for r in overdue)
        human = tracker("overdue").stdout
        assert "P001" in human and "P002" in human and "OVERDUE" in human
        later = tracker.json("due --as-of 2024-04-10 --days 12")
        assert [(r["mrn"], r["due"], r["kind"]) for r in later] == [("P001", "2024-04-12", "lab"),
                                                                    ("P002", "2024-04-22", "checkpoint")]


def test_worklists_roll_forward_as_time_passes(tracker):
    with freeze_time("2024-01-01"):
        add_patient(tracker)
        tracker("therapy start P001 methotrexate --on 2024-01-01")
        first = max(r["due"] for r in items(tracker, "P001"))
    with freeze_time("2025-06-01"):
        tracker("due")
        rolled = max(r["due"] for r in items(tracker, "P001"))
    assert first < "2025-03-01" and rolled >= "2026-06-01"


@freeze_time("2024-01-01")
def test_schedules_list_and_show(tracker):
    listed = tracker.json("schedules list")
    ids = [p["id"] for p in listed]
    assert {"methotrexate", "azathioprine", "dupilumab"} <= set(ids)
    mtx = next(p for p in listed if p["id"] == "methotrexate")
    assert mtx["class"] == "csdmard" and mtx["version"] >= 1 and mtx["sources"] >= 3
    shown = tracker("schedules show cyclosporine" if "ciclosporin" in ids else "schedules show mtx").stdout
    assert "Sources" in shown
    timeline = tracker.json("schedules show methotrexate")
    assert [r["day"] for r in timeline["timeline"] if r["kind"] == "lab"][:3] == [14, 28, 42]


def test_audit_log_records_who_what_and_before_after(tracker, db_url):
    with freeze_time("2024-01-01"):
        add_patient(tracker)
        tracker(["--user", "nurse.jo", "therapy", "start", "P001", "methotrexate", "--on", "2024-01-01"])
        tracker(["--user", "nurse.jo", "therapy", "dose", "P001", "methotrexate", "--on", "2024-01-01",
                 "--dose", "20mg"])
    from tests.conftest import dump_database

    events = dump_database(db_url)["audit_event"]
    actions = [(e[2], e[3]) for e in events]
    assert ("tester", "patient.add") in actions
    assert ("nurse.jo", "therapy.start") in actions and ("nurse.jo", "therapy.dose") in actions
    dose = next(e for e in events if e[3] == "therapy.dose")
    assert json.loads(dose[7])["dose"] is None and json.loads(dose[8])["dose"] == "20mg"


def test_demo_builds_a_clinic_and_prints_a_worklist(tracker):
    out = tracker("demo").stdout
    assert "Demo clinic: 30 synthetic patients" in out
    assert "Worklist for" in out and "DEMO00" in out
    assert len(tracker.json("patient list")) == 30
    again = tracker("demo", ok=False)
    assert again.exit_code != 0 and "fresh" in again.stderr
    if "://" not in tracker.db:  # --replace starts over with a SQLite file (the README's demo command)
        assert "Demo clinic: 30 synthetic patients" in tracker("demo --replace").stdout
        assert len(tracker.json("patient list")) == 30


def test_demo_replace_deletes_only_a_demo_database(tracker, db_url, tmp_path):
    """Issue 15: `demo --replace` on a clinic's database (or any other file) is refused, nothing touched."""
    from tests.conftest import dump_database

    if "://" in db_url:
        result = tracker("demo --replace", ok=False)
        assert result.exit_code == 2 and "server database" in result.stderr
        return
    add_patient(tracker)
    before = dump_database(db_url)
    result = tracker("demo --replace", ok=False)
    assert result.exit_code == 2 and "not one" in result.stderr and result.stderr.count("\n") == 1
    assert dump_database(db_url) == before
    other = tmp_path / "notes.txt"
    other.write_text("not a database")
    tracker.db = str(other)
    assert tracker("demo --replace", ok=False).exit_code == 2
    assert other.read_text() == "not a database"


def test_python_dash_m_and_version(tracker):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "tracker", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "tracker" in out.stdout


def test_due_as_of_is_a_what_if_that_writes_nothing(tracker, db_url):
    """`due --as-of` far ahead reads plans rolled forward that far, and leaves the database as it was."""
    from tests.conftest import dump_database

    with freeze_time("2024-01-01"):
        add_patient(tracker)
        tracker("therapy start P001 methotrexate --on 2024-01-01")
        before = dump_database(db_url)
        far = tracker.json("due --as-of 2026-03-01 --days 60")
        assert dump_database(db_url) == before
        assert [r for r in far if r["mrn"] == "P001" and "2026-03-01" <= r["due"] <= "2026-04-30"]
    with freeze_time("2026-03-01"):
        tracker("due --days 60")  # today's worklist rolls plans forward for real
        real = tracker.json("due --days 60")
    key = lambda rows: sorted((r["mrn"], r["due"], r["title"]) for r in rows)  # noqa: E731
    assert key(far) == key(real)
