"""Issue 16 item 1, "codes appear in every export": the LOINC code (with its UCUM unit) of each planned test
and the ATC code of the drug, in every staff export of the golden clinic (ICS files, feeds, the JSON
listings, FHIR); patient calendars stay plain language. The CalDAV push sends the staff calendar these
ICS exports make (tests/test_caldav_push.py checks what arrives)."""

from __future__ import annotations

import json

import pytest
from freezegun import freeze_time
from icalendar import Calendar

from tests.ics_support import EXPORT_AT, RANGE, build_golden_clinic
from tests.test_feeds_exact import feed_body
from tracker.core import coded
from tracker.exporters.fhir_codes import ATC_SYSTEM, LOINC_SYSTEM

MTX_ATC = "L04AX03"  # schedules/methotrexate.yaml
DUPI_ATC = "D11AH05"  # schedules/dupilumab.yaml
HB = ("718-7", "g/L")  # schedules/vocabulary.yaml: hb, an analyte of the cbc panel
CREATININE = ("14682-9", "umol/L")


@pytest.fixture
def clinic(tracker):
    build_golden_clinic(tracker)
    return tracker


def run(tracker, args):
    with freeze_time(EXPORT_AT):
        return tracker(args)


def json_of(tracker, args):
    with freeze_time(EXPORT_AT):
        return tracker.json(args)


def coded_tests(codes: dict) -> dict[str, str | None]:
    return {c["loinc"]: c["ucum"] for c in codes["tests"]}


def coded_drugs(codes: dict) -> dict[str, str | None]:
    return {c["drug"]: c["atc"] for c in codes["drugs"]}


def assert_item_codes(row: dict) -> None:
    """A worklist/calendar row: each planned blood test's analytes by LOINC and UCUM, and the drug's ATC."""
    assert coded_drugs(row["codes"])[row["drug"]] == {"methotrexate": MTX_ATC, "dupilumab": DUPI_ATC}[row["drug"]]
    if "cbc" in row["tests"]:
        assert coded_tests(row["codes"])[HB[0]] == HB[1]
        assert {c["panel"] for c in row["codes"]["tests"] if c["loinc"] == HB[0]} == {"cbc"}
    if "cmp" in row["tests"]:
        assert coded_tests(row["codes"])[CREATININE[0]] == CREATININE[1]


def event_codes(data: bytes) -> list[tuple[list[str], list[str], str]]:
    """(X-TRACKER-LOINC values, X-TRACKER-ATC values, DESCRIPTION) of each event."""
    out = []
    for event in Calendar.from_ical(data).walk("VEVENT"):
        def values(name):
            found = event.get(name)
            found = found if isinstance(found, list) else [found] if found is not None else []
            return [str(v) for v in found]
        out.append((values("X-TRACKER-LOINC"), values("X-TRACKER-ATC"), str(event.get("DESCRIPTION"))))
    return out


def assert_staff_calendar_coded(data: bytes, *, blood_count: bool = True) -> None:
    events = event_codes(data)
    assert events
    for loincs, atcs, description in events:
        assert len(atcs) == 1 and atcs[0] in (MTX_ATC, DUPI_ATC)
        assert f"ATC {atcs[0]}" in description
        for loinc in loincs:
            assert f"LOINC {loinc} " in description
    blood = [(loincs, description) for loincs, _, description in events if HB[0] in loincs]
    assert bool(blood) == blood_count
    assert all(f"LOINC {HB[0]} Haemoglobin (UCUM {HB[1]})" in d for _, d in blood)


def assert_patient_calendar_plain(data: bytes) -> None:
    text = data.decode()
    assert "X-TRACKER-" not in text and "LOINC" not in text and "ATC" not in text


def test_ics_exports_carry_codes_for_staff_and_stay_plain_for_patients(clinic, tmp_path):
    for args in (["--patient", "P001"], []):  # methotrexate plans full blood counts
        assert_staff_calendar_coded(run(clinic, ["export", "ics", *args, *RANGE]).stdout_bytes)
    dupilumab = run(clinic, ["export", "ics", "--patient", "P002", *RANGE]).stdout_bytes  # no blood tests
    assert_staff_calendar_coded(dupilumab, blood_count=False)
    assert {atc for _, atcs, _ in event_codes(dupilumab) for atc in atcs} == {DUPI_ATC}
    patient = run(clinic, ["export", "ics", "--patient", "P001", "--audience", "patient", *RANGE]).stdout_bytes
    assert_patient_calendar_plain(patient)
    data = run(clinic, ["export", "ics", "--patient", "P001", *RANGE]).stdout_bytes
    assert f"X-TRACKER-LOINC:{HB[0]}\r\n".encode() in data and b"X-TRACKER-ATC:L04AX03\r\n" in data


