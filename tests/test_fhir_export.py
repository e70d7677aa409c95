"""Issue 16 item 3: `tracker export fhir` and `tracker schedules export-fhir`, validated with fhir.resources
(R4B models: see tracker/exporters/fhir.py for why), with stable ids, statuses and overdue Tasks."""

from __future__ import annotations

import json
import os
import stat

import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.plandefinition import PlanDefinition
from freezegun import freeze_time

from tests.conftest import dump_database
from tests.ics_support import build_golden_clinic
from tracker.exporters.fhir import resource_id
from tracker.exporters.fhir_codes import LOINC_SYSTEM, TRACKER_DRUG_SYSTEM, TRACKER_TEST_SYSTEM

EXPORT_AT = "2026-03-02 09:00:00"  # after P001's dose change and P002's stop (tests/ics_support.py)


@pytest.fixture
def clinic(tracker):
    build_golden_clinic(tracker)
    return tracker


def export(tracker, *args: str, config: str | None = None) -> dict:
    with freeze_time(EXPORT_AT):
        data = json.loads(tracker([*(["--config", config] if config else []), "export", "fhir", *args]).stdout)
    Bundle.model_validate(data)  # the whole bundle, every resource in it, by the R4B models
    return data


def resources(bundle: dict, kind: str) -> list[dict]:
    return [e["resource"] for e in bundle.get("entry", []) if e["resource"]["resourceType"] == kind]


def items(tracker, mrn: str) -> list[dict]:
    with freeze_time(EXPORT_AT):
        return tracker.json(["calendar", mrn, "--all"])


def test_one_patient_bundle_validates_and_is_a_transaction_of_puts_by_stable_id(clinic):
    bundle = export(clinic, "--patient", "P001")
    assert bundle["type"] == "transaction"
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert entry["fullUrl"] == f"urn:uuid:{resource['id']}"
        assert entry["request"] == {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}
    kinds = {r["resourceType"] for e in bundle["entry"] for r in [e["resource"]]}
    assert kinds == {"Patient", "MedicationStatement", "CarePlan", "ServiceRequest", "Task"}
    # Every reference points at an entry of the same bundle.
    urls = {e["fullUrl"] for e in bundle["entry"]}
    text = json.dumps(bundle)
    referenced = {part.split('"')[0] for part in text.split('"reference": "')[1:]}
    assert referenced and referenced <= urls
    assert export(clinic, "--patient", "P001") == bundle  # a second export: the same ids, the same content


def test_patient_carries_only_the_mrn_unless_the_site_names_patients(clinic, tmp_path):
    [patient] = resources(export(clinic, "--patient", "P001"), "Patient")
    assert set(patient) == {"resourceType", "id", "identifier"}
    assert patient["identifier"] == [{"system": "urn:tracker:mrn", "value": "P001"}]
    assert "Ada" not in json.dumps(export(clinic, "--patient", "P001"))
    config = tmp_path / "named.toml"
    config.write_text('[privacy]\npatient_label = "name"\n[fhir]\nmrn_system = "urn:oid:1.2.826.0.1.3680043"\n')
    [named] = resources(export(clinic, "--patient", "P001", config=str(config)), "Patient")
    assert named["name"] == [{"text": "Ada Baker"}]
    assert named["identifier"] == [{"system": "urn:oid:1.2.826.0.1.3680043", "value": "P001"}]
    assert named["id"] == patient["id"]


def test_service_requests_follow_the_stored_draws_with_ids_from_item_uids(clinic):
    bundle = export(clinic, "--patient", "P001")
    requests = resources(bundle, "ServiceRequest")
    drawn = [i for i in items(clinic, "P001") if i["kind"] in ("baseline", "lab")]
    expected = {(i["uid"], test): i for i in drawn for test in i["tests"]}
    assert {tuple(r["identifier"][0]["value"].rsplit(":", 1)) for r in requests} == set(expected)
    status = {"planned": "active", "done": "completed", "cancelled": "revoked"}
    for request in requests:
        uid, test = request["identifier"][0]["value"].rsplit(":", 1)
        item = expected[(uid, test)]
        assert request["id"] == resource_id("item", uid, test)
        assert request["requisition"]["value"] == uid  # the draw's tests, ordered together
        assert request["status"] == status["planned" if item["status"] == "partial" else item["status"]]
        assert request["occurrenceDateTime"] == item["due"]
        codings = request["code"]["coding"]
        assert {"system": TRACKER_TEST_SYSTEM, "code": test} == {k: codings[-1][k] for k in ("system", "code")}
    statuses = {r["status"] for r in requests}
    assert {"completed", "active"} <= statuses  # the Jan 19 draw, the plan (a dose change moves draws)


