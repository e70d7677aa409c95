"""`tracker result withdraw`: a result the laboratory retracted (entered in error, the wrong patient) leaves the
record, and what it answered is undone: its alerts resolve, the items it completed are open again, a course
started on it has its gate overridden (its critical alert raised), and its message imported again is on
record, never stored again. Before, tracker had no way to do it: a lab's entered-in-error was refused with the
advice to remove the result "by hand" (SQL). Real CLI, real parsers, migrations, both engines."""

from __future__ import annotations

import types

from freezegun import freeze_time

from tests.conftest import dump_database
from tests.test_lab_identity import observation, report, store_as_before, write
from tests.test_lab_import import draw, methotrexate_patient, oru
from tests.test_protocol_versions import audit_events as audit_rows


def result_id(tracker, mrn: str, test: str) -> int:
    (row,) = [r for r in tracker.json(["result", "list", mrn]) if r["test"] == test]
    return row["id"]


@freeze_time("2026-01-20")
def test_a_withdrawn_critical_alt_resolves_its_alert_reopens_the_draw_and_stays_off_the_record(tracker, tmp_path):
    methotrexate_patient(tracker)
    message = write(tmp_path / "oru.hl7", oru())  # ALT 130 U/L: methotrexate's critical withhold rule
    tracker(["result", "import", message])
    assert draw(tracker, "M1", "2026-01-19")["status"] == "done"
    alt = result_id(tracker, "M1", "alt")

    out = tracker(["result", "withdraw", str(alt), "--reason", "laboratory: entered in error"]).stdout

    assert f"withdrew result #{alt}: alt 130 U/L on 2026-01-19 (patient M1)" in out
    assert "open again: 2026-01-19 Methotrexate monitoring: CBC, CMP" in out  # the CMP needs ALT or AST
    assert "open again: 2026-01-05 Baseline CMP before Methotrexate" in out  # completed by the same results
    # The repeat the critical ALT booked is not wanted without it.
    assert "cancelled: 2026-01-26 Repeat alt for Methotrexate before restarting: 130 U/L on 2026-01-19" in out
    row = draw(tracker, "M1", "2026-01-19")
    assert (row["status"], row["done_on"]) == ("partial", None)
    assert "cmp: alt or ast" in row["missing"]
    assert "alt" not in {r["test"] for r in tracker.json(["result", "list", "M1"])}
    (alert,) = [a for a in tracker.json(["alerts", "--all"]) if a["kind"] == "threshold"]
    assert (alert["status"], alert["resolution"]) == ("resolved", f"result #{alt} withdrawn: laboratory: entered in error")
    assert f"resolved alert #{alert['id']} (threshold): result #{alt} withdrawn: laboratory: entered in error" in out
    assert not [a for a in tracker.json(["alerts"]) if a["kind"] == "overdue" and "Repeat alt" in a["message"]]
    (audited,) = audit_rows(tracker.db, "result.withdraw")
    assert audited["entity_id"] == alt and audited["mrn"] == "M1"
    assert audited["before"]["value_num"] == 130 and audited["before"]["source_id"].startswith("hl7:")
    assert audited["after"]["reason"] == "laboratory: entered in error"
    assert row["id"] in audited["after"]["reopened_items"] and len(audited["after"]["reopened_items"]) == 2
    assert audited["after"]["alerts_unlinked"] == [alert["id"]] and len(audited["after"]["cancelled_repeats"]) == 1

    # The message again: the seven results on record and the withdrawn one are all recognised, nothing stored.
    before = dump_database(tracker.db)
    assert "8 already on record" in tracker(["result", "import", message]).stdout
    assert dump_database(tracker.db) == before


