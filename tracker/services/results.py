"""Lab results: recording them, and completing the items they answer."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import func
from sqlmodel import Session, select

from tracker.dates import utcnow
from tracker.db.tables import Course, Item, LabResult, Patient, codes, join_codes
from tracker.errors import InputError
from tracker.core.panels import LAB_EARLY_DAYS, answers_repeat, counts_towards, is_complete, nearest_draw
from tracker.core.protocol import ProtocolLibrary
from tracker.services import audit
from tracker.services.context import Clinic
from tracker.db.snapshots import course_protocol
from tracker.services.plan_sync import absorbed_into, baseline_satisfied_by
from tracker.services.patients import get_patient
from tracker.services.row_shapes import result_row
from tracker.core.plausibility import implausible_reason, is_plausible
from tracker.core.vocabulary import TestCode, Vocabulary


@dataclass
class RecordedResult:
    result: LabResult
    patient: Patient
    completed: list[Item] = field(default_factory=list)
    evaluation: object | None = None  # alerts raised/resolved as the result landed (services.alerts)


@dataclass(frozen=True)
class CheckedResult:
    """A result that passed validation. A numeric value is in the vocabulary's unit (`unit`), converted from
    `reported_value` in `reported_unit`; so is the reference range."""

    code: str
    value_num: float | None
    value_text: str | None
    unit: str | None
    reported_value: float | None = None
    reported_unit: str | None = None
    ref_low: float | None = None
    ref_high: float | None = None


def validate_result(vocabulary: Vocabulary, test: str, value: str, taken_on: dt.date, patient: Patient,
                    today: dt.date, ref_low: float | None = None, ref_high: float | None = None,
                    unit: str | None = None, ref_units: tuple[str | None, str | None] = (None, None)) -> CheckedResult:
    """A result checked and its value (and reference range) converted to the vocabulary's unit. The range is
    in the value's unit unless `ref_units` gives a limit's own unit (a FHIR referenceRange's)."""
    code = vocabulary.get(test).code
    value_num, value_text = vocabulary.check_value(code, value, taken_on)
    if taken_on > today:
        raise InputError("on", taken_on.isoformat(), "is in the future")
    if taken_on < patient.dob:
        raise InputError("on", taken_on.isoformat(), f"is before the patient's date of birth {patient.dob}")
    from tracker.core.inputs import reference_limits

    ref_low, ref_high = reference_limits(ref_low, ref_high)
    unit = unit.strip() if unit and unit.strip() else None
    if value_num is None:
        if unit is not None:
            raise InputError("unit", _clipped(unit), f"{code} {value_text} on {taken_on}: {code} takes no unit")
        return CheckedResult(code, None, value_text, None, ref_low=ref_low, ref_high=ref_high)
    return convert_numeric(vocabulary.get(code), value_num, unit, taken_on, ref_low, ref_high, ref_units)


class RowValidator:
    """`validate_result` for the many rows of an import. What a value, unit and reference range check to (the
    test, the value converted, the limits) does not depend on the day or the patient, so a combination already
    accepted is not checked and converted again; the checks that read the day and the patient run for every
    row. Only acceptances are remembered: a refusal is worked out afresh, so its message names its own row."""

    def __init__(self, vocabulary: Vocabulary, today: dt.date):
        self.vocabulary, self.today = vocabulary, today
        self.accepted: dict[tuple, CheckedResult] = {}

    def __call__(self, test: str, value: str, taken_on: dt.date, patient, ref_low: float | None = None,
                 ref_high: float | None = None, unit: str | None = None,
                 ref_units: tuple[str | None, str | None] = (None, None)) -> CheckedResult:
        key = (test, value, unit, _exact(ref_low), _exact(ref_high), ref_units)
        checked = self.accepted.get(key)
        if checked is None or taken_on > self.today or taken_on < patient.dob:
            # (a day refused below: validate_result names it in the same words as for any row)
            checked = validate_result(self.vocabulary, test, value, taken_on, patient, self.today, ref_low, ref_high,
                                      unit, ref_units)
            self.accepted[key] = checked
        return checked


def _exact(number: float | None) -> str | None:
    """A limit as a key that tells -0.0 from 0.0 (equal, yet stored and shown differently)."""
    return None if number is None else float(number).hex()


def convert_numeric(test: TestCode, value: float, unit: str | None, taken_on: dt.date,
                    ref_low: float | None, ref_high: float | None,
                    ref_units: tuple[str | None, str | None] = (None, None)) -> CheckedResult:
    """The value (and the laboratory's reference range) in the vocabulary's unit, refused when the unit
    cannot be converted or the converted value is implausible (tracker.core.plausibility). A limit is in the
    value's unit unless `ref_units` names its own (a FHIR referenceRange Quantity's), converted from that one;
    a limit's unit that cannot be converted refuses the result."""
    from tracker.units import UnitProblem, convert, same_unit

    reported_unit = unit or test.unit

    def in_vocabulary_unit(number: float, from_unit: str) -> float:
        if test.scale is None and same_unit(from_unit, test.unit):
            # pint's own answer (tests/test_units.py), without loading pint: the vocabulary's units are
            # readable (tests/test_units.py) and an import of vocabulary-unit rows never needs it.
            return float(f"{number:.10g}")
        return convert(number, from_unit, test.unit, test.molar_mass, test.scale)

    try:
        converted = in_vocabulary_unit(value, reported_unit)
    except UnitProblem as problem:
        shown = _clipped(reported_unit)
        raise InputError("unit", shown, f"{test.code} {value:g} {shown!r} on {taken_on}: {problem}") from None
    if not is_plausible(test, converted):  # only then: which unit was probably meant
        readings = {}
        for candidate in (test.unit, *test.also_reported_in):
            try:
                readings[candidate] = in_vocabulary_unit(value, candidate)
            except UnitProblem:
                continue  # a vocabulary unit pint cannot read: tests/test_units.py keeps the file free of these
        raise InputError("value", f"{value:g}", implausible_reason(test, converted, value, reported_unit, taken_on,
                                                                   readings))
    low, high = (None if limit is None else _limit(limit, (limit_unit or "").strip() or reported_unit, name, test,
                                                    value, reported_unit, taken_on, in_vocabulary_unit)
                 for limit, limit_unit, name in ((ref_low, ref_units[0], "ref_low"), (ref_high, ref_units[1], "ref_high")))
    # A limit given alone must still make a range with the vocabulary's other limit (review row
    # rs-ref-only-low-above: ALT --ref-low 500 alone against a ULN of 40).
    if low is not None and high is None and test.ref_high is not None and low >= test.ref_high:
        raise InputError("ref_low", f"{ref_low:g}", f"must be below the upper limit {test.ref_high:g} {test.unit} "
                                                    "(give --ref-high too)")
    if high is not None and low is None and test.ref_low is not None and high <= test.ref_low:
        raise InputError("ref_high", f"{ref_high:g}", f"must be above the lower limit {test.ref_low:g} {test.unit} "
                                                      "(give --ref-low too)")
    return CheckedResult(test.code, converted, None, test.unit, value, reported_unit, low, high)


def _limit(limit: float, limit_unit: str, name: str, test: TestCode, value: float, reported_unit: str,
           taken_on: dt.date, in_vocabulary_unit) -> float:
    """A reference limit given in `limit_unit`, in the vocabulary's unit; refused by name when not convertible."""
    from tracker.units import UnitProblem

    try:
        return in_vocabulary_unit(limit, limit_unit)
    except UnitProblem as problem:
        shown = _clipped(limit_unit)
        raise InputError(name, f"{limit:g} {shown}", f"{test.code} {value:g} {_clipped(reported_unit)!r} on "
                                                     f"{taken_on}: the reference limit's unit {problem}") from None


def _clipped(unit: str) -> str:
    """A unit as typed, cut short enough for a one-line error (the column holds 40 characters)."""
    return unit if len(unit) <= 40 else unit[:40] + "..."


def record_result(
    clinic: Clinic,
    *,
    mrn: str,
    test: str,
    value: str,
    taken_on: dt.date,
    unit: str | None,
    ref_low: float | None = None,
    ref_high: float | None = None,
    patient: Patient | None = None,
    source_id: str | None = None,
) -> RecordedResult:
    session, library, today, user = clinic.session, clinic.library, clinic.today, clinic.user
    vocabulary = library.vocabulary
    patient = patient or get_patient(session, mrn)
    checked = validate_result(vocabulary, test, value, taken_on, patient, today, ref_low, ref_high, unit)
    from tracker.db.result_ids import next_result_id

    result = LabResult(
        id=next_result_id(session.connection()),  # never a withdrawn result's (db/result_ids.py)
        patient_id=patient.id,
        test=checked.code,
        value_num=checked.value_num,
        value_text=checked.value_text,
        unit=checked.unit or vocabulary.get(checked.code).unit,
        reported_value=checked.reported_value,
        reported_unit=checked.reported_unit,
        taken_on=taken_on,
        ref_low=checked.ref_low,
        ref_high=checked.ref_high,
        created_at=utcnow(),
        source_id=source_id,  # the HL7 message result or FHIR Observation it came from (services/lab_import.py)
    )
    session.add(result)
    session.flush()
    completed = complete_items(session, library, patient, result)
    audit.record(session, user, "result.add", "lab_result", result.id, patient.mrn, None,
                 {**audit.snapshot(result), "completed_items": [i.id for i in completed]})
    from tracker.services.alerts import after_result

    evaluation = after_result(session, library, patient, today, user, clinic.settings)
    return RecordedResult(result, patient, completed, evaluation)


def list_results(clinic: Clinic, mrn: str, test: str | None = None) -> list[dict]:
    """A patient's results, newest first (of one test and, for a panel, its analytes, if given)."""
    session = clinic.session
    patient = get_patient(session, mrn)
    query = select(LabResult).where(LabResult.patient_id == patient.id)
    if test is not None:
        code = clinic.library.vocabulary.get(test).code
        query = query.where(LabResult.test.in_(sorted(clinic.library.vocabulary.members(code))))
    rows = session.exec(query.order_by(LabResult.taken_on.desc(), LabResult.id.desc())).all()
    from tracker.services.coded_rows import result_codes

    return result_codes([result_row(r) for r in rows], clinic.library)


def complete_items(session: Session, library: ProtocolLibrary, patient: Patient, result: LabResult,
                   planned: list[Item] | None = None) -> list[Item]:
    """Record what this result answers, and complete the items it makes whole (rules: core/panels.py).

    A result for a test, or for an analyte of a panel, counts for the baseline items asking for that test
    and, per course, for the one open lab draw `nearest_draw` picks. Each such item adds the result's code to
    what it has received; it is done once nothing it needs is missing (a baseline item: when the gate's
    `baseline_result` says so), else it stays planned and shows as partial.
    """
    vocabulary = library.vocabulary
    taken = result.taken_on
    if planned is not None:  # the patient's planned baseline and lab items, read once for a batch of results
        open_items = sorted((i for i in planned if i.status == "planned"
                             and i.due <= taken + dt.timedelta(days=LAB_EARLY_DAYS)), key=lambda i: i.id)
    else:
        open_items = session.exec(
            select(Item).where(
                Item.patient_id == patient.id,
                Item.status == "planned",
                Item.kind.in_(("baseline", "lab")),
                Item.due <= taken + dt.timedelta(days=LAB_EARLY_DAYS),
            ).order_by(Item.id)
        ).all()

    def baseline_complete(item: Item) -> bool:
        protocol = course_protocol(session, library, session.get(Course, item.course_id))
        return baseline_satisfied_by(session, patient, protocol, item, vocabulary) is not None

    completed, done_labs, touched = items_answered(
        open_items, result.test, taken, vocabulary, baseline_complete,
        lambda tests: latest_other_day(session, patient.id, result.id, tests, vocabulary))
    # A merged draw answers every course whose draw was absorbed into it (tracker/core/merge.py).
    completed += done_labs + absorbed_into(session, [i.id for i in done_labs])
    mark_answered(result.id, result.test, taken, completed, touched, utcnow())
    for item in {id(i): i for i in [*touched, *completed]}.values():
        session.add(item)
    return completed


def latest_other_day(session, patient_id: int, result_id: int, tests, vocabulary: Vocabulary) -> dt.date | None:
    """The latest day of the patient's results counting towards `tests`, other than `result_id` (what
    core/panels.py answers_repeat reads)."""
    wanted = sorted(set().union(*(vocabulary.members(t) for t in tests)))
    return session.execute(select(func.max(LabResult.taken_on)).where(
        LabResult.patient_id == patient_id, LabResult.test.in_(wanted), LabResult.id != result_id)).scalar()


def items_answered(open_items, code: str, taken: dt.date, vocabulary: Vocabulary, baseline_complete,
                   latest_other=None):
    """What a result for `code` taken on `taken` answers among a patient's `open_items` (planned baseline
    and lab items due by `taken` + LAB_EARLY_DAYS): (baseline items it completes, lab draws it completes,
    items it counts for). `baseline_complete(item)` says whether a baseline item is now complete (the
    gate's rule, read on the patient's results with this one); `latest_other(tests)` the latest day of the
    patient's other results for those tests, read for a repeat a result booked (core: answers_repeat; None:
    not asked). Used by `result add` and by the import."""
    completed: list = []
    labs: dict[int, list] = {}
    touched: list = []
    for item in open_items:
        if not counts_towards(codes(item.tests), code, vocabulary):
            continue
        if (latest_other is not None and getattr(item, "origin", "plan") == "threshold"
                and not answers_repeat(item, taken, latest_other(codes(item.tests)))):
            continue  # the same day as (or before) the result that booked the repeat
        if item.kind == "baseline":
            if item.reading is None:  # a later reading waits for a day of its own, not for analytes
                touched.append(item)
            if baseline_complete(item):
                completed.append(item)
            continue
        labs.setdefault(item.course_id, []).append(item)
    done_labs = []
    for draws in labs.values():
        draw = nearest_draw(draws, taken)
        touched.append(draw)
        if is_complete(codes(draw.tests), [*codes(draw.received), code], vocabulary):
            done_labs.append(draw)
    return completed, done_labs, touched


def mark_answered(result_id: int, code: str, taken: dt.date, completed, touched, now: dt.datetime) -> None:
    """Note `code` as received by the items a result counted for, and mark the completed ones done."""
    for item in touched:
        if code not in codes(item.received):
            item.received = join_codes([*codes(item.received), code])
    for item in completed:
        item.status = "done"
        item.done_on = taken
        item.done_note = f"result #{result_id} ({code})"
        item.sequence += 1
        item.last_modified = now
