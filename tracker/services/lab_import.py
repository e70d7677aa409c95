"""Lab results from HL7 v2 ORU^R01 messages and FHIR R4 bundles (issue 16): the parsers' plain rows
(tracker/labs) checked as the CSV import checks its rows and stored through the same bulk path
(services/results_bulk.py: oldest first, each result completing the items it answers, audited as
`result.add`, the patients evaluated together as after `result add`).

- A result maps to a tracker test by its LOINC code (the vocabulary's `loinc`/`also_loinc`), or by a local
  code the site config maps (`[labs.codes]`); its unit goes through tracker/units.py like any other.
- All or nothing: any bad result refuses the whole file, naming each (`message MSG1 OBX[3]: ...`), and the
  database is left as it was; `skip_bad` stores the good ones and returns the rejected with their reasons.
- Idempotent: each result carries its source id (message control id + OBX set id, or Observation id;
  lab_result.source_id, unique; replaced_lab_source for the ids a correction replaced). A result already on
  record is skipped, so importing the same message again stores nothing and writes nothing (not even an
  audit row). "Already on record" is the same result (patient, test, day, value): a source id on record for
  another result is refused, naming it; a row's legacy id (the form an id local to its container had before
  it was qualified) finds a result stored under it only when it is the same result.
- An HL7 original reported before a correction of its result on record (or in the file, or withdrawn from
  the record since) is not stored; a FHIR entered-in-error retraction of a result on record is refused,
  naming the `tracker result withdraw` that takes it off the record; once withdrawn, the retraction and the
  result itself imported again are counted as on record (withdrawn_lab_source), never stored again.
- Corrections (HL7 OBX-11 `C` in a later message; a FHIR Observation sent again as amended or corrected)
  replace the result they correct (tracker/core/lab_corrections.py says which), audited as `result.correct`
  with before and after, and the patient is evaluated again.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from sqlalchemy import select

from tracker.core.durations import parse_date
from tracker.core.inputs import finite_number
from tracker.core.lab_corrections import (Candidate, ResultIdentity, hl7_corrected, identity_differences, latest_report,
                                          newer_corrections, same_values, sender, superseded)
from tracker.dates import utcnow
from tracker.db.tables import LabResult, ReplacedLabSource, WithdrawnLabSource, WithdrawnResult
from tracker.errors import InputError, TrackerError
from tracker.labs import LOINC_SYSTEMS, LabRow, detect_format
from tracker.services import audit
from tracker.services.context import Clinic
from tracker.services.result_import import IN_CHUNK, ImportRejected, read_bounded


UNIT_FIELD = {"hl7": "OBX-6", "fhir": "valueQuantity.code"}  # where a laboratory's result carries its unit


@dataclass
class LabImportReport:
    format: str
    imported: list = field(default_factory=list)  # ResultToRecord: the new results stored
    already: int = 0  # results of this file already on record (a re-import)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (where, reason)
    corrected: int = 0  # results on record whose values a correction of this file replaced
    superseded: int = 0  # corrections reported before the values on record: not applied (lab_corrections)
    late_originals: int = 0  # originals reported before a correction of theirs on record or in the file: not stored
    evaluations: list = field(default_factory=list)  # EvaluationSummary per batch evaluated (services.alerts)

    def counts(self) -> str:
        """What else happened to the file's results, for the line that reports an import."""
        corrected = f", {self.corrected} corrected" if self.corrected else ""
        older = (f", {self.superseded} correction{'s' if self.superseded > 1 else ''} not applied (reported "
                 f"before the values on record)") if self.superseded else ""
        late = (f", {self.late_originals} original{'s' if self.late_originals > 1 else ''} not stored (reported "
                f"before its correction)") if self.late_originals else ""
        already = f" ({self.already} already on record)" if self.already else ""
        return corrected + older + late + already

    @property
    def evaluation(self):
        """Every alert raised or resolved and follow-up booked once the results landed, as one summary."""
        from tracker.services.evaluate import EvaluationSummary

        if not self.evaluations:
            return None
        merged = EvaluationSummary()
        for part in self.evaluations:
            for name in ("raised", "reopened", "resolved", "outcomes", "follow_ups", "would_open", "would_clear"):
                getattr(merged, name).extend(getattr(part, name))
            merged.reviewed += part.reviewed
        return merged


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