def test_draws_cancelled_by_a_stop_are_revoked_service_requests(clinic):
    with freeze_time(EXPORT_AT):
        clinic("therapy stop P001 methotrexate --on 2026-03-02 --reason 'clear skin' --category other")
    requests = resources(export(clinic, "--patient", "P001"), "ServiceRequest")
    # The stop cancels the later draws and what the course left undone before it (a missed baseline test).
    cancelled = {(i["uid"], t) for i in items(clinic, "P001")
                 if i["status"] == "cancelled" and i["kind"] in ("lab", "baseline") for t in i["tests"]}
    assert cancelled
    revoked = {tuple(r["identifier"][0]["value"].rsplit(":", 1)) for r in requests if r["status"] == "revoked"}
    assert revoked == cancelled


def test_service_requests_carry_the_loinc_code_of_each_test_that_has_one(clinic):
    from tracker.protocol_files import library

    vocabulary = library(None).vocabulary
    for request in resources(export(clinic, "--patient", "P001"), "ServiceRequest"):
        test = request["code"]["coding"][-1]["code"]
        code = vocabulary.tests[test].loinc
        if code:
            assert request["code"]["coding"][0] == {"system": LOINC_SYSTEM, "code": code,
                                                     "display": vocabulary.tests[test].name}


def test_courses_are_medication_statements_and_care_plans_with_their_activities(clinic):
    bundle = export(clinic, "--patient", "P002")  # dupilumab, stopped on 2026-03-01 ("other")
    [statement] = resources(bundle, "MedicationStatement")
    [plan] = resources(bundle, "CarePlan")
    assert statement["status"] == "stopped" and plan["status"] == "completed"
    assert statement["effectivePeriod"] == {"start": "2026-01-05", "end": "2026-03-01"}
    assert statement["dosage"] == [{"text": "300 mg every 2 weeks"}]
    assert {"system": TRACKER_DRUG_SYSTEM, "code": "dupilumab", "display": "Dupilumab"} in \
        statement["medicationCodeableConcept"]["coding"]
    assert plan["instantiatesCanonical"][0].startswith("urn:tracker:protocol:dupilumab|")
    assert plan["supportingInfo"] == [{"reference": f"urn:uuid:{statement['id']}"}]
    stored = items(clinic, "P002")
    drawn = sum(len(i["tests"]) for i in stored if i["kind"] in ("baseline", "lab"))
    others = [i for i in stored if i["kind"] not in ("baseline", "lab")]
    assert len(plan["activity"]) == drawn + len(others)
    details = [a["detail"] for a in plan["activity"] if "detail" in a]
    assert sorted((d["scheduledPeriod"]["start"], d["description"]) for d in details) == \
        sorted((i["due"], i["title"]) for i in others)


@pytest.mark.parametrize("mrn", ["P001", "P002"])
def test_a_task_for_each_overdue_task_and_none_otherwise(clinic, mrn):
    bundle = export(clinic, "--patient", mrn)
    with freeze_time(EXPORT_AT):
        overdue = [i for i in clinic.json("overdue") if i["mrn"] == mrn]
    tasks = resources(bundle, "Task")
    assert (mrn != "P001" or overdue) and sorted(t["identifier"][0]["value"] for t in tasks) == sorted(i["uid"] for i in overdue)
    requests = {r["id"]: r for r in resources(bundle, "ServiceRequest")}
    for task in tasks:
        assert task["status"] == "requested" and task["intent"] == "order"
        assert task["id"] == resource_id("item", task["identifier"][0]["value"], "overdue")
        focus = task["focus"]["reference"].removeprefix("urn:uuid:")
        if focus in requests:  # a draw: the task points at its requests
            assert requests[focus]["status"] == "active"
            assert requests[focus]["requisition"]["value"] == task["identifier"][0]["value"]