@freeze_time("2026-02-01")
def test_a_draw_open_again_past_its_grace_raises_its_overdue_alert_at_once(tracker, tmp_path):
    methotrexate_patient(tracker)
    with freeze_time("2026-01-20"):
        tracker(["result", "import", write(tmp_path / "oru.hl7", oru(alt="30"))])
    neutrophils = result_id(tracker, "M1", "neutrophils")

    out = tracker(["result", "withdraw", str(neutrophils), "--reason", "wrong patient"]).stdout

    assert "open again: 2026-01-19" in out
    assert "(overdue, warning): Methotrexate monitoring: CBC, CMP was due 2026-01-19 and is 13 days overdue" in out
    assert draw(tracker, "M1", "2026-01-19")["missing"] == ["cbc: neutrophils"]


@freeze_time("2026-01-20")
def test_a_same_day_result_of_the_test_keeps_the_draw_done(tracker, tmp_path):
    """The draw is open again only if the remaining results leave it incomplete: a second ALT of the day
    completes it still (and it names that result)."""
    methotrexate_patient(tracker)
    tracker(["result", "import", write(tmp_path / "oru.hl7", oru(alt="30"))])
    tracker("result add M1 alt 28 --on 2026-01-19")
    first = min(r["id"] for r in tracker.json(["result", "list", "M1"]) if r["test"] == "alt")
    done_before = draw(tracker, "M1", "2026-01-19")

    out = tracker(["result", "withdraw", str(first), "--reason", "duplicate sent in error"]).stdout

    assert "open again" not in out
    row = draw(tracker, "M1", "2026-01-19")
    assert (row["status"], row["done_on"]) == ("done", "2026-01-19") and done_before["status"] == "done"


@freeze_time("2026-01-20")
def test_a_partial_draw_loses_what_the_withdrawn_result_gave_it(tracker):
    methotrexate_patient(tracker)
    tracker("result add M1 alt 30 --on 2026-01-19")
    assert draw(tracker, "M1", "2026-01-19")["received"] == ["alt"]

    tracker(["result", "withdraw", str(result_id(tracker, "M1", "alt")), "--reason", "wrong patient"])

    row = draw(tracker, "M1", "2026-01-19")
    assert row["status"] == "planned" and row["received"] == []


def test_a_course_started_on_a_withdrawn_tpmt_has_its_gate_overridden_until_a_passing_result(tracker):
    with freeze_time("2026-12-01"):
        tracker("patient add A1 --name 'Ann Test' --dob 1970-01-01")
        tracker("result add A1 tpmt normal --on 2026-12-01")
    with freeze_time("2026-12-03"):
        tracker("therapy start A1 azathioprine --on 2026-12-03")
    with freeze_time("2026-12-05"):
        out = tracker(["result", "withdraw", str(result_id(tracker, "A1", "tpmt")), "--reason",
                       "laboratory: wrong patient"]).stdout
        assert "open again: 2026-12-03 Baseline TPMT before Azathioprine (required)" in out
        assert "(gate, critical): Azathioprine started 2026-12-03 with its tpmt gate overridden" in out
        (alert,) = tracker.json(["alerts"])
        assert alert["kind"] == "gate" and alert["severity"] == "critical"
        assert ("Azathioprine started 2026-12-03 with its tpmt gate overridden (tpmt unmet since result #1 was "
                "withdrawn: laboratory: wrong patient): no tpmt result on record") in alert["message"]
        (course,) = tracker.json(["patient", "show", "A1"])["courses"]
        assert course["gate_override"].startswith("tpmt unmet since result #1 was withdrawn")
        assert "gate_overridden" in audit_rows(tracker.db, "result.withdraw")[0]["after"]
    with freeze_time("2026-12-06"):
        out = tracker("result add A1 tpmt normal --on 2026-12-06").stdout
        assert "resolved alert" in out
        assert tracker.json(["alerts"]) == []