def test_code_for(row: LabRow, by_loinc: dict[str, str], local: dict[str, str],
                  panels: dict[str, str] | None = None) -> str:
    """The tracker test a result is for: by LOINC, else by the site's local code map. A panel's LOINC code
    (an order's code) is refused by name: the laboratory's results are its analytes'."""
    for system, code in row.codes:
        if system in LOINC_SYSTEMS and code in by_loinc:
            return by_loinc[code]
    for system, code in row.codes:
        for key in (f"{system}:{code}" if system else code, code):
            if key in local:
                return local[key]
    for system, code in row.codes:
        if panels and system in LOINC_SYSTEMS and code in panels:
            raise InputError("code", row.code_text, f"this is the LOINC code of the panel {panels[code]} (an "
                                                    "order): a result is recorded under each analyte's code")
    raise InputError("code", row.code_text, "no tracker test has this code: a LOINC code in the vocabulary, "
                                            "or a local code mapped in the config's [labs.codes]")


@dataclass(frozen=True)
class _Stored:
    """A result on record carrying a source id of this file: what a result sent again is compared with.
    `replaced`: the source id is one a later correction replaced (replaced_lab_source); the result (`id`) now
    holds the correction's values."""

    id: int
    patient_id: int
    mrn: str
    test: str
    taken_on: dt.date
    values: dict
    reported_at: dt.datetime | None = None
    replaced: bool = False
    withdrawn: bool = False  # withdrawn from the record (withdrawn_result): values as they were

    @property
    def identity(self) -> ResultIdentity:
        number = self.values.get("reported_value")
        if number is None:
            number = self.values.get("value_num")
        return ResultIdentity(self.patient_id, self.test, self.taken_on,
                              number if number is not None else self.values.get("value_text"))

    def described(self) -> str:
        """`#12 (alt 30 U/L on 2026-11-20, patient M1)`: the result on record, for a refusal."""
        number, text = self.values.get("reported_value"), self.values.get("value_text")
        unit = self.values.get("reported_unit") or self.values.get("unit")
        if number is None:
            number = self.values.get("value_num")
        value = f"{number:g}{' ' + unit if unit else ''}" if number is not None else repr(text)
        return f"#{self.id} ({self.test} {value} on {self.taken_on}, patient {self.mrn})"


def _on_record(session, source_ids: list[str]) -> dict[str, _Stored]:
    """The source ids already on record, each mapped to its result (`_Stored`; `replaced` for an id a later
    correction replaced: replaced_lab_source)."""
    from tracker.db.tables import Patient
    from tracker.services.results_bulk import CORRECTED_FIELDS

    R, X, P = LabResult.__table__, ReplacedLabSource.__table__, Patient.__table__
    found: dict[str, _Stored] = {}
    wanted = sorted(set(source_ids))
    columns = (R.c.id, R.c.patient_id, P.c.mrn, R.c.test, R.c.taken_on, R.c.reported_at,
               *(R.c[name] for name in CORRECTED_FIELDS))

    def stored(row, replaced: bool = False) -> _Stored:
        result_id, patient_id, mrn, test, taken_on, reported_at, *values = row
        return _Stored(result_id, patient_id, mrn, test, taken_on, dict(zip(CORRECTED_FIELDS, values)), reported_at,
                       replaced)

    for start in range(0, len(wanted), IN_CHUNK):
        chunk = wanted[start:start + IN_CHUNK]
        query = select(R.c.source_id, *columns).join(P, P.c.id == R.c.patient_id).where(R.c.source_id.in_(chunk))
        for source_id, *row in session.execute(query):
            found[source_id] = stored(row)
        query = (select(X.c.source_id, *columns).join(R, R.c.id == X.c.result_id).join(P, P.c.id == R.c.patient_id)
                 .where(X.c.source_id.in_(chunk)))
        for source_id, *row in session.execute(query):
            found[source_id] = stored(row, replaced=True)
        W, WS = WithdrawnResult.__table__, WithdrawnLabSource.__table__
        query = (select(WS.c.source_id, W.c.id, W.c.patient_id, P.c.mrn, W.c.test, W.c.taken_on, W.c.reported_at,
                        *(W.c[name] for name in CORRECTED_FIELDS), W.c.source_id)
                 .join(W, W.c.id == WS.c.result_id).join(P, P.c.id == W.c.patient_id).where(WS.c.source_id.in_(chunk)))
        for source_id, *row, own in session.execute(query):
            found[source_id] = replace(stored(row, replaced=source_id != own), withdrawn=True)
    return found


