"""Recording many checked results at once (`result import`; HL7/FHIR imports can sit beside the CSV reader
and hand their rows here): what `record_result` does for one result, set-shaped.

Rows are recorded oldest first (by day taken, then by their order in the file), as `result add` one by one
would: each result counts for the items it answers (services/results.py: items_answered, the same rule as
`result add`), is audited (`result.add`), and its patient is evaluated on the rules a result moves.
Instead of once per row, the work is done per *round*: a patient's results go into one round until a test
repeats, which starts the patient's next round. A round is inserted in bulk (tracker/db/bulk.py), its
items are completed in memory and updated together (tracker/db/bulk.update_rows), and its patients are evaluated together
(one `evaluate` over the set, as the nightly job does, in chunks). A file with one draw per patient is one
round; every result is still its test's latest when its patient is evaluated, so a result that a later one
of the same file supersedes raises its alert as it would have.

What differs from one `result add` per row, by design: within a round, a patient is evaluated once on all
of the round's results together (a draw's analytes at once), so an overdue alert about a partial draw that
the round completes is resolved without first naming each analyte still missing, and a follow-up booked by
the evaluation is there for the patient's next round, not for the next row of the same round.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select

from tracker.core.audit_chain import reusable_encoder
from tracker.core.gates import baseline_result
from tracker.core.panels import LAB_EARLY_DAYS
from tracker.dates import utcnow
from tracker.db.rows import plain_rows
from tracker.db.tables import AuditEvent, Course, Item, LabResult, codes
from tracker.services import audit
from tracker.services.context import Clinic
from tracker.services.results import CheckedResult, items_answered, latest_other_day, mark_answered

PATIENTS_PER_CHUNK = 2000  # patients recorded and evaluated together (evaluate loads charts per 500)
IN_CHUNK = 900  # ids per IN (...) (SQLite's variable limit on old builds is 999)
ITEM_COLUMNS = ("id", "patient_id", "course_id", "kind", "tests", "received", "reading", "due", "status",
                "sequence", "merged_into_id", "done_on", "done_note", "last_modified", "origin")
CHANGED = ("received", "status", "done_on", "done_note", "sequence", "last_modified")
EVALUATED_KINDS = ("threshold", "gate", "overdue")  # what a landing result moves (services/alerts.after_result)


@dataclass(frozen=True)
class ResultToRecord:
    """A checked result for a patient (`patient`: id, mrn, sex, childbearing, dob) and where it came from."""

    line: int  # where it came from in its file (a CSV line, a lab file's result number): unique in a batch
    patient: object
    checked: CheckedResult
    taken_on: dt.date
    source_id: str | None = None  # the HL7 message result or FHIR Observation it came from (lab_result.source_id)
    reported_at: dt.datetime | None = None  # when the laboratory reported it (lab_result.reported_at)
    # A laboratory's correction of a result tracker never had (HL7 OBX-11 C), stored as new: its `result.add`
    # audit says so (`"corrects": true`), so that its original arriving later is known as superseded.
    corrects: bool = False


@dataclass(frozen=True)
class Correction:
    """A checked result that replaces the values of a result on record (`result_id`) or of one recorded
    earlier in the same batch (`row`: its `ResultToRecord.line`): a laboratory's correction
    (tracker/core/lab_corrections.py)."""

    result: ResultToRecord
    result_id: int | None = None
    row: int | None = None


@dataclass
class OpenItem:
    """The columns of a planned baseline or lab item that recording results reads and changes."""

    id: int
    patient_id: int
    course_id: int
    kind: str
    tests: str
    received: str | None
    reading: int | None
    due: dt.date
    status: str
    sequence: int
    merged_into_id: int | None
    done_on: dt.date | None
    done_note: str | None
    last_modified: dt.datetime | None
    origin: str = "plan"  # plan | threshold | partial (a repeat a result booked: core/panels.py answers_repeat)


@dataclass
class BulkRecorded:
    recorded: int = 0
    completed: int = 0  # items completed
    evaluations: list = field(default_factory=list)  # EvaluationSummary per chunk evaluated
    ids: dict[int, int] = field(default_factory=dict)  # ResultToRecord.line -> the new result's id
    corrected: int = 0  # results whose values a correction replaced


def rounds(rows: list[ResultToRecord]) -> list[list[ResultToRecord]]:
    """`rows` (in recording order) split so that no round holds two results of one test for one patient."""
    out: list[list[ResultToRecord]] = []
    current: dict[int, tuple[int, set]] = {}  # patient id -> (its round, tests in it)
    for row in rows:
        number, tests = current.get(row.patient.id, (0, set()))
        if row.checked.code in tests:
            number, tests = number + 1, set()
        tests.add(row.checked.code)
        current[row.patient.id] = (number, tests)
        while len(out) <= number:
            out.append([])
        out[number].append(row)
    return out


def record_in_bulk(clinic: Clinic, rows: list[ResultToRecord],
                   progress: Callable[[int], None] | None = None) -> BulkRecorded:
    """Record `rows` (sorted oldest first), complete the items they answer, audit and evaluate."""
    done = BulkRecorded()
    for round_rows in rounds(rows):
        by_patient: dict[int, list[ResultToRecord]] = {}
        for row in round_rows:
            by_patient.setdefault(row.patient.id, []).append(row)
        patient_ids = list(by_patient)
        for start in range(0, len(patient_ids), PATIENTS_PER_CHUNK):
            chunk = set(patient_ids[start:start + PATIENTS_PER_CHUNK])
            part = [row for row in round_rows if row.patient.id in chunk]
            _record_chunk(clinic, part, done)
            if progress is not None:
                progress(len(part))
    return done


def _record_chunk(clinic: Clinic, rows: list[ResultToRecord], done: BulkRecorded) -> None:
    from tracker.db.bulk import bulk_insert, bulk_insert_returning_ids, update_rows
    from tracker.services.alerts import evaluate_clinic

    session, library, vocabulary = clinic.session, clinic.library, clinic.library.vocabulary
    session.flush()
    conn = session.connection()
    now = utcnow()
    values = [_result_values(row, vocabulary, now) for row in rows]
    from tracker.db.result_ids import next_result_id

    first = next_result_id(conn)
    if first is not None:  # never a withdrawn result's id (db/result_ids.py); the others follow it
        values[0] = {**values[0], "id": first}
    ids = bulk_insert_returning_ids(conn, LabResult.__table__, values)
    patient_ids = sorted({row.patient.id for row in rows})
    items = _open_items(session, patient_ids, max(row.taken_on for row in rows))
    absorbed = _absorbed(session, [i.id for group in items.values() for i in group if i.kind == "lab"])
    baseline_check = _BaselineCheck(clinic)
    changed: dict[int, OpenItem] = {}
    events = []
    empty = dict.fromkeys(LabResult.model_fields)
    encode = reusable_encoder(json.JSONEncoder(sort_keys=True, default=audit.json_default))  # (its .encode)
    created_at = now.isoformat()
    days: dict[dt.date, str] = {}  # the few days of a batch, as the encoder's default would write them
    for row, result_id, result in zip(rows, ids, values):
        done.ids[row.line] = result_id
        code, taken = row.checked.code, row.taken_on
        completed = []
        planned = items.get(row.patient.id)
        if planned:  # (most patients have no planned baseline or lab item due: nothing to answer)
            within = taken + dt.timedelta(days=LAB_EARLY_DAYS)
            open_items = [i for i in planned if i.status == "planned" and i.due <= within]
            if open_items:
                completed, done_labs, touched = items_answered(
                    open_items, code, taken, vocabulary,
                    lambda item, row=row, result_id=result_id: baseline_check(row.patient, item, result_id),
                    lambda tests, row=row, result_id=result_id: latest_other_day(
                        session, row.patient.id, result_id, tests, vocabulary))
                completed += done_labs + [a for lab in done_labs for a in absorbed.get(lab.id, ())
                                          if a.status == "cancelled"]
                mark_answered(result_id, code, taken, completed, touched, now)
                changed.update((i.id, i) for i in [*touched, *completed])
                done.completed += len(completed)
        events.append({"at": now, "user": clinic.user, "action": "result.add", "entity": "lab_result",
                       "entity_id": result_id, "mrn": row.patient.mrn, "before": None,
                       "after": encode({**empty, **result, "id": result_id, "created_at": created_at,
                                        "taken_on": days.get(taken) or days.setdefault(taken, taken.isoformat()),
                                        "completed_items": [i.id for i in completed],
                                        **({"corrects": True} if row.corrects else {})})})
    # One UPDATE ... FROM unnest(...) on PostgreSQL, an executemany elsewhere (tracker/db/bulk.py).
    update_rows(conn, Item.__table__, [{"id": i.id, **{name: getattr(i, name) for name in CHANGED}}
                                       for i in changed.values()])
    session.flush()  # ORM audit rows pending go first in the chain
    audit.link_rows(conn, events)  # their places in the audit chain (tracker/core/audit_chain.py)
    bulk_insert(conn, AuditEvent.__table__, events)
    _sync_loaded_items(session, changed)
    done.recorded += len(rows)
    done.evaluations.append(evaluate_clinic(session, library, clinic.today, clinic.settings,
                                            patient_ids=patient_ids, kinds=EVALUATED_KINDS, user=clinic.user))


CORRECTED_FIELDS = ("value_num", "value_text", "unit", "reported_value", "reported_unit", "ref_low", "ref_high")


def corrected_values(row: ResultToRecord, vocabulary) -> dict:
    """The values of a result that a correction replaces (its test, patient and day stay)."""
    values = _result_values(row, vocabulary, None)
    return {name: values[name] for name in CORRECTED_FIELDS}


def replace_results(clinic: Clinic, corrections: list[Correction], done: BulkRecorded) -> None:
    """Apply `corrections` in order: the result each replaces takes its values and source id (the one it
    carried is kept in replaced_lab_source, so its first message stays on record), audited as
    `result.correct` with before and after; then the patients are evaluated again, as after a new result.
    The result still answers the items it answered (same test, same day)."""
    from tracker.core.lab_corrections import latest_report
    from tracker.db.tables import ReplacedLabSource
    from tracker.services.alerts import evaluate_clinic

    if not corrections:
        return
    session, vocabulary = clinic.session, clinic.library.vocabulary
    now = utcnow()
    patient_ids = set()
    for correction in corrections:
        row = correction.result
        result_id = correction.result_id if correction.result_id is not None else done.ids[correction.row]
        result = session.get(LabResult, result_id)
        before = audit.snapshot(result)
        for name, value in corrected_values(row, vocabulary).items():
            setattr(result, name, value)
        result.reported_at = latest_report(row.reported_at, result.reported_at)
        if row.source_id != result.source_id:
            if result.source_id is not None:
                session.add(ReplacedLabSource(source_id=result.source_id, result_id=result.id, replaced_at=now))
            result.source_id = row.source_id
        session.add(result)
        audit.record(session, clinic.user, "result.correct", "lab_result", result.id, row.patient.mrn, before,
                     audit.snapshot(result))
        patient_ids.add(row.patient.id)
        done.corrected += 1
    session.flush()
    done.evaluations.append(evaluate_clinic(session, clinic.library, clinic.today, clinic.settings,
                                            patient_ids=sorted(patient_ids), kinds=EVALUATED_KINDS, user=clinic.user))


def _sync_loaded_items(session, changed: dict[int, OpenItem]) -> None:
    """Items the session already holds (loaded by an earlier chunk's evaluation) take the values just written
    beneath it, as if read afresh."""
    from sqlalchemy.orm.attributes import set_committed_value

    for key, obj in list(session.identity_map.items()):
        if isinstance(obj, Item) and obj.id in changed:
            for name in CHANGED:
                set_committed_value(obj, name, getattr(changed[obj.id], name))


def _result_values(row: ResultToRecord, vocabulary, now: dt.datetime) -> dict:
    """The lab_result row `record_result` would store."""
    checked = row.checked
    return {"patient_id": row.patient.id, "test": checked.code, "value_num": checked.value_num,
            "value_text": checked.value_text, "unit": checked.unit or vocabulary.get(checked.code).unit,
            "reported_value": checked.reported_value, "reported_unit": checked.reported_unit,
            "taken_on": row.taken_on, "ref_low": checked.ref_low, "ref_high": checked.ref_high, "created_at": now,
            "source_id": row.source_id, "reported_at": row.reported_at}


def _in_chunks(ids):
    ids = list(ids)
    for start in range(0, len(ids), IN_CHUNK):
        yield ids[start:start + IN_CHUNK]


def _open_items(session, patient_ids: list[int], latest: dt.date) -> dict[int, list[OpenItem]]:
    """The patients' planned baseline and lab items a result taken by `latest` may count for, by id."""
    table = Item.__table__
    columns = [table.c[name] for name in ITEM_COLUMNS]
    out: dict[int, list[OpenItem]] = {}
    for chunk in _in_chunks(patient_ids):
        query = (select(*columns).where(table.c.patient_id.in_(chunk), table.c.status == "planned",
                                        table.c.kind.in_(("baseline", "lab")),
                                        table.c.due <= latest + dt.timedelta(days=LAB_EARLY_DAYS))
                 .order_by(table.c.id))
        for values in plain_rows(session, query):
            item = OpenItem(*values)
            out.setdefault(item.patient_id, []).append(item)
    for group in out.values():
        group.sort(key=lambda i: i.id)
    return out


def _absorbed(session, host_ids: list[int]) -> dict[int, list[OpenItem]]:
    """Draws merged into these hosts (cancelled while merged), by host: completed with their host."""
    table = Item.__table__
    columns = [table.c[name] for name in ITEM_COLUMNS]
    out: dict[int, list[OpenItem]] = {}
    for chunk in _in_chunks(host_ids):
        query = select(*columns).where(table.c.merged_into_id.in_(chunk), table.c.status == "cancelled")
        for values in plain_rows(session, query):
            item = OpenItem(*values)
            out.setdefault(item.merged_into_id, []).append(item)
    return out


class _BaselineCheck:
    """Whether a baseline item is complete on the patient's results up to a given result (those recorded
    before it, as `result add` would have seen them): the gate's own rule (core/gates.py: baseline_result)."""

    def __init__(self, clinic: Clinic):
        self.clinic = clinic
        self.charts: dict[int, object] = {}
        self.protocols: dict[int, object] = {}

    def __call__(self, patient, item: OpenItem, up_to_result: int) -> bool:
        from tracker.db.charts import results_chart
        from tracker.db.snapshots import course_protocol

        session, library = self.clinic.session, self.clinic.library
        if patient.id not in self.charts:
            self.charts[patient.id] = results_chart(session, patient)
        if item.course_id not in self.protocols:
            self.protocols[item.course_id] = course_protocol(session, library, session.get(Course, item.course_id))
        chart = self.charts[patient.id]
        so_far = dataclasses.replace(chart, results={test: kept for test, results in chart.results.items()
                                                     if (kept := tuple(r for r in results if r.id <= up_to_result))})
        return baseline_result(so_far, self.protocols[item.course_id], codes(item.tests), item.due,
                               library.vocabulary, item.reading) is not None
