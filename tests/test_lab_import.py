"""Issue 16 item 2: lab results in by HL7 v2 ORU^R01 and FHIR R4, through the real CLI and migrations.

Messages are crafted here (no real patient data). The round trip of the issue's Done-when: an ORU^R01 for a
methotrexate patient completes the draw it answers and raises the protocol's threshold alert."""

from __future__ import annotations

import json

from freezegun import freeze_time

from tests.conftest import dump_database

MSH = "MSH|^~\\&|LABSYS|CITYLAB|TRACKER|DERM|20260119153000||ORU^R01^ORU_R01|{id}|P|{version}||||||{charset}"
PID = "PID|1||{mrn}^^^DERM^MR||Test^Max||19700101|M"
CBC_CMP = [
    "OBR|1|ORD1|FIL1|58410-2^CBC^LN|||20260119083000",
    "OBX|1|NM|26464-8^WBC^LN||6.1|10*9/L|4.0-11.0|N|||F|||20260119083000",
    "OBX|2|NM|26499-4^Neutrophils^LN||3.2|10*9/L|2.0-7.5|N|||F",
    "OBX|3|NM|26474-7^Lymphocytes^LN||1.8|10*9/L|1.0-4.0|N|||F",
    "OBX|4|NM|26515-7^Platelets^LN||250|10*9/L|150-400|N|||F",
    "OBX|5|NM|718-7^Hemoglobin^LN||13.5|g/dL|11.5-16.5|N|||F",
    "OBR|2|ORD2|FIL2|24323-8^CMP^LN|||20260119083000",
    "OBX|6|NM|1742-6^ALT^LN||{alt}|U/L|0-40|H|||F",
    "OBX|7|NM|2160-0^Creatinine^LN||0.9|mg/dL|0.6-1.2|N|||F",
    "OBX|8|NM|1751-7^Albumin^LN||40|g/L|35-50|N|||F",
]


def oru(*, id="MSG00001", mrn="M1", alt="130", version="2.5.1", charset="UNICODE UTF-8", obx=None) -> str:
    segments = [MSH.format(id=id, version=version, charset=charset), PID.format(mrn=mrn)]
    segments += [s.replace("{alt}", alt) for s in (obx if obx is not None else CBC_CMP)]
    return "\r".join(segments) + "\r"


def assert_sent_again_changes_nothing(tracker, *sent) -> None:
    """Each (file, count) imported again: its `count` results already on record, the database unchanged."""
    before = dump_database(tracker.db)
    for path, count in sent:
        assert f"{count} already on record" in tracker(["result", "import", str(path)]).stdout
    assert dump_database(tracker.db) == before


def methotrexate_patient(tracker, mrn="M1"):
    tracker(f"patient add {mrn} --name 'Max Test' --dob 1970-01-01")
    tracker(f"therapy start {mrn} methotrexate --on 2026-01-05")


def draw(tracker, mrn, due):
    return next(r for r in tracker.json(["calendar", mrn, "--all"]) if r["due"] == due and r["kind"] == "lab")


@freeze_time("2026-01-20")
def test_oru_for_a_methotrexate_patient_completes_the_draw_and_raises_the_threshold_alert(tracker, tmp_path):
    methotrexate_patient(tracker)
    assert draw(tracker, "M1", "2026-01-19")["status"] == "planned"
    message = tmp_path / "oru.hl7"
    message.write_text(oru())

    out = tracker(["result", "import", str(message)]).stdout

    assert "imported 8 results" in out and "(hl7)" in out
    done = draw(tracker, "M1", "2026-01-19")
    assert done["status"] == "done" and done["done_on"] == "2026-01-19"
    # ALT 130 U/L with the lab's ULN 40: methotrexate's > 100 U/L withhold rule leads (critical), the
    # x ULN rules named inside it (schedules/methotrexate.yaml).
    (alert,) = [a for a in tracker.json(["alerts"]) if a["kind"] == "threshold"]
    assert alert["severity"] == "critical" and alert["drug"] == "methotrexate" and alert["limit"] == "> 100 U/L"
    assert "> 3 x ULN (120 U/L) -> repeat to confirm, then stop" in alert["message"]
    # Units went through the conversion: Hb 13.5 g/dL -> 135 g/L, creatinine 0.9 mg/dL (2160-0) -> umol/L.
    results = {r["test"]: r for r in tracker.json(["result", "list", "M1"])}
    assert results["hb"]["value"] == 135 and results["hb"]["reported_unit"] == "g/dL"
    assert round(results["creatinine"]["value"], 1) == 79.6 and results["creatinine"]["unit"] == "umol/L"