def test_feeds_carry_codes_for_staff_and_stay_plain_for_patients(clinic):
    run(clinic, ["feed", "create", "--clinic"])
    run(clinic, ["feed", "create", "--patient", "P001", "--audience", "patient"])
    assert_staff_calendar_coded(feed_body(clinic.db, 1, "2026-03-02"))
    assert_patient_calendar_plain(feed_body(clinic.db, 2, "2026-03-02"))


def test_json_listings_carry_codes(clinic):
    calendar = json_of(clinic, ["calendar", "P001", "--all"])
    assert calendar
    for row in calendar:
        assert_item_codes(row)
    due = json_of(clinic, ["due", "--days", "60"])
    overdue = json_of(clinic, ["overdue"])
    assert due and overdue
    for row in due + overdue:
        assert_item_codes(row)

    shown = json_of(clinic, ["patient", "show", "P001"])
    for row in shown["next_items"]:
        assert_item_codes(row)
    assert [coded_drugs(c["codes"]) for c in shown["courses"]] == [{"methotrexate": MTX_ATC}]
    for row in shown["results"]:
        assert row["codes"]["tests"], row["test"]
    for row in shown["alerts"]:
        assert coded_drugs(row["codes"])["methotrexate"] == MTX_ATC

    results = json_of(clinic, ["result", "list", "P001"])
    assert {r["test"]: coded_tests(r["codes"]) for r in results}["hb"] == {HB[0]: HB[1]}

    alerts = json_of(clinic, ["alerts", "--all"])
    assert alerts
    for row in alerts:
        assert coded_drugs(row["codes"])[row["drug"]] in (MTX_ATC, DUPI_ATC)
    overdue_alerts = [a for a in alerts if a["kind"] == "overdue" and a["item_id"]]
    assert any(a["codes"]["tests"] for a in overdue_alerts), "an overdue draw's alert names its tests' codes"
    one = json_of(clinic, ["alert", "show", str(alerts[0]["id"])])
    assert one["codes"] == alerts[0]["codes"]

    shown = json_of(clinic, ["schedules", "show", "methotrexate"])
    assert coded_drugs(shown["codes"]) == {"methotrexate": MTX_ATC}
    assert any(HB[0] in coded_tests(r["codes"]) for r in shown["timeline"])
    listed = {r["id"]: r["codes"] for r in json_of(clinic, ["schedules", "list"])}
    assert coded_drugs(listed["dupilumab"]) == {"dupilumab": DUPI_ATC}


def test_fhir_export_carries_codes(clinic):
    bundle = json.loads(run(clinic, ["export", "fhir", "--patient", "P001"]).stdout)
    systems = {(c["system"], c["code"]) for e in bundle["entry"] for c in _codings(e["resource"])}
    # A panel without a LOINC code of its own (cbc) is requested under tracker's code only: a coding of a
    # CodeableConcept names the same concept, so its analytes' codes cannot stand in for it.
    assert (ATC_SYSTEM, MTX_ATC) in systems and (LOINC_SYSTEM, "29463-7") in systems  # weight, at baseline


def _codings(value):
    if isinstance(value, dict):
        if "system" in value and "code" in value:
            yield value
        for inner in value.values():
            yield from _codings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _codings(inner)


def test_codings_give_a_panels_order_code_then_its_analytes_and_never_invent_a_code():
    from tracker.protocol_files import library

    vocabulary = library(None).vocabulary
    cbc = coded.test_codings(["cbc"], vocabulary)
    assert (cbc[0].test, cbc[0].loinc, cbc[0].panel) == ("cbc", "57021-8", None)  # the order's code first
    assert {c.test for c in cbc[1:]} == set(vocabulary.tests["cbc"].analytes)
    assert all(c.panel == "cbc" for c in cbc[1:])
    # cmp is a local grouping (no LOINC panel holds its analytes): its analytes' codes alone.
    cmp = coded.test_codings(["cmp"], vocabulary)
    assert all(c.panel == "cmp" for c in cmp) and {c.loinc for c in cmp} >= {CREATININE[0], "1742-6"}
    assert [c.loinc for c in coded.test_codings(["lipids", "bp"], vocabulary) if c.panel is None] == ["24331-1", "85354-9"]
    assert coded.test_codings(["cxr"], vocabulary) == ()  # no LOINC applies (a clinician's reading): none shown
    assert [c.loinc for c in coded.test_codings(["nudt15"], vocabulary)] == ["93195-6"]
    assert [c.loinc for c in coded.test_codings(["tpmt"], vocabulary)] == ["79713-4"]  # its own code, not also_loinc
    assert coded.test_codings(["hb", "cbc"], vocabulary)[0].panel is None  # planned as itself first; each code once
    assert len([c for c in coded.test_codings(["hb", "cbc"], vocabulary) if c.loinc == HB[0]]) == 1
    assert coded.codes_json((), ["nosuchdrug"], vocabulary, {}) == {
        "tests": [], "drugs": [{"drug": "nosuchdrug", "atc": None, "snomed": None, "rxnorm": None}]}


