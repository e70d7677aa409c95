"""Lab values from the laboratory's interfaces read as the laboratory meant them (session 20 findings B1, B2,
B9, B10, B11): a number in a unit is no factor, a FHIR reference range is in its own unit, an interface
result without a unit is refused, a plain structured numeric is a value, and an ACK to an LF-separated
message is well formed. Through the real CLI on a migrated database."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from freezegun import freeze_time

from tests.conftest import dump_database

MSH = "MSH|^~\\&|LAB|CITYLAB|TRK|DERM|20261204153000||ORU^R01^ORU_R01|{id}|P|2.5.1"
PID = "PID|1||{mrn}^^^DERM^MR"
OBR = "OBR|1|O1|F1|58410-2^CBC^LN|||20261204083000"


def oru(control_id: str, mrn: str, *obx: str, separator: str = "\r") -> str:
    return separator.join([MSH.format(id=control_id), PID.format(mrn=mrn), OBR, *obx]) + separator


def patients(tracker):
    tracker("patient add M1 --name 'Max Test' --dob 1970-01-01")
    tracker("therapy start M1 methotrexate --on 2026-11-01")
    tracker("patient add M2 --name 'Mia Two' --dob 1975-01-01")
    tracker("therapy start M2 methotrexate --on 2026-11-01")


@freeze_time("2026-12-05")
def test_hl7_counts_with_a_number_read_as_a_factor_are_refused_and_nothing_is_stored(tracker, tmp_path):
    """B1: `x10(9)/L` and `10 9/L` were read as 90 per litre: platelets 250 stored as 2.25e-05 10^9/L, and
    two critical alerts."""
    patients(tracker)
    before = dump_database(tracker.db)
    message = tmp_path / "f1.hl7"
    message.write_text(oru("U1", "M1", "OBX|1|NM|26515-7^Platelets^LN||250|x10(9)/L|150-400|N|||F",
                           "OBX|2|NM|26499-4^Neutrophils^LN||3.2|10 9/L|2.0-7.5|N|||F"))
    result = tracker(["result", "import", str(message)], ok=False)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert "2 of 2 results rejected, nothing imported" in lines[0]
    assert lines[1].startswith("message U1 OBX[1]: unit: 'x10(9)/L': platelets 250 'x10(9)/L' on 2026-12-04: ")
    assert lines[2].startswith("message U1 OBX[2]: unit: '10 9/L': neutrophils 3.2 '10 9/L' on 2026-12-04: ")
    assert all("not a power of ten" in line for line in lines[1:])
    assert dump_database(tracker.db) == before
    message.write_text(oru("U2", "M1", "OBX|1|NM|26515-7^Platelets^LN||250|x10E9/L|150-400|N|||F",
                           "OBX|2|NM|26499-4^Neutrophils^LN||3.2|10*9/L|2.0-7.5|N|||F"))
    tracker(["result", "import", str(message)])
    assert sorted(r["value"] for r in tracker.json(["result", "list", "M1"])) == [3.2, 250]


def alt_observation(oid: str, mrn: str, value: float, unit: str, high: dict | None) -> dict:
    observation = {
        "resourceType": "Observation", "id": oid, "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "1742-6"}]},
        "subject": {"identifier": {"value": mrn}}, "effectiveDateTime": "2026-12-04",
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}}
    if high is not None:
        observation["referenceRange"] = [{"high": high}]
    return observation


def ucum(value: float, unit: str) -> dict:
    return {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}


@freeze_time("2026-12-05")
def test_a_fhir_reference_range_is_converted_from_its_own_unit(tracker, tmp_path):
    """B2: ALT 1 ukat/L (60 U/L) with the laboratory's ULN 40 U/L was stored with a ULN of 2400 U/L (40 read
    as ukat/L), which hid the > 1 x ULN alert. A limit without a unit is still in the value's unit."""
    patients(tracker)
    path = tmp_path / "obs.json"
    for observation in (alt_observation("alt-a", "M1", 1.0, "ukat/L", ucum(40, "U/L")),
                        alt_observation("alt-b", "M2", 60, "U/L", ucum(40, "U/L"))):
        path.write_text(json.dumps(observation))
        tracker(["result", "import", str(path)])
    for mrn in ("M1", "M2"):
        [row] = tracker.json(["result", "list", mrn])
        assert (row["value"], row["ref_high"]) == (60, 40), row
    warned = sorted(a["mrn"] for a in tracker.json(["alerts"]) if a["kind"] == "threshold")
    assert warned == ["M1", "M2"]
    tracker("patient add M3 --name 'Mo Three' --dob 1970-01-01")
    path.write_text(json.dumps(alt_observation("alt-c", "M3", 1.0, "ukat/L", {"value": 0.5})))
    tracker(["result", "import", str(path)])
    [row] = tracker.json(["result", "list", "M3"])
    assert (row["value"], row["ref_high"]) == (60, 30)


@freeze_time("2026-12-05")
def test_a_fhir_reference_range_in_a_unit_that_cannot_be_converted_refuses_the_observation(tracker, tmp_path):
    patients(tracker)
    before = dump_database(tracker.db)
    path = tmp_path / "obs.json"
    path.write_text(json.dumps(alt_observation("alt-d", "M1", 60, "U/L", ucum(40, "mg/dL"))))
    result = tracker(["result", "import", str(path)], ok=False)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[1] == (
        "Observation/alt-d Observation[1] (alt-d): ref_high: '40 mg/dL': alt 60 'U/L' on 2026-12-04: the "
        "reference limit's unit cannot be converted to U/L")
    assert dump_database(tracker.db) == before


