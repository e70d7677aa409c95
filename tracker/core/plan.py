"""The planner: course + protocol + dose changes + pauses -> dated items. Pure: no database, no clock.

Rules (see schedules/README.md for the protocol side):
- Monitoring runs in anchored segments. The first anchor is the start date; a dose change (when the track
  restarts on dose changes) and a resume after a pause (likewise) open a new segment whose phases start
  again from that date. A segment's draws stop the day before the next anchor.
- Inside a segment every draw is computed from the phase start, `every.after(phase_start, k)`, never from
  the previous draw, so month steps stay on the anchor's day (clamped at month ends).
- A phase with `for`/`until_dose_stable` ends that long after its start; the next phase starts there.
- No lab is due while a course is paused or after it stops.
- Checkpoints and limits count treatment time from the start: they move later by the days spent paused. So
  do a non-restarting track's one-off draws and the first draw of each repeating phase (`pause_shifted`):
  a pause never drops a safety draw such as abrocitinib's 4-week CBC and lipids.
- Baseline items are due on the start date, one per test, for the patients the test applies to.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from tracker.core.durations import Duration
from tracker.core.protocol import Phase, Protocol, Track

KINDS = ("baseline", "lab", "checkpoint", "limit")


@dataclass(frozen=True)
class PatientFacts:
    sex: str | None = None  # f | m | x
    childbearing_potential: bool = False


@dataclass(frozen=True)
class Pause:
    paused_on: dt.date
    resumed_on: dt.date | None = None  # None: still paused


@dataclass(frozen=True)
class IntervalAdjustment:
    """A per-course interval for the open-ended phase of every track, from a date on."""

    every: Duration
    from_date: dt.date
    reason: str | None = None


@dataclass(frozen=True)
class CourseFacts:
    start: dt.date
    stop: dt.date | None = None
    dose_changes: tuple[dt.date, ...] = ()
    pauses: tuple[Pause, ...] = ()
    patient: PatientFacts = field(default_factory=PatientFacts)
    adjustment: IntervalAdjustment | None = None


@dataclass(frozen=True)
class PlannedItem:
    kind: str  # baseline | lab | checkpoint | limit
    due: dt.date
    tests: tuple[str, ...]
    title: str
    sources: tuple[str, ...]
    gate: str | None = None  # hard | advisory, baseline items only
    week: int | None = None  # checkpoint week
    measure: str | None = None  # checkpoint measures, "easi+dlqi"
    target: str | None = None  # checkpoint target, "EASI-50 and DLQI reduced >= 4 points"
    detail: str | None = None  # which phase produced a draw, or a note
    reading: int | None = None  # reading k of a baseline rule planned one item per reading (`times: N`)

    @property
    def key(self) -> tuple:
        """Identity of an item across re-plans: same key = same item (keeps its uid)."""
        return item_identity(self.kind, self.due, self.tests, self.week, self.reading)


def item_identity(kind: str, due: dt.date, tests, week: int | None, reading: int | None) -> tuple:
    """The key of a planned or stored item. Reading 1 has the key a single baseline item had before rules
    with `times: N` were planned one item per reading, so upgraded courses keep their rows."""
    return (kind, due, tuple(sorted(tests)), week, reading or 1)


def plan_course(protocol: Protocol, course: CourseFacts, horizon: dt.date) -> list[PlannedItem]:
    """Every item of `course` due on or before `horizon`, sorted by date then kind."""
    items = [*_baseline(protocol, course), *_labs(protocol, course, horizon)]
    items += _checkpoints(protocol, course, horizon)
    items += _limit(protocol, course, horizon)
    return sorted(items, key=lambda i: (i.due, KINDS.index(i.kind), i.tests, i.reading or 0))


def applicable_baseline(protocol: Protocol, patient: PatientFacts) -> tuple[list, list]:
    """Baseline rules that apply to this patient, and the `at_risk` ones to consider."""
    applies, consider = [], []
    for rule in protocol.baseline:
        if rule.when == "at_risk":
            consider.append(rule)
        elif rule.when == "childbearing_potential" and not patient.childbearing_potential:
            continue
        elif rule.when == "female" and patient.sex != "f":
            continue
        else:
            applies.append(rule)
    return applies, consider


ADJUSTED_NOTE = "adjusted for this course"


def lab_title(name: str, tests, with_drugs=()) -> str:
    """`Methotrexate monitoring: CBC, CMP`; a merged draw adds `(with ciclosporin)`."""
    title = f"{name} monitoring: {', '.join(display_code(t) for t in tests)}"
    return title + (f" (with {', '.join(with_drugs)})" if with_drugs else "")


def adjustable_phase(track: Track) -> Phase | None:
    """The phase a per-course interval replaces: the track's last phase, if it repeats open-endedly."""
    last = track.phases[-1]
    return last if last.every is not None and last.length is None else None


