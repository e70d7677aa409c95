"""Which result a laboratory's source id names (findings B3-B6 of session 20): "already on record" only for the
very same result (patient, test, day, value); an id reused for another result is refused naming the stored
one; ids local to their container (a FHIR contained Observation's `#1`, an HL7 OBX-1 that restarts under each
OBR) are qualified by it, while results stored under the former ids are still recognised. Real CLI, real
parsers, migrations."""

from __future__ import annotations

import json

from freezegun import freeze_time

from tests.conftest import dump_database
from tests.test_lab_import import fhir_bundle, methotrexate_patient, oru


def report(report_id: str, mrn: str, day: str, alt: float, contained_id: str = "1") -> dict:
    """A DiagnosticReport carrying its ALT as a contained Observation (ids local to the report)."""
    return {"resourceType": "DiagnosticReport", "id": report_id, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "24323-8"}]},
            "subject": {"identifier": {"value": mrn}}, "effectiveDateTime": day,
            "contained": [{"resourceType": "Observation", "id": contained_id, "status": "final",
                           "code": {"coding": [{"system": "http://loinc.org", "code": "1742-6"}]},
                           "valueQuantity": {"value": alt, "unit": "U/L", "system": "http://unitsofmeasure.org",
                                             "code": "U/L"}}],
            "result": [{"reference": f"#{contained_id}"}]}


def observation(obs_id: str, mrn: str, alt: float, status: str = "final") -> dict:
    return {"resourceType": "Observation", "id": obs_id, "status": status,
            "code": {"coding": [{"system": "http://loinc.org", "code": "1742-6"}]},
            "subject": {"identifier": {"value": mrn}}, "effectiveDateTime": "2026-01-19",
            "valueQuantity": {"value": alt, "unit": "U/L", "system": "http://unitsofmeasure.org", "code": "U/L"}}


def write(path, document) -> str:
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return str(path)


def results(tracker, mrn: str) -> list[tuple]:
    return sorted((r["test"], r["value"], r["taken_on"]) for r in tracker.json(["result", "list", mrn]))


def source_ids(db: str) -> list[str]:
    from sqlalchemy import text

    from tracker.db.engine import make_engine, resolve_url

    engine = make_engine(resolve_url(db))
    with engine.connect() as conn:
        out = sorted(conn.execute(text("SELECT source_id FROM lab_result WHERE source_id IS NOT NULL")).scalars())
    engine.dispose()
    return out


def store_as_before(db: str, renamed: dict[str, str]) -> None:
    """Results on record as tracker stored them before this change (their former source ids)."""
    from sqlalchemy import text

    from tracker.db.engine import make_engine, resolve_url

    engine = make_engine(resolve_url(db))
    with engine.begin() as conn:
        for new, old in renamed.items():
            assert conn.execute(text("UPDATE lab_result SET source_id = :old WHERE source_id = :new"),
                                {"old": old, "new": new}).rowcount == 1
    engine.dispose()


@freeze_time("2026-01-20")
def test_contained_observation_ids_are_local_to_their_report(tracker, tmp_path):
    """Two DiagnosticReports each carrying a contained Observation `#1`: two results (before, the second was
    "already on record", exit 0, and lost). In one bundle, each keeps its own report's patient."""
    methotrexate_patient(tracker, "M1")
    methotrexate_patient(tracker, "M2")
    first = write(tmp_path / "a.json", report("rep-A", "M1", "2026-01-10", 30))
    second = write(tmp_path / "b.json", report("rep-B", "M2", "2026-01-19", 250))
    assert "imported 1 results" in tracker(["result", "import", first]).stdout
    assert "imported 1 results" in tracker(["result", "import", second]).stdout
    assert results(tracker, "M2") == [("alt", 250, "2026-01-19")]
    assert source_ids(tracker.db) == ["fhir:DiagnosticReport/rep-A#1", "fhir:DiagnosticReport/rep-B#1"]
    before = dump_database(tracker.db)
    for path in (first, second):
        assert "(1 already on record)" in tracker(["result", "import", path]).stdout
    assert dump_database(tracker.db) == before

    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"resource": report("rep-C", "M1", "2026-01-18", 31)}, {"resource": report("rep-D", "M2", "2026-01-18", 32)}]}
    assert "imported 2 results" in tracker(["result", "import", write(tmp_path / "c.json", bundle)]).stdout
    assert ("alt", 31, "2026-01-18") in results(tracker, "M1") and ("alt", 32, "2026-01-18") in results(tracker, "M2")


