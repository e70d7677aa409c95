"""What a synthetic clinic holds: the seeded row builder (patients, courses, dose changes, pauses, planned
items, lab results and assessments), pure apart from its one `random.Random`.

`Builder` turns patient numbers into row tuples in `params.FIELDS` order, with primary keys and item
UIDs computed here; `build_chunks` runs it over a whole clinic a chunk of patients at a time. Nothing
here touches a database: `load` writes the rows.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from dataclasses import replace

from tracker.core.gates import may_conceive
from tracker.core.plan import CourseFacts, PatientFacts, Pause, plan_course
from tracker.core.protocol import Protocol, ProtocolLibrary
from tracker.core.worklist import ENDED_UNDONE_NOTE, course_has_ended
from tracker.db.tables import join_codes
from tracker.services.plan_sync import EXTEND_TO
from tracker.services.synth.params import (
    CATEGORICAL_NORMAL,
    CLINIC_DAYS,
    CV,
    DEFAULT_CV,
    DRUG_WEIGHTS,
    FALLBACK_RANGE,
    FIELDS,
    CLINICIANS,
    FIRST,
    LAB_ANALYTES,
    LAST,
    MISSED_OLD,
    MISSED_RECENT,
    OUT_OF_RANGE,
    OVER_LIMIT,
    PANEL_ANALYTES,
    SPAN_DAYS,
    stamp,
)


# The sum of two uniforms minus 1 has standard deviation sqrt(1/6); scaled by this it has 1.
TRIANGULAR_SD_SCALE = 6 ** 0.5
HALF_OUT_OF_RANGE = OUT_OF_RANGE / 2  # below high ones, a numeric result this often falls below its range


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


class Builder:
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
        self.result_ids = self.ids.counters.setdefault("lab_result", itertools.count(1))
        self.reset()

    def reset(self) -> None:
        self.rows = {name: [] for name in FIELDS}
        self.set_points: dict[str, float] = {}  # the current patient's, per analyte

    # -- stored forms ----------------------------------------------------------------------------------

    def d(self, day: dt.date | None):
        # One object per day, also as a date (PostgreSQL): the rows cross to the loading process pickled,
        # and pickle writes an object it has seen in the chunk as a short reference.
        if day is None:
            return day
        value = self.dates.get(day)
        if value is None:
            value = self.dates[day] = day.isoformat() if self.sqlite_values else day
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
        """(kind, low, high, unit, ref_low, ref_high, text, cv) for synthetic values of one test code."""
        spec = self.library.vocabulary.tests[code]
        if spec.values:
            normal = next((v for v in CATEGORICAL_NORMAL if v in spec.values), spec.values[0])
            return ("text", 0, 0, None, None, None, normal, None)
        if not spec.unit:
            return ("text", 0, 0, None, None, None, "done", None)
        low, high = spec.ref_low, spec.ref_high
        if code in FALLBACK_RANGE and (low is None or high is None or code == "eosinophils"):
            low, high = FALLBACK_RANGE[code]
        if low is None or high is None:
            low, high = 1.0, 10.0
        return ("num", float(low), float(high), spec.unit, spec.ref_low, spec.ref_high, None, CV.get(code, DEFAULT_CV))

    def pick_drug(self, exclude: str | None = None, unlimited: bool = False) -> str:
        for _ in range(50):
            drug = self.rng.choices(self.drug_ids, cum_weights=self.drug_cum)[0]
            if unlimited and self.library.protocols[drug].limits is not None:
                continue
            if drug != exclude or len(self.drug_ids) == 1:
                return drug
        return drug

    def add_results(self, patient_id: int, codes_: tuple, taken: dt.date) -> int:
        """One result per analyte code; returns the first result id."""
        # The hottest loop of a large clinic (four million results at 100,000 patients): names bound
        # locally, the spec read once per code; the random draws are the same, in the same order.
        random_ = self.rng.random
        set_points = self.set_points
        specs = self.specs
        taken_value, created = self.d(taken), self.ts(taken, 15)
        append = self.rows["lab_result"].append
        ids = self.result_ids
        first = 0
        for code in codes_:
            _kind, low, high, unit, ref_low, ref_high, text_value, cv = specs[code]
            result_id = next(ids)
            if not first:
                first = result_id
            if text_value is None:
                roll = random_()
                if roll < HALF_OUT_OF_RANGE and low > 0:
                    number = low * (0.4 + 0.5 * random_())
                elif roll < OUT_OF_RANGE:
                    number = high * (1.1 + 2.9 * random_())
                else:
                    point = set_points.get(code)
                    if point is None:
                        point = set_points[code] = low + (high - low) * (0.1 + 0.8 * random_())
                    # a triangular deviate of sd `cv` (two uniforms: cheaper than random.gauss, same spread)
                    deviate = (random_() + random_() - 1.0) * TRIANGULAR_SD_SCALE * cv
                    number = point * (1 + deviate)
                    number = high if number > high else (low if number < low else number)
                value = round(number, 2)
                append((result_id, patient_id, code, value, None, unit, taken_value, ref_low,
                        ref_high, created, value, unit))  # reported in the vocabulary's unit
            else:
                append((result_id, patient_id, code, None, text_value, None, taken_value, None, None,
                        created, None, None))
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
        self.set_points = {}
        sex = "x" if rng.random() < 0.01 else rng.choice("fm")
        dob = today - dt.timedelta(days=rng.randint(18 * 365, 80 * 365))
        # Recorded childbearing potential: most younger women "yes", some "no"; everyone else never asked.
        young = sex == "f" and (today - dob).days < 45 * 365
        childbearing = ("yes" if rng.random() < 0.85 else "no") if young else "unknown"
        created = self.ts(today - dt.timedelta(days=SPAN_DAYS + 30), 9)
        self.rows["patient"].append((patient_id, f"SYN{n:07d}", f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                                     self.d(dob), sex, round(rng.uniform(48, 120), 1), childbearing, created,
                                     created, CLINICIANS[n % len(CLINICIANS)]))
        start = clinic_day(today - dt.timedelta(days=rng.randint(0, SPAN_DAYS)))
        drug = self.pick_drug()
        previous = None
        baseline = None
        while True:
            cbp = may_conceive(sex, childbearing, dob, start)
            course_id, stop, baseline = self.course(patient_id, sex, cbp, drug, start, previous, baseline)
            limited = self.library.protocols[drug].limits is not None
            # 60% of stops are switches to another drug; after a time-limited course (a ciclosporin or
            # steroid bridge, a phototherapy course) 80%, to a drug without a maximum.
            if stop is None or rng.random() < (0.2 if limited else 0.4):
                break
            previous, start = course_id, stop
            drug = self.pick_drug(exclude=drug, unlimited=limited)

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
        stop, completed = None, False
        limit_days = protocol.limits.max_duration.approx_days() if protocol.limits is not None else None
        if limit_days is not None and days > limit_days // 2:
            # A course with a maximum ends by it (the clinic switches or stops); a few run over.
            if rng.random() < OVER_LIMIT:
                last = limit_days + rng.randint(1, 28)
            else:
                last = rng.randint(max(1, limit_days // 2), limit_days)
            if start + dt.timedelta(days=last) < today:
                stop, completed = start + dt.timedelta(days=last), True
                pauses = []
                changes = [d for d in changes if d <= stop]
        elif days > 70 and rng.random() < 0.22 and not (pauses and pauses[-1].resumed_on is None):
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
        if completed:  # a bridging or time-limited course ends as planned
            stop_category, stop_reason = "other", "course completed"
        elif stop:
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
            plan = [(p, self.planned_row(p, protocol.id)) for p in plan_course(protocol, facts, horizon)]
            # Only plain courses repeat: a course with dose changes or pauses has facts of its own, and
            # keeping its plan would make the cache grow with the clinic (gigabytes at 1,000,000 patients).
            if not facts.dose_changes and not facts.pauses:
                self.plans[key] = plan
        if stop is not None:
            return [pair for pair in plan if pair[0].due <= stop]
        return plan

    def planned_row(self, planned, protocol_id: str) -> tuple:
        """The constant part of an item row, as sync_course stores a planned item."""
        tests = join_codes(planned.tests)
        return (protocol_id, planned.kind, self.d(planned.due), tests, tests, planned.title, planned.detail,
                join_codes(planned.sources), planned.gate, planned.week, planned.measure, planned.target,
                self.b("adjusted for this course" in (planned.detail or "")), "plan", planned.reading)

    def items(self, protocol, facts, horizon, course_id, patient_id, created, baseline_scores):
        rng, today = self.rng, self.today
        random_ = rng.random
        start = facts.start
        ended = course_has_ended(facts.stop, today)
        out = self.rows["item"]
        append = out.append
        prefix = self.uid_prefix
        item_ids = self.ids.counters.setdefault("item", itertools.count(1))
        for planned, constant in self.plan(protocol, facts, horizon):
            due = planned.due
            if due > today:  # the common case: planned, untouched (the uid is item_uid's, inlined)
                item_id = next(item_ids)
                append((item_id, f"{prefix}-{item_id:012x}", course_id, patient_id, *constant,
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
            elif ended:  # what a stopped course left undone is cancelled with it (core: course_has_ended)
                status, done_note = "cancelled", ENDED_UNDONE_NOTE
                sequence, modified = 1, self.ts(facts.stop, 16)
            item_id = next(item_ids)
            out.append((item_id, item_uid(self.uid_prefix, item_id), course_id, patient_id, *constant, status,
                        self.d(done_on), done_note, sequence, created, modified))
        return baseline_scores

    def lab_analytes(self, tests: tuple) -> tuple:
        analytes = self.analytes.get(tests)
        if analytes is None:
            analytes = self.analytes[tests] = tuple(a for t in tests for a in LAB_ANALYTES.get(t, (t,)))
        return analytes


def build_chunks(library, today, seed, patients, chunk, sqlite_values):
    """Yield (patients done, rows) per chunk of patients, all built with one `random.Random(seed)`."""
    builder = Builder(library, today, random.Random(seed), sqlite_values)
    for first in range(1, patients + 1, chunk):
        for n in range(first, min(patients, first + chunk - 1) + 1):
            builder.patient(n)
        yield min(patients, first + chunk - 1), builder.rows
        builder.reset()