@freeze_time("2026-01-20")
def test_reimporting_the_same_message_changes_nothing(tracker, tmp_path):
    methotrexate_patient(tracker)
    message = tmp_path / "oru.hl7"
    message.write_text(oru(alt="30"))
    tracker(["result", "import", str(message)])
    before = dump_database(tracker.db)

    out = tracker(["result", "import", str(message)]).stdout

    assert "imported 0 results" in out and "8 already on record" in out
    assert dump_database(tracker.db) == before


@freeze_time("2026-01-20")
def test_hl7_v2_3_and_a_batch_of_two_messages(tracker, tmp_path):
    methotrexate_patient(tracker, "M1")
    methotrexate_patient(tracker, "M2")
    batch = tmp_path / "batch.hl7"
    batch.write_text("FHS|^~\\&|LABSYS\r" + oru(id="A1", version="2.3", alt="25") + "\n"
                     + oru(id="A2", mrn="M2", alt="26") + "FTS|1\r")
    assert "imported 16 results" in tracker(["result", "import", str(batch)]).stdout
    assert draw(tracker, "M2", "2026-01-19")["status"] == "done"


@freeze_time("2026-01-20")
def test_unknown_code_names_message_and_segment_and_changes_nothing(tracker, tmp_path):
    methotrexate_patient(tracker)
    before = dump_database(tracker.db)
    message = tmp_path / "oru.hl7"
    message.write_text(oru(obx=[*CBC_CMP[:2], "OBX|2|NM|99999-9^Mystery^LN||3|U/L|||||F"]))

    result = tracker(["result", "import", str(message)], ok=False)

    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: file: {str(message)!r}: 1 of 2 results rejected, nothing imported",
        "message MSG00001 OBX[2]: code: 'LN:99999-9': no tracker test has this code: a LOINC code in the "
        "vocabulary, or a local code mapped in the config's [labs.codes]",
    ]
    assert dump_database(tracker.db) == before


@freeze_time("2026-01-20")
def test_a_result_under_a_panels_order_code_is_refused_by_name(tracker, tmp_path):
    """57021-8 names the CBC order: a laboratory reports the counts; a value under the panel's code would
    otherwise complete the whole full blood count without one count in it."""
    methotrexate_patient(tracker)
    before = dump_database(tracker.db)
    message = tmp_path / "oru.hl7"
    message.write_text(oru(obx=[CBC_CMP[0], "OBX|1|TX|57021-8^CBC^LN||normal||||||F"]))

    result = tracker(["result", "import", str(message)], ok=False)

    assert result.exit_code == 2
    assert result.stderr.splitlines()[1] == (
        "message MSG00001 OBX[1]: code: 'LN:57021-8': this is the LOINC code of the panel cbc (an order): a "
        "result is recorded under each analyte's code")
    assert dump_database(tracker.db) == before


@freeze_time("2026-01-20")
def test_skip_bad_imports_the_good_results_and_lists_each_rejected_with_its_reason(tracker, tmp_path):
    methotrexate_patient(tracker)
    message = tmp_path / "oru.hl7"
    message.write_text(oru(alt="30") + oru(id="MSG00002", mrn="NOBODY", alt="30")
                       + oru(id="MSG00003", obx=["OBX|1|NM|1742-6^ALT^LN||31|U/L|0-40||||P"]))

    result = tracker(["result", "import", str(message), "--skip-bad"])

    assert "imported 8 results" in result.stdout
    lines = result.stderr.splitlines()
    assert lines[0] == "rejected 9 results:"
    assert "message MSG00002 OBX[1]: mrn: 'NOBODY': no such patient in tracker" in lines
    assert ("message MSG00003 OBX[1]: result: 'LN:1742-6': OBX-11 status 'P': only final (F) and corrected (C) "
            "results are recorded") in lines