# Ciclosporin carries every drug standard tracker knows (schedules/ciclosporin.yaml): ATC, SNOMED CT, RxNorm.
CSA = {"atc": "L04AD01", "snomed": "387467008", "rxnorm": "3008"}
CSA_SYSTEMS = [("http://www.whocc.no/atc", CSA["atc"]), ("http://snomed.info/sct", CSA["snomed"]),
               ("http://www.nlm.nih.gov/research/umls/rxnorm", CSA["rxnorm"]), ("urn:tracker:drug", "ciclosporin")]


@pytest.fixture
def ciclosporin_patient(tracker):
    with freeze_time("2026-01-05 09:00:00"):
        tracker("patient add P009 --name 'Cy Dee' --dob 1980-02-03 --sex m")
        tracker("therapy start P009 ciclosporin --on 2026-01-05 --dose '200 mg daily'")
    return tracker


def test_a_drug_with_snomed_and_rxnorm_shows_all_its_codes_in_the_fhir_bundle(ciclosporin_patient):
    from fhir.resources.R4B.bundle import Bundle

    bundle = json.loads(run(ciclosporin_patient, ["export", "fhir", "--patient", "P009"]).stdout)
    Bundle.model_validate(bundle)  # every resource by the R4B models
    [statement] = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "MedicationStatement"]
    coding = statement["medicationCodeableConcept"]["coding"]
    assert [(c["system"], c["code"]) for c in coding] == CSA_SYSTEMS  # the standards first, tracker's id last
    assert {c["display"] for c in coding} == {"Ciclosporin"}
    # The planned draws are requested under their LOINC codes (creatinine's SI code among them).
    requested = {c["code"] for e in bundle["entry"] if e["resource"]["resourceType"] == "ServiceRequest"
                 for c in e["resource"]["code"]["coding"] if c["system"] == LOINC_SYSTEM}
    assert CREATININE[0] in requested


def test_a_drug_with_snomed_and_rxnorm_shows_them_in_its_plan_definition(tracker):
    from fhir.resources.R4B.plandefinition import PlanDefinition

    data = json.loads(tracker(["schedules", "export-fhir", "ciclosporin"]).stdout)
    PlanDefinition.model_validate(data)
    [focus] = [u["valueCodeableConcept"] for u in data["useContext"] if u["code"]["code"] == "focus"]
    assert [(c["system"], c["code"]) for c in focus["coding"]] == CSA_SYSTEMS
    [start] = [a for a in data["action"] if a["id"] == "start"]
    assert [(c["system"], c["code"]) for c in start["code"][0]["coding"]] == CSA_SYSTEMS


def test_a_drug_with_snomed_and_rxnorm_shows_them_in_ics_and_json_listings(ciclosporin_patient):
    staff = run(ciclosporin_patient, ["export", "ics", "--patient", "P009", *RANGE]).stdout_bytes
    events = list(Calendar.from_ical(staff).walk("VEVENT"))
    assert events
    for event in events:
        assert (str(event["X-TRACKER-ATC"]), str(event["X-TRACKER-SNOMED"]), str(event["X-TRACKER-RXNORM"])) == (
            CSA["atc"], CSA["snomed"], CSA["rxnorm"])
        description = str(event["DESCRIPTION"])
        assert all(line in description for line in (
            f"ATC {CSA['atc']} Ciclosporin", f"SNOMED CT {CSA['snomed']} Ciclosporin", f"RxNorm {CSA['rxnorm']} Ciclosporin"))
    patient = run(ciclosporin_patient, ["export", "ics", "--patient", "P009", "--audience", "patient", *RANGE])
    assert_patient_calendar_plain(patient.stdout_bytes)
    assert b"SNOMED" not in patient.stdout_bytes and b"RxNorm" not in patient.stdout_bytes

    for row in json_of(ciclosporin_patient, ["calendar", "P009", "--all"]):
        assert row["codes"]["drugs"] == [{"drug": "ciclosporin", **CSA}]
    shown = json_of(ciclosporin_patient, ["schedules", "show", "ciclosporin"])
    assert shown["codes"]["drugs"] == [{"drug": "ciclosporin", **CSA}]
    assert ciclosporin_patient(["schedules", "show", "ciclosporin"]).stdout.splitlines()[1] == (
        "Codes: ATC L04AD01; SNOMED CT 387467008; RxNorm 3008 "
        "[WHO-ATC, RXNORM-IN, RXNORM-PDDI, SNOMED-CH-TERM, SNOMED-PROTECT-CHILD]")
