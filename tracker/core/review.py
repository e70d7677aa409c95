"""`review(chart, today, ...)`: every decision the alert engine takes about one patient on one day, as
data: the alerts that should be open, follow-up items to book, checkpoint items judged. Pure.

The shell (tracker/store) loads charts, applies reviews (reconciles the alert table, books follow-ups,
audits) and renders; `tracker alerts --as-of` reviews without applying. Whole clinic or one patient, the
same function decides: only the set of charts differs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from tracker.core.alerts import AlertCandidate, AlertSettings, FollowUp
from tracker.core.algorithm import Algorithm
from tracker.core.chart import Chart, ChartCourse
from tracker.core.gates import course_gate_candidates
from tracker.core.panels import describe_missing, missing
from tracker.core.plan import display_code
from tracker.core.protocol import Protocol
from tracker.core.renal import clearance_day, with_basis
from tracker.core.response import evaluate_checkpoint, failures_cleared_by
from tracker.core.terms import CLINIC_DEFAULT
from tracker.core.thresholds import day_candidates
from tracker.core.vocabulary import Vocabulary
from tracker.core.worklist import (
    OVERDUE_ALERT_KINDS,
    ItemWindow,
    days_overdue,
    needs_overdue_alert,
    overdue_alert_window,
)


@dataclass(frozen=True)
class CheckpointJudged:
    """A due checkpoint item judged on an assessment: the shell marks it done."""

    item_id: int
    course_id: int
    status: str  # met | failed | partial
    done_on: dt.date
    assessment_id: int
    summary: str
    missing: tuple[str, ...] = ()


@dataclass(frozen=True)
class FailuresCleared:
    """A checkpoint outcome that settles a course's open `checkpoint_failed` alerts: those of `item_ids`
    (the same checkpoint judged again on a closer assessment) and those at checkpoint `weeks`."""

    course_id: int
    item_ids: tuple[int, ...]
    weeks: tuple[int, ...]
    reason: str

    def settles(self, course_id: int | None, item_id: int | None, week: int | None) -> bool:
        """Whether this outcome settles a `checkpoint_failed` alert of `course_id` about checkpoint item
        `item_id` at `week`."""
        return course_id == self.course_id and (item_id in self.item_ids or week in self.weeks)


@dataclass(frozen=True)
class Review:
    patient_id: int
    alerts: tuple[AlertCandidate, ...] = ()
    follow_ups: tuple[tuple[ChartCourse, FollowUp], ...] = ()
    judged: tuple[CheckpointJudged, ...] = ()
    cleared: tuple[FailuresCleared, ...] = ()


def review_windows(today: dt.date, settings: AlertSettings) -> tuple[ItemWindow, ...]:
    """The items a review reads (what a chart must hold): lab draws and baseline tests past the grace
    period, checkpoints due by today, checkpoints already judged whose window is still open (a closer
    assessment re-judges them), and course limits."""
    return (overdue_alert_window(today, settings.overdue_grace_days),
            ItemWindow(("checkpoint",), due_before=today + dt.timedelta(days=1)),
            ItemWindow(("checkpoint",), status="done",
                       due_from=today - dt.timedelta(days=settings.checkpoint_window_days),
                       due_before=today + dt.timedelta(days=1)),
            ItemWindow(("limit",)))


def review(chart: Chart, today: dt.date, settings: AlertSettings, algorithm: Algorithm,
           vocabulary: Vocabulary, *, change_driven: bool = True) -> Review:
    """Everything the rules say about `chart` on `today`. Without `change_driven`, the dated rules alone
    (DATED_KINDS): the rules that read results (thresholds, gates, screenings: CHANGE_DRIVEN_KINDS) are not
    asked, so the review holds no alert of their kinds and none of their follow-ups (the thresholds' repeat
    draws), which a review on the dated rules drops anyway."""
    alerts: list[AlertCandidate] = []
    follow_ups: list[tuple[ChartCourse, FollowUp]] = []
    judged: list[CheckpointJudged] = []
    courses = {c.id: c for c in chart.courses}
    for course in chart.courses:
        protocol = course.protocol
        if change_driven:
            a, f = _thresholds(chart, course, vocabulary, settings.restart_repeat_days)
            alerts += a
            follow_ups += [(course, follow) for follow in f]
            alerts += course_gate_candidates(chart, course, vocabulary, today, settings.childbearing_ages)
        limit_items = [i for i in chart.items_of(course.id, "limit") if i.status == "planned"]
        first = min(limit_items, key=lambda i: i.due, default=None)
        alerts += limit_candidates(protocol, course, first, today, settings.limit_lead_days,
                                   chart.stopped_courses)
    cleared: list[FailuresCleared] = []
    items = sorted(chart.items, key=lambda i: (i.due, i.id))
    alerts += overdue_candidates([i for i in items if i.course_id in courses], today, settings.overdue_grace_days,
                                 vocabulary, {c.id: c.protocol.name for c in chart.courses})
    for item in items:
        course = courses.get(item.course_id)
        if course is None:
            continue
        if item.kind != "checkpoint" or item.status not in ("planned", "done") or item.due > today:
            continue
        advice = algorithm.advise(course.drug, course.protocol.drug_class, set(chart.failed_drugs),
                                  adverse_event_drugs=chart.adverse_event_drugs, age=chart.age_on(today))
        outcome = evaluate_checkpoint(course.protocol, item, course, chart.assessments, today, settings,
                                      advice.options, advice.notes)
        if outcome.status == "pending":
            continue
        if outcome.alert is not None:
            alerts.append(outcome.alert)
        if outcome.status in ("met", "failed", "partial"):
            judged.append(CheckpointJudged(item.id, course.id, outcome.status, outcome.assessment.assessed_on,
                                           outcome.assessment.id, outcome.summary, tuple(outcome.missing)))
        if outcome.status in ("met", "partial"):  # this checkpoint's own failure, judged on a farther visit
            verdict = "target met" if outcome.status == "met" else "partial response"
            cleared.append(FailuresCleared(
                course.id, (item.id,), failures_cleared_by(course.protocol, item, outcome.status),
                f"week {item.week} {verdict} on the assessment of {outcome.assessment.assessed_on}"))
        if outcome.follow_up is not None:
            follow_ups.append((course, outcome.follow_up))
    return Review(chart.patient_id, tuple(alerts), tuple(follow_ups), tuple(judged), tuple(cleared))


def reads_draws_only(items) -> bool:
    """Whether a chart holding `items` (its items in the review windows) is one whose review on the dated
    rules (DATED_KINDS) reads nothing but them: every one a planned lab draw or baseline test, so no
    checkpoint to judge and no course limit (`review_of_draws`). Most of a typical night's dated group: four
    in five at 100,000 patients."""
    return all(item.status == "planned" and item.kind in OVERDUE_ALERT_KINDS for item in items)


def reviewed_from_draws(items) -> bool:
    """Whether a dated group's patient with these windowed items is reviewed from them alone
    (`review_of_draws`), not from a loaded chart, and may be found settled by them (`draws_alerts_settled`):
    some items, every one a draw (`reads_draws_only`). The dated group is drawn from the patients with
    windowed items, so none comes without; one that did would have its chart loaded."""
    return bool(items) and reads_draws_only(items)


def review_of_draws(patient_id: int, items, course_names: dict[int, str], today: dt.date,
                    settings: AlertSettings, vocabulary: Vocabulary) -> Review:
    """`review` on the dated rules (DATED_KINDS) of a chart without results whose items `reads_draws_only`:
    the overdue alerts of its draws, read from the items and the names of the patient's live courses
    (`course_names`: course id -> protocol name) alone. With no checkpoint and no limit item, and no result,
    nothing else in `review` gives an alert of those kinds, a judgement, a cleared failure or a follow-up
    (tests/test_review_of_draws.py checks the two agree), so the shell need not load the chart's courses,
    assessments or patient."""
    ordered = sorted((i for i in items if i.course_id in course_names), key=lambda i: (i.due, i.id))
    return Review(patient_id, tuple(overdue_candidates(ordered, today, settings.overdue_grace_days, vocabulary,
                                                       course_names)))


def _thresholds(chart: Chart, course: ChartCourse, vocabulary: Vocabulary, restart_repeat_days: int | None = None):
    """The course's thresholds against the results of the latest day of each test they read
    (Chart.latest_day): for each rule the worst of that day's results counts, never the one entered last, and
    one test's day is at most one alert (core/thresholds.py day_candidates). Repeat-only and `confirmed`
    rules compare it with the results of the latest earlier day (Chart.earlier_day_results): a same-day
    duplicate neither confirms nor repeats."""
    alerts, follow_ups = [], []
    for test in dict.fromkeys(t.analyte for t in course.protocol.thresholds):
        # crcl: recorded, else estimated as the protocol says (core/renal.py)
        day = clearance_day(chart, course.protocol) if test == "crcl" else chart.latest_day(test)
        if not day:
            continue
        baseline = chart.lab_baseline(course, test)
        ref_high = vocabulary.tests[test].ref_high if test in vocabulary else None
        a, f = day_candidates(course.protocol, course, day, baseline.value_num if baseline is not None else None,
                              ref_high, chart.earlier_day_results(day[0]),
                              baseline.describe() if baseline is not None else None, restart_repeat_days)
        alerts += [alert for candidate in a
                   for alert in with_basis([candidate], next(r for r in day if r.id == candidate.result_id))]
        follow_ups += f
    return alerts, follow_ups


def continuous_run(course, stopped_courses, join_within_days: int) -> tuple[dt.date, int]:
    """Where the run of back-to-back courses of `course`'s drug began, and the days on the drug before
    `course` started: a stopped course counts when at most `join_within_days` days off lie between its
    stop (its last day) and the next start. Pauses inside earlier courses are not subtracted."""
    run_start, prior_days = course.start_on, 0
    earlier = [c for c in stopped_courses if c.drug == course.drug and c.stop_on is not None]
    while True:
        joined = [c for c in earlier if c.start_on < run_start and c.stop_on <= run_start
                  and (run_start - c.stop_on).days - 1 <= join_within_days]
        if not joined:
            return run_start, prior_days
        previous = max(joined, key=lambda c: (c.stop_on, c.start_on))
        last_day = min(previous.stop_on, run_start - dt.timedelta(days=1))
        prior_days += (last_day - previous.start_on).days + 1
        run_start = previous.start_on
        earlier.remove(previous)


def limit_candidates(protocol: Protocol, course, limit_item, today: dt.date,
                     default_lead_days: int = 14, stopped_courses=()) -> list[AlertCandidate]:
    """A course nearing (within `warn_before`, else the clinic's lead time) or past its maximum duration
    (the planner's limit item date, already moved later by pauses; earlier by the days on the drug in
    back-to-back courses before it, when the protocol joins them)."""
    limits = protocol.limits
    if limits is None or limit_item is None:
        return []
    prior_days, since = 0, course.start_on
    if limits.join_courses_within is not None:
        since, prior_days = continuous_run(course, stopped_courses, limits.join_courses_within.approx_days())
    reached = limit_item.due - dt.timedelta(days=prior_days)
    maximum = limits.max_duration.words() + (f" ({CLINIC_DEFAULT})" if limits.clinic_default else "")
    common = dict(patient_id=course.patient_id, drug=course.drug, course_id=course.id, item_id=limit_item.id,
                  sources=tuple(limits.sources), limit_text=f"maximum {maximum}")
    day = (today - course.start_on).days + 1 + prior_days
    if prior_days:
        gap = limits.join_courses_within
        what = (f"{protocol.name}, continuous since {since} (back-to-back courses at most {gap.words()} apart"
                f"{' (' + CLINIC_DEFAULT + ')' if limits.clinic_default else ''}; this one started "
                f"{course.start_on}),")
    else:
        what = f"{protocol.name} course started {course.start_on}"
    if today >= reached:
        return [AlertCandidate(
            condition_key=f"limit:course{course.id}:past", kind="limit", severity=limits.severity,
            message=f"{what} is on day {day}, past its maximum of {maximum} (reached {reached})",
            value=f"day {day}", **common)]
    if limits.warn_before is not None:
        lead = limits.warn_before.approx_days()
    else:
        lead = min(default_lead_days, limits.max_duration.approx_days() // 4)
    if lead > 0 and today >= reached - dt.timedelta(days=lead):
        return [AlertCandidate(
            condition_key=f"limit:course{course.id}:near", kind="limit", severity="warning",
            message=f"{what} reaches its maximum of {maximum} on {reached} (in {(reached - today).days} days)",
            value=f"day {day}", **common)]
    return []


def past_limit_key(condition_key: str) -> str | None:
    """The condition that carries a near-limit alert's problem once its course is past the limit
    (`limit:course7:near` -> `limit:course7:past`, as `limit_candidates` keys them); None for any other key."""
    if condition_key.startswith("limit:") and condition_key.endswith(":near"):
        return condition_key[:-len("near")] + "past"
    return None


def overdue_candidate(item, today: dt.date, grace_days: int,
                      vocabulary: Vocabulary | None = None) -> AlertCandidate | None:
    """A lab draw or baseline test overdue past the grace period (core/worklist.py defines overdue); a
    partial draw (core/panels.py) is overdue like a missed one, and its alert names what is missing."""
    if not needs_overdue_alert(item, today, grace_days):
        return None
    late = days_overdue(item, today)
    received = (getattr(item, "received", None) or "").split()
    needs = missing((item.tests or "").split(), received, vocabulary) if received and vocabulary else ()
    partial = f" (partial: missing {describe_missing(needs, vocabulary)})" if needs else ""
    return AlertCandidate(
        condition_key=overdue_item_key(item.id), kind="overdue", severity="warning",
        message=f"{item.title} was due {item.due} and is {late} days overdue{partial}",
        patient_id=item.patient_id, drug=item.drug, course_id=item.course_id, item_id=item.id,
        value=f"{late} days overdue", limit_text=f"grace {grace_days} days ({CLINIC_DEFAULT})",
        sources=tuple((item.sources or "").split()))


def overdue_candidates(items, today: dt.date, grace_days: int, vocabulary: Vocabulary | None = None,
                       course_names: dict[int, str] | None = None) -> list[AlertCandidate]:
    """One overdue alert per problem: one per lab draw (a merged draw is one item, its host), and one per
    course for its whole overdue baseline set, listing the missing tests (key `overdue:courseC:baseline`,
    its item the earliest missing one)."""
    draws, baseline = _overdue(items, today, grace_days)
    alerts = [overdue_candidate(item, today, grace_days, vocabulary) for item in draws]
    for course_id, missed in baseline.items():
        alerts.append(baseline_overdue_candidate(missed, today, grace_days, vocabulary,
                                                 (course_names or {}).get(course_id)))
    return alerts


def _overdue(items, today: dt.date, grace_days: int) -> tuple[list, dict[int, list]]:
    """What raises overdue alerts among `items`: the lab draws past the grace period, and the baseline tests
    past it by course (one alert per draw, one per course's set)."""
    draws: list = []
    baseline: dict[int, list] = {}
    for item in items:
        if needs_overdue_alert(item, today, grace_days):
            if item.kind == "baseline":
                baseline.setdefault(item.course_id, []).append(item)
            else:
                draws.append(item)
    return draws, baseline


def overdue_item_key(item_id: int) -> str:
    return f"overdue:item{item_id}"


def _overdue_keys(draws, baseline: dict[int, list]) -> frozenset[str]:
    return frozenset([*(overdue_item_key(item.id) for item in draws), *map(baseline_overdue_key, baseline)])


def draws_alert_keys(items, live_courses, today: dt.date, grace_days: int) -> frozenset[str]:
    """The condition keys of the alerts `review_of_draws` gives for `items` (those of `live_courses`, a
    collection of course ids), without making the alerts (`overdue_candidates`)."""
    return _overdue_keys(*_overdue([i for i in items if i.course_id in live_courses], today, grace_days))


# Where an overdue alert's text names what is missing: after a baseline set's "days): ", or a draw's
# "(partial: " (`partial_note`); a draw's title holding one would make its text's note.
BASELINE_NOTE, DRAW_NOTE = " days): ", " (partial: "
PARTIAL_MARKERS = (BASELINE_NOTE, DRAW_NOTE)


def partial_note(message: str | None) -> str:
    """What an overdue alert's text says is missing: the `(partial: missing ...)` part of a draw's text, or
    the list of a baseline set's tests after `days): `; else ''. A live alert's text is rewritten when this
    part changes (services/review_apply.py), never for its count of days."""
    text = message or ""
    at = text.find(BASELINE_NOTE)
    if at >= 0:
        return text[at + len(BASELINE_NOTE):]
    at = text.find(DRAW_NOTE)
    return text[at:] if at >= 0 else ""


def draws_alerts_settled(items, live_courses, today: dt.date, settings: AlertSettings, live,
                         vocabulary: Vocabulary | None = None) -> bool:
    """Whether the patient's live alerts on the dated rules (`live`: (condition_key, status, snoozed_until,
    cleared_on, message) of each) already are what `review_of_draws` of its windowed `items` asks for, so
    that reconciling the two would change nothing (services/review_apply.py `_reconcile`): windowed items,
    draws alone (`reviewed_from_draws`: no checkpoint to judge, no limit); the same condition keys (no alert
    to raise, re-open or resolve); none cleared and awaiting acknowledgement (it would come back), none
    snoozed past its end (it would re-open); and no text to rewrite: no draw with codes received (its text
    names what is missing, which results change) nor a title holding what `partial_note` looks for, and each
    live alert's list of what is missing (`partial_note`) as the review's alert would have it (a baseline
    set's lists its overdue tests, one more as each passes its grace period). A typical night's dated group is
    mostly such patients: nothing changed for them but the day."""
    if not reviewed_from_draws(items) or any(
            (getattr(item, "received", None) or "").strip() or any(m in (item.title or "") for m in PARTIAL_MARKERS)
            for item in items):
        return False
    draws, sets = _overdue([i for i in items if i.course_id in live_courses], today, settings.overdue_grace_days)
    if {row[0] for row in live} != _overdue_keys(draws, sets):
        return False
    if any(cleared_on is not None or (status == "snoozed" and snoozed_until is not None and snoozed_until <= today)
           for _, status, snoozed_until, cleared_on, _ in live):
        return False
    notes = {baseline_overdue_key(course_id): baseline_overdue_listing(missed, vocabulary)
             for course_id, missed in sets.items()}
    return all(partial_note(message) == notes.get(key, "") for key, _, _, _, message in live)


BASELINE_OVERDUE_KEY = ("overdue:course", ":baseline")  # around the course id (the reminder query builds it in SQL)


def baseline_overdue_key(course_id: int) -> str:
    return f"{BASELINE_OVERDUE_KEY[0]}{course_id}{BASELINE_OVERDUE_KEY[1]}"


def baseline_overdue_candidate(missed, today: dt.date, grace_days: int, vocabulary: Vocabulary | None = None,
                               course_name: str | None = None) -> AlertCandidate:
    """The alert for one course's overdue baseline tests (`missed`: its baseline items past the grace
    period, earliest first): "Methotrexate baseline: 3 tests overdue (due 2026-01-05, 20 days): CBC, HBV, HCV"."""
    missed = sorted(missed, key=lambda i: (i.due, i.id))
    first = missed[0]
    names = _baseline_names(missed, vocabulary)
    count = sum(names.values())
    due = f"due {first.due}" if first.due == missed[-1].due else f"due {first.due} to {missed[-1].due}"
    late = days_overdue(first, today)
    what = f"{course_name} baseline" if course_name else "Baseline"
    return AlertCandidate(
        condition_key=baseline_overdue_key(first.course_id), kind="overdue", severity="warning",
        message=f"{what}: {count} test{'s' if count != 1 else ''} overdue ({due}, {late} days): {_listed(names)}",
        patient_id=first.patient_id, drug=first.drug, course_id=first.course_id, item_id=first.id,
        value=f"{late} days overdue", limit_text=f"grace {grace_days} days ({CLINIC_DEFAULT})",
        sources=tuple(dict.fromkeys(s for i in missed for s in (i.sources or "").split())))


def baseline_overdue_listing(missed, vocabulary: Vocabulary | None = None) -> str:
    """What `baseline_overdue_candidate`'s text lists after `days): ` (its `partial_note`), alone."""
    return _listed(_baseline_names(sorted(missed, key=lambda i: (i.due, i.id)), vocabulary))


def _baseline_names(missed, vocabulary: Vocabulary | None) -> dict[str, int]:
    """Each overdue test of a baseline set (`missed`, in order) as shown, with how many items ask for it."""
    names: dict[str, int] = {}
    for item in missed:
        received = (getattr(item, "received", None) or "").split()  # once per item: most have none
        for test in (item.tests or "").split():
            needs = missing([test], received, vocabulary) if received and vocabulary else ()
            shown = display_code(test) + (f" (partial: missing {describe_missing(needs, vocabulary)})" if needs else "")
            names[shown] = names.get(shown, 0) + 1
    return names


def _listed(names: dict[str, int]) -> str:
    return ", ".join(f"{name} x{count}" if count > 1 else name for name, count in names.items())


def tests_read(protocols, vocabulary: Vocabulary) -> set[str]:
    """Every test code whose results a review of courses on `protocols` reads: the thresholds' analytes,
    the hard-gate baseline tests (a panel with its analytes) and the screens read during a course."""
    tests: set[str] = set()
    for protocol in protocols:
        tests.update(t.analyte for t in protocol.thresholds)
        if protocol.clearance is not None:  # the estimates' inputs
            tests.update(("creatinine", "egfr", "weight"))
        for rule in [*protocol.baseline, *protocol.during_treatment]:
            for test in rule.tests:
                if getattr(rule, "gate", None) == "hard":
                    tests.update(vocabulary.members(test))
                if test in vocabulary and vocabulary.tests[test].passes:
                    tests.add(test)
    return tests