def _corrected(session, result_id: int, mrn: str) -> bool:
    """Whether the values of result `result_id` are a correction's (a `result.correct` audited on it): then a
    first version sent again rightly carries other values."""
    from tracker.db.tables import AuditEvent

    query = select(AuditEvent.id).where(AuditEvent.mrn == mrn, AuditEvent.entity == "lab_result",
                                        AuditEvent.entity_id == result_id, AuditEvent.action == "result.correct")
    return session.execute(query.limit(1)).first() is not None


def _hl7_candidates(session, patient_id: int, test: str, taken_on: dt.date) -> list[Candidate]:
    """The patient's results of `test` taken on `taken_on` that came from HL7: what a correction may replace."""
    R = LabResult.__table__
    query = select(R.c.id, R.c.source_id, R.c.reported_at).where(
        R.c.patient_id == patient_id, R.c.test == test, R.c.taken_on == taken_on, R.c.source_id.like("hl7:%"))
    return [Candidate(source_id, test, taken_on, result_id=result_id, reported_at=reported_at)
            for result_id, source_id, reported_at in session.execute(query)]


def _hl7_withdrawal(session, row: LabRow, patient, test: str, taken_on: dt.date) -> None:
    """An HL7 OBX-11 `W` (post original as wrong) names the result it retracts as a correction does (same test,
    patient, day and laboratory: core/lab_corrections.py `hl7_corrected`). On record: refused, naming the command
    that withdraws it (as a FHIR entered-in-error is); withdrawn already: returns (on record); neither: refused
    as before (only F and C are recorded)."""
    patient_id, mrn = patient.id, patient.mrn
    target = hl7_corrected(row.source_id, test, taken_on, _hl7_candidates(session, patient_id, test, taken_on))
    found = target.candidate or (target.ambiguous[0] if target.ambiguous else None)
    if found is not None:
        which = ", ".join(f"#{c.result_id}" for c in (target.ambiguous or (found,)))
        raise InputError("result", row.code_text,
                         f"OBX-11 W: the laboratory withdrew its {test} result of {taken_on} for patient {mrn}, on "
                         f"record as {which}; withdraw it with `tracker result withdraw {found.result_id} --reason "
                         f"REASON`, then import this file again")
    W = WithdrawnResult.__table__
    lab = sender(row.source_id)
    gone = session.execute(select(W.c.source_id).where(W.c.patient_id == patient_id, W.c.test == test,
                                                       W.c.taken_on == taken_on)).scalars().all()
    if not any(source and sender(source) == lab for source in gone):
        raise InputError("result", row.code_text, row.problem or "OBX-11 W: nothing on record to withdraw")