@freeze_time("2026-01-20")
def test_refusals_name_the_result_and_change_nothing(tracker):
    methotrexate_patient(tracker)
    tracker("result add M1 alt 30 --on 2026-01-19")
    alt = result_id(tracker, "M1", "alt")
    before = dump_database(tracker.db)
    for args, code, error in (
            ([str(alt + 100), "--reason", "x"], 3, f"error: result: {alt + 100}: not found"),
            ([str(alt), "--reason", "  "], 2, "error: reason: '  ': must not be empty"),
            ([str(alt), "--reason", "bad\u200bzero-width"], 2, "error: reason:"),
            ([str(alt)], 2, "Missing option '--reason'"),
            (["abc", "--reason", "x"], 2, "'abc' is not a valid integer")):
        refused = tracker(["result", "withdraw", *args], ok=False)
        assert refused.exit_code == code and error in refused.stderr, (args, refused.stderr)
        assert dump_database(tracker.db) == before
    tracker(["result", "withdraw", str(alt), "--reason", "entered in error"])
    after = dump_database(tracker.db)
    again = tracker(["result", "withdraw", str(alt), "--reason", "again"], ok=False)
    assert again.exit_code == 4 and f"error: result #{alt} was withdrawn already, on 2026-01-20 by" in again.stderr
    assert dump_database(tracker.db) == after


@freeze_time("2026-01-20")
def test_a_fhir_retraction_once_withdrawn_imports_as_on_record(tracker, tmp_path):
    methotrexate_patient(tracker)
    final = write(tmp_path / "final.json", observation("alt-9", "M1", 130))
    tracker(["result", "import", final])
    retraction = write(tmp_path / "eie.json", observation("alt-9", "M1", 130, status="entered-in-error"))
    assert tracker(["result", "import", retraction], ok=False).exit_code == 2

    tracker(["result", "withdraw", "1", "--reason", "laboratory: entered in error"])

    before = dump_database(tracker.db)
    assert "1 already on record" in tracker(["result", "import", retraction]).stdout
    assert "1 already on record" in tracker(["result", "import", final]).stdout
    assert dump_database(tracker.db) == before
    # The id reused for another result is refused, naming the withdrawn one.
    other = write(tmp_path / "other.json", observation("alt-9", "M1", 55))
    refused = tracker(["result", "import", other], ok=False)
    assert refused.exit_code == 2 and "on record for a result withdrawn from the record, #1 (alt 130 U/L" in refused.stderr
    assert dump_database(tracker.db) == before


def test_core_undone_by_withdrawal_reads_done_notes_and_received_tests():
    import datetime as dt

    from tracker.core.panels import undone_by_withdrawal
    from tracker.protocol_files import load_vocabulary

    day = dt.date(2026, 1, 19)

    def item(id, kind="lab", status="done", tests="cbc cmp", received="wbc alt", done_note="result #30 (albumin)",
             due=day, done_on=day, merged_into_id=None):
        return types.SimpleNamespace(id=id, kind=kind, status=status, tests=tests, received=received,
                                     done_note=done_note, due=due, done_on=done_on, merged_into_id=merged_into_id)

    items = [item(1, done_note="result #12 (alt)"),  # names it
             item(2),  # completed by another analyte of the day, having received alt
             item(3, kind="baseline", tests="cmp", received=None, done_note="result #30"),  # a baseline asking for it
             item(4, received="wbc"),  # received no alt
             item(5, done_on=day - dt.timedelta(days=1)),  # completed before the result was taken
             item(6, due=day + dt.timedelta(days=8)),  # due too late for the result to count
             item(7, done_note="done by hand"), item(8, kind="checkpoint", done_note="result #12"),
             item(9, tests="lipids", received="hdl", done_note="result #12 (hdl)"),  # names it: whatever it asks
             item(10, tests="lipids", received="hdl", merged_into_id=2, done_note="result #30 (albumin)"),  # host 2
             item(11, status="planned", received="alt wbc", done_note=None, done_on=None),
             item(12, status="planned", received="wbc", done_note=None, done_on=None),
             item(13, status="planned", tests="lipids", received="alt", done_note=None, done_on=None),
             item(14, status="cancelled", done_note="result #12 (alt)")]

    undone = undone_by_withdrawal(items, 12, "alt", day, load_vocabulary())

    assert [i.id for i in undone.completed] == [1, 2, 3, 9, 10]
    assert [i.id for i in undone.counted] == [11]  # planned, asking for alt and holding it