def is_adjusted(track: Track, phase: Phase, day: dt.date, adjustment: IntervalAdjustment | None) -> bool:
    return adjustment is not None and phase is adjustable_phase(track) and day >= adjustment.from_date


def display_code(code: str) -> str:
    """CBC, TPMT, HBV for short codes; `vaccination review` for long ones."""
    return code.upper() if len(code) <= 5 else code.replace("_", " ")


def readings_planned(rule) -> int:
    """How many items a baseline rule plans per test: one per reading for an advisory rule with `times: N`
    (ciclosporin's two blood pressures and two creatinines, so both readings are on the worklists); one for
    a hard gate, whose start is refused until the N results are on record."""
    return rule.times if rule.gate == "advisory" and rule.times > 1 else 1


def _baseline(protocol: Protocol, course: CourseFacts) -> list[PlannedItem]:
    items = []
    applies, _ = applicable_baseline(protocol, course.patient)
    for rule in applies:
        for test in rule.tests:
            gate = "required" if rule.gate == "hard" else "advisory"
            count = readings_planned(rule)
            for reading in range(1, count + 1):
                which = f", reading {reading} of {count}" if count > 1 else ""
                items.append(
                    PlannedItem(
                        kind="baseline",
                        due=course.start,
                        tests=(test,),
                        title=f"Baseline {display_code(test)} before {protocol.name} ({gate}{which})",
                        sources=tuple(rule.sources),
                        gate=rule.gate,
                        detail=rule.note,
                        reading=reading if count > 1 else None,
                    )
                )
    return items


def _anchors(protocol: Protocol, track: Track, course: CourseFacts) -> list[dt.date]:
    anchors = [course.start]
    if protocol.restarts_on_dose_change(track):
        anchors += [d for d in course.dose_changes if d > course.start]
        anchors += [p.resumed_on for p in course.pauses if p.resumed_on and p.resumed_on > course.start]
    return sorted(set(anchors))


def _paused(course: CourseFacts, day: dt.date) -> bool:
    return any(p.paused_on <= day and (p.resumed_on is None or day < p.resumed_on) for p in course.pauses)


def _phase_label(phase: Phase) -> str:
    if phase.at is not None:
        return "once at " + ", ".join(d.words() for d in phase.at)
    text = f"every {phase.every.words()}"
    if phase.until_dose_stable:
        text += f" until the dose has been stable for {phase.until_dose_stable.words()}"
    elif phase.for_:
        text += f" for {phase.for_.words()}"
    else:
        text += " thereafter"
    return text


def track_draws(
    track: Track, anchor: dt.date, until: dt.date, adjustment: IntervalAdjustment | None = None
) -> list[tuple[dt.date, tuple[str, ...], Phase]]:
    """Draw dates of one track for a segment starting at `anchor`, up to `until` inclusive."""
    draws = []
    phase_start = anchor
    for index, phase in enumerate(track.phases):
        tests = tuple(phase.tests or track.tests)
        length = phase.length
        end = length.after(phase_start) if length else None
        if phase.at is not None:
            for offset in phase.at:
                day = offset.after(phase_start)
                if day <= until:
                    draws.append((day, tests, phase))
        else:
            every = phase.every
            origin = phase_start
            last = index == len(track.phases) - 1
            if last and adjustment is not None and end is None:
                # A clinician's interval replaces the open-ended phase's interval from the adjustment date,
                # counted from that date (or from the phase start if the phase starts later).
                draws += _stepped(phase_start, every, min(until, adjustment.from_date - dt.timedelta(days=1)),
                                  tests, phase)
                origin = max(phase_start, adjustment.from_date)
                draws += _stepped(origin, adjustment.every, until, tests, phase)
            else:
                draws += _stepped(origin, every, min(until, end) if end else until, tests, phase)
        if end is None or end > until:
            break
        phase_start = end
    return draws