def import_lab_rows(clinic: Clinic, rows: list[LabRow], name: str, kind: str, *, skip_bad: bool) -> LabImportReport:
    """Check every result as the CSV import checks a row, then store them through the same bulk path
    (services/results_bulk.py: items completed, `result.add` audited, patients evaluated), and apply the
    corrections among them (tracker/core/lab_corrections.py). All or nothing unless `skip_bad`."""
    from tracker.services.result_import import _patients
    from tracker.services.results import RowValidator
    from tracker.services.results_bulk import BulkRecorded, Correction, ResultToRecord, record_in_bulk, replace_results

    session, vocabulary = clinic.session, clinic.library.vocabulary
    by_loinc, panels = vocabulary.by_loinc(), vocabulary.panel_by_loinc()
    local = dict(clinic.settings.labs.codes)
    on_record = _on_record(session, [sid for r in rows for sid in (r.source_id, r.legacy_source_id) if sid])
    patients = _patients(session, {r.mrn for r in rows})
    validate = RowValidator(vocabulary, clinic.today)
    seen: set[str] = set()
    good: list[ResultToRecord] = []
    corrections: list[Correction] = []
    in_file: dict[tuple, list[Candidate]] = {}  # (patient id, test, day) -> this file's HL7 results so far
    # The report time of the values each corrected result holds once this file's corrections so far apply
    # (keyed ("result", id) or ("row", n)): two corrections of one result in one file are ordered too.
    reported: dict[tuple, dt.datetime | None] = {}
    report = LabImportReport(kind)

    def outdated(key: tuple, on_record: dt.datetime | None, row: LabRow) -> bool:
        """Whether the correction `row` of the result `key` is older than the values it would replace (then
        it is counted and left out); else the result's report time becomes the correction's."""
        current = reported.get(key, on_record)
        if superseded(row.reported_at, current):
            report.superseded += 1
            return True
        reported[key] = latest_report(row.reported_at, current)
        return False

    def identity(row: LabRow) -> ResultIdentity:
        """The row's patient, test, day and value, read as validation reads them (its errors are the row's)."""
        patient = patients.get(row.mrn)
        if patient is None:
            raise InputError("mrn", row.mrn, "no such patient in tracker")
        test = test_code_for(row, by_loinc, local, panels)
        taken_on = parse_date(row.taken_on, "taken_on")
        number, text = vocabulary.check_value(test, row.value, taken_on)
        return ResultIdentity(patient.id, test, taken_on, number if number is not None else text)

    def differences(stored: _Stored, row: LabRow, *, value: bool = True) -> tuple[str, ...]:
        """What tells the result on record under the row's source id from the row (() when it is the row)."""
        differ = identity_differences(stored.identity, identity(row), value=value and not stored.replaced)
        if differ == ("value",) and _corrected(session, stored.id, stored.mrn):
            return ()  # its first version, sent again after a correction replaced its values
        return differ

    def former(row: LabRow) -> _Stored | None:
        """The result on record under the row's legacy source id when it is this result; None when there is
        none, or it is another result. A legacy id was local to its report or message, so only the whole
        identity, value included, tells this result from another report's under the same id (never "its
        first version, corrected since"). A correction or a withdrawal matched so cannot tell which report's
        result it is about: refused, to be settled by hand (session 20's second reading: a correction of one
        report's result corrected another's)."""
        stored = on_record.get(row.legacy_source_id) if row.legacy_source_id else None
        if stored is None:
            return None
        try:
            theirs, mine = stored.identity, identity(row)
        except TrackerError:
            return None
        if row.corrects or row.withdrawn:
            if identity_differences(theirs, mine, value=False):
                return None  # another patient, test or day: not this result
            if row.withdrawn and stored.withdrawn:
                return stored  # the result it could retract is off the record already: nothing left to do
            what = "withdrawal" if row.withdrawn else "correction"
            todo = (f"if it is #{stored.id}, withdraw it with `tracker result withdraw {stored.id} --reason REASON`"
                    if row.withdrawn else "enter the laboratory's correction by hand and review the alerts")
            raise InputError("result", row.source_id,
                             f"a {what} of a result stored under {row.legacy_source_id!r}, an id local to its "
                             f"report, as {stored.described()}: which report's result it is cannot be told; "
                             f"nothing changed: {todo}")
        return None if identity_differences(theirs, mine, value=True) else stored

    for number, row in enumerate(rows):
        stored = on_record.get(row.source_id)
        try:
            if stored is None and former(row) is not None:  # this very result, under its former id
                report.already += 1
                continue
            if stored is not None and stored.withdrawn:
                # Withdrawn from the record already: the retraction sent again, or the result it retracted.
                if row.withdrawn or not differences(stored, row):
                    report.already += 1
                    continue
                raise InputError("result", row.source_id,
                                 f"this source id is on record for a result withdrawn from the record, "
                                 f"{stored.described()}: not stored again")
            if row.withdrawn and stored is not None:
                # The retraction is refused loudly, never counted as on record, so that a person withdraws the
                # result (its items and alerts are reviewed as it goes: services/result_withdraw.py).
                raise InputError("result", row.source_id,
                                 f"entered-in-error: the laboratory withdrew this result, on record as "
                                 f"{stored.described()}; withdraw it with `tracker result withdraw {stored.id} "
                                 f"--reason REASON`, then import this file again")
            if row.withdrawn and stored is None and row.source_id.startswith("hl7:"):
                patient = patients.get(row.mrn)
                if patient is None:
                    raise InputError("mrn", row.mrn, "no such patient in tracker")
                _hl7_withdrawal(session, row, patient, test_code_for(row, by_loinc, local, panels),
                                parse_date(row.taken_on, "taken_on"))  # refused unless withdrawn already
                report.already += 1
                continue
            if stored is not None and not (row.corrects and not stored.replaced):
                try:
                    differ = differences(stored, row)
                except TrackerError:
                    if row.problem:
                        raise InputError("result", row.code_text, row.problem) from None
                    raise
                if not differ:
                    report.already += 1
                    continue
                if row.problem:
                    raise InputError("result", row.code_text, row.problem)
                raise InputError("result", row.source_id,
                                 f"this source id is on record for another result, {stored.described()} "
                                 f"({', '.join(differ)} differ{'s' if len(differ) == 1 else ''}): the laboratory "
                                 f"reused the id; nothing stored")
            if row.problem:
                raise InputError("result", row.code_text, row.problem)
            if row.source_id in seen:
                raise InputError("result", row.source_id, "repeats an earlier result of this file")
            if len(row.source_id) > 200:
                raise InputError("result", row.source_id[:60] + "...", "its id is longer than 200 characters")
            seen.add(row.source_id)
            test = test_code_for(row, by_loinc, local, panels)
            patient = patients.get(row.mrn)
            if patient is None:
                raise InputError("mrn", row.mrn, "no such patient in tracker")
            taken_on = parse_date(row.taken_on, "taken_on")
            if row.unit is None and vocabulary.get(test).is_numeric:
                # B9: a laboratory interface's number without its unit could be in any unit (glucose 95 under
                # 2345-7 is mg/dL, not the vocabulary's mmol/L); only `result add` and CSV assume the unit.
                raise InputError("unit", "", f"{test} {row.value} on {taken_on}: a numeric result from the "
                                             f"laboratory without its unit ({UNIT_FIELD.get(kind, 'unit')}) is not read")
            ref_low = finite_number(row.ref_low, "ref_low") if row.ref_low else None
            ref_high = finite_number(row.ref_high, "ref_high") if row.ref_high else None
            checked = validate(test, row.value, taken_on, patient, ref_low, ref_high, row.unit, row.ref_units)
            result = ResultToRecord(number, patient, checked, taken_on, row.source_id, row.reported_at, row.corrects)
            if stored is not None:  # the same Observation again, amended or corrected
                correction = _amending(stored, result, vocabulary)
                if correction is None:
                    report.already += 1
                    continue
                if not outdated(("result", stored.id), stored.reported_at, row):
                    corrections.append(correction)
                continue
            key = (patient.id, checked.code, taken_on)
            if row.corrects:
                candidates = [*_hl7_candidates(session, *key), *in_file.get(key, ())]
                target = hl7_corrected(row.source_id, checked.code, taken_on, candidates)
                if target.ambiguous:
                    which = ", ".join(f"#{c.result_id}" if c.result_id is not None else f"{rows[c.row].where}"
                                      for c in target.ambiguous)
                    raise InputError("result", row.code_text,
                                     f"corrects a {checked.code} result of {taken_on}, but {len(target.ambiguous)} "
                                     f"from this laboratory match ({which}): cannot tell which one; nothing replaced")
                if target.candidate is not None:
                    found = target.candidate
                    replaced = ("result", found.result_id) if found.result_id is not None else ("row", found.row)
                    if not outdated(replaced, found.reported_at, row):
                        corrections.append(Correction(result, found.result_id, found.row))
                    continue
            good.append(result)
            if row.source_id.startswith("hl7:"):
                in_file.setdefault(key, []).append(Candidate(row.source_id, checked.code, taken_on, row=number,
                                                             reported_at=row.reported_at))
        except TrackerError as exc:
            report.rejected.append((row.where, str(exc)))
            continue
    if report.rejected and not skip_bad:
        raise ImportRejected(name, len(rows), [f"{where}: {reason}" for where, reason in report.rejected],
                             "results")
    late, withdrawn = _late_originals(session, good)
    if late:
        good = [r for r in good if r.line not in late]
        report.late_originals = len(late)
    good.sort(key=lambda r: (r.taken_on, r.line))  # oldest first: baselines first, as one by one
    done = record_in_bulk(clinic, good) if good else BulkRecorded()
    replace_results(clinic, corrections, done)
    now = None
    for line, target in late.items():
        if target is not None:  # kept as a replaced source id: sent again, it is on record (as if it came first)
            now = now or utcnow()
            result_id = target.result_id if target.result_id is not None else done.ids[target.row]
            if result_id in withdrawn:  # a source of the withdrawn result, as if it had come before the withdrawal
                session.add(WithdrawnLabSource(source_id=rows[line].source_id, result_id=result_id))
            else:
                session.add(ReplacedLabSource(source_id=rows[line].source_id, result_id=result_id, replaced_at=now))
    report.imported, report.corrected, report.evaluations = good, done.corrected, done.evaluations
    if report.imported or report.corrected or report.rejected or report.late_originals:
        audit.record(session, clinic.user, "result.import", "lab_result", None, None, None,
                     {"file": name, "format": kind, "imported": len(report.imported), "corrected": report.corrected,
                      "superseded": report.superseded, "late_originals": report.late_originals,
                      "already": report.already, "rejected": len(report.rejected)})
    return report