@freeze_time("2026-01-20")
def test_unreadable_messages_are_one_line_errors_naming_message_and_segment(tracker, tmp_path):
    methotrexate_patient(tracker)
    before = dump_database(tracker.db)
    cases = {
        # ISO 8859-1 bytes in a message that declares no character set (UTF-8 is assumed).
        oru(mrn="M\xe91").encode("latin-1"):
            "message: 'MSG00001': PID[1]: not UTF-8 text (byte 0xe9); declare the character set in MSH-18",
        oru().replace("ORU^R01^ORU_R01", "ADT^A01").encode():
            "message: 'MSG00001': MSH[1]: MSH-9 'ADT^A01': only ORU^R01 result messages are read",
        oru().replace("PID|1|", "PIDX1|").encode():
            "message: 'MSG00001': PID[1]: malformed segment name 'PIDX1' (expected three letters and |)",
        oru().replace(PID.format(mrn="M1") + "\r", "").encode():
            "message: 'MSG00001': OBX[1]: a result before the patient (PID)",
        oru(charset="BIG5").encode():
            "message: 'MSG00001': MSH[1]: MSH-18 character set 'BIG5' is not supported (UNICODE UTF-8 or 8859/1)",
    }
    for data, error in cases.items():
        message = tmp_path / "bad.hl7"
        message.write_bytes(data)
        result = tracker(["result", "import", str(message)], ok=False)
        assert (result.exit_code, result.stderr.strip()) == (2, "error: " + error)
    assert dump_database(tracker.db) == before


@freeze_time("2026-01-20")
def test_declared_latin1_is_read_and_local_codes_map_through_the_config(tracker, tmp_path):
    methotrexate_patient(tracker)
    config = tmp_path / "config.toml"
    config.write_text('[labs.codes]\n"ALTX" = "alt"\n')
    message = tmp_path / "local.hl7"
    message.write_bytes(oru(charset="8859/1", obx=["OBX|1|NM|ALTX^ALT (s\xe9rum)^L||31|U/L|0-40||||F|||20260119"])
                        .encode("latin-1"))
    out = tracker(["--config", str(config), "result", "import", str(message)]).stdout
    assert "imported 1 results" in out
    assert [r["test"] for r in tracker.json(["result", "list", "M1"])] == ["alt"]


def fhir_bundle(*, status="final", value=130, code="1742-6") -> dict:
    return {
        "resourceType": "Bundle", "id": "lab-20260119", "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:p1", "resource": {
                "resourceType": "Patient", "id": "p1",
                "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                                     "code": "MR"}]}, "value": "M1"}]}},
            {"fullUrl": "urn:uuid:r1", "resource": {
                "resourceType": "DiagnosticReport", "id": "r1", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "24323-8"}]},
                "subject": {"reference": "urn:uuid:p1"}, "effectiveDateTime": "2026-01-19T08:30:00+01:00",
                "result": [{"reference": "urn:uuid:o1"}, {"reference": "urn:uuid:o2"}]}},
            {"fullUrl": "urn:uuid:o1", "resource": {
                "resourceType": "Observation", "id": "o1", "status": status,
                "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                "subject": {"reference": "urn:uuid:p1"},
                "valueQuantity": {"value": value, "unit": "U/L", "system": "http://unitsofmeasure.org", "code": "U/L"},
                "referenceRange": [{"low": {"value": 0}, "high": {"value": 40}}]}},
            {"fullUrl": "urn:uuid:o2", "resource": {
                "resourceType": "Observation", "id": "o2", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "2160-0"}]},
                "subject": {"reference": "urn:uuid:p1"},
                "valueQuantity": {"value": 0.9, "unit": "mg/dL", "system": "http://unitsofmeasure.org",
                                  "code": "mg/dL"}}},
        ],
    }


@freeze_time("2026-01-20")
def test_fhir_bundle_imports_once_and_raises_the_threshold_alert(tracker, tmp_path):
    methotrexate_patient(tracker)
    bundle = tmp_path / "bundle.json"
    bundle.write_text(json.dumps(fhir_bundle()))

    assert "imported 2 results" in tracker(["result", "import", str(bundle)]).stdout
    results = {r["test"]: r for r in tracker.json(["result", "list", "M1"])}
    assert results["alt"]["taken_on"] == "2026-01-19" and results["alt"]["ref_high"] == 40  # from the report
    assert [a["severity"] for a in tracker.json(["alerts"]) if a["kind"] == "threshold"] == ["critical"]

    assert_sent_again_changes_nothing(tracker, (bundle, 2))


@freeze_time("2026-01-20")
def test_fhir_errors_name_the_resource_and_change_nothing(tracker, tmp_path):
    methotrexate_patient(tracker)
    before = dump_database(tracker.db)
    bundle = tmp_path / "bundle.json"
    invalid = fhir_bundle()
    del invalid["entry"][2]["resource"]["code"]
    cases = [
        (invalid, "error: resource: 'Bundle/lab-20260119': invalid FHIR R4 at entry.2.resource.code: Field required"),
        (fhir_bundle(code="99999-9"),
         f"error: file: {str(bundle)!r}: 1 of 2 results rejected, nothing imported\n"
         "Bundle/lab-20260119 Observation[1] (o1): code: 'http://loinc.org:99999-9': no tracker test"),
        (fhir_bundle(status="preliminary"),
         f"error: file: {str(bundle)!r}: 1 of 2 results rejected, nothing imported\n"
         "Bundle/lab-20260119 Observation[1] (o1): result: 'http://loinc.org:1742-6': status 'preliminary': "
         "only final, amended and corrected results are recorded"),
    ]
    for document, start in cases:
        bundle.write_text(json.dumps(document))
        result = tracker(["result", "import", str(bundle)], ok=False)
        assert result.exit_code == 2 and result.stderr.startswith(start), result.stderr
    assert dump_database(tracker.db) == before