@freeze_time("2026-01-20")
def test_an_observation_id_reused_for_another_result_is_refused_naming_the_stored_one(tracker, tmp_path):
    methotrexate_patient(tracker, "M1")
    methotrexate_patient(tracker, "M2")
    tracker(["result", "import", write(tmp_path / "one.json", observation("1", "M1", 30))])
    before = dump_database(tracker.db)

    path = write(tmp_path / "two.json", observation("1", "M2", 250))
    refused = tracker(["result", "import", path], ok=False)

    assert refused.exit_code == 2, refused.stdout
    assert refused.stderr.splitlines()[1] == (
        "Observation/1 Observation[1] (1): result: 'fhir:Observation/1': this source id is on record for another "
        "result, #1 (alt 30 U/L on 2026-01-19, patient M1) (patient, value differ): the laboratory reused the "
        "id; nothing stored")
    assert dump_database(tracker.db) == before
    # The same result again is on record, as before.
    assert "(1 already on record)" in tracker(["result", "import", str(tmp_path / "one.json")]).stdout


@freeze_time("2026-01-20")
def test_an_hl7_message_without_a_control_id_is_refused(tracker, tmp_path):
    """Without MSH-10 every such message's first result had the id `#1|1`: the second patient's was "already on
    record" (exit 0) and lost. Now refused, naming MSH-10."""
    methotrexate_patient(tracker, "M1")
    before = dump_database(tracker.db)
    path = write(tmp_path / "noid.hl7", oru(id="", alt="30"))
    refused = tracker(["result", "import", path], ok=False)
    assert refused.exit_code == 2
    assert ("message #1 OBX[1]: result: 'LN:26464-8': MSH-10 message control id missing: tracker cannot tell "
            "this message's results from another message's; the laboratory must send MSH-10") in refused.stderr
    assert dump_database(tracker.db) == before


@freeze_time("2026-01-20")
def test_results_stored_under_their_former_source_ids_are_still_on_record(tracker, tmp_path):
    """Stored source ids are data: a report or message imported before this change (contained Observation as
    `fhir:Observation/1`; an HL7 message without MSH-10 as `#1`) sent again is on record and changes nothing,
    while another report's contained `#1` is stored as the new result it is."""
    methotrexate_patient(tracker, "M1")
    methotrexate_patient(tracker, "M2")
    old_report = write(tmp_path / "a.json", report("rep-A", "M1", "2026-01-10", 30))
    tracker(["result", "import", old_report])
    old_message = write(tmp_path / "noid.hl7", oru(id="", alt="30"))
    tracker(["result", "import", write(tmp_path / "withid.hl7", oru(id="X", alt="30"))])
    store_as_before(tracker.db, {"fhir:DiagnosticReport/rep-A#1": "fhir:Observation/1",
                                 **{f"hl7:CITYLAB|X|{n}": f"hl7:CITYLAB|#1|{n}" for n in range(1, 9)}})
    before = dump_database(tracker.db)

    assert "(1 already on record)" in tracker(["result", "import", old_report]).stdout
    assert "(8 already on record)" in tracker(["result", "import", old_message]).stdout
    assert dump_database(tracker.db) == before

    new_report = write(tmp_path / "b.json", report("rep-B", "M2", "2026-01-19", 250))
    assert "imported 1 results" in tracker(["result", "import", new_report]).stdout
    assert results(tracker, "M2") == [("alt", 250, "2026-01-19")]
    # An id-less message for another patient is refused (not "already on record" under the other's `#1`).
    refused = tracker(["result", "import", write(tmp_path / "noid2.hl7", oru(id="", mrn="M2", alt="31"))], ok=False)
    assert refused.exit_code == 2 and "MSH-10 message control id missing" in refused.stderr


