"""FHIR R4 out (issue 16 item 3): courses and their plans as a transaction Bundle, protocols as PlanDefinitions.

Resources are built as plain JSON dicts and each is validated with the fhir.resources models before it is
written. Version: fhir.resources 8 carries R5 (its default) and R4B (4.3) models; the last release with R4
(4.0.1) models, 6.x, needs pydantic 1, which sqlmodel rules out. R4B is a technical correction of R4 that
changed none of the elements written here (Patient, MedicationStatement, CarePlan, ServiceRequest, Task,
PlanDefinition, Bundle), so the R4B models check R4 content; R5 renamed several of them and is not used.

Identity: every resource id is a UUID5 of tracker's own ids (patient and course row ids, item UIDs), never of
patient data, so a second export of the same data has the same ids, and the transaction PUTs each resource
by id (re-sending updates it on the server rather than duplicating it). `fullUrl` is `urn:uuid:<id>`; the
resources refer to one another by those.

A drawn item with several tests (a CBC and a CMP) is one ServiceRequest per test, all with the item's UID as
their `requisition` (FHIR's "ordered together" group), so each carries its own LOINC code.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import IO, Iterable

from tracker.exporters.fhir_codes import drug_concept, test_concept

# Fixed namespace of the resource ids (uuid5): stable across exports, carries only tracker's ids.
FHIR_NAMESPACE = uuid.UUID("0b6f3c2e-5d1a-4e8f-9c47-7a2b9e1d4f60")
ITEM_SYSTEM = "urn:tracker:item"  # an item's UID (the ICS UID too)
COURSE_SYSTEM = "urn:tracker:course"
PROTOCOL_URL = "urn:tracker:protocol:"  # + protocol id: the PlanDefinition's canonical URL

# Stored item status -> ServiceRequest.status.
REQUEST_STATUS = {"planned": "active", "done": "completed", "cancelled": "revoked"}
# Stored item status -> CarePlan.activity.detail.status (checkpoints and limits: no ServiceRequest).
ACTIVITY_STATUS = {"planned": "scheduled", "done": "completed", "cancelled": "cancelled"}
# Course status -> MedicationStatement.status.
STATEMENT_STATUS = {"active": "active", "paused": "on-hold", "stopped": "stopped"}
DRAWN_KINDS = ("baseline", "lab")  # items drawn or measured: ServiceRequests
# UCUM codes of tracker's duration units (FHIR Duration and Timing.periodUnit).
UCUM_TIME = {"d": "d", "w": "wk", "m": "mo", "y": "a"}
UCUM_TIME_WORDS = {"d": "days", "w": "weeks", "m": "months", "y": "years"}


def resource_id(*parts: object) -> str:
    return str(uuid.uuid5(FHIR_NAMESPACE, ":".join(str(p) for p in parts)))


def reference(resource: dict) -> dict:
    return {"reference": f"urn:uuid:{resource['id']}"}


def validated(resource: dict) -> dict:
    """The resource, after fhir.resources has checked it (pydantic ValidationError if not valid)."""
    from fhir.resources.R4B import get_fhir_model_class

    get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    return resource


def bundle_entry(resource: dict) -> dict:
    """A transaction entry that creates or updates the resource under its stable id."""
    return {"fullUrl": f"urn:uuid:{resource['id']}", "resource": resource,
            "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}}


def write_bundle(out: IO[str], resources: Iterable[dict]) -> int:
    """Write a transaction Bundle of `resources` to `out` as they come (a whole clinic is never held in
    memory); the number of entries."""
    count = 0
    out.write('{"resourceType":"Bundle","type":"transaction"')
    for resource in resources:
        out.write(',"entry":[\n' if count == 0 else ",\n")
        out.write(json.dumps(bundle_entry(resource), ensure_ascii=False, separators=(",", ":")))
        count += 1
    out.write("\n]}\n" if count else "}\n")  # FHIR JSON has no empty arrays
    return count


def _date(value: dt.date | None) -> str | None:
    return value.isoformat() if value is not None else None


def _period(start: dt.date | None, end: dt.date | None) -> dict:
    return {k: v for k, v in (("start", _date(start)), ("end", _date(end))) if v is not None}


def patient_resource(patient, mrn_system: str, with_name: bool) -> dict:
    """The Patient: its MRN only; its name too only when the site's privacy setting names patients."""
    resource = {"resourceType": "Patient", "id": resource_id("patient", patient.id),
                "identifier": [{"system": mrn_system, "value": patient.mrn}]}
    if with_name and patient.name:
        resource["name"] = [{"text": patient.name}]
    return resource