def _stepped(origin: dt.date, every: Duration, until: dt.date, tests, phase) -> list:
    out = []
    k = 1
    while True:
        day = every.after(origin, k)
        if day > until:
            return out
        out.append((day, tests, phase))
        k += 1


def _labs(protocol: Protocol, course: CourseFacts, horizon: dt.date) -> list[PlannedItem]:
    if not protocol.monitoring:
        return []
    last_day = min(horizon, course.stop) if course.stop else horizon
    by_day: dict[dt.date, dict] = {}
    for track in protocol.monitoring.tracks:
        anchors = _anchors(protocol, track, course)
        for i, anchor in enumerate(anchors):
            seg_end = anchors[i + 1] - dt.timedelta(days=1) if i + 1 < len(anchors) else last_day
            seg_end = min(seg_end, last_day)
            draws = track_draws(track, anchor, seg_end, course.adjustment)
            if not protocol.restarts_on_dose_change(track):
                draws = [(d, t, p) for d, t, p in pause_shifted(draws, course) if d <= seg_end]
            for day, tests, phase in draws:
                if day <= course.start or _paused(course, day):
                    continue
                slot = by_day.setdefault(day, {"tests": [], "sources": [], "detail": []})
                for test in tests:
                    if test not in slot["tests"]:
                        slot["tests"].append(test)
                for key in (*phase.sources, *track.sources):
                    if key not in slot["sources"]:
                        slot["sources"].append(key)
                label = f"{track.name}: {_phase_label(phase)}"
                if is_adjusted(track, phase, day, course.adjustment):
                    why = f": {course.adjustment.reason}" if course.adjustment.reason else ""
                    label = f"{track.name}: every {course.adjustment.every.words()} ({ADJUSTED_NOTE}{why})"
                if label not in slot["detail"]:
                    slot["detail"].append(label)
    return [
        PlannedItem(
            kind="lab",
            due=day,
            tests=tuple(slot["tests"]),
            title=lab_title(protocol.name, slot["tests"]),
            sources=tuple(slot["sources"]),
            detail="; ".join(slot["detail"]),
        )
        for day, slot in by_day.items()
    ]


def pause_shifted(draws: list, course: CourseFacts) -> list:
    """A track that does not restart on resume keeps its safety draws through a pause: each one-off (`at:`)
    draw and the first draw of each repeating phase move later by the days paused before them, as
    checkpoints do (counted in treatment time; dropped while still paused, until the resume re-plans).
    Later repeating draws stay on their calendar steps; those inside a pause are dropped (the next step
    follows), and so are those the moved first draw has passed (it stands in for them)."""
    out = []
    first_of: dict[int, dt.date | None] = {}
    for day, tests, phase in draws:
        if phase.at is not None or id(phase) not in first_of:
            moved = shift_for_pauses(course, day, pause_on_the_day=True)
            if phase.at is None:
                first_of[id(phase)] = moved
            if moved is not None:
                out.append((moved, tests, phase))
            continue
        first = first_of[id(phase)]
        if first is not None and day > first:
            out.append((day, tests, phase))
    return sorted(out, key=lambda draw: draw[0])


def shift_for_pauses(course: CourseFacts, day: dt.date, *, pause_on_the_day: bool = False) -> dt.date | None:
    """Move a treatment-time date later by the days paused before it; None while still paused. With
    `pause_on_the_day`, a pause that begins on the date itself moves it too (a draw cannot be due on a
    paused day; a checkpoint can)."""
    for pause in sorted(course.pauses, key=lambda p: p.paused_on):
        if pause.paused_on > day or (pause.paused_on == day and not pause_on_the_day):
            break
        if pause.resumed_on is None:
            return None
        day += pause.resumed_on - pause.paused_on
    return day


