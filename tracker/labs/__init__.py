"""Lab results from the laboratory's own formats: HL7 v2.x ORU^R01 (hl7.py), FHIR R4 Observation and
DiagnosticReport bundles (fhir_in.py), and HL7 over MLLP (mllp.py). Each parser turns a message into plain
`LabRow`s; services/lab_import.py checks and stores them as the CSV import does."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class LabRow:
    """One result as the laboratory sent it, before any check: the CSV import's row plus where it came from.

    `where` names it in errors (`message MSG00001 OBX[3]`); `source_id` identifies it across imports (the
    message control id and OBX set id, or the FHIR Observation id; lab_result.source_id, migration 0010).
    `codes` are the (system, code) pairs the laboratory gave, LOINC first when it gave one."""

    where: str
    source_id: str
    mrn: str
    codes: tuple[tuple[str, str], ...]
    value: str
    unit: str | None
    taken_on: str
    ref_low: str | None = None
    ref_high: str | None = None
    problem: str | None = None  # a result the parser already refuses (e.g. a preliminary one), with why
    corrects: bool = False  # a correction of a result sent before (HL7 OBX-11 C; FHIR amended, corrected)
    # The laboratory retracts a result it sent: FHIR entered-in-error (the same Observation id), HL7 OBX-11 W
    # "post original as wrong" (a new message: the result of the same test, patient, day and laboratory).
    withdrawn: bool = False
    # When the laboratory reported it (HL7 OBR-22 or MSH-7; FHIR issued or meta.lastUpdated), in UTC (as written
    # where the laboratory gave no offset): orders corrections of one result (tracker/core/lab_corrections.py).
    reported_at: dt.datetime | None = None
    # The units of ref_low and ref_high where the laboratory gave them apart from the value's (a FHIR
    # referenceRange's own Quantity units); None: in the value's unit, as HL7 OBX-7 and CSV ranges are.
    ref_units: tuple[str | None, str | None] = (None, None)
    # The source id this result was stored under before ids local to their container were qualified (a FHIR
    # contained Observation's bare id; an HL7 OBX-1 that restarts under each OBR): a result on record under
    # it is this one only when it is the same result (patient, test, day, value: services/lab_import.py).
    legacy_source_id: str | None = None

    @property
    def code_text(self) -> str:
        return ", ".join(f"{system}:{code}" if system else code for system, code in self.codes) or "(none)"


LOINC_SYSTEMS = frozenset({"LN", "LOINC", "http://loinc.org", "urn:oid:2.16.840.1.113883.6.1"})


def detect_format(data: bytes) -> str:
    """`hl7` (a message starts `MSH|`, or a batch `FHS|`/`BHS|`), `fhir` (JSON with a resourceType) or `csv`."""
    head = data.lstrip(b"\xef\xbb\xbf\x0b \t\r\n")[:4096]
    if head[:4] in (b"MSH|", b"FHS|", b"BHS|"):
        return "hl7"
    if head[:1] == b"{" and b'"resourceType"' in head:
        return "fhir"
    return "csv"