def course_resources(course, protocol, items: list, vocabulary, patient: dict, today: dt.date) -> list[dict]:
    """One course: its MedicationStatement, CarePlan, a ServiceRequest per test of each drawn item, and a
    Task for each overdue task (core/worklist.py `is_overdue`)."""
    from tracker.core.worklist import is_overdue

    drug = drug_concept(course.drug, protocol)
    statement = {
        "resourceType": "MedicationStatement", "id": resource_id("course", course.id, "medication"),
        "identifier": [{"system": COURSE_SYSTEM, "value": str(course.id)}],
        "status": STATEMENT_STATUS.get(course.status, "unknown"),
        "medicationCodeableConcept": drug, "subject": reference(patient),
        "effectivePeriod": _period(course.start_on, course.stop_on),
    }
    if course.dose:
        statement["dosage"] = [{"text": course.dose}]
    if course.status == "stopped" and course.stop_category:
        statement["statusReason"] = [{"text": course.stop_category}]
    plan = {
        "resourceType": "CarePlan", "id": resource_id("course", course.id, "careplan"),
        "identifier": [{"system": COURSE_SYSTEM, "value": str(course.id)}],
        "status": _careplan_status(course), "intent": "plan",
        "title": f"{drug['text']} monitoring", "subject": reference(patient),
        "period": _period(course.start_on, course.stop_on),
        "supportingInfo": [reference(statement)],
    }
    if protocol is not None:
        plan["instantiatesCanonical"] = [f"{PROTOCOL_URL}{protocol.id}|{protocol.version}"]
    requests, tasks, activities = [], [], []
    for item in items:
        drawn = [_service_request(item, test, vocabulary, patient, plan)
                 for test in _tests(item)] if item.kind in DRAWN_KINDS else []
        if drawn:
            requests += drawn
            activities += [{"reference": reference(r)} for r in drawn]
        else:
            activities.append({"detail": {
                "code": {"text": item.kind}, "status": ACTIVITY_STATUS.get(item.status, "unknown"),
                "scheduledPeriod": _period(item.due, item.due), "description": item.title}})
        if is_overdue(item, today):
            tasks.append(_task(item, drawn, plan, patient, today))
    if activities:
        plan["activity"] = activities
    return [statement, plan, *requests, *tasks]


def _careplan_status(course) -> str:
    if course.status == "stopped":
        # Stopped for failure or harm: ended before completion (revoked); otherwise it ran its course.
        return "revoked" if course.stop_category in ("failure", "adverse_event") else "completed"
    return {"active": "active", "paused": "on-hold"}.get(course.status, "unknown")


def _tests(item) -> list[str]:
    from tracker.db.tables import codes

    return codes(item.tests)


def _service_request(item, test: str, vocabulary, patient: dict, plan: dict) -> dict:
    return {
        "resourceType": "ServiceRequest", "id": resource_id("item", item.uid, test),
        "identifier": [{"system": ITEM_SYSTEM, "value": f"{item.uid}:{test}"}],
        "requisition": {"system": ITEM_SYSTEM, "value": item.uid},
        "basedOn": [reference(plan)],
        "status": REQUEST_STATUS.get(item.status, "unknown"), "intent": "plan",
        "code": test_concept(test, vocabulary), "subject": reference(patient),
        "occurrenceDateTime": item.due.isoformat(),
        "note": [{"text": item.title}],
    }


def _task(item, drawn: list[dict], plan: dict, patient: dict, today: dt.date) -> dict:
    days = (today - item.due).days
    task = {
        "resourceType": "Task", "id": resource_id("item", item.uid, "overdue"),
        "identifier": [{"system": ITEM_SYSTEM, "value": item.uid}],
        "status": "requested", "intent": "order",
        "businessStatus": {"text": f"overdue by {days} day{'s' if days != 1 else ''}"},
        "description": f"Overdue since {item.due.isoformat()}: {item.title}",
        "focus": reference(drawn[0] if drawn else plan), "for": reference(patient),
        "restriction": {"period": {"end": item.due.isoformat()}},
    }
    if drawn:
        task["basedOn"] = [reference(r) for r in drawn]
    return task


# --- protocols ----------------------------------------------------------------------------------------------


def _duration(value) -> dict:
    return {"value": value.count, "unit": UCUM_TIME_WORDS[value.unit], "system": "http://unitsofmeasure.org",
            "code": UCUM_TIME[value.unit]}


def _text_condition(kind: str, words: str) -> dict:
    # Written for people: the rule is tracker's (core/gates.py, core/plan.py), not an executable expression.
    return {"kind": kind, "expression": {"language": "text/plain", "description": words}}


def _after_start(offset=None) -> list[dict]:
    related = {"actionId": "start", "relationship": "after-start"}
    if offset is not None:
        related["offsetDuration"] = _duration(offset)
    return [related]


def _id(text: str) -> str:
    """A FHIR id from tracker's ids (letters, digits, '-' and '.')."""
    return "".join(c if c.isalnum() or c in "-." else "-" for c in text)[:64]