@freeze_time("2026-12-05")
def test_a_numeric_result_from_the_laboratory_without_a_unit_is_refused(tracker, tmp_path):
    """B9: glucose 95 under LOINC 2345-7 (mass/volume, mg/dL) with an empty OBX-6 was stored as 95 mmol/L;
    a FHIR valueQuantity without unit took the same path. `result add` keeps its documented default unit."""
    patients(tracker)
    before = dump_database(tracker.db)
    message = tmp_path / "gl.hl7"
    message.write_text(oru("GL1", "M2", "OBX|1|NM|2345-7^Glucose [Mass/volume] in Serum or Plasma^LN||95||70-99|N|||F"))
    result = tracker(["result", "import", str(message)], ok=False)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[1] == ("message GL1 OBX[1]: unit: '': glucose 95 on 2026-12-04: a numeric "
                                             "result from the laboratory without its unit (OBX-6) is not read")
    observation = alt_observation("alt-n", "M2", 60, "U/L", None)
    del observation["valueQuantity"]["unit"], observation["valueQuantity"]["code"], observation["valueQuantity"]["system"]
    path = tmp_path / "obs.json"
    path.write_text(json.dumps(observation))
    result = tracker(["result", "import", str(path)], ok=False)
    assert result.exit_code == 2 and "alt 60 on 2026-12-04: a numeric result from the laboratory without its " \
                                     "unit (valueQuantity.code) is not read" in result.stderr
    assert dump_database(tracker.db) == before
    tracker("result add M2 glucose 5.2 --on 2026-12-04")  # by hand: the vocabulary's unit, as documented
    assert [(r["value"], r["unit"]) for r in tracker.json(["result", "list", "M2"])] == [(5.2, "mmol/L")]


@freeze_time("2026-12-05")
def test_a_unit_given_as_text_or_alternate_identifier_in_obx_6_is_read(tracker, tmp_path):
    """OBX-6 is coded (identifier^text^system^alternate identifier): a unit sent as its text only (`^mg/dL`) or
    as the alternate identifier was read as no unit, and the result refused as unitless."""
    patients(tracker)
    message = tmp_path / "units.hl7"
    message.write_text(oru("U1", "M2", "OBX|1|NM|2345-7^Glucose^LN||95|^mg/dL|70-99|N|||F",
                           "OBX|2|NM|1742-6^ALT^LN||32|^^^U/L^^UCUM|0-40|N|||F",
                           "OBX|3|NM|1920-8^AST^LN||28|U/L^units per litre^UCUM|0-40|N|||F"))
    assert "imported 3 results" in tracker(["result", "import", str(message)]).stdout
    got = {r["test"]: (round(r["value"], 2), r["unit"], r["reported_unit"]) for r in tracker.json(["result", "list", "M2"])}
    assert got == {"glucose": (5.27, "mmol/L", "mg/dL"), "alt": (32, "U/L", "U/L"), "ast": (28, "U/L", "U/L")}


@freeze_time("2026-12-05")
def test_a_plain_structured_numeric_is_its_number_and_a_comparator_range_or_ratio_is_refused(tracker, tmp_path):
    """B10: `OBX-2 SN` with `^32` (no comparator) or `=^32` means exactly 32; it refused the whole message."""
    patients(tracker)
    message = tmp_path / "sn.hl7"
    message.write_text(oru("SN1", "M2", "OBX|1|SN|1742-6^ALT^LN||^32|U/L|0-40|N|||F",
                           "OBX|2|SN|1920-8^AST^LN||=^28|U/L|0-40|N|||F"))
    assert "imported 2 results" in tracker(["result", "import", str(message)]).stdout
    assert sorted((r["test"], r["value"]) for r in tracker.json(["result", "list", "M2"])) == [("alt", 32), ("ast", 28)]
    before = dump_database(tracker.db)
    for number, value in enumerate(["<^5", "^10^-^20", "^1^:^128", ">=^5"]):
        message.write_text(oru(f"SN-{number}", "M2", f"OBX|1|SN|1742-6^ALT^LN||{value}|U/L|0-40|N|||F"))
        result = tracker(["result", "import", str(message)], ok=False)
        assert result.exit_code == 2
        assert f"OBX-2 SN (structured numeric) {value!r} is not a plain value" in result.stderr
    assert dump_database(tracker.db) == before


@pytest.mark.parametrize("separator", ["\n", "\r\n", "\r"])
def test_the_ack_to_a_message_of_lf_separated_segments_is_well_formed(separator):
    """B11: the listener's ACK to a message whose segments end in LF carried the rest of the message in its
    MSH-12 (`...|P|2.5.1\\nPID`)."""
    from tracker.labs.mllp import ack

    received = oru("LF1", "M1", "OBX|1|NM|1742-6^ALT^LN||30|U/L|0-40|N|||F", separator=separator).encode()
    answer = ack(received, "AA", "imported 1 results", now=dt.datetime(2026, 12, 5, 9, 0))
    assert answer.decode() == ("MSH|^~\\&|TRK|DERM|LAB|CITYLAB|20261205090000||ACK^R01^ACK|ACKLF1|P|2.5.1\r"
                               "MSA|AA|LF1|imported 1 results\r")
