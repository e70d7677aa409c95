"""Lab results from HL7 v2 ORU^R01 messages and FHIR R4 bundles (issue 16): the parsers' plain rows
(tracker/labs) checked and stored as the CSV import checks and stores its rows (validate_result, then
record_result, oldest first, so each result completes the items it answers and is evaluated as it lands).

- A result maps to a tracker test by its LOINC code (the vocabulary's `loinc`/`also_loinc`), or by a local
  code the site config maps (`[labs.codes]`); its unit goes through tracker/units.py like any other.
- All or nothing: any bad result refuses the whole file, naming each (`message MSG1 OBX[3]: ...`), and the
  database is left as it was; `skip_bad` stores the good ones and returns the rejected with their reasons.
- Idempotent: each result carries its source id (message control id + OBX set id, or Observation id;
  lab_result.source_id, unique). A result already on record is skipped, so importing the same message
  again stores nothing and writes nothing (not even an audit row).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from sqlmodel import select

from tracker.core.durations import parse_date
from tracker.core.inputs import finite_number
from tracker.db.tables import LabResult, Patient
from tracker.errors import InputError, TrackerError
from tracker.labs import LOINC_SYSTEMS, LabRow, detect_format
from tracker.services import audit
from tracker.services.context import Clinic
from tracker.services.result_import import ImportRejected, read_bounded


@dataclass
class LabImportReport:
    format: str
    imported: list = field(default_factory=list)  # RecordedResult
    already: int = 0  # results of this file already on record (a re-import)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (where, reason)
    evaluation: object | None = None  # the alerts raised/resolved once the results landed (services.alerts)


def parse_lab_data(data: bytes, name: str) -> tuple[str, list[LabRow]]:
    """The format (by content) and the rows of an HL7 or FHIR file."""
    kind = detect_format(data)
    if kind == "hl7":
        from tracker.labs.hl7 import parse_hl7

        return kind, parse_hl7(data)
    if kind == "fhir":
        from tracker.labs.fhir_in import parse_fhir

        return kind, parse_fhir(data, name)
    raise InputError("file", name, "neither an HL7 v2 message (MSH|...) nor a FHIR resource (JSON with resourceType)")


def import_lab_file(clinic: Clinic, path: str, *, skip_bad: bool) -> LabImportReport:
    # The same bound as a CSV import ([import] max_mb): an endless stream is refused unread.
    data = read_bounded(Path(path), clinic.settings.imports.max_bytes)
    return import_lab_data(clinic, data, str(Path(path)), skip_bad=skip_bad)


def import_lab_data(clinic: Clinic, data: bytes, name: str, *, skip_bad: bool) -> LabImportReport:
    kind, rows = parse_lab_data(data, name)
    return import_lab_rows(clinic, rows, name, kind, skip_bad=skip_bad)


def test_code_for(row: LabRow, by_loinc: dict[str, str], local: dict[str, str]) -> str:
    """The tracker test a result is for: by LOINC, else by the site's local code map."""
    for system, code in row.codes:
        if system in LOINC_SYSTEMS and code in by_loinc:
            return by_loinc[code]
    for system, code in row.codes:
        for key in (f"{system}:{code}" if system else code, code):
            if key in local:
                return local[key]
    raise InputError("code", row.code_text, "no tracker test has this code: a LOINC code in the vocabulary, "
                                            "or a local code mapped in the config's [labs.codes]")


def _existing_sources(session, source_ids: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(source_ids), 500):
        chunk = source_ids[start:start + 500]
        found.update(session.exec(select(LabResult.source_id).where(LabResult.source_id.in_(chunk))).all())
    return found


