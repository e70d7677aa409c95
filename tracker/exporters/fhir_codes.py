"""Codings for FHIR exports: tracker's own code always, and the standard code (LOINC, UCUM, ATC, SNOMED CT,
RxNorm) when the vocabulary or the protocol carries one.

The standard codes arrive with the vocabulary work of issue 16 item 1 (`TestCode.loinc`, `TestCode.ucum`;
`Protocol.atc`, `.snomed`, `.rxnorm`). They are read with getattr here, and only here, so this module works
before and after those fields exist; once they do everywhere, the getattr calls can become attributes.
"""

from __future__ import annotations

TRACKER_TEST_SYSTEM = "urn:tracker:test"  # tracker's vocabulary code (schedules/vocabulary.yaml)
TRACKER_DRUG_SYSTEM = "urn:tracker:drug"  # tracker's protocol id (schedules/<drug>.yaml)
LOINC_SYSTEM = "http://loinc.org"
UCUM_SYSTEM = "http://unitsofmeasure.org"
ATC_SYSTEM = "http://www.whocc.no/atc"
SNOMED_SYSTEM = "http://snomed.info/sct"
RXNORM_SYSTEM = "http://www.nlm.nih.gov/research/umls/rxnorm"

# Standard drug codes, in the order they are listed after tracker's own.
DRUG_CODE_FIELDS = (("atc", ATC_SYSTEM), ("snomed", SNOMED_SYSTEM), ("rxnorm", RXNORM_SYSTEM))


def _code(obj, name: str) -> str | None:
    value = getattr(obj, name, None) if obj is not None else None
    return str(value).strip() or None if value is not None else None


def loinc(test) -> str | None:
    """A vocabulary TestCode's LOINC code, when it has one."""
    return _code(test, "loinc")


def ucum(test) -> str | None:
    """A vocabulary TestCode's unit in UCUM, when it has one."""
    return _code(test, "ucum")


def test_concept(code: str, vocabulary) -> dict:
    """A CodeableConcept for a vocabulary test: LOINC first when known, then tracker's code; text its name."""
    spec = vocabulary.tests.get(code) if vocabulary is not None else None
    name = spec.name if spec is not None else code
    codings = []
    standard = loinc(spec)
    if standard:
        codings.append({"system": LOINC_SYSTEM, "code": standard, "display": name})
    codings.append({"system": TRACKER_TEST_SYSTEM, "code": code, "display": name})
    return {"coding": codings, "text": name}


def drug_concept(drug: str, protocol) -> dict:
    """A CodeableConcept for a drug: its standard codes when the protocol carries them, then tracker's id."""
    name = protocol.name if protocol is not None else drug
    codings = [{"system": system, "code": value, "display": name}
               for field, system in DRUG_CODE_FIELDS if (value := _code(protocol, field))]
    codings.append({"system": TRACKER_DRUG_SYSTEM, "code": drug, "display": name})
    return {"coding": codings, "text": name}