@freeze_time("2026-01-20")
def test_an_amendment_matched_only_by_a_former_local_id_is_refused(tracker, tmp_path):
    """A result stored under `fhir:Observation/1` (an id local to its report, before the ids were qualified)
    cannot tell which report's result an amendment is about: before, another report's amendment corrected
    it (session 20's second reading). Refused in one line, nothing changed."""
    methotrexate_patient(tracker, "M1")
    tracker(["result", "import", write(tmp_path / "a.json", report("rep-A", "M1", "2026-01-10", 130))])
    store_as_before(tracker.db, {"fhir:DiagnosticReport/rep-A#1": "fhir:Observation/1"})
    before = dump_database(tracker.db)
    for rep, value, status in (("rep-B", 25, "amended"), ("rep-A", 120, "amended"), ("rep-B", 20, "entered-in-error")):
        document = report(rep, "M1", "2026-01-10", value)
        document["contained"][0]["status"] = status
        result = tracker(["result", "import", write(tmp_path / f"{rep}-{status}.json", document)], ok=False)
        assert result.exit_code == 2 and "an id local to its report" in result.stderr
        assert "cannot be told" in result.stderr and "removed" not in result.stderr
        assert dump_database(tracker.db) == before


@freeze_time("2026-01-20")
def test_another_reports_result_under_a_former_local_id_is_stored_not_called_on_record(tracker, tmp_path):
    """Only the whole identity, value included, tells a result under a former local id: a different value is
    another report's result, stored (before: 'already on record' once a correction had replaced the id)."""
    methotrexate_patient(tracker, "M1")
    tracker(["result", "import", write(tmp_path / "a.json", report("rep-A", "M1", "2026-01-10", 130))])
    store_as_before(tracker.db, {"fhir:DiagnosticReport/rep-A#1": "fhir:Observation/1"})
    assert "(1 already on record)" in tracker(["result", "import", str(tmp_path / "a.json")]).stdout
    out = tracker(["result", "import", write(tmp_path / "b.json", report("rep-B", "M1", "2026-01-10", 20))]).stdout
    assert "already on record" not in out
    assert results(tracker, "M1") == [("alt", 20, "2026-01-10"), ("alt", 130, "2026-01-10")]


@freeze_time("2026-01-20")
def test_the_first_version_of_an_amended_observation_sent_again_is_on_record(tracker, tmp_path):
    """Its value differs from the one on record, rightly: a correction replaced it (audited result.correct)."""
    methotrexate_patient(tracker)
    original = write(tmp_path / "bundle.json", fhir_bundle(value=130))
    tracker(["result", "import", original])
    tracker(["result", "import", write(tmp_path / "amended.json", fhir_bundle(status="amended", value=35))])
    before = dump_database(tracker.db)
    assert "(2 already on record)" in tracker(["result", "import", original]).stdout
    assert dump_database(tracker.db) == before


RESTARTING = [  # OBX-1 restarts at 1 under each OBR (common HL7 practice)
    "OBR|1|ORD1|FIL1|58410-2^CBC^LN|||20260119083000",
    "OBX|1|NM|26499-4^Neutrophils^LN||3.2|10*9/L|2.0-7.5|N|||F",
    "OBX|2|NM|26515-7^Platelets^LN||250|10*9/L|150-400|N|||F",
    "OBR|2|ORD2|FIL2|24323-8^CMP^LN|||20260119083000",
    "OBX|1|NM|1742-6^ALT^LN||130|U/L|0-40|H|||F",
    "OBX|2|NM|2160-0^Creatinine^LN||0.9|mg/dL|0.6-1.2|N|||F",
]


