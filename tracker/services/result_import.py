"""Bulk lab results from a CSV file (columns mrn,test,value,unit,taken_on,ref_low,ref_high).

All-or-nothing by default: every bad row is reported as `line N: reason` and nothing is imported. With
`skip_bad`, the good rows are imported and the rejected ones written (with their reasons) to a CSV file,
never the input file itself, with formula-leading cells escaped (tracker/csv_cells.py).
Rows are checked as `result add` checks them (validate_result: units converted to the vocabulary's, values
outside the analyte's plausible range refused), all in memory with the patients and the results already on
record read in bulk; the good ones are then recorded set-shaped by tracker/services/results_bulk.py (items
completed, audited, patients evaluated, as `result add` does for one).

The file is read with a bound (`[import] max_mb`, a clinic default): a larger file or an endless stream
(`/dev/zero`) is refused without being read whole; so are a repeated column and text that is not UTF-8.
Other formats (HL7, FHIR) can sit beside `read_csv`: anything that yields rows to check and record.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select

from tracker.core.durations import parse_date
from tracker.db.tables import LabResult, Patient
from tracker.errors import InputError, TrackerError
from tracker.private_files import open_private
from tracker.services import audit
from tracker.services.context import Clinic

REQUIRED = ("mrn", "test", "value", "taken_on")
OPTIONAL = ("unit", "ref_low", "ref_high")
IN_CHUNK = 900


class ImportRejected(InputError):
    """Some rows (of a CSV file) or results (of an HL7/FHIR file) are bad; nothing was imported. One line per
    bad one."""

    def __init__(self, path: str, total: int, problems: list[str], what: str = "rows"):
        self.problems = problems
        super().__init__("file", path, f"{len(problems)} of {total} {what} rejected, nothing imported")

    def __str__(self) -> str:
        return "\n".join([super().__str__(), *self.problems])


@dataclass
class ImportReport:
    imported: int = 0
    rejected: list[tuple[int, dict, str]] = field(default_factory=list)  # (line, row, reason)
    rejects_file: str | None = None
    completed: int = 0  # items the results completed
    evaluations: list = field(default_factory=list)  # EvaluationSummary per chunk of patients evaluated


@dataclass
class CsvRows:
    header: list[str]
    rows: list[tuple[int, dict]]  # (line, row)


def _float(row: dict, name: str) -> float | None:
    text = (row.get(name) or "").strip()
    if not text:
        return None
    from tracker.core.inputs import finite_number

    return finite_number(text, name)


def read_bounded(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, refused (without reading on) when it holds more than `max_bytes`."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except FileNotFoundError:
        raise InputError("file", str(path), "file not found") from None
    except IsADirectoryError:
        raise InputError("file", str(path), "is a directory") from None
    except OSError as exc:
        raise InputError("file", str(path), f"cannot be read ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise InputError("file", str(path), f"is larger than the import limit of {max_bytes // (1024 * 1024)} MB "
                                            "([import] max_mb in the site config, a clinic default)")
    return data


def read_csv(path: Path, max_bytes: int) -> CsvRows:
    """The header (trimmed, lower case) and the non-blank rows with their line numbers."""
    data = read_bounded(path, max_bytes)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        where = exc.object  # (after a byte order mark, which the position does not count)
        line = where[:exc.start].count(b"\n") + 1
        raise InputError("file", str(path), f"line {line} is not UTF-8 text (byte 0x{where[exc.start]:02x}); "
                                            "save the file as UTF-8") from None
    try:
        reader = csv.reader(io.StringIO(text, newline=""))
        header = [h.strip().lower() for h in next(reader, [])]
        _check_header(path, header)
        rows = []
        width = len(header)
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue  # blank line
            row = dict(zip(header, cells))
            if len(cells) > width:
                row[None] = cells[width:]  # as csv.DictReader keeps them: refused per row below
            rows.append((reader.line_num, row))
    except csv.Error as exc:
        raise InputError("file", str(path), f"not a readable CSV file ({exc})") from None
    return CsvRows(header, rows)


def _check_header(path: Path, header: list[str]) -> None:
    seen: dict[str, int] = {}
    for column, name in enumerate(header, start=1):
        if name in seen and name:
            raise InputError("header", name, f"appears twice (columns {seen[name]} and {column}) in {path}; "
                                             "which one holds the value is unclear")
        seen[name] = column
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise InputError("file", str(path), f"missing column(s) {', '.join(missing)} "
                                            f"(expected {','.join(REQUIRED[:3] + ('unit',) + REQUIRED[3:] + OPTIONAL[1:])})")


def rejects_target(source: Path, rejects: str | None) -> Path:
    """Where rejected rows go; never the input file (the same path, a relative spelling, a symlink or a hard
    link to it)."""
    target = Path(rejects) if rejects else source.with_name(f"{source.stem}.rejects.csv")
    same = False
    try:
        same = os.path.samefile(source, target)
    except OSError:  # one of them does not exist (yet): compare where they point
        same = os.path.realpath(source) == os.path.realpath(target)
    if same:
        raise InputError("rejects", str(target), "is the input file; rejected rows would overwrite it")
    return target


def import_results(clinic: Clinic, path: str, *, skip_bad: bool, rejects: str | None,
                   progress: Callable[[int, int], None] | None = None) -> ImportReport:
    """Check every row, then record the good ones (all, or none when a row is bad and not `skip_bad`).
    `progress(done, total)` is called as rows are recorded."""
    from tracker.services.chart_reviews import collector_paused

    source = Path(path)
    target = rejects_target(source, rejects)
    # The rows, checked results and bulk values hold no reference cycles; a full collection would walk all
    # of them again and again as they pile up (a fifth of a 10,000-row import).
    with collector_paused():
        read = read_csv(source, clinic.settings.imports.max_bytes)
        good, report = check_rows(clinic, read.rows)
        if report.rejected and not skip_bad:
            raise ImportRejected(str(source), len(read.rows),
                                 [f"line {line}: {reason}" for line, _, reason in report.rejected])
        recorded = record_rows(clinic, good, progress)
    report.imported, report.completed, report.evaluations = recorded.recorded, recorded.completed, recorded.evaluations
    if report.rejected:
        write_rejects(target, read.header, report.rejected)
        report.rejects_file = str(target)
    audit.record(clinic.session, clinic.user, "result.import", "lab_result", None, None, None,
                 {"file": str(source), "imported": report.imported, "rejected": len(report.rejected),
                  "rejects_file": report.rejects_file})
    return report


def check_rows(clinic: Clinic, rows: list[tuple[int, dict]]):
    """(the good rows as ResultToRecord, oldest first; a report holding the rejected ones with reasons).
    Each row is checked as `result add` checks its arguments, in memory."""
    from tracker.services.results import RowValidator
    from tracker.services.results_bulk import ResultToRecord

    session, library = clinic.session, clinic.library
    validate = RowValidator(library.vocabulary, clinic.today)
    patients = _patients(session, {(row.get("mrn") or "").strip() for _, row in rows})
    seen: set[tuple] = set()
    days: dict[str, object] = {}  # a day as written -> the date (a file holds few distinct days)
    checked_rows = []
    report = ImportReport()
    for line, row in rows:
        if None in row:  # more cells than columns
            report.rejected.append((line, row, "more values than columns"))
            continue
        try:
            mrn = (row.get("mrn") or "").strip()
            patient = patients.get(mrn)
            if patient is None:
                raise InputError("mrn", mrn, "not found")
            day = row.get("taken_on") or ""
            taken_on = days.get(day) or days.setdefault(day, parse_date(day, "taken_on"))
            ref_low, ref_high = _float(row, "ref_low"), _float(row, "ref_high")
            unit = (row.get("unit") or "").strip() or None
            checked = validate(row.get("test") or "", row.get("value") or "", taken_on, patient, ref_low, ref_high,
                               unit)
            identity = (patient.id, checked.code, taken_on, checked.value_num, checked.value_text)
            if identity in seen:
                raise InputError("row", line, "repeats an earlier row of this file")
            seen.add(identity)
        except TrackerError as exc:
            report.rejected.append((line, row, str(exc)))
            continue
        checked_rows.append((line, row, ResultToRecord(line, patient, checked, taken_on)))
    on_record = _on_record(session, [r for _, _, r in checked_rows])
    good = []
    for line, row, record in checked_rows:
        checked = record.checked
        key = (record.patient.id, checked.code, record.taken_on,
               checked.value_num if checked.value_num is not None else checked.value_text)
        if key in on_record:
            report.rejected.append((line, row, str(InputError("row", line,
                                                              f"already on record as result #{on_record[key]}"))))
            continue
        good.append(record)
    report.rejected.sort(key=lambda r: r[0])
    good.sort(key=lambda r: (r.taken_on, r.line))  # oldest first: baselines first, as one by one
    return good, report


def record_rows(clinic: Clinic, good: list, progress: Callable[[int, int], None] | None = None):
    from tracker.services.results_bulk import record_in_bulk

    total, done = len(good), 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(done, total)

    return record_in_bulk(clinic, good, advance)


def _patients(session, mrns: set[str]) -> dict:
    """The patients of these MRNs (id, mrn, sex, childbearing, dob), by MRN, read in bulk."""
    columns = (Patient.id, Patient.mrn, Patient.sex, Patient.childbearing, Patient.dob)
    out = {}
    wanted = sorted(m for m in mrns if m)
    for start in range(0, len(wanted), IN_CHUNK):
        for row in session.execute(select(*columns).where(Patient.mrn.in_(wanted[start:start + IN_CHUNK]))):
            out.setdefault(row.mrn, row)
    return out


def _on_record(session, records: list) -> dict[tuple, int]:
    """The results already on record that a row repeats (same patient, test, day and value): their ids."""
    if not records:
        return {}
    patient_ids = sorted({r.patient.id for r in records})
    first, last = min(r.taken_on for r in records), max(r.taken_on for r in records)
    tests = sorted({r.checked.code for r in records})
    R = LabResult.__table__
    out: dict[tuple, int] = {}
    for start in range(0, len(patient_ids), IN_CHUNK):
        query = (select(func.min(R.c.id), R.c.patient_id, R.c.test, R.c.taken_on, R.c.value_num, R.c.value_text)
                 .where(R.c.patient_id.in_(patient_ids[start:start + IN_CHUNK]), R.c.test.in_(tests),
                        R.c.taken_on.between(first, last))
                 .group_by(R.c.patient_id, R.c.test, R.c.taken_on, R.c.value_num, R.c.value_text))
        for result_id, patient_id, test, taken_on, value_num, value_text in session.execute(query):
            for value in (value_num, value_text):
                if value is not None:
                    key = (patient_id, test, taken_on, value)
                    out[key] = min(out.get(key, result_id), result_id)
    return out


def write_rejects(target: Path, header: list[str], rejected: list[tuple[int, dict, str]]) -> None:
    """The rejected rows with their reasons, cells that a spreadsheet would run as formulas escaped."""
    from tracker.csv_cells import writer

    try:
        with open_private(target, "w", newline="", encoding="utf-8") as fh:
            out = writer(fh)
            out.writerow(["line", *header, "reason"])
            for line, row, reason in rejected:
                out.writerow([line, *[row.get(h, "") for h in header], reason])
    except OSError as exc:
        raise InputError("rejects", str(target), f"cannot be written ({exc.strerror or exc}); nothing imported") from None