def test_labs_config_is_validated_and_shown(tracker, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[labs]\nport = 2600\n[labs.codes]\n"ALT1" = "alt"\n')
    shown = tracker.json(["--config", str(config), "config", "show"])["labs"]
    assert shown == {"host": "127.0.0.1", "port": 2600, "codes": {"ALT1": "alt"}, "inbox": None}
    for text, error in [('[labs]\nport = 70000\n', "labs.port: 70000: expected a whole number from 1 to 65535"),
                        ('[labs.codes]\n"ALT1" = 3\n', "labs.codes.ALT1: 3: expected a tracker test code"),
                        ('[labs]\ncodes = "alt"\n', "labs.codes: 'alt': expected a table [labs.codes]")]:
        config.write_text(text)
        result = tracker(["--config", str(config), "config", "show"], ok=False)
        assert error in result.stderr, result.stderr


@freeze_time("2026-01-20")
def test_a_tpmt_result_coded_by_either_loinc_code_is_recorded_as_tpmt(tracker, tmp_path):
    """79713-4, the metabolizer interpretation term, and 62365-2, the code one laboratory sends its TPMT
    interpretation under (schedules/vocabulary.yaml `also_loinc`), both land on tracker's tpmt test."""
    tracker("patient add T1 --name 'Tia Test' --dob 1970-01-01")
    tracker("patient add T2 --name 'Tom Test' --dob 1970-01-01")
    first, second = tmp_path / "tpmt1.hl7", tmp_path / "tpmt2.hl7"
    first.write_text(oru(id="TPMT1", mrn="T1", obx=["OBX|1|ST|79713-4^TPMT phenotype^LN||intermediate||||||F|||20260119"]))
    second.write_text(oru(id="TPMT2", mrn="T2", obx=["OBX|1|ST|62365-2^TPMT interpretation^LN||normal||||||F|||20260119"]))
    for path in (first, second):
        assert "imported 1 result" in tracker(["result", "import", str(path)]).stdout
    assert [(r["test"], r["value"]) for r in tracker.json(["result", "list", "T1"])] == [("tpmt", "intermediate")]
    assert [(r["test"], r["value"]) for r in tracker.json(["result", "list", "T2"])] == [("tpmt", "normal")]


@freeze_time("2026-01-20")
def test_fhir_documents_the_fhir_library_fails_on_are_one_line_errors(tracker, tmp_path):
    """fhir.resources raises outside pydantic's ValidationError on some documents (an unknown or non-string
    resourceType: KeyError, TypeError; nesting past the stack: RecursionError) and lets an explicit null
    through for a required element: each is one line, exit 2, the database unchanged (before: tracebacks)."""
    methotrexate_patient(tracker)
    before = dump_database(tracker.db)
    null_code = fhir_bundle()
    null_code["entry"][2]["resource"]["code"] = None
    path = tmp_path / "bad.json"
    cases = [
        ({"resourceType": "Bundle", "type": "collection",
          "entry": [{"resource": {"resourceType": "Obsrvation", "id": "x"}}]},
         "error: resource: 'Bundle': not FHIR R4 fhir.resources can read (unknown resourceType 'Obsrvation')"),
        ({"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": 5}}]},
         "error: resource: 'Bundle': not FHIR R4 fhir.resources can read (TypeError: "),
        ('{"resourceType": "Bundle", "x": ' + "[" * 100000 + "]" * 100000 + "}",
         f"error: file: {str(path)!r}: JSON nested too deep to read"),
        (null_code, f"error: file: {str(path)!r}: 1 of 2 results rejected, nothing imported\n"
                    "Bundle/lab-20260119 Observation[1] (o1): code: '(none)': no tracker test has this code"),
    ]
    for document, start in cases:
        path.write_text(document if isinstance(document, str) else json.dumps(document))
        result = tracker(["result", "import", str(path)], ok=False)
        assert result.exit_code == 2 and result.stderr.startswith(start), result.stderr
        assert "Traceback" not in result.stderr
    assert dump_database(tracker.db) == before