def _checkpoints(protocol: Protocol, course: CourseFacts, horizon: dt.date) -> list[PlannedItem]:
    items = []
    for checkpoint in protocol.checkpoints:
        due = shift_for_pauses(course, course.start + dt.timedelta(weeks=checkpoint.week))
        if due is None or due > horizon or (course.stop and due > course.stop):
            continue
        target = checkpoint.target_label()
        items.append(
            PlannedItem(
                kind="checkpoint",
                due=due,
                tests=(),
                title=f"Week {checkpoint.week} response check for {protocol.name}: {target}",
                sources=tuple(checkpoint.sources),
                week=checkpoint.week,
                measure="+".join(checkpoint.measures),
                target=target,
                detail=checkpoint.note,
            )
        )
    return items


def _limit(protocol: Protocol, course: CourseFacts, horizon: dt.date) -> list[PlannedItem]:
    limits = protocol.limits
    if limits is None:
        return []
    due = shift_for_pauses(course, limits.max_duration.after(course.start))
    if due is None or due > horizon or (course.stop and due > course.stop):
        return []
    return [
        PlannedItem(
            kind="limit",
            due=due,
            tests=(),
            title=f"{protocol.name} course reaches its maximum ({limits.max_duration.words()})",
            sources=tuple(limits.sources),
            detail=limits.note,
        )
    ]



# --- the same planned item, moved ----------------------------------------------------------------------------


def item_slot(kind: str, tests, week: int | None, reading: int | None) -> tuple:
    """An item's identity without its date: which rule of the course's plan it comes from (a baseline test and
    its reading, a monitoring draw of these tests, the week-N checkpoint, the course limit)."""
    return (kind, tuple(sorted(tests)), week, reading or 1)


def may_move(status: str, received, due: dt.date, today: dt.date) -> bool:
    """Whether a stored item that a re-plan no longer puts on its date may move to a new date instead of being
    cancelled: only a planned item not yet due (never overdue, so no overdue alert or reminder is about it)
    and with nothing received towards it yet (a partial draw stays where its results belong)."""
    return status == "planned" and not received and due >= today


def may_return(status: str, merged: bool, received, due: dt.date, today: dt.date) -> bool:
    """Whether a cancelled item may come back as the same planned item on a new date: one a pause cancelled
    (a checkpoint is dropped while paused and planned again at the resume) that was not yet due and is not
    a draw merged into another course's (those come back with the merge)."""
    return status == "cancelled" and not merged and not received and due >= today


def same_planned_items(vanished: list[tuple], appeared: list[tuple], cancelled: list[tuple] = ()) -> list[tuple]:
    """Pairs (stored id, appeared id) that are the same planned item on a new date.

    `vanished`: (id, slot, due) of one course's live stored items the re-plan no longer puts on their date
    (and that `may_move`); `appeared`: (id, slot, due) of the re-plan's items no stored item has the key of;
    `cancelled`: (id, slot, due) of the course's cancelled items that `may_return`. The same planned item is
    the same slot (item_slot) at the same occurrence: the n-th vanished item of a slot, by date, is the n-th
    appeared item of that slot, by date; appeared items left over then pair the same way with cancelled
    ones (an item a pause dropped, planned again at the resume). A dose change, pause or resume that shifts
    draws thus moves them (same UID, new date, SEQUENCE + 1); whatever is left is cancelled (vanished) or
    new (appeared), as before. A checkpoint (one per week) and the limit (one per course) always pair."""
    pairs = _pair_by_slot(vanished, appeared)
    if cancelled:
        taken = {new for _, new in pairs}
        pairs += _pair_by_slot(cancelled, [a for a in appeared if a[0] not in taken])
    return pairs


def _pair_by_slot(old_items, new_items) -> list[tuple]:
    by_slot: dict[tuple, tuple[list, list]] = {}
    for ident, slot, due in old_items:
        by_slot.setdefault(slot, ([], []))[0].append((due, ident))
    for ident, slot, due in new_items:
        if slot in by_slot:
            by_slot[slot][1].append((due, ident))
    pairs = []
    for old, new in by_slot.values():
        old.sort(key=lambda pair: pair[0])
        new.sort(key=lambda pair: pair[0])
        pairs += [(o[1], n[1]) for o, n in zip(old, new)]
    return pairs
