"""FHIR R4 lab results -> LabRows: a Bundle (collection, transaction, batch, searchset, message) of
Observations, DiagnosticReports and Patients, or one Observation or DiagnosticReport (with contained
Observations). fhir.resources (its R4B models, which read R4 lab resources unchanged) validates the whole
document first; a resource it refuses is named with the path of the problem.

The patient is the subject's identifier (`subject.identifier.value`) or the identifier of the Patient the
subject references in the same bundle (the one typed MR, else the first). The source id is the
Observation's `id` (else its first identifier), so the same Observation sent again is recognised; an
Observation contained in a DiagnosticReport has an id local to that report (`#1`), so its source id is the
report's and its own (`fhir:DiagnosticReport/<id>#<contained id>`).
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

from tracker.errors import InputError
from tracker.labs import LabRow

RESULT_STATUSES = {"final", "amended", "corrected"}
CORRECTION_STATUSES = {"amended", "corrected"}  # the same Observation sent again with new values
WITHDRAWN = "entered-in-error"  # the Observation sent before was a mistake: the laboratory retracts it
MR_TYPE = "MR"


class ResourceError(InputError):
    def __init__(self, where: str, reason: str):
        super().__init__("resource", where, reason)


def parse_fhir(data: bytes, name: str) -> list[LabRow]:
    from pydantic import ValidationError

    try:
        document = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise InputError("file", name, f"not UTF-8 text (byte 0x{data[exc.start]:02x} at {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise InputError("file", name, f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except RecursionError:
        raise InputError("file", name, "JSON nested too deep to read") from None
    if not isinstance(document, dict) or not isinstance(document.get("resourceType"), str):
        raise InputError("file", name, "not a FHIR resource (no resourceType)")
    kind = document["resourceType"]
    models = _models()
    if kind not in ("Bundle", "Observation", "DiagnosticReport"):
        raise ResourceError(kind, "expected a Bundle, Observation or DiagnosticReport")
    label = f"{kind}/{document.get('id')}" if document.get("id") else kind
    try:
        resource = models[kind].model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(p) for p in first["loc"])
        raise ResourceError(label, f"invalid FHIR R4 at {path}: {first['msg']}") from None
    except _MODEL_FAULTS as exc:
        # fhir.resources fails outside pydantic on some documents: a resourceType it has no model for
        # (KeyError 'R4.ObsrvationType'), one that is not a string (TypeError), nesting past the stack
        # (RecursionError). The document's fault, refused like any invalid resource.
        raise ResourceError(label, f"not FHIR R4 fhir.resources can read ({_model_fault(exc)})") from None
    if kind == "Bundle":
        resources = [(entry.fullUrl, entry.resource) for entry in resource.entry or [] if entry.resource is not None]
    else:
        resources = [(None, resource)]
    return _rows(resources, label)


# What fhir.resources raises besides pydantic's ValidationError on a document it cannot read (see parse_fhir).
_MODEL_FAULTS = (KeyError, TypeError, ValueError, AttributeError, ImportError, RecursionError)


def _model_fault(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        key = str(exc.args[0]) if exc.args else ""
        # fhir_core's lookup key is '<release>.<resourceType>Type': name the resourceType as written.
        if key.endswith("Type") and "." in key:
            return f"unknown resourceType {key.split('.', 1)[1][:-4]!r}"
        return f"unknown {key!r}"
    if isinstance(exc, RecursionError):
        return "nested too deep"
    text = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _models():
    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.diagnosticreport import DiagnosticReport
    from fhir.resources.R4B.observation import Observation

    return {"Bundle": Bundle, "Observation": Observation, "DiagnosticReport": DiagnosticReport}


def _rows(resources: list, label: str) -> list[LabRow]:
    patients: dict[str, str] = {}  # reference (Patient/x, fullUrl) -> MRN
    observations = []  # (fullUrl, Observation, the DiagnosticReport containing it or None)
    report_of: dict[str, object] = {}  # observation reference -> its DiagnosticReport
    local_patients: dict[int, dict[str, str]] = {}  # id(report) -> its contained Patients (#x -> MRN)
    for full_url, resource in resources:
        kind = resource.get_resource_type()
        if kind == "Patient":
            mrn = _patient_mrn(resource)
            if mrn is not None:
                for key in (full_url, f"Patient/{resource.id}" if resource.id else None):
                    if key:
                        patients[key] = mrn
        elif kind == "Observation":
            observations.append((full_url, resource, None))
        elif kind == "DiagnosticReport":
            # A contained resource's id is local to its container (`#1` in two reports are two resources):
            # it is resolved within its report, never across the bundle.
            for contained in resource.contained or []:
                if contained.get_resource_type() == "Observation":
                    observations.append((None, contained, resource))
                elif contained.get_resource_type() == "Patient":
                    mrn = _patient_mrn(contained)
                    if mrn:
                        local_patients.setdefault(id(resource), {})[f"#{contained.id}"] = mrn
            for reference in resource.result or []:
                if reference.reference and not reference.reference.startswith("#"):
                    report_of[reference.reference] = resource
    if not observations:
        raise ResourceError(label, "carries no Observation")
    rows = []
    for number, (full_url, observation, container) in enumerate(observations, start=1):
        report = container
        if report is None:
            keys = [k for k in (full_url, f"Observation/{observation.id}" if observation.id else None) if k]
            report = next((report_of[k] for k in keys if k in report_of), None)
        local = local_patients.get(id(report)) if report is not None else None
        known = {**patients, **local} if local else patients  # the report's contained Patients, if any
        rows.append(_row(observation, report, known, f"{label} Observation[{number}]", contained=container is not None))
    return rows


def _patient_mrn(patient) -> str | None:
    identifiers = [i for i in patient.identifier or [] if i.value]
    typed = [i for i in identifiers if i.type and any(c.code == MR_TYPE for c in i.type.coding or [])]
    chosen = (typed or identifiers or [None])[0]
    return chosen.value.strip() if chosen is not None else None


def _row(observation, report, patients: dict[str, str], where: str, *, contained: bool = False) -> LabRow:
    legacy_source_id = None
    if contained and observation.id:
        # Its id is local to the report containing it: the report's identity qualifies it. Before, it was
        # stored as `fhir:Observation/<id>` (kept as the legacy id: such a result on record is still
        # recognised when the same report is sent again).
        where = f"{where} ({observation.id})"
        source_id = f"{_container_id(report, where)}#{observation.id}"
        legacy_source_id = f"fhir:Observation/{observation.id}"
    elif observation.id:
        where = f"{where} ({observation.id})"
        source_id = f"fhir:Observation/{observation.id}"
    elif observation.identifier and observation.identifier[0].value:
        first = observation.identifier[0]
        source_id = f"fhir:{first.system or ''}|{first.value}"
    else:
        raise ResourceError(where, "an Observation without id or identifier cannot be recognised when sent again")
    subject = observation.subject or (report.subject if report is not None else None)
    mrn = None
    if subject is not None:
        if subject.identifier is not None and subject.identifier.value:
            mrn = subject.identifier.value.strip()
        elif subject.reference:
            mrn = patients.get(subject.reference)
            if mrn is None:
                raise ResourceError(where, f"subject {subject.reference!r}: no Patient with an identifier in the bundle")
    if not mrn:
        raise ResourceError(where, "no subject: the Observation names no patient")
    # `code` is required, but fhir.resources lets an explicit null through: no code, refused by test_code_for.
    coding = observation.code.coding if observation.code is not None else None
    codes = tuple((c.system or "", c.code) for c in (coding or []) if c.code)
    codes = tuple(sorted(codes, key=lambda pair: pair[0] != "http://loinc.org"))
    value, unit, problem = _value(observation)
    if observation.status not in RESULT_STATUSES:
        problem = f"status {observation.status!r}: only final, amended and corrected results are recorded"
    effective = observation.effectiveDateTime or (observation.effectivePeriod.start if observation.effectivePeriod
                                                  else None)
    if effective is None and report is not None:
        effective = report.effectiveDateTime or (report.effectivePeriod.start if report.effectivePeriod else None)
    taken_on = _date(effective)
    low = high = low_unit = high_unit = None
    if observation.referenceRange:
        first = observation.referenceRange[0]
        if first.low is not None and first.low.value is not None:
            low, low_unit = _number(first.low.value), _unit(first.low)
        if first.high is not None and first.high.value is not None:
            high, high_unit = _number(first.high.value), _unit(first.high)
    return LabRow(where=where, source_id=source_id, legacy_source_id=legacy_source_id, mrn=mrn, codes=codes,
                  value=value, unit=unit, taken_on=taken_on, ref_low=low, ref_high=high, problem=problem,
                  corrects=observation.status in CORRECTION_STATUSES, withdrawn=observation.status == WITHDRAWN,
                  reported_at=_reported_at(observation, report), ref_units=(low_unit, high_unit))


def _container_id(report, where: str) -> str:
    """The identity of the DiagnosticReport a contained Observation is in: its id, else its first identifier."""
    if report.id:
        return f"fhir:DiagnosticReport/{report.id}"
    if report.identifier and report.identifier[0].value:
        first = report.identifier[0]
        return f"fhir:DiagnosticReport:{first.system or ''}|{first.value}"
    raise ResourceError(where, "a contained Observation of a DiagnosticReport without id or identifier cannot be "
                               "recognised when sent again (its id is local to the report)")


def _reported_at(observation, report) -> dt.datetime | None:
    """When this version of the Observation was made available (its `issued`, else its report's, else
    `meta.lastUpdated`), in UTC: orders an amended Observation against the values on record. An instant
    without an offset is taken as UTC (FHIR requires one)."""
    for moment in (observation.issued, report.issued if report is not None else None,
                   observation.meta.lastUpdated if observation.meta is not None else None):
        if isinstance(moment, dt.datetime):
            if moment.tzinfo is None:
                return moment.replace(tzinfo=dt.timezone.utc)
            return moment.astimezone(dt.timezone.utc)
    return None


def _value(observation) -> tuple[str, str | None, str | None]:
    quantity = observation.valueQuantity
    if quantity is not None:
        if quantity.value is None:
            return "", None, "valueQuantity without a value"
        if quantity.comparator:
            return _number(quantity.value), None, f"valueQuantity comparator {quantity.comparator!r} is not a plain value"
        return _number(quantity.value), _unit(quantity), None
    concept = observation.valueCodeableConcept
    if concept is not None:
        text = concept.text or next((c.display or c.code for c in concept.coding or [] if c.display or c.code), "")
        return text or "", None, None if text else "valueCodeableConcept without text or code"
    if observation.valueString is not None:
        return observation.valueString, None, None
    if observation.dataAbsentReason is not None:
        return "", None, "no value (dataAbsentReason)"
    return "", None, "no value (valueQuantity, valueCodeableConcept or valueString)"


def _unit(quantity) -> str | None:
    """A Quantity's unit: its UCUM code, else its unit as written (else its code); None without either."""
    if quantity.code and (quantity.system or "") == "http://unitsofmeasure.org":
        return quantity.code
    return quantity.unit or quantity.code or None


def _number(value) -> str:
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def _date(value) -> str:
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value) if value is not None else ""