def test_whole_clinic_bundle_holds_every_patient_with_a_live_course(clinic, tmp_path):
    out = tmp_path / "clinic.json"
    with freeze_time(EXPORT_AT):
        result = clinic(["export", "fhir", "--clinic", "--out", str(out)])
    assert "resources to" in result.stderr
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    bundle = json.loads(out.read_text())
    Bundle.model_validate(bundle)
    assert [p["identifier"][0]["value"] for p in resources(bundle, "Patient")] == ["P001"]  # P002 stopped
    one = export(clinic, "--patient", "P001")
    assert bundle == one
    assert export(clinic, "--clinic", "--no-validate") == one  # the same resources, unchecked


def test_an_empty_clinic_is_an_empty_valid_transaction(tracker):
    bundle = export(tracker, "--clinic")
    assert bundle == {"resourceType": "Bundle", "type": "transaction"}


@pytest.mark.parametrize("args, code, words", [
    (["--patient", "P404"], 3, "mrn"),
    ([], 2, "scope"),
    (["--patient", "P001", "--clinic"], 2, "scope"),
])
def test_bad_scope_is_one_line_and_writes_no_file(clinic, tmp_path, args, code, words):
    before = dump_database(clinic.db)
    out = tmp_path / "never.json"
    result = clinic(["export", "fhir", *args, "--out", str(out)], ok=False)
    assert result.exit_code == code, result.stderr
    assert result.stderr.count("\n") == 1 and words in result.stderr
    assert not out.exists()
    assert dump_database(clinic.db) == before


def test_every_protocol_exports_as_a_valid_plan_definition(tracker):
    from tracker.protocol_files import library

    for drug in library(None).protocols:
        data = json.loads(tracker(["schedules", "export-fhir", drug]).stdout)
        PlanDefinition.model_validate(data)
        assert data["url"] == f"urn:tracker:protocol:{drug}"
        assert json.loads(tracker(["schedules", "export-fhir", drug]).stdout) == data  # stable


def test_methotrexate_plan_definition_has_gates_phases_checkpoints_and_timing(tracker):
    data = json.loads(tracker("schedules export-fhir methotrexate").stdout)
    actions = {a["id"]: a for a in data["action"]}
    start = actions["start"]
    assert start["condition"][0]["kind"] == "start"
    assert {r["actionId"] for r in start["relatedAction"]} <= {a for a in actions if a.startswith("baseline-")}
    [bloods] = [a for a in data["action"] if a["title"] == "Monitoring: bloods"]
    first, monthly, longterm = bloods["action"]
    assert first["timingTiming"]["repeat"] == {"frequency": 1, "period": 2, "periodUnit": "wk",
                                               "boundsDuration": {"value": 6, "unit": "weeks",
                                                                  "system": "http://unitsofmeasure.org",
                                                                  "code": "wk"}}
    assert first["condition"][0]["kind"] == "stop"
    assert monthly["timingTiming"]["repeat"]["periodUnit"] == "mo"
    assert monthly["relatedAction"] == [{"actionId": first["id"], "relationship": "after-end"}]
    assert "boundsDuration" not in longterm["timingTiming"]["repeat"]  # open-ended
    assert any(a.startswith("checkpoint-week-") for a in actions)


def test_unknown_drug_is_one_line(tracker):
    result = tracker("schedules export-fhir nosuchdrug", ok=False)
    assert result.exit_code != 0 and result.stderr.count("\n") == 1


def test_codings_list_a_standard_code_when_the_vocabulary_or_protocol_has_one_and_always_trackers():
    from types import SimpleNamespace

    from tracker.exporters.fhir_codes import ATC_SYSTEM, drug_concept, test_concept

    coded = SimpleNamespace(tests={"creatinine": SimpleNamespace(name="Creatinine", loinc="14682-9")})
    bare = SimpleNamespace(tests={"creatinine": SimpleNamespace(name="Creatinine", loinc=None)})
    assert [c["system"] for c in test_concept("creatinine", coded)["coding"]] == [LOINC_SYSTEM, TRACKER_TEST_SYSTEM]
    assert [c["system"] for c in test_concept("creatinine", bare)["coding"]] == [TRACKER_TEST_SYSTEM]
    drug = SimpleNamespace(name="Methotrexate", atc="L04AX03", snomed=None, rxnorm=None)
    assert [(c["system"], c["code"]) for c in drug_concept("methotrexate", drug)["coding"]] == \
        [(ATC_SYSTEM, "L04AX03"), (TRACKER_DRUG_SYSTEM, "methotrexate")]