@freeze_time("2026-01-20")
def test_the_id_of_a_withdrawn_result_is_never_given_to_another(tracker, tmp_path):
    """SQLite gives a new row the largest id + 1: the newest result, once withdrawn, saw its id go to the next
    result (the audit's `lab_result` #2 was two results, an alert keyed `result2` met the other's, and
    withdrawing the new #2 failed on withdrawn_result's key: "database: UNIQUE constraint failed")."""
    methotrexate_patient(tracker)
    tracker("result add M1 alt 30 --on 2026-01-19")
    tracker("result add M1 alt 130 --on 2026-01-19")
    tracker(["result", "withdraw", "2", "--reason", "laboratory: entered in error"])

    tracker("result add M1 alt 31 --on 2026-01-19")
    tracker(["result", "import", write(tmp_path / "alt.json", observation("alt-9", "M1", 29))])

    assert sorted(r["id"] for r in tracker.json(["result", "list", "M1"])) == [1, 3, 4]
    tracker(["result", "withdraw", "4", "--reason", "wrong patient"])
    tracker("result add M1 alt 32 --on 2026-01-19")
    assert sorted(r["id"] for r in tracker.json(["result", "list", "M1"])) == [1, 3, 5]
    assert [r["entity_id"] for r in audit_rows(tracker.db, "result.withdraw")] == [2, 4]


def test_a_repeat_answered_by_the_withdrawn_result_is_open_again_not_done_by_the_result_that_booked_it(tracker):
    """ALT 130 on 01-19 books a repeat for 01-26; ALT 35 on 01-26 answers it, then is withdrawn. Before, the
    repeat was completed again by the ALT 130 itself ("result #N (alt)", done on 01-19): the confirmation the
    critical value asks for showed as done, with no overdue alert ever."""
    with freeze_time("2026-01-20"):
        methotrexate_patient(tracker)
        tracker("result add M1 alt 130 --on 2026-01-19")
    with freeze_time("2026-01-27"):
        assert "completed: 2026-01-26 Repeat alt" in tracker("result add M1 alt 35 --on 2026-01-26").stdout
        answer = max(r["id"] for r in tracker.json(["result", "list", "M1"]) if r["test"] == "alt")

        out = tracker(["result", "withdraw", str(answer), "--reason", "laboratory: wrong patient"]).stdout

        assert "open again: 2026-01-26 Repeat alt for Methotrexate before restarting: 130 U/L on 2026-01-19" in out
        repeat = draw(tracker, "M1", "2026-01-26")
        assert (repeat["status"], repeat["done_on"], repeat["received"]) == ("planned", None, [])
    with freeze_time("2026-02-10"):
        assert [a for a in tracker.json(["alerts"]) if a["kind"] == "overdue" and "Repeat alt" in a["message"]]


@freeze_time("2026-01-20")
def test_an_original_arriving_after_its_correction_was_withdrawn_is_not_stored(tracker, tmp_path):
    """The correction (ALT 35, 15:00) came first and was withdrawn; then its original (ALT 130, 10:00) arrives.
    Had the original come first, it would be a replaced source of the withdrawn result, on record; before, in
    this order, the retracted result came back with its superseded value, a critical alert and a repeat."""
    from tests.test_lab_identity import late_original_files

    methotrexate_patient(tracker)
    original, correction, _ = late_original_files(tmp_path)
    tracker(["result", "import", write(tmp_path / "corr.hl7", correction)])
    tracker(["result", "withdraw", "1", "--reason", "laboratory: entered in error"])

    out = tracker(["result", "import", write(tmp_path / "orig.hl7", original)]).stdout

    assert "imported 0 results" in out and "1 original not stored (reported before its correction)" in out
    assert [r["test"] for r in tracker.json(["result", "list", "M1"])] == []
    assert not [a for a in tracker.json(["alerts"]) if a["kind"] == "threshold"]
    # Kept as a source of the withdrawn result: sent again, it is on record and changes nothing.
    before = dump_database(tracker.db)
    assert "(1 already on record)" in tracker(["result", "import", str(tmp_path / "orig.hl7")]).stdout
    assert dump_database(tracker.db) == before