@freeze_time("2026-01-20")
def test_obx_set_ids_restarting_under_each_obr_are_qualified_by_the_obr(tracker, tmp_path):
    """Before: refused (`repeats an earlier result of this file`), and `labs listen` answered AE forever."""
    methotrexate_patient(tracker)
    path = write(tmp_path / "restart.hl7", oru(id="RST1", obx=RESTARTING))

    assert "imported 4 results" in tracker(["result", "import", path]).stdout

    assert source_ids(tracker.db) == ["hl7:CITYLAB|RST1|OBR1|1", "hl7:CITYLAB|RST1|OBR1|2",
                                      "hl7:CITYLAB|RST1|OBR2|1", "hl7:CITYLAB|RST1|OBR2|2"]
    assert {r[0] for r in results(tracker, "M1")} == {"neutrophils", "platelets", "alt", "creatinine"}
    assert "(4 already on record)" in tracker(["result", "import", path]).stdout
    # A message whose OBX-1 are unique keeps the ids it always had.
    tracker(["result", "import", write(tmp_path / "unique.hl7", oru(id="U1", alt="30"))])
    assert [s for s in source_ids(tracker.db) if "|U1|" in s] == [f"hl7:CITYLAB|U1|{n}" for n in range(1, 9)]


@freeze_time("2026-01-20")
def test_results_skipped_before_from_a_restarting_message_can_still_be_imported(tracker, tmp_path):
    """Before this change, `--skip-bad` stored the first OBR's results under `...|RST1|1` and `|2` and refused
    the second's as repeats, which a re-import then called "already on record" for good. Now the first two
    are recognised under their former ids and the other two are stored."""
    methotrexate_patient(tracker)
    tracker(["result", "import", write(tmp_path / "first.hl7", oru(id="RST1", obx=RESTARTING[:3]))])
    assert source_ids(tracker.db) == ["hl7:CITYLAB|RST1|1", "hl7:CITYLAB|RST1|2"]  # as the old import left them
    path = write(tmp_path / "restart.hl7", oru(id="RST1", obx=RESTARTING))

    assert "imported 2 results from" in tracker(["result", "import", path]).stdout

    assert {r[0] for r in results(tracker, "M1")} == {"neutrophils", "platelets", "alt", "creatinine"}
    before = dump_database(tracker.db)
    assert "(4 already on record)" in tracker(["result", "import", path]).stdout
    assert dump_database(tracker.db) == before


@freeze_time("2026-01-20")
def test_an_entered_in_error_observation_is_refused_naming_the_result_on_record(tracker, tmp_path):
    """The retraction is refused loudly, naming the command that withdraws the result (before: "1 already on
    record", exit 0, and the retracted ALT 130 and its critical alert stayed with nobody told); once withdrawn,
    the file imports as on record (tests/test_result_withdraw.py)."""
    methotrexate_patient(tracker)
    tracker(["result", "import", write(tmp_path / "final.json", observation("alt-9", "M1", 130))])
    before = dump_database(tracker.db)

    path = write(tmp_path / "eie.json", observation("alt-9", "M1", 130, status="entered-in-error"))
    refused = tracker(["result", "import", path], ok=False)

    assert refused.exit_code == 2 and "already on record" not in refused.stdout
    assert refused.stderr.splitlines()[1] == (
        "Observation/alt-9 Observation[1] (alt-9): result: 'fhir:Observation/alt-9': entered-in-error: the "
        "laboratory withdrew this result, on record as #1 (alt 130 U/L on 2026-01-19, patient M1); withdraw it with "
        "`tracker result withdraw 1 --reason REASON`, then import this file again")
    assert dump_database(tracker.db) == before


# --- an original that arrives after its correction (B5) ----------------------------------------------------

ALT_ORIGINAL = "OBX|1|NM|1742-6^ALT^LN||130|U/L|0-40|H|||F|||20260119083000"
ALT_CORRECTION = "OBX|1|NM|1742-6^ALT^LN||{alt}|U/L|0-40|N|||C|||20260119083000"


def alt_state(tracker) -> tuple[list, list]:
    alt = [(r["value"], r["taken_on"]) for r in tracker.json(["result", "list", "M1", "--test", "alt"])]
    critical = [a for a in tracker.json(["alerts"]) if a["kind"] == "threshold" and a["severity"] == "critical"]
    return alt, critical


