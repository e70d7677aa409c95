"""Codings for FHIR exports: tracker's own code always, and the standard code (LOINC, ATC, SNOMED CT,
RxNorm) when the vocabulary or the protocol carries one.

The standard codes are the vocabulary's `TestCode.loinc` and the protocol's `atc`,
`snomed` and `rxnorm` (schedules/vocabulary.yaml, schedules/<drug>.yaml; `schedules validate` checks them).
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


def _code(value) -> str | None:
    return str(value).strip() or None if value is not None else None


def loinc(test) -> str | None:
    """A vocabulary TestCode's LOINC code, when it has one."""
    return _code(test.loinc) if test is not None else None


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
               for field, system in DRUG_CODE_FIELDS
               if protocol is not None and (value := _code(getattr(protocol, field)))]
    codings.append({"system": TRACKER_DRUG_SYSTEM, "code": drug, "display": name})
    return {"coding": codings, "text": name}