def _late_originals(session, good: list) -> tuple[dict[int, Candidate | None], set[int]]:
    """The HL7 originals (OBX-11 F) among `good` reported before a correction of the same result, on record,
    withdrawn from the record (withdrawn_result: an older version of a retracted result is retracted too) or
    stored as new from this file (core lab_corrections.newer_corrections): by their line, the correction (None
    when several); and the ids among those corrections of withdrawn results."""
    from tracker.db.tables import AuditEvent

    originals = [r for r in good if not r.corrects and r.reported_at is not None and r.source_id.startswith("hl7:")]
    if not originals:
        return {}, set()

    def key_of(r) -> tuple:
        return r.patient.id, r.checked.code, r.taken_on

    keys = {key_of(r) for r in originals}
    R, W = LabResult.__table__, WithdrawnResult.__table__
    withdrawn: set[int] = set()
    patient_ids, tests = sorted({k[0] for k in keys}), sorted({k[1] for k in keys})
    first, last = min(k[2] for k in keys), max(k[2] for k in keys)
    on_record: dict[tuple, list[Candidate]] = {}
    for start in range(0, len(patient_ids), IN_CHUNK):
        query = select(R.c.id, R.c.patient_id, R.c.test, R.c.taken_on, R.c.source_id, R.c.reported_at).where(
            R.c.patient_id.in_(patient_ids[start:start + IN_CHUNK]), R.c.test.in_(tests),
            R.c.taken_on.between(first, last), R.c.source_id.like("hl7:%"), R.c.reported_at.is_not(None))
        for result_id, patient_id, test, taken_on, source_id, reported_at in session.execute(query):
            if (patient_id, test, taken_on) in keys:
                on_record.setdefault((patient_id, test, taken_on), []).append(
                    Candidate(source_id, test, taken_on, result_id=result_id, reported_at=reported_at))
        query = select(W.c.id, W.c.patient_id, W.c.test, W.c.taken_on, W.c.source_id, W.c.reported_at).where(
            W.c.patient_id.in_(patient_ids[start:start + IN_CHUNK]), W.c.test.in_(tests),
            W.c.taken_on.between(first, last), W.c.source_id.like("hl7:%"), W.c.reported_at.is_not(None))
        for result_id, patient_id, test, taken_on, source_id, reported_at in session.execute(query):
            if (patient_id, test, taken_on) in keys:
                withdrawn.add(result_id)
                on_record.setdefault((patient_id, test, taken_on), []).append(
                    Candidate(source_id, test, taken_on, result_id=result_id, reported_at=reported_at))
    # Whether a result on record holds a correction's values: audited `result.correct` (a correction replaced
    # its values) or `result.add` with "corrects" (a correction stored as new). Asked only of the results
    # reported after an original of their own test and day (rare), by the patients' MRNs (indexed).
    later = {c.result_id: r.patient.mrn for r in originals for c in on_record.get(key_of(r), ())
             if superseded(r.reported_at, c.reported_at)}
    corrected: set[int] = set()
    if later:
        A = AuditEvent.__table__
        query = select(A.c.entity_id, A.c.action, A.c.after).where(
            A.c.mrn.in_(sorted(set(later.values()))), A.c.entity == "lab_result", A.c.entity_id.in_(sorted(later)),
            A.c.action.in_(("result.correct", "result.add")))
        for result_id, action, after in session.execute(query):
            if action == "result.correct" or json.loads(after or "{}").get("corrects") is True:
                corrected.add(result_id)
    in_file: dict[tuple, list[Candidate]] = {}
    for r in good:
        if r.corrects and r.source_id.startswith("hl7:"):
            in_file.setdefault(key_of(r), []).append(Candidate(r.source_id, r.checked.code, r.taken_on, row=r.line,
                                                               reported_at=r.reported_at, correction=True))
    out: dict[int, Candidate | None] = {}
    for r in originals:
        candidates = [*(replace(c, correction=c.result_id in corrected) for c in on_record.get(key_of(r), ())),
                      *in_file.get(key_of(r), ())]
        newer = newer_corrections(r.source_id, r.reported_at, candidates)
        if newer:
            out[r.line] = newer[0] if len(newer) == 1 else None
    return out, {c.result_id for c in out.values() if c is not None and c.result_id in withdrawn}


def _amending(stored: _Stored, result, vocabulary):
    """The correction an Observation sent again as amended or corrected makes to the result carrying its id:
    None when it carries the values already stored (sent again), refused when it names another patient,
    test or day (a replacement would move what the result answered; enter that by hand)."""
    from tracker.services.results_bulk import Correction, corrected_values

    if (stored.patient_id, stored.test, stored.taken_on) != (result.patient.id, result.checked.code, result.taken_on):
        raise InputError("result", result.source_id,
                         f"amends result #{stored.id} ({stored.test} on {stored.taken_on}) but names another "
                         f"patient, test or day; nothing replaced")
    if same_values(stored.values, corrected_values(result, vocabulary)):
        return None
    return Correction(result, stored.id)


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
    return "AA", f"imported {len(report.imported)} results{report.counts()}"