def import_lab_rows(clinic: Clinic, rows: list[LabRow], name: str, kind: str, *, skip_bad: bool) -> LabImportReport:
    from tracker.services.results import validate_result

    session, vocabulary, today = clinic.session, clinic.library.vocabulary, clinic.today
    by_loinc = vocabulary.by_loinc()
    local = dict(clinic.settings.labs.codes)
    on_record = _existing_sources(session, [r.source_id for r in rows])
    patients: dict[str, Patient | None] = {}
    seen: set[str] = set()
    good: list[tuple[int, Patient, object, dt.date, str]] = []  # (order, patient, checked, taken_on, source_id)
    report = LabImportReport(kind)
    for number, row in enumerate(rows):
        if row.source_id in on_record:
            report.already += 1
            continue
        try:
            if row.problem:
                raise InputError("result", row.code_text, row.problem)
            if row.source_id in seen:
                raise InputError("result", row.source_id, "repeats an earlier result of this file")
            if len(row.source_id) > 200:
                raise InputError("result", row.source_id[:60] + "...", "its id is longer than 200 characters")
            seen.add(row.source_id)
            test = test_code_for(row, by_loinc, local)
            if row.mrn not in patients:
                patients[row.mrn] = session.exec(select(Patient).where(Patient.mrn == row.mrn)).first()
            patient = patients[row.mrn]
            if patient is None:
                raise InputError("mrn", row.mrn, "no such patient in tracker")
            taken_on = parse_date(row.taken_on, "taken_on")
            ref_low = finite_number(row.ref_low, "ref_low") if row.ref_low else None
            ref_high = finite_number(row.ref_high, "ref_high") if row.ref_high else None
            checked = validate_result(vocabulary, test, row.value, taken_on, patient, today, ref_low, ref_high, row.unit)
        except TrackerError as exc:
            report.rejected.append((row.where, str(exc)))
            continue
        good.append((number, patient, checked, taken_on, row.source_id))
    if report.rejected and not skip_bad:
        raise ImportRejected(name, len(rows), [f"{where}: {reason}" for where, reason in report.rejected],
                             "results")
    report.imported = store_checked_results(clinic, good)
    if report.imported:
        # Every patient with a new result reviewed once, on the rules a result moves, as the nightly run
        # reviews a day's results (a review per result would load the chart once per result).
        from tracker.services.alerts import evaluate_clinic

        patient_ids = sorted({r.patient.id for r in report.imported})
        report.evaluation = evaluate_clinic(session, clinic.library, today, clinic.settings, patient_ids=patient_ids,
                                            kinds=("threshold", "gate", "overdue"), user=clinic.user)
    if report.imported or report.rejected:
        audit.record(session, clinic.user, "result.import", "lab_result", None, None, None,
                     {"file": name, "format": kind, "imported": len(report.imported), "already": report.already,
                      "rejected": len(report.rejected)})
    return report


def store_checked_results(clinic: Clinic, good: list) -> list:
    """Store checked results as `record_result` stores one (same row, same items completed, same audit
    event), oldest first so baselines complete first, in one INSERT batch, reading each patient's planned
    items once. The patients' alerts are evaluated by the caller, once. Returns RecordedResults."""
    from tracker.dates import utcnow
    from tracker.db.tables import Item
    from tracker.services.results import RecordedResult, complete_items

    session, library = clinic.session, clinic.library
    vocabulary = library.vocabulary
    stored = []
    now = utcnow()
    for _, patient, checked, taken_on, source_id in sorted(good, key=lambda g: (g[3], g[0])):
        result = LabResult(patient_id=patient.id, test=checked.code, value_num=checked.value_num,
                           value_text=checked.value_text, unit=checked.unit or vocabulary.get(checked.code).unit,
                           reported_value=checked.reported_value, reported_unit=checked.reported_unit,
                           taken_on=taken_on, ref_low=checked.ref_low, ref_high=checked.ref_high, created_at=now,
                           source_id=source_id)
        session.add(result)
        stored.append((patient, result))
    session.flush()
    planned: dict[int, list[Item]] = {}
    ids = sorted({patient.id for patient, _ in stored})
    for start in range(0, len(ids), 500):
        for item in session.exec(select(Item).where(Item.patient_id.in_(ids[start:start + 500]),
                                                    Item.status == "planned",
                                                    Item.kind.in_(("baseline", "lab")))).all():
            planned.setdefault(item.patient_id, []).append(item)
    recorded = []
    for patient, result in stored:
        completed = complete_items(session, library, patient, result, planned.get(patient.id, []))
        audit.record(session, clinic.user, "result.add", "lab_result", result.id, patient.mrn, None,
                     {**audit.snapshot(result), "completed_items": [i.id for i in completed]})
        recorded.append(RecordedResult(result, patient, completed, None))
    return recorded


def accept_message(open_clinic, message: bytes) -> tuple[str, str]:
    """One HL7 message pushed by the laboratory (tracker labs listen), stored in one transaction:
    `AA` when stored (or already on record), `AE` when a result is refused (nothing of the message stored),
    `AR` when the message cannot be read (wrong type, version, encoding, structure). `open_clinic()` is a
    context manager giving a Clinic whose transaction commits when it ends without error."""
    from tracker.labs.hl7 import MessageError, split_messages

    try:
        messages = split_messages(message)
    except MessageError as exc:
        return "AR", str(exc)
    if len(messages) != 1:
        return "AR", f"expected one HL7 message in the frame, found {len(messages)}"
    try:
        with open_clinic() as clinic:
            report = import_lab_data(clinic, message, "MLLP", skip_bad=False)
    except MessageError as exc:
        return "AR", str(exc)
    except TrackerError as exc:
        return "AE", " / ".join(str(exc).splitlines())
    already = f" ({report.already} already on record)" if report.already else ""
    return "AA", f"imported {len(report.imported)} results{already}"