def plan_definition(protocol, vocabulary) -> dict:
    """A drug's protocol as a PlanDefinition: baseline tests (hard gates as start conditions of the first
    dose), a monitoring action per track with a sub-action per phase (Timing: every N, bounded by the phase's
    length, after the previous phase), response checkpoints and the course limit (offsets from the start)."""
    actions = []
    hard = []
    for index, rule in enumerate(protocol.baseline):
        action = {"id": f"baseline-{index + 1}",
                  "title": "Before starting: " + ", ".join(_test_name(t, vocabulary) for t in rule.tests),
                  "code": [test_concept(t, vocabulary) for t in rule.tests]}
        if rule.when != "always":
            action["condition"] = [_text_condition("applicability", f"only when: {rule.when.replace('_', ' ')}")]
        if rule.valid_for is not None:
            action["description"] = f"A result from the {rule.valid_for.words()} before the start counts."
        if rule.gate == "hard":
            hard.append(action["id"])
        actions.append(action)
    start = {"id": "start", "title": f"Start {protocol.name}", "code": [drug_concept(protocol.id, protocol)]}
    if hard:
        start["condition"] = [_text_condition("start", "hard gate: every baseline result of "
                                              + ", ".join(hard) + " recorded and acceptable")]
        start["relatedAction"] = [{"actionId": h, "relationship": "after-end"} for h in hard]
    actions.append(start)
    for t, track in enumerate(protocol.monitoring.tracks if protocol.monitoring else []):
        track_id = _id(f"monitoring-{t + 1}-{track.name}")
        phases = []
        previous = None
        for p, phase in enumerate(track.phases):
            tests = phase.tests or track.tests
            phase_id = f"{track_id}-phase-{p + 1}"[:64]
            action = {"id": phase_id, "code": [test_concept(c, vocabulary) for c in tests],
                      "relatedAction": ([{"actionId": previous, "relationship": "after-end"}] if previous
                                        else _after_start())}
            if phase.every is not None:
                repeat = {"frequency": 1, "period": phase.every.count, "periodUnit": UCUM_TIME[phase.every.unit]}
                if phase.length is not None:
                    repeat["boundsDuration"] = _duration(phase.length)
                action["timingTiming"] = {"repeat": repeat}
                action["title"] = f"Every {phase.every.words()}" + (
                    f" for {phase.for_.words()}" if phase.for_ else
                    f" until the dose is stable for {phase.until_dose_stable.words()}" if phase.until_dose_stable
                    else "")
                if phase.until_dose_stable is not None:
                    action["condition"] = [_text_condition(
                        "stop", f"the dose has not changed for {phase.until_dose_stable.words()}")]
            else:
                action["title"] = "At " + ", ".join(d.words() for d in phase.at)
                action["action"] = [{"id": f"{phase_id}-{k + 1}"[:64], "title": f"At {d.words()}",
                                     "relatedAction": [{"actionId": phase_id, "relationship": "after-start",
                                                        "offsetDuration": _duration(d)}]}
                                    for k, d in enumerate(phase.at)]
            phases.append(action)
            previous = phase_id
        actions.append({"id": track_id, "title": f"Monitoring: {track.name}",
                        "code": [test_concept(c, vocabulary) for c in track.tests], "action": phases})
    for checkpoint in protocol.checkpoints:
        actions.append({"id": f"checkpoint-week-{checkpoint.week}",
                        "title": f"Week {checkpoint.week} response checkpoint: {checkpoint.target_label()}",
                        "description": f"If not met: {checkpoint.if_not_met.replace('_', ' ')}",
                        "relatedAction": _after_start(_weeks(checkpoint.week))})
    if protocol.limits is not None:
        actions.append({"id": "limit", "title": f"Course limit: {protocol.limits.max_duration.words()}",
                        "relatedAction": _after_start(protocol.limits.max_duration)})
    resource = {
        "resourceType": "PlanDefinition", "id": _id(f"{protocol.id}-v{protocol.version}"),
        "url": f"{PROTOCOL_URL}{protocol.id}", "version": str(protocol.version),
        "name": "".join(w.capitalize() for w in _id(protocol.id).split("-")) + "Monitoring",
        "title": f"{protocol.name} monitoring", "status": "active",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/plan-definition-type",
                             "code": "clinical-protocol", "display": "Clinical Protocol"}]},
        "useContext": [{"code": {"system": "http://terminology.hl7.org/CodeSystem/usage-context-type",
                                 "code": "focus"}, "valueCodeableConcept": drug_concept(protocol.id, protocol)}],
        "relatedArtifact": [{"type": "citation", "label": key, "citation": source.citation,
                             **({"url": source.url} if source.url else {})}
                            for key, source in protocol.sources.items()],
        "action": actions,
    }
    return resource


def _weeks(count: int):
    from tracker.core.durations import Duration

    return Duration(count, "w")


def _test_name(code: str, vocabulary) -> str:
    spec = vocabulary.tests.get(code) if vocabulary is not None else None
    return spec.name if spec is not None else code