def late_original_files(tmp_path):
    from tests.test_lab_corrections import sent_at

    original = sent_at(oru(id="ORIG", obx=[ALT_ORIGINAL]), "20260119100000")
    correction = sent_at(oru(id="CORR", obx=[ALT_CORRECTION.format(alt="35")]), "20260119150000")
    second = sent_at(oru(id="CORR2", obx=[ALT_CORRECTION.format(alt="36")]), "20260119160000")
    return original, correction, second


@freeze_time("2026-01-20")
def test_an_original_arriving_after_its_correction_is_not_stored_beside_it(tracker, tmp_path):
    """Before: the late original ALT 130 (MSH-7 10:00) was stored beside its correction 35 (15:00), raised a
    critical alert, and the next correction was refused as ambiguous."""
    methotrexate_patient(tracker)
    original, correction, second = late_original_files(tmp_path)
    tracker(["result", "import", write(tmp_path / "corr.hl7", correction)])

    out = tracker(["result", "import", write(tmp_path / "orig.hl7", original)]).stdout

    assert out.splitlines()[0] == (f"imported 0 results from {tmp_path / 'orig.hl7'} (hl7), 1 original not stored "
                                   f"(reported before its correction)")
    assert alt_state(tracker) == ([(35, "2026-01-19")], [])
    # Recorded as replaced, as if it had come first: sent again, it is on record and changes nothing.
    before = dump_database(tracker.db)
    assert "(1 already on record)" in tracker(["result", "import", str(tmp_path / "orig.hl7")]).stdout
    assert dump_database(tracker.db) == before
    assert "1 corrected" in tracker(["result", "import", write(tmp_path / "corr2.hl7", second)]).stdout
    assert alt_state(tracker)[0] == [(36, "2026-01-19")]


@freeze_time("2026-01-20")
def test_an_original_after_its_correction_in_one_file_whichever_order(tracker, tmp_path):
    methotrexate_patient(tracker)
    original, correction, second = late_original_files(tmp_path)
    path = write(tmp_path / "both.hl7", correction + original)

    out = tracker(["result", "import", path]).stdout

    assert "imported 1 results" in out and "1 original not stored (reported before its correction)" in out
    assert alt_state(tracker) == ([(35, "2026-01-19")], [])
    assert "(2 already on record)" in tracker(["result", "import", path]).stdout
    assert "1 corrected" in tracker(["result", "import", write(tmp_path / "corr2.hl7", second)]).stdout
    # The other order, the original first, is the correction replacing it: the same end.
    tracker("patient add M2 --name 'Mia Two' --dob 1975-01-01")
    other = write(tmp_path / "other.hl7", (original + correction).replace("|M1^", "|M2^").replace("|ORIG|", "|O2|")
                  .replace("|CORR|", "|C2|"))
    assert "1 corrected" in tracker(["result", "import", other]).stdout
    assert [r["value"] for r in tracker.json(["result", "list", "M2", "--test", "alt"])] == [35]


@freeze_time("2026-01-20")
def test_two_originals_of_one_day_are_both_stored_whichever_order(tracker, tmp_path):
    """Only a correction supersedes an original: two final results of one test and day (two draws) arriving
    newest first are both stored, as they are oldest first."""
    from tests.test_lab_corrections import sent_at

    methotrexate_patient(tracker)
    newer = sent_at(oru(id="F2", obx=[ALT_ORIGINAL.replace("||130|", "||50|")]), "20260119150000")
    older = sent_at(oru(id="F1", obx=[ALT_ORIGINAL.replace("||130|", "||45|")]), "20260119100000")
    tracker(["result", "import", write(tmp_path / "f2.hl7", newer)])
    assert "imported 1 results" in tracker(["result", "import", write(tmp_path / "f1.hl7", older)]).stdout
    assert sorted(alt_state(tracker)[0]) == [(45, "2026-01-19"), (50, "2026-01-19")]