@freeze_time("2026-01-20")
def test_an_item_still_done_that_day_keeps_its_calendar_entry(tracker):
    """A duplicate ALT of the day withdrawn: the draw and the baseline CMP stay done on 01-19. Before, their
    done note was rewritten (another result of the day named), so their SEQUENCE went up and subscribers
    were sent an update of an event that had not changed."""
    from tests.conftest import record_panels

    methotrexate_patient(tracker)
    record_panels(tracker, "M1", "2026-01-19", "cbc", "cmp")
    tracker("result add M1 alt 26 --on 2026-01-19")
    before = tracker(["export", "ics", "--patient", "M1"]).stdout
    first = min(r["id"] for r in tracker.json(["result", "list", "M1"]) if r["test"] == "alt")

    out = tracker(["result", "withdraw", str(first), "--reason", "duplicate sent in error"]).stdout

    assert "open again" not in out
    assert tracker(["export", "ics", "--patient", "M1"]).stdout == before


def test_an_hl7_post_original_as_wrong_names_the_result_and_once_withdrawn_is_on_record(tracker, tmp_path):
    """HL7 OBX-11 W (post original as wrong) in a later message: before, refused as "only final (F) and corrected
    (C) results are recorded", never naming the result on record it retracts."""
    methotrexate_patient(tracker)
    tracker(["result", "import", write(tmp_path / "oru.hl7", oru())])
    alt = result_id(tracker, "M1", "alt")
    retraction = write(tmp_path / "w.hl7", oru(id="MSG00002", obx=["OBR|1|ORD2|FIL2|24323-8^CMP^LN|||20260119083000",
                                                                      "OBX|1|NM|1742-6^ALT^LN||130|U/L|0-40|H|||W"]))
    before = dump_database(tracker.db)
    refused = tracker(["result", "import", retraction], ok=False)
    assert refused.exit_code == 2 and refused.stderr.splitlines()[1].endswith(
        f"OBX-11 W: the laboratory withdrew its alt result of 2026-01-19 for patient M1, on record as #{alt}; "
        f"withdraw it with `tracker result withdraw {alt} --reason REASON`, then import this file again")
    assert dump_database(tracker.db) == before

    tracker(["result", "withdraw", str(alt), "--reason", "laboratory: posted as wrong"])

    before = dump_database(tracker.db)
    assert "1 already on record" in tracker(["result", "import", retraction]).stdout
    assert dump_database(tracker.db) == before
    # A W for a result tracker never had is refused as before.
    other = write(tmp_path / "w2.hl7", oru(id="MSG00003", obx=["OBR|1|ORD3|FIL3|24323-8^CMP^LN|||20260119083000",
                                                                  "OBX|1|NM|1920-8^AST^LN||30|U/L|0-40|N|||W"]))
    refused = tracker(["result", "import", other], ok=False)
    assert refused.exit_code == 2 and "OBX-11 status 'W': only final (F) and corrected (C)" in refused.stderr


@freeze_time("2026-01-20")
def test_a_same_day_result_that_still_breaches_keeps_one_alert_for_the_one_problem(tracker, tmp_path):
    """Two ALTs of one day over 100 U/L: withdrawing the leading one left its critical alert waiting for an
    acknowledgement beside the new alert the other raised (two alerts for one problem). The withdrawn one's
    alert is resolved by the withdrawal; the remaining value's alert stands."""
    methotrexate_patient(tracker)
    tracker("result add M1 alt 110 --on 2026-01-19")
    tracker("result add M1 alt 150 --on 2026-01-19")
    (lead,) = [a for a in tracker.json(["alerts"]) if a["kind"] == "threshold"]
    assert "alt 150 U/L on 2026-01-19" in lead["message"]
    worst = max((r for r in tracker.json(["result", "list", "M1"]) if r["test"] == "alt"), key=lambda r: r["value"])

    tracker(["result", "withdraw", str(worst["id"]), "--reason", "wrong patient"])

    live = [a for a in tracker.json(["alerts", "--all"]) if a["kind"] == "threshold" and a["status"] != "resolved"]
    assert len(live) == 1 and "alt 110 U/L on 2026-01-19" in live[0]["message"] and live[0]["severity"] == "critical"
    gone = next(a for a in tracker.json(["alerts", "--all"]) if a["id"] == lead["id"])
    assert gone["status"] == "resolved" and gone["resolution"] == f"result #{worst['id']} withdrawn: wrong patient"


