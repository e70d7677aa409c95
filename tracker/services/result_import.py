"""Bulk lab results from a CSV file (columns mrn,test,value,unit,taken_on,ref_low,ref_high).

All-or-nothing by default: every bad row is reported as `line N: reason` and nothing is imported. With
`skip_bad`, the good rows are imported and the rejected ones written (with their reasons) to a CSV file.
Rows are checked as `result add` checks them (validate_result: units converted to the vocabulary's, values
outside the analyte's plausible range refused), and each imported result goes through record_result, so
it completes items and is evaluated as it lands.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from sqlmodel import select

from tracker.core.durations import parse_date
from tracker.db.tables import LabResult, Patient
from tracker.errors import InputError, TrackerError
from tracker.private_files import open_private
from tracker.services import audit
from tracker.services.context import Clinic

REQUIRED = ("mrn", "test", "value", "taken_on")
OPTIONAL = ("unit", "ref_low", "ref_high")


class ImportRejected(InputError):
    """Some rows are bad; nothing was imported. One line per bad row."""

    def __init__(self, path: str, total: int, problems: list[str]):
        self.problems = problems
        super().__init__("file", path, f"{len(problems)} of {total} rows rejected, nothing imported")

    def __str__(self) -> str:
        return "\n".join([super().__str__(), *self.problems])


@dataclass
class ImportReport:
    imported: list = field(default_factory=list)  # RecordedResult
    rejected: list[tuple[int, dict, str]] = field(default_factory=list)  # (line, row, reason)
    rejects_file: str | None = None


def _float(row: dict, name: str) -> float | None:
    text = (row.get(name) or "").strip()
    if not text:
        return None
    from tracker.core.inputs import finite_number

    return finite_number(text, name)


def _read(path: Path) -> tuple[list[str], list[tuple[int, dict]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip().lower() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            rows = []
            for row in reader:
                if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                    continue  # blank line
                rows.append((reader.line_num, row))
    except FileNotFoundError:
        raise InputError("file", str(path), "file not found") from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError("file", str(path), f"not a readable CSV file ({exc})") from None
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise InputError("file", str(path), f"missing column(s) {', '.join(missing)} "
                                            f"(expected {','.join(REQUIRED[:3] + ('unit',) + REQUIRED[3:] + OPTIONAL[1:])})")
    return header, rows


def import_results(clinic: Clinic, path: str, *, skip_bad: bool, rejects: str | None) -> ImportReport:
    from tracker.services.results import record_result, validate_result

    session, library, today, user = clinic.session, clinic.library, clinic.today, clinic.user
    source = Path(path)
    header, rows = _read(source)
    patients: dict[str, Patient | None] = {}
    seen: set[tuple] = set()
    good: list[tuple[int, dict, dict]] = []
    report = ImportReport()
    for line, row in rows:
        if None in row:  # more cells than columns
            report.rejected.append((line, row, "more values than columns"))
            continue
        try:
            mrn = (row.get("mrn") or "").strip()
            if mrn not in patients:
                patients[mrn] = session.exec(select(Patient).where(Patient.mrn == mrn)).first()
            patient = patients[mrn]
            if patient is None:
                raise InputError("mrn", mrn, "not found")
            taken_on = parse_date(row.get("taken_on") or "", "taken_on")
            ref_low, ref_high = _float(row, "ref_low"), _float(row, "ref_high")
            unit = (row.get("unit") or "").strip() or None
            checked = validate_result(library.vocabulary, row.get("test") or "", row.get("value") or "",
                                      taken_on, patient, today, ref_low, ref_high, unit)
            code, value_num, value_text = checked.code, checked.value_num, checked.value_text
            identity = (patient.id, code, taken_on, value_num, value_text)
            if identity in seen:
                raise InputError("row", line, "repeats an earlier row of this file")
            seen.add(identity)
            on_record = session.exec(select(LabResult.id).where(
                LabResult.patient_id == patient.id, LabResult.test == code, LabResult.taken_on == taken_on,
                LabResult.value_num == value_num if value_num is not None else LabResult.value_text == value_text)).first()
            if on_record is not None:
                raise InputError("row", line, f"already on record as result #{on_record}")
        except TrackerError as exc:
            report.rejected.append((line, row, str(exc)))
            continue
        good.append((line, row, dict(mrn=mrn, test=code, value=(row.get("value") or "").strip(), taken_on=taken_on,
                                     unit=unit, ref_low=ref_low,
                                     ref_high=ref_high, patient=patient)))
    if report.rejected and not skip_bad:
        raise ImportRejected(str(source), len(rows), [f"line {line}: {reason}" for line, _, reason in report.rejected])
    for _, _, values in sorted(good, key=lambda g: (g[2]["taken_on"], g[0])):  # oldest first: baselines first
        report.imported.append(record_result(clinic, **values))
    if report.rejected:
        target = Path(rejects) if rejects else source.with_name(f"{source.stem}.rejects.csv")
        with open_private(target, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["line", *header, "reason"])
            for line, row, reason in report.rejected:
                writer.writerow([line, *[row.get(h, "") for h in header], reason])
        report.rejects_file = str(target)
    audit.record(session, user, "result.import", "lab_result", None, None, None,
                 {"file": str(source), "imported": len(report.imported), "rejected": len(report.rejected),
                  "rejects_file": report.rejects_file})
    return report
