"""Synthetic clinics at scale, for benchmarks and load tests. Every name, MRN and value is invented.

`synthesise_clinic` fills an empty database with N patients in bulk: rows are built in memory a chunk of
patients at a time and written with SQLAlchemy Core `insert()` (executemany), with ids computed here
rather than read back, so 100,000 patients take well under a minute on SQLite. Plans come from the pure
planner (`plan_course`), stored with the same field conventions as `plan_sync.sync_course`, so every
normal command works on the result. Deterministic for a seed and a `today`: one `random.Random(seed)`
drives everything, including item uids and timestamps (derived from the synthetic dates).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

from sqlalchemy import func, insert, select, text

from tracker.db.tables import (
    Assessment,
    Course,
    CoursePause,
    DoseChange,
    Item,
    LabResult,
    Patient,
    ProtocolSnapshot,
    join_codes,
)
from tracker.errors import ConflictError, InputError
from tracker.core.plan import CourseFacts, Pause, PatientFacts, plan_course
from tracker.core.protocol import Protocol, ProtocolLibrary
from tracker.services import audit
from tracker.services.context import Clinic
from tracker.services.plan_sync import EXTEND_TO

# A practice's mix of systemic therapies, most common first (synthetic weights, not clinical data).
# Drugs missing from the library are skipped, so the mix follows whatever protocols are installed.
DRUG_WEIGHTS = {
    "dupilumab": 34, "methotrexate": 18, "upadacitinib": 8, "abrocitinib": 5, "baricitinib": 3,
    "ciclosporin": 7, "tralokinumab": 6, "lebrikizumab": 4, "azathioprine": 4, "mycophenolate": 4,
    "nemolizumab": 2, "prednisolone": 1, "nbuvb": 2, "apremilast": 1,
}
# Analytes a synthetic baseline panel reports, and (fewer, to keep 100,000 patients fast) a monitoring draw.
PANEL_ANALYTES = {
    "cbc": ("wbc", "neutrophils", "platelets", "hb"),
    "cmp": ("alt", "creatinine", "egfr"),
    "lipids": ("total_cholesterol", "ldl"),
    "bp": ("bp_systolic", "bp_diastolic"),
}
LAB_ANALYTES = {"cbc": ("neutrophils",), "cmp": ("alt", "creatinine"), "lipids": ("ldl",), "bp": ("bp_systolic",)}
# Display ranges for analytes without both reference limits in the vocabulary (synthetic values only).
FALLBACK_RANGE = {
    "egfr": (90, 120), "hdl": (1.0, 2.0), "ldl": (1.5, 3.0), "total_cholesterol": (3.5, 5.0),
    "triglycerides": (0.6, 1.7), "bp_systolic": (105, 135), "bp_diastolic": (62, 85), "weight": (50, 110),
    "height": (150, 192), "eosinophils": (0.05, 0.45),
}
CATEGORICAL_NORMAL = ("negative", "normal", "immune", "up-to-date", "complete", "none")
FIRST = ["Ada", "Ben", "Cara", "Dev", "Elin", "Finn", "Gita", "Hugo", "Iris", "Jon", "Kemi", "Luca", "Mira",
         "Noor", "Owen", "Pia", "Quin", "Rosa", "Sami", "Tara", "Umar", "Vera", "Wes", "Xena", "Yusuf", "Zoe"]
LAST = ["Abbott", "Baker", "Chen", "Dlamini", "Evans", "Fischer", "Garcia", "Hughes", "Ito", "Jones", "Khan",
        "Lopez", "Murphy", "Novak", "Okafor", "Patel", "Quinn", "Rossi", "Singh", "Taylor"]

SPAN_DAYS = 3 * 365  # course starts are spread over the last three years
CLINIC_DAYS = (1, 3)  # courses start and stop at clinic visits, on Tuesdays and Thursdays
OUT_OF_RANGE = 0.03  # share of numeric results outside the reference range
MISSED_RECENT = 0.15  # share of items due in the last 30 days not yet done (they show as overdue)
MISSED_OLD = 0.01  # older items that were never done
CHUNK = 2000  # patients per batch of inserts
UTC = dt.timezone.utc


@dataclass
class SynthSummary:
    patients: int = 0
    courses: int = 0
    items: int = 0
    results: int = 0
    assessments: int = 0
    dose_changes: int = 0
    pauses: int = 0
    seconds: float = 0.0
    drugs: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def stamp(day: dt.date, hour: int = 9) -> dt.datetime:
    """A deterministic aware UTC timestamp for a synthetic event on `day`."""
    return dt.datetime(day.year, day.month, day.day, hour, tzinfo=UTC)


def clinic_day(day: dt.date) -> dt.date:
    """The last clinic day on or before `day` (so equal plans repeat, and the planner runs less)."""
    while day.weekday() not in CLINIC_DAYS:
        day -= dt.timedelta(days=1)
    return day


def uid_prefix(rng: random.Random) -> str:
    """The first 20 hex digits of a version-4-shaped UUID, random per clinic (and seed).

    Synthetic item UIDs are this prefix plus the item id (`item_uid`): unique like uuid4s, but ascending
    in insert order, so the item.uid unique index is appended to instead of updated at random places
    (loading 1.6 million items is about 40% faster that way). Real items get uuid4s (plan_sync.sync_course).
    """
    n = rng.getrandbits(80)
    h = f"{n:020x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[n & 3]}{h[17:20]}"


def item_uid(prefix: str, item_id: int) -> str:
    return f"{prefix}-{item_id:012x}"


class _Ids:
    """Primary keys handed out here; the database is empty, so they start at 1."""

    def __init__(self):
        self.counters = {}

    def __call__(self, table: str) -> int:
        counter = self.counters.get(table)
        if counter is None:
            counter = self.counters[table] = itertools.count(1)
        return next(counter)


# The columns each table's rows are built with, in tuple order. Columns of the table not listed here
# (added to the schema later) are filled with their default, or NULL (see `_insert`).
FIELDS = {
    "patient": ("id", "mrn", "name", "dob", "sex", "weight_kg", "childbearing_potential", "created_at",
                "updated_at"),
    "course": ("id", "patient_id", "drug", "dose", "start_on", "stop_on", "stop_reason", "stop_category",
               "status", "protocol_version", "protocol_hash", "protocol_origin", "planned_through",
               "switched_from_id", "created_at"),
    "dose_change": ("id", "course_id", "changed_on", "dose", "previous_dose", "created_at"),
    "course_pause": ("id", "course_id", "paused_on", "resumed_on", "reason"),
    "item": ("id", "uid", "course_id", "patient_id", "drug", "kind", "due", "tests", "plan_tests", "title",
             "detail", "sources", "gate", "week", "measure", "target", "adjusted", "origin", "status",
             "done_on", "done_note", "sequence", "created_at", "last_modified"),
    "lab_result": ("id", "patient_id", "test", "value_num", "value_text", "unit", "taken_on", "ref_low",
                   "ref_high", "created_at"),
    "assessment": ("id", "patient_id", "assessed_on", "easi", "iga", "itch_nrs", "dlqi", "poem", "created_at"),
}
TABLES = {"patient": Patient, "course": Course, "dose_change": DoseChange, "course_pause": CoursePause,
          "item": Item, "lab_result": LabResult, "assessment": Assessment}


class _Builder:
    """Builds the rows (tuples in FIELDS order) of a run of patients.

    With `sqlite_values`, dates, timestamps and booleans are built directly in the form SQLAlchemy stores
    them in SQLite ('YYYY-MM-DD', 'YYYY-MM-DD HH:MM:SS.ffffff' UTC, 0/1), so the rows can go straight to
    the driver's executemany; otherwise they are Python objects for SQLAlchemy to bind.
    """

    def __init__(self, library: ProtocolLibrary, today: dt.date, rng: random.Random, sqlite_values: bool):
        self.library = library
        self.today = today
        self.rng = rng
        self.sqlite_values = sqlite_values
        self.ids = _Ids()
        self.uid_prefix = uid_prefix(rng)
        self.drugs = {d: w for d, w in DRUG_WEIGHTS.items() if d in library.protocols}
        if not self.drugs:  # a clinic library without any of the usual drugs: use what it has, evenly
            self.drugs = {d: 1 for d in sorted(library.protocols)}
        self.drug_ids = list(self.drugs)
        self.drug_cum = []
        total = 0
        for weight in self.drugs.values():
            total += weight
            self.drug_cum.append(total)
        self.plans: dict[tuple, list] = {}  # plans of courses without changes or pauses repeat a lot
        self.analytes: dict[tuple, tuple] = {}
        self.dates: dict[dt.date, object] = {}
        self.stamps: dict[tuple, object] = {}
        self.specs = {code: self._spec(code) for code in library.vocabulary.tests}
        self.relevant = {p.id: {r.when for r in p.baseline} for p in library.protocols.values()}
        self.reset()

    def reset(self) -> None:
        self.rows = {name: [] for name in FIELDS}

    # -- stored forms ----------------------------------------------------------------------------------

    def d(self, day: dt.date | None):
        if day is None or not self.sqlite_values:
            return day
        value = self.dates.get(day)
        if value is None:
            value = self.dates[day] = day.isoformat()
        return value

    def ts(self, day: dt.date, hour: int):
        key = (day, hour)
        value = self.stamps.get(key)
        if value is None:
            value = stamp(day, hour)
            if self.sqlite_values:
                value = value.strftime("%Y-%m-%d %H:%M:%S.%f")
            self.stamps[key] = value
        return value

    def b(self, flag: bool):
        return int(flag) if self.sqlite_values else flag

    # -- values ----------------------------------------------------------------------------------------

    def _spec(self, code: str) -> tuple:
        """(kind, low, high, unit, ref_low, ref_high, text) for synthetic values of one test code."""
        spec = self.library.vocabulary.tests[code]
        if spec.values:
            normal = next((v for v in CATEGORICAL_NORMAL if v in spec.values), spec.values[0])
            return ("text", 0, 0, None, None, None, normal)
        if not spec.unit:
            return ("text", 0, 0, None, None, None, "done")
        low, high = spec.ref_low, spec.ref_high
        if code in FALLBACK_RANGE and (low is None or high is None or code == "eosinophils"):
            low, high = FALLBACK_RANGE[code]
        if low is None or high is None:
            low, high = 1.0, 10.0
        return ("num", float(low), float(high), spec.unit, spec.ref_low, spec.ref_high, None)

    def pick_drug(self, exclude: str | None = None) -> str:
        while True:
            drug = self.rng.choices(self.drug_ids, cum_weights=self.drug_cum)[0]
            if drug != exclude or len(self.drug_ids) == 1:
                return drug

    def add_results(self, patient_id: int, codes_: tuple, taken: dt.date) -> int:
        """One result per analyte code; returns the first result id."""
        random_ = self.rng.random
        first = 0
        taken_value, created = self.d(taken), self.ts(taken, 15)
        out = self.rows["lab_result"]
        ids = self.ids.counters.setdefault("lab_result", itertools.count(1))
        for code in codes_:
            kind, low, high, unit, ref_low, ref_high, text_value = self.specs[code]
            result_id = next(ids)
            first = first or result_id
            if kind == "num":
                roll = random_()
                if roll < OUT_OF_RANGE / 2 and low > 0:
                    number = low * (0.4 + 0.5 * random_())
                elif roll < OUT_OF_RANGE:
                    number = high * (1.1 + 2.9 * random_())
                else:
                    number = low + (high - low) * random_()
                out.append((result_id, patient_id, code, round(number, 2), None, unit, taken_value, ref_low,
                            ref_high, created))
            else:
                out.append((result_id, patient_id, code, None, text_value, None, taken_value, None, None,
                            created))
        return first

    def add_assessment(self, patient_id: int, on: dt.date, baseline: dict | None) -> tuple[int, dict]:
        rng = self.rng
        if baseline is None:
            scores = {"easi": round(rng.uniform(16, 45), 1), "iga": rng.choice((3, 3, 4)),
                      "itch_nrs": round(rng.uniform(5, 10), 1), "dlqi": rng.randint(10, 26),
                      "poem": rng.randint(12, 28)}
        else:
            # Most patients respond; some do not, which the alert engine should flag at checkpoints.
            gain = rng.uniform(0.5, 0.95) if rng.random() < 0.8 else rng.uniform(0.0, 0.45)
            scores = {"easi": round(baseline["easi"] * (1 - gain), 1),
                      "iga": max(0, round(baseline["iga"] * (1 - gain))),
                      "itch_nrs": round(baseline["itch_nrs"] * (1 - gain), 1),
                      "dlqi": round(baseline["dlqi"] * (1 - gain)), "poem": round(baseline["poem"] * (1 - gain))}
        assessment_id = self.ids("assessment")
        self.rows["assessment"].append((assessment_id, patient_id, self.d(on), scores["easi"], scores["iga"],
                                        scores["itch_nrs"], scores["dlqi"], scores["poem"], self.ts(on, 11)))
        return assessment_id, scores

    # -- patients and courses --------------------------------------------------------------------------

    def patient(self, n: int) -> None:
        rng, today = self.rng, self.today
        patient_id = self.ids("patient")
        sex = "x" if rng.random() < 0.01 else rng.choice("fm")
        dob = today - dt.timedelta(days=rng.randint(18 * 365, 80 * 365))
        cbp = sex == "f" and (today - dob).days < 45 * 365 and rng.random() < 0.85
        created = self.ts(today - dt.timedelta(days=SPAN_DAYS + 30), 9)
        self.rows["patient"].append((patient_id, f"SYN{n:07d}", f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                                     self.d(dob), sex, round(rng.uniform(48, 120), 1), self.b(cbp), created,
                                     created))
        start = clinic_day(today - dt.timedelta(days=rng.randint(0, SPAN_DAYS)))
        drug = self.pick_drug()
        previous = None
        baseline = None
        while True:
            course_id, stop, baseline = self.course(patient_id, sex, cbp, drug, start, previous, baseline)
            if stop is None or rng.random() < 0.4:  # 60% of stops are switches to another drug
                break
            previous, start, drug = course_id, stop, self.pick_drug(exclude=drug)

    def course(self, patient_id: int, sex: str, cbp: bool, drug: str, start: dt.date,
               switched_from: int | None, baseline_scores: dict | None):
        rng, today = self.rng, self.today
        protocol = self.library.protocols[drug]
        course_id = self.ids("course")
        days = (today - start).days
        dose = "standard"
        changes: list[dt.date] = []
        monitored = protocol.monitoring is not None and protocol.monitoring.tracks
        if days > 60 and rng.random() < (0.15 if monitored else 0.03):
            # Dose reviews happen at visits, every four weeks here.
            for _ in range(rng.choice((1, 1, 1, 2))):
                changes.append(start + dt.timedelta(weeks=4 * rng.randint(1, max(1, (days - 1) // 28))))
            changes = sorted({d for d in changes if d < today})
        pauses: list[Pause] = []
        if days > 120 and rng.random() < 0.03:
            paused_on = start + dt.timedelta(days=rng.randint(30, days - 60))
            resumed = paused_on + dt.timedelta(days=rng.randint(14, 56))
            pauses.append(Pause(paused_on, resumed if resumed < today else None))
        elif days > 30 and rng.random() < 0.01:
            pauses.append(Pause(today - dt.timedelta(days=rng.randint(1, 20)), None))
        stop = None
        if days > 70 and rng.random() < 0.22 and not (pauses and pauses[-1].resumed_on is None):
            stop = max(start + dt.timedelta(days=1), clinic_day(start + dt.timedelta(days=rng.randint(56, days - 1))))
            changes = [d for d in changes if d <= stop]
            pauses = [p for p in pauses if p.resumed_on is not None and p.resumed_on <= stop]
        status = "stopped" if stop else ("paused" if pauses and pauses[-1].resumed_on is None else "active")
        for changed_on in changes:
            new_dose = rng.choice(("increased", "reduced")) if dose == "standard" else "standard"
            self.rows["dose_change"].append((self.ids("dose_change"), course_id, self.d(changed_on), new_dose,
                                             dose, self.ts(changed_on, 12)))
            dose = new_dose
        for pause in pauses:
            self.rows["course_pause"].append((self.ids("course_pause"), course_id, self.d(pause.paused_on),
                                              self.d(pause.resumed_on), "synthetic pause"))
        stop_reason = stop_category = None
        if stop:
            stop_category = rng.choice(("failure", "failure", "adverse_event", "other"))
            stop_reason = {"failure": "inadequate response", "adverse_event": "side effects",
                           "other": "patient choice"}[stop_category]
        horizon = EXTEND_TO.after(max(today, start))
        created = self.ts(start, 10)
        self.rows["course"].append((course_id, patient_id, protocol.id, dose, self.d(start), self.d(stop),
                                    stop_reason, stop_category, status, protocol.version, protocol.content_hash,
                                    protocol.origin, self.d(horizon), switched_from, created))
        # Only the facts a protocol's baseline rules look at, so equal plans share a cache entry.
        relevant = self.relevant[protocol.id]
        patient = PatientFacts(sex=sex if "female" in relevant else None,
                               childbearing_potential=cbp and "childbearing_potential" in relevant)
        facts = CourseFacts(start=start, stop=stop, dose_changes=tuple(changes), pauses=tuple(pauses),
                            patient=patient)
        baseline_scores = self.items(protocol, facts, horizon, course_id, patient_id, created, baseline_scores)
        return course_id, stop, baseline_scores

    def plan(self, protocol: Protocol, facts: CourseFacts, horizon: dt.date) -> list[tuple]:
        """(planned item, constant part of its row) pairs, from the planner; cached, since plain courses
        repeat a lot. A stopped course's plan is its unstopped plan up to the stop date (the planner drops
        everything after a stop; tests/test_synth.py checks the two agree)."""
        stop = facts.stop
        if stop is not None:
            facts = replace(facts, stop=None)
        key = (protocol.id, facts, horizon)
        plan = self.plans.get(key)
        if plan is None:
            plan = self.plans[key] = [(p, self.planned_row(p, protocol.id))
                                      for p in plan_course(protocol, facts, horizon)]
        if stop is not None:
            return [pair for pair in plan if pair[0].due <= stop]
        return plan

    def planned_row(self, planned, protocol_id: str) -> tuple:
        """The constant part of an item row, as sync_course stores a planned item."""
        tests = join_codes(planned.tests)
        return (protocol_id, planned.kind, self.d(planned.due), tests, tests, planned.title, planned.detail,
                join_codes(planned.sources), planned.gate, planned.week, planned.measure, planned.target,
                self.b("adjusted for this course" in (planned.detail or "")), "plan")

    def items(self, protocol, facts, horizon, course_id, patient_id, created, baseline_scores):
        rng, today = self.rng, self.today
        random_ = rng.random
        start = facts.start
        out = self.rows["item"]
        item_ids = self.ids.counters.setdefault("item", itertools.count(1))
        for planned, constant in self.plan(protocol, facts, horizon):
            due = planned.due
            if due > today:  # the common case: planned, untouched
                item_id = next(item_ids)
                out.append((item_id, item_uid(self.uid_prefix, item_id), course_id, patient_id, *constant,
                            "planned", None, None, 0, created, created))
                continue
            status, done_on, done_note, sequence, modified = "planned", None, None, 0, created
            kind = planned.kind
            if kind == "baseline":
                recent = (today - due).days <= 30
                if planned.gate == "hard" or random_() >= (MISSED_RECENT if recent else MISSED_OLD):
                    taken = min(today, start - dt.timedelta(days=2 + int(random_() * 20)))
                    test = planned.tests[0]
                    result_id = self.add_results(patient_id, PANEL_ANALYTES.get(test, (test,)), taken)
                    status, done_on, done_note = "done", taken, f"result #{result_id}"
            elif kind == "lab" and due < today:
                missed = MISSED_RECENT if (today - due).days <= 30 else MISSED_OLD
                if random_() >= missed:
                    taken = min(today, due + dt.timedelta(days=int(random_() * 8) - 3))
                    analytes = self.lab_analytes(planned.tests)
                    result_id = self.add_results(patient_id, analytes, taken)
                    status, done_on, done_note = "done", taken, f"result #{result_id} ({analytes[0]})"
            elif kind == "checkpoint" and due < today and random_() >= (
                    MISSED_RECENT if (today - due).days <= 30 else MISSED_OLD):
                if baseline_scores is None:
                    _, baseline_scores = self.add_assessment(patient_id, start, None)
                on = min(today, due + dt.timedelta(days=int(random_() * 11) - 3))
                assessment_id, _ = self.add_assessment(patient_id, on, baseline_scores)
                status, done_on, done_note = "done", on, f"assessment #{assessment_id}"
            if status == "done":
                sequence, modified = 1, self.ts(done_on, 16)
            item_id = next(item_ids)
            out.append((item_id, item_uid(self.uid_prefix, item_id), course_id, patient_id, *constant, status,
                        self.d(done_on), done_note, sequence, created, modified))
        return baseline_scores

    def lab_analytes(self, tests: tuple) -> tuple:
        analytes = self.analytes.get(tests)
        if analytes is None:
            analytes = self.analytes[tests] = tuple(a for t in tests for a in LAB_ANALYTES.get(t, (t,)))
        return analytes


def _produce(library, today, seed, patients, chunk, sqlite_values, send) -> None:
    """Build every chunk in order with one random stream and hand each to `send`."""
    builder = _Builder(library, today, random.Random(seed), sqlite_values)
    for first in range(1, patients + 1, chunk):
        for n in range(first, min(patients, first + chunk - 1) + 1):
            builder.patient(n)
        send((min(patients, first + chunk - 1), builder.rows))
        builder.reset()
    send(None)


def _chunks(library, today, seed, patients, chunk, sqlite_values, background: bool):
    """Yield (patients done, rows) chunks; with `background`, built in a forked process meanwhile."""
    if not background:
        yield from _lazy(library, today, seed, patients, chunk, sqlite_values)
        return
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    queue = ctx.Queue(maxsize=3)
    worker = ctx.Process(target=_produce, args=(library, today, seed, patients, chunk, sqlite_values, queue.put),
                         daemon=True)
    worker.start()
    try:
        while True:
            item = queue.get()
            if item is None:
                break
            yield item
        worker.join()
        if worker.exitcode:
            raise RuntimeError(f"synth: the row builder process failed (exit {worker.exitcode})")
    finally:
        if worker.is_alive():
            worker.kill()
            worker.join()


def _lazy(library, today, seed, patients, chunk, sqlite_values):
    builder = _Builder(library, today, random.Random(seed), sqlite_values)
    for first in range(1, patients + 1, chunk):
        for n in range(first, min(patients, first + chunk - 1) + 1):
            builder.patient(n)
        yield min(patients, first + chunk - 1), builder.rows
        builder.reset()


def _insert_plan(conn, name: str) -> tuple[str | None, tuple, list[str]]:
    """(driver SQL for SQLite or None, constant values for the columns not built here, column names)."""
    table = TABLES[name].__table__
    built = FIELDS[name]
    extra, suffix = [], []
    for column in table.columns:
        if column.name in built:
            continue
        default = column.default.arg if column.default is not None and column.default.is_scalar else None
        if default is None and not column.nullable:
            raise RuntimeError(f"synth: column {name}.{column.name} is required and has no default")
        extra.append(column.name)
        suffix.append(int(default) if isinstance(default, bool) and conn.dialect.name == "sqlite" else default)
    columns = [*built, *extra]
    sql = None
    if conn.dialect.name == "sqlite":
        quote = conn.dialect.identifier_preparer.quote
        sql = (f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in columns)}) "
               f"VALUES ({', '.join('?' for _ in columns)})")
    return sql, tuple(suffix), columns


def synthesise_clinic(clinic: Clinic, patients: int, seed: int = 1, progress=None, chunk: int = CHUNK,
                      background: bool | None = None) -> SynthSummary:
    """Fill an empty database with `patients` synthetic patients; refuses a database that has patients.

    SQLite: rows go to the driver's executemany in their stored form (the INSERT names the table's
    columns, as Core's insert() would). PostgreSQL: Core `insert()` executemany with Python values.
    Large clinics are built in a forked process while this one inserts (`background`, default for more
    than four chunks); the rows are the same either way.
    """
    session, library, today, user = clinic.session, clinic.library, clinic.today, clinic.user
    if patients < 1:
        raise InputError("patients", patients, "must be at least 1")
    began = time.perf_counter()
    conn = session.connection()
    if conn.execute(select(Patient.id).limit(1)).first() is not None:
        raise ConflictError("db: the database already has patients; synth needs an empty one")
    sqlite_values = conn.dialect.name == "sqlite"
    if background is None:
        background = patients > 4 * chunk
    plans = {name: _insert_plan(conn, name) for name in FIELDS}
    drugs = [d for d in DRUG_WEIGHTS if d in library.protocols] or sorted(library.protocols)
    _snapshots(conn, [library.protocols[d] for d in drugs], today)
    deferred = _defer_sqlite_indexes(conn) if sqlite_values else []
    counts = {name: 0 for name in FIELDS}
    for done, rows in _chunks(library, today, seed, patients, chunk, sqlite_values, background):
        for name in FIELDS:  # parents before children
            batch = rows[name]
            if not batch:
                continue
            sql, suffix, columns = plans[name]
            if suffix:
                batch = [row + suffix for row in batch]
            if sql is not None:
                conn.exec_driver_sql(sql, batch)
            else:
                conn.execute(insert(TABLES[name].__table__), [dict(zip(columns, row)) for row in batch])
            counts[name] += len(batch)
        if progress:
            progress(done, patients)
    for sql in deferred:
        conn.exec_driver_sql(sql)
    if conn.dialect.name == "postgresql":
        # Ids were given explicitly, so move each table's sequence past them.
        for name in FIELDS:
            conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                              f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {name}), false)"))
    summary = SynthSummary(
        patients=counts["patient"], courses=counts["course"], items=counts["item"],
        results=counts["lab_result"], assessments=counts["assessment"], dose_changes=counts["dose_change"],
        pauses=counts["course_pause"],
    )
    summary.drugs = dict(conn.execute(select(Course.drug, func.count()).group_by(Course.drug)
                                      .order_by(func.count().desc(), Course.drug)).all())
    summary.seconds = round(time.perf_counter() - began, 2)
    after = {k: v for k, v in summary.as_dict().items() if k != "seconds"}
    audit.record(session, user, "clinic.synth", "clinic", None, None, None,
                 {**after, "seed": seed, "today": today.isoformat()})
    return summary


# Index columns whose values arrive in ascending order during the load (rows are built patient by patient,
# course by course): such an index is appended to, so keeping it live costs little, and the work happens
# while this process waits for the row builder anyway. Others are rebuilt once, sorted, after the load.
LOAD_ORDERED = {"patient_id", "course_id"}


def _defer_sqlite_indexes(conn) -> list[str]:
    """SQLite bulk load: a large page cache for this connection, and the secondary indexes of the loaded
    tables that would be updated at random places (not led by a load-ordered column) dropped now and
    re-created (from their stored SQL) after the load, inside the same transaction: one sorted index build
    is several times faster than a million random B-tree inserts. Returns the CREATE INDEX statements to
    run afterwards."""
    conn.exec_driver_sql("PRAGMA cache_size=-262144")  # 256 MiB, this connection only
    # pysqlite opens the transaction at the first DML statement; make sure DDL below is inside it, so a
    # failed synth rolls the dropped indexes back too.
    conn.exec_driver_sql("DELETE FROM patient WHERE 0")
    names = ", ".join(f"'{name}'" for name in FIELDS)
    indexes = conn.exec_driver_sql(
        f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND tbl_name IN ({names})"
    ).all()
    deferred = []
    for name, sql in indexes:
        first = conn.exec_driver_sql(f'PRAGMA index_info("{name}")').first()
        if first is not None and first[2] in LOAD_ORDERED:
            continue
        conn.exec_driver_sql(f'DROP INDEX "{name}"')
        deferred.append(sql)
    return deferred


@contextmanager
def bulk_load_journal(engine):
    """SQLite: a rollback journal instead of WAL while a synthetic clinic loads, then WAL again.

    A transaction that writes a gigabyte of new pages goes through the WAL once and is then copied into
    the database file by the checkpoint; a rollback journal only records the few pre-existing pages it
    changes, so the commit writes the data once (about 5 s less at 100,000 patients). The load is still
    one transaction, rolled back on failure. Changing the journal mode needs no other connection to the
    file; if there is one, the mode stays WAL and the load is just slower. PostgreSQL: nothing to do.
    """
    if engine.dialect.name != "sqlite":
        yield
        return
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA journal_mode=DELETE")
    try:
        yield
    finally:
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA journal_mode=WAL")


def _snapshots(conn, protocols: list[Protocol], today: dt.date) -> None:
    """One ProtocolSnapshot per protocol used, as calendar.remember_protocol stores them."""
    existing = set(conn.execute(select(ProtocolSnapshot.content_hash)).scalars())
    rows = [
        {"content_hash": p.content_hash, "protocol_id": p.id, "version": p.version, "origin": p.origin,
         "content": json.dumps(p.model_dump(by_alias=True, mode="json"), sort_keys=True),
         "created_at": stamp(today - dt.timedelta(days=SPAN_DAYS + 30))}
        for p in protocols if p.content_hash not in existing
    ]
    if rows:
        conn.execute(insert(ProtocolSnapshot.__table__), rows)