@freeze_time("2026-01-20")
def test_a_retraction_matched_by_a_former_local_id_names_the_command_and_once_withdrawn_is_on_record(tracker, tmp_path):
    """A result stored under `fhir:Observation/1` (an id local to its report, before ids were qualified): a
    retraction matching it cannot tell which report's result it is about, and is refused; it said "enter the
    laboratory's withdrawal by hand", which nothing did, and after the withdrawal it was still refused."""
    methotrexate_patient(tracker, "M1")
    tracker(["result", "import", write(tmp_path / "a.json", report("rep-A", "M1", "2026-01-10", 130))])
    store_as_before(tracker.db, {"fhir:DiagnosticReport/rep-A#1": "fhir:Observation/1"})
    document = report("rep-A", "M1", "2026-01-10", 130)
    document["contained"][0]["status"] = "entered-in-error"
    retraction = write(tmp_path / "eie.json", document)
    refused = tracker(["result", "import", retraction], ok=False)
    assert refused.exit_code == 2 and "cannot be told" in refused.stderr
    assert "if it is #1, withdraw it with `tracker result withdraw 1 --reason REASON`" in refused.stderr

    tracker(["result", "withdraw", "1", "--reason", "laboratory: entered in error"])

    before = dump_database(tracker.db)
    assert "1 already on record" in tracker(["result", "import", retraction]).stdout
    assert dump_database(tracker.db) == before


def test_a_result_an_earlier_draw_took_does_not_complete_the_reopened_draw_a_second_time(tracker):
    """A full panel taken on 01-26, a week from both draws (due 01-19 and 02-02), went to the earlier; another on
    02-02 completed the second. Withdrawing the 02-02 ALT made the 02-02 draw done again by the 01-26 ALT, which
    the 01-19 draw had already taken (second reading: results counted twice)."""
    from tests.conftest import record_panels

    with freeze_time("2026-01-05"):
        methotrexate_patient(tracker)
    with freeze_time("2026-01-26"):
        record_panels(tracker, "M1", "2026-01-26", "cbc", "cmp")
        assert draw(tracker, "M1", "2026-01-19")["done_on"] == "2026-01-26"
        assert draw(tracker, "M1", "2026-02-02")["status"] == "planned"
    with freeze_time("2026-02-02"):
        record_panels(tracker, "M1", "2026-02-02", "cbc", "cmp")
        assert draw(tracker, "M1", "2026-02-02")["done_on"] == "2026-02-02"
        alt = max(r["id"] for r in tracker.json(["result", "list", "M1"]) if r["test"] == "alt")

        out = tracker(["result", "withdraw", str(alt), "--reason", "laboratory: entered in error"]).stdout

        assert "open again: 2026-02-02" in out
        row = draw(tracker, "M1", "2026-02-02")
        assert row["status"] == "partial" and row["missing"] == ["cmp: alt or ast"]
        assert draw(tracker, "M1", "2026-01-19")["done_on"] == "2026-01-26"


def test_a_withdrawn_result_keeps_every_column_a_result_has():
    """withdrawn_result is lab_result's row as it was: a column added to lab_result needs its twin there."""
    from tracker.db.tables import LabResult, WithdrawnResult

    kept = {c.name: str(c.type) for c in WithdrawnResult.__table__.columns}
    assert {c.name: str(c.type) for c in LabResult.__table__.columns}.items() <= kept.items()
