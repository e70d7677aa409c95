"""Baseline gates: what a start needs, and which results on record refuse it. Pure, on a patient's Chart.

Used by `therapy start` (to refuse or warn), by the review (a course started with an overridden gate keeps
a gate alert open until a passing result arrives; a screen that does not pass during a course raises a
critical alert), and by plan sync's "baseline satisfied by a result".

A hard gate is met on a start date when, for each of its tests:
- a result was taken on or before the start and within the rule's `valid_for` (older results are named:
  "tb negative on 2019-05-01 is older than 3 months");
- the result passes (`read_result`, the one rule every gate reading uses: the vocabulary's `passes` values,
  `repeat_or_refer` values ask to repeat or refer, and a value beyond one of the protocol's initiation
  limits, `action: refuse`, fails: TPMT absent, abrocitinib platelets < 150); of several results of one test
  on one day the worst counts (`read_day`), never the one entered last;
- `times: N` results on different days exist, spaced `min_gap`..`max_gap`, the last within `last_within`
  of the start;
- a panel has every analyte the protocol's initiation (`refuse`) limits read (one MCV is no blood count).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from tracker.core.alerts import AlertCandidate
from tracker.core.chart import Chart, age_on, result_order, same_day_note, shown_value
from tracker.core.panels import complete_days, is_complete
from tracker.core.plan import PatientFacts, applicable_baseline
from tracker.core.protocol import BaselineTest, Protocol, Rule
from tracker.core.thresholds import breach, uln_of
from tracker.core.vocabulary import Vocabulary

# clinic_default: the reference gives no age range for childbearing potential; an unrecorded answer counts
# as "yes" for a female patient in this range of ages ([alerts] childbearing_age_from / _to in the config).
CHILDBEARING_AGES = (12, 55)
CHILDBEARING = ("yes", "no", "unknown")


def may_conceive(sex: str | None, childbearing: str | None, dob: dt.date | None, on: dt.date,
                 ages: tuple[int, int] = CHILDBEARING_AGES) -> bool:
    """Whether pregnancy rules apply on `on`: "yes", or "unknown" (never asked) for a female patient whose
    age is within `ages` (inclusive)."""
    if childbearing == "yes":
        return True
    if childbearing == "no" or sex != "f" or dob is None:
        return False
    return ages[0] <= age_on(dob, on) <= ages[1]


def patient_facts(chart: Chart, on: dt.date, ages: tuple[int, int] = CHILDBEARING_AGES) -> PatientFacts:
    return PatientFacts(chart.sex, may_conceive(chart.sex, chart.childbearing, chart.dob, on, ages))


@dataclass(frozen=True)
class GateFinding:
    """One unmet hard-gate test: `why` is one clause naming test, value and date where there is one."""

    test: str
    status: str  # missing | stale | fail | repeat | spacing | incomplete
    why: str
    result: Any = None
    sources: tuple[str, ...] = ()
    record: tuple[str, ...] = ()  # the codes to record to meet it, where not `test` itself (a panel's analytes)

    def codes_to_record(self) -> tuple[str, ...]:
        return self.record or (self.test,)


def initiation_analytes(protocol: Protocol) -> set[str]:
    """The tests the protocol's initiation limits (`action: refuse`) read."""
    return {t.analyte for t in protocol.thresholds if t.action == "refuse"}


def required_members(protocol: Protocol, test: str, vocabulary: Vocabulary) -> list[str]:
    """The analytes of panel `test` that a hard gate needs: those the initiation limits read. Empty: any
    member counts (the panel has no initiation limit, or `test` is a single test)."""
    panel = vocabulary.tests.get(test)
    if panel is None or not panel.is_panel:
        return []
    limits = initiation_analytes(protocol)
    return [a for a in panel.analytes if a in limits]


def _fresh(rule: BaselineTest | None, taken: dt.date, on: dt.date) -> bool:
    return rule is None or rule.valid_for is None or rule.valid_for.after(taken) >= on


def _validity(rule: BaselineTest) -> str:
    words = rule.valid_for.words()
    return f"{words} (clinic default)" if rule.is_clinic_default("valid_for") else words



def _label(result) -> str:
    return f"{result.test} {shown_value(result)} on {result.taken_on}"


def _up_to(chart: Chart, codes, on: dt.date) -> list:
    return sorted((r for code in codes for r in chart.results_of(code) if r.taken_on <= on), key=result_order)


READING_RANK = {"pass": 0, "repeat": 1, "fail": 2}


@dataclass(frozen=True)
class Reading:
    """How a gate reads one result (or one day's results of a test): `status` pass | repeat | fail; `why`
    the clause naming test, value and date ("tb positive on 2026-02-25 does not pass (passes: negative)");
    `limit` the initiation limit breached, if that is why it fails."""

    status: str
    result: Any
    why: str
    sources: tuple[str, ...] = ()
    limit: bool = False
    note: str = ""  # the same day's other values, when they disagree (already in `why`)
    during: str = ""  # `why` for a result during a course: "tpmt absent on D during treatment (...): ..."


def initiation_limits(protocol: Protocol, test: str) -> list:
    """The protocol's initiation limits (`action: refuse`) on `test` that a single result can breach
    (change-from-baseline rules cannot apply before a start: there is no baseline yet)."""
    return [t for t in protocol.thresholds
            if t.action == "refuse" and t.analyte == test and not t.rise_pct and not t.fall_pct]


def categorical_initiation_tests(protocol: Protocol) -> set[str]:
    """Tests whose initiation limit reads a category (TPMT absent): a screen's reading, which describes the
    patient rather than a count that moves on the drug, so it is read during a course too."""
    return {t.analyte for t in protocol.thresholds if t.action == "refuse" and t.equals is not None}


def initiation_breaches(protocol: Protocol, result, vocabulary: Vocabulary) -> list[tuple[str, str, tuple[str, ...]]]:
    """The initiation limits `result` breaches, each as (what, why, sources), what + why reading
    "platelets 120 10^9/L on 2026-02-25" + " (< 150 10^9/L): Do not initiate: ... [CIBINQO-US-DOSE]". Judged
    by the same `breach` as the alerts; a rule that cannot be judged (x ULN without a range) is left out."""
    out = []
    ref_high = vocabulary.tests[result.test].ref_high if result.test in vocabulary else None
    for threshold in initiation_limits(protocol, result.test):
        hit, shown, limit = breach(threshold, result, None, uln_of(result, ref_high))
        if hit:
            out.append((f"{threshold.analyte} {shown} on {result.taken_on}",
                        f" ({limit}): {threshold.message or 'do not initiate'} [{', '.join(threshold.sources)}]",
                        tuple(threshold.sources)))
    return out


def read_result(protocol: Protocol, result, vocabulary: Vocabulary) -> Reading:
    """How a gate of `protocol` reads one result: the one rule used at `therapy start`, by an overridden
    gate's alert and by the screens read during a course. A value beyond an initiation limit fails (TPMT
    absent; platelets < 150 for abrocitinib); a screen passes only with a `passes` value, and one in
    `repeat_or_refer` asks to repeat or refer; a test with neither reads as passing."""
    breaches = initiation_breaches(protocol, result, vocabulary)
    if breaches:
        return Reading("fail", result, "; ".join(what + why for what, why, _ in breaches),
                       tuple(dict.fromkeys(s for _, _, sources in breaches for s in sources)), limit=True,
                       during="; ".join(f"{what} during treatment{why}" for what, why, _ in breaches))
    reading = vocabulary.gate_reading(result.test, result.value_text)
    if reading == "fail":
        return Reading("fail", result, f"{_label(result)} does not pass "
                                       f"(passes: {', '.join(vocabulary.tests[result.test].passes)})")
    if reading == "repeat":
        return Reading("repeat", result, f"{_label(result)}: repeat or refer")
    return Reading("pass", result, _label(result))


def read_day(protocol: Protocol, results, vocabulary: Vocabulary) -> Reading:
    """How a gate reads one day's results of one test: the worst of them (a day with a positive and a
    negative IGRA, or neutrophils 0.8 and 3, does not pass whichever was entered last), naming the day's
    other values when they disagree ("same day also: tb negative; conflicting results, the worst counts")."""
    readings = [read_result(protocol, r, vocabulary) for r in sorted(results, key=result_order)]
    worst = max(readings, key=lambda r: READING_RANK[r.status])  # the first of the worst: recorded first
    if worst.status == "pass":
        return readings[-1]
    note = same_day_note(worst.result, [r.result for r in readings])
    if not note:
        return worst
    return Reading(worst.status, worst.result, worst.why + note, worst.sources, worst.limit, note,
                   worst.during + note if worst.during else "")


def _by_day(results) -> dict[dt.date, list]:
    days: dict[dt.date, list] = {}
    for result in results:
        days.setdefault(result.taken_on, []).append(result)
    return days


def judge_gate_test(chart: Chart, protocol: Protocol, rule: BaselineTest, test: str, on: dt.date,
                    vocabulary: Vocabulary) -> GateFinding | None:
    """None when `test` of hard-gate `rule` is met for a start on `on`; else why not."""
    sources = tuple(rule.sources)
    required = required_members(protocol, test, vocabulary)
    if required:
        return _judge_panel(chart, protocol, rule, test, required, on, sources, vocabulary)
    results = _up_to(chart, sorted(vocabulary.members(test)), on)
    if not results:
        return GateFinding(test, "missing", f"no {test} result on record", sources=sources)
    fresh = [r for r in results if _fresh(rule, r.taken_on, on)]
    if not fresh:
        latest = results[-1]
        return GateFinding(test, "stale", f"{_label(latest)} is older than {_validity(rule)}", latest, sources)
    # The worst result of each day counts (never the one entered last); a day that does not pass refuses
    # whatever else is on record.
    by_day = _by_day(fresh)
    days = sorted(by_day)
    for day in reversed(days[-rule.times:]):
        reading = read_day(protocol, by_day[day], vocabulary)
        if reading.status != "pass":
            return GateFinding(test, reading.status, reading.why, reading.result,
                               tuple(dict.fromkeys((*sources, *reading.sources))))
    latest = by_day[days[-1]][-1]
    if rule.last_within is not None and rule.last_within.after(latest.taken_on) < on:
        return GateFinding(test, "spacing", f"{_label(latest)} is more than {rule.last_within.words()} before "
                           f"the start on {on} (the last {test} must be within {rule.last_within.words()})",
                           latest, sources)
    if rule.times > 1:
        chain = _spaced_chain(days, rule)
        if len(chain) < rule.times:
            need = f"{rule.times} results needed, {len(days)} on record"
            if rule.valid_for is not None:
                need += f" within {_validity(rule)}"
            if len(days) >= rule.times and (rule.min_gap or rule.max_gap):
                gap = (days[-1] - days[-2]).days
                need += (f"; {test} on {days[-2]} and {days[-1]} are {gap} day{'s' if gap != 1 else ''} apart, "
                         f"need {_gap_words(rule)}")
            return GateFinding(test, "missing" if len(days) < rule.times else "spacing", f"{test} ({need})",
                               latest, sources)
    return None


def _gap_words(rule: BaselineTest) -> str:
    if rule.min_gap and rule.max_gap:
        return f"{rule.min_gap.words()} to {rule.max_gap.words()}"
    return f"at least {rule.min_gap.words()}" if rule.min_gap else f"at most {rule.max_gap.words()}"


def _spaced_chain(days: list[dt.date], rule: BaselineTest) -> list[dt.date]:
    """Result days ending with the latest, each spaced from the next by `min_gap`..`max_gap` (greedy: the
    latest fitting earlier day)."""
    chain = [days[-1]]
    for day in reversed(days[:-1]):
        if len(chain) == rule.times:
            break
        later = chain[-1]
        if rule.min_gap is not None and rule.min_gap.after(day) > later:
            continue
        if rule.max_gap is not None and rule.max_gap.after(day) < later:
            break
        chain.append(day)
    return chain


def _judge_panel(chart: Chart, protocol: Protocol, rule: BaselineTest, test: str, required: list[str],
                 on: dt.date, sources: tuple, vocabulary: Vocabulary) -> GateFinding | None:
    absent, stale = [], []
    for analyte in required:
        results = _up_to(chart, [analyte], on)
        if not results:
            absent.append(analyte)
        elif not _fresh(rule, results[-1].taken_on, on):
            stale.append(results[-1])
    if not absent and not stale:
        # Complete and recent: each analyte's latest day is read against the initiation limits (the same
        # reading that refuses a start: platelets 120 do not meet abrocitinib's gate, overridden or not).
        failing = [reading for analyte in required
                   if (reading := read_day(protocol, chart.latest_day(analyte, on), vocabulary)).status != "pass"]
        if not failing:
            return None
        return GateFinding(test, "fail", "; ".join(r.why for r in failing), failing[0].result,
                           tuple(dict.fromkeys((*sources, *(s for r in failing for s in r.sources)))))
    parts = []
    if absent:
        parts.append(f"no {', '.join(absent)} result")
    parts += [f"{_label(r)} is older than {_validity(rule)}" for r in stale]
    return GateFinding(test, "incomplete" if absent else "stale",
                       f"{test} incomplete for the initiation limits: {'; '.join(parts)}",
                       stale[0] if stale else None, sources, tuple(absent) + tuple(r.test for r in stale))


def hard_gates(protocol: Protocol, facts: PatientFacts) -> list[BaselineTest]:
    applies, _ = applicable_baseline(protocol, facts)
    return [rule for rule in applies if rule.gate == "hard"]


def gate_findings(chart: Chart, protocol: Protocol, start: dt.date, vocabulary: Vocabulary,
                  ages: tuple[int, int] = CHILDBEARING_AGES) -> list[GateFinding]:
    """Every unmet hard-gate test for a start on `start` (pregnancy rules by the patient's facts then)."""
    findings = []
    for rule in hard_gates(protocol, patient_facts(chart, start, ages)):
        for test in rule.tests:
            finding = judge_gate_test(chart, protocol, rule, test, start, vocabulary)
            if finding is not None:
                findings.append(finding)
    return findings


def open_gate_findings(chart: Chart, course, vocabulary: Vocabulary, today: dt.date,
                       ages: tuple[int, int] = CHILDBEARING_AGES) -> list[GateFinding]:
    """A course started with an overridden gate: the gate tests still unmet. Each test is judged as a start
    on the day of its latest result since the start (or the start itself), so a passing result taken after
    the start meets it, and a result that does not pass never does."""
    protocol = course.protocol
    findings = []
    for rule in hard_gates(protocol, patient_facts(chart, course.start_on, ages)):
        for test in rule.tests:
            codes = required_members(protocol, test, vocabulary) or sorted(vocabulary.members(test))
            later = [r.taken_on for r in _up_to(chart, codes, today) if r.taken_on > course.start_on]
            on = max(later, default=course.start_on)
            finding = judge_gate_test(chart, protocol, rule, test, on, vocabulary)
            if finding is not None:
                findings.append(finding)
    return findings


def gates_unmet_by_withdrawal(before: Chart, after: Chart, course, vocabulary: Vocabulary, today: dt.date,
                              ages: tuple[int, int] = CHILDBEARING_AGES) -> list[GateFinding]:
    """The hard gate tests of a course started on them that a result withdrawn from the record leaves unmet:
    judged as an overridden gate's are (`open_gate_findings`), on the chart with the result (`before`) and
    without it (`after`); only the tests the withdrawal changed (one failing on the record as it was is a
    screen's problem, already alerted on)."""
    was = {f.test for f in open_gate_findings(before, course, vocabulary, today, ages)}
    return [f for f in open_gate_findings(after, course, vocabulary, today, ages) if f.test not in was]


# Findings a result on record would meet (a failing or repeat-range value needs a new test or a referral).
RECORDABLE = ("missing", "stale", "incomplete", "spacing")


def refusal_line(protocol: Protocol, findings: list[GateFinding], mrn: str) -> str:
    """The one-line refusal of a start on unmet gates (the CLI prefixes `error: `)."""
    to_record = list(dict.fromkeys(code for f in findings if f.status in RECORDABLE for code in f.codes_to_record()))
    if len(to_record) == 1:
        hint = f"record it with `tracker result add {mrn} {to_record[0]} VALUE --on DATE`"
    elif to_record:  # each by its own code: a panel (cbc) has no single value to record
        hint = f"record each of {', '.join(to_record)} with `tracker result add {mrn} TEST VALUE --on DATE`"
    else:
        hint = "repeat the test or refer"
    return (f"drug: {protocol.id!r}: {protocol.name} cannot start: {'; '.join(f.why for f in findings)} "
            f"({hint}, or give --override-gate REASON)")


def refusing_results(chart: Chart, protocol: Protocol, on: dt.date | None, vocabulary: Vocabulary) -> list[str]:
    """Results on record that a protocol's initiation limit (`action: refuse`) says forbid starting the
    drug: each test's latest day on or before the start read by `read_day` (the worst result of that day
    counts, the others named), within the validity of the hard gate that asks for the test, if any (an old
    value neither meets nor refuses a start)."""
    reasons = []
    gate_rules = {code: rule for rule in protocol.baseline if rule.gate == "hard"
                  for test in rule.tests for code in vocabulary.members(test)}
    for analyte in dict.fromkeys(t.analyte for t in protocol.thresholds if t.action == "refuse"):
        day = chart.latest_day(analyte, on)
        if not day or (on is not None and not _fresh(gate_rules.get(analyte), day[0].taken_on, on)):
            continue
        reading = read_day(protocol, day, vocabulary)
        if reading.limit:
            reasons.append(reading.why)
    return reasons


def gate_candidates(protocol: Protocol, course, findings: list[GateFinding],
                    screens: dict[str, ScreenEpisode] | None = None) -> list[AlertCandidate]:
    """A course started with an overridden hard gate: one critical alert per test still unmet, until a
    passing result arrives. A screen of the same test that does not pass during the course (`screens`) is the
    same problem: it is told in this alert, not in one of its own. The key names the test, and the latest
    result judged once there is one (`_judged_key`): a result that does not pass is news for a person even
    when the pending gate's alert was acknowledged, so it is a new alert (the pending one resolves)."""
    out = []
    for finding in findings:
        why = finding.why
        sources = finding.sources
        episode = (screens or {}).get(finding.test)
        latest = episode.readings[-1].result if episode is not None else finding.result
        if episode is not None:
            later = [r for r in episode.readings if r.result is not finding.result]
            why += f"; during treatment: {episode.action}"
            if later:
                why += f"; not passed either: {'; '.join(r.why for r in later)}"
            sources = tuple(dict.fromkeys((*sources, *episode.sources)))
        out.append(AlertCandidate(
            condition_key=_judged_key(f"gate:course{course.id}:{finding.test}", latest), kind="gate",
            severity="critical",
            message=f"{protocol.name} started {course.start_on} with its {finding.test} gate overridden "
                    f"({course.gate_override}): {why}; record a passing result with `tracker result add`",
            patient_id=course.patient_id, drug=course.drug, course_id=course.id,
            result_id=finding.result.id if finding.result is not None else None,
            value=shown_value(finding.result)[:100] if finding.result is not None else None,
            limit_text=f"{finding.test} required", sources=sources))
    return out


JUDGED = ":result"  # what `_judged_key` adds to a gate or screen alert's condition, before the result's id


def _judged_key(base: str, result) -> str:
    """A gate or screen alert's condition: `base`, and the result it judges when there is one."""
    return base if result is None else f"{base}{JUDGED}{result.id}"


def judged_base(key: str) -> str:
    """A gate or screen alert's condition without the result it judges (`_judged_key`'s `base`): its course's
    test ("gate:course5:tb", "screen:course9:tb"). Two alerts of one base are one problem judged on different
    results: the newer carries it, the older is superseded (services/review_apply.py)."""
    head, _, tail = key.rpartition(JUDGED)
    return head if head and tail.isdigit() else key


def judged_test(key: str) -> str:
    """The test a gate or screen alert's condition names (`judged_base`'s last part)."""
    return judged_base(key).split(":", 2)[-1]


def screened_tests(protocol: Protocol, facts: PatientFacts, vocabulary: Vocabulary) -> dict[str, Rule]:
    """Tests read during treatment, by the rule that asks for them: the applicable baseline screens (hard or
    advisory) and `during_treatment` tests whose results a gate reads by value: the vocabulary's `passes`,
    or a categorical initiation limit (TPMT absent: `categorical_initiation_tests`). Numeric initiation
    limits (abrocitinib platelets < 150) are not read during a course: the label's own limits act there."""
    applies, _ = applicable_baseline(protocol, facts)
    watched = [rule for rule in protocol.during_treatment
               if not (rule.when == "childbearing_potential" and not facts.childbearing_potential)
               and not (rule.when == "female" and facts.sex != "f")]
    categorical = categorical_initiation_tests(protocol)
    return {test: rule for rule in [*applies, *watched] for test in rule.tests
            if (test in vocabulary and vocabulary.tests[test].passes) or test in categorical}


@dataclass(frozen=True)
class ScreenEpisode:
    """A screen's results during a course since its last passing day, that do not pass (each day read by
    `read_day`), oldest first; `lead` the worst (a positive before a later indeterminate)."""

    test: str
    readings: tuple[Reading, ...]
    lead: Reading
    action: str
    sources: tuple[str, ...]


def screen_episodes(chart: Chart, course, vocabulary: Vocabulary,
                    ages: tuple[int, int] = CHILDBEARING_AGES) -> dict[str, ScreenEpisode]:
    """Per screened test, the results taken after the course started that do not pass and have no passing
    result on a later day: a result that does not pass (an indeterminate after a positive) never ends it."""
    out = {}
    facts = patient_facts(chart, course.start_on, ages)
    for test, rule in sorted(screened_tests(course.protocol, facts, vocabulary).items()):
        days = _by_day(r for r in chart.results_of(test) if r.taken_on > course.start_on)
        open_run: list[Reading] = []
        for day in sorted(days):
            reading = read_day(course.protocol, days[day], vocabulary)
            open_run = [] if reading.status == "pass" else [*open_run, reading]
        if not open_run:
            continue
        lead = max(reversed(open_run), key=lambda r: READING_RANK[r.status])  # the worst, the latest of equals
        action = "repeat or refer" if lead.status == "repeat" else "review whether to continue"
        out[test] = ScreenEpisode(test, tuple(open_run), lead, action,
                                  tuple(dict.fromkeys((*rule.sources, *(s for r in open_run for s in r.sources)))))
    return out


def screening_candidates(chart: Chart, course, vocabulary: Vocabulary,
                         ages: tuple[int, int] = CHILDBEARING_AGES,
                         episodes: dict[str, ScreenEpisode] | None = None) -> list[AlertCandidate]:
    """A screen taken after a course started that does not pass (a positive IGRA on a JAK inhibitor, a
    positive pregnancy test on methotrexate, an absent TPMT on azathioprine): one critical alert per run of
    such results, until a passing result on a later day, leading with the worst of the run and naming the
    others. The key names the run's latest day's result: each new day that does not pass reaches a person
    as a new alert (the previous one resolves, its condition gone), even when the previous one was
    acknowledged or resolved by hand; a result dated earlier, entered late, keeps the alert (session 20's
    second reading: keyed by the run's first result, a later positive was folded into an acknowledged
    alert and reached no one)."""
    out = []
    if episodes is None:
        episodes = screen_episodes(chart, course, vocabulary, ages)
    for test, episode in episodes.items():
        lead, latest = episode.lead, episode.readings[-1]
        spec = vocabulary.tests.get(test)
        expected = f" ({', '.join(spec.passes)} expected)" if spec is not None and spec.passes else ""
        if lead.limit:
            text = lead.during
        else:
            text = f"{_label(lead.result)}{lead.note} during treatment does not pass{expected}"
        text += f": {episode.action}"
        others = [r for r in episode.readings if r is not lead]
        if others:
            text += f"; not passed either: {'; '.join(r.why for r in others)}"
        out.append(AlertCandidate(
            condition_key=_judged_key(f"screen:course{course.id}:{test}", latest.result), kind="gate",
            severity="critical", message=f"{course.protocol.name} (started {course.start_on}): {text}",
            patient_id=course.patient_id, drug=course.drug, course_id=course.id, result_id=lead.result.id,
            value=shown_value(lead.result)[:100],
            limit_text=(f"{test}: {', '.join(spec.passes)}" if expected else f"{test}: initiation limit")[:200],
            sources=episode.sources))
    return out


def course_gate_candidates(chart: Chart, course, vocabulary: Vocabulary, today: dt.date,
                           ages: tuple[int, int] = CHILDBEARING_AGES) -> list[AlertCandidate]:
    """Every `gate` alert of one course: its overridden gates still unmet and its screens during treatment
    that do not pass. One problem is one alert: a screen of a test whose overridden gate is still open is
    told in the gate's alert (with the gate's key, its text the latest results)."""
    episodes = screen_episodes(chart, course, vocabulary, ages)
    findings = open_gate_findings(chart, course, vocabulary, today, ages) if course.gate_override else []
    held = {f.test for f in findings}
    return [*gate_candidates(course.protocol, course, findings, episodes),
            *screening_candidates(chart, course, vocabulary, ages,
                                  {t: e for t, e in episodes.items() if t not in held})]


def counting_results(chart: Chart, rule, tests, due: dt.date, vocabulary: Vocabulary) -> list:
    """Results that count for baseline `tests` of `rule` (a panel counts its analytes): any taken after the
    start, or on or before it within the rule's validity."""
    return [r for test in tests for code in sorted(vocabulary.members(test)) for r in chart.results_of(code)
            if r.taken_on > due or _fresh(rule, r.taken_on, due)]


def baseline_result(chart: Chart, protocol: Protocol, tests, due: dt.date, vocabulary: Vocabulary,
                    reading: int | None = None):
    """The latest result that completes a baseline item asking for `tests` (due on the start), or None.
    A panel needs its required analytes (core/panels.py). A rule with `times: N` (two pregnancy tests 8-10
    days apart, two blood pressures) needs N days each complete on its own; an item planned as reading k
    of N (`reading`) needs k of them."""
    rule = baseline_rule(protocol, tests)
    results = counting_results(chart, rule, tests, due, vocabulary)
    times = rule.times if rule else 1
    if times == 1:
        if not is_complete(tests, {r.test for r in results}, vocabulary):
            return None
        return max(results, key=result_order, default=None)
    days = complete_days(results, tests, vocabulary)
    needed = min(reading or times, times)
    if len(days) < needed:
        return None
    # Reading k of N is done by its k-th day; the item for the whole rule (a hard gate's) by the latest.
    last = days[needed - 1] if reading is not None else days[-1]
    return max((r for r in results if r.taken_on <= last), key=result_order)


def baseline_rule(protocol: Protocol, tests):
    return next((r for r in protocol.baseline if tests and tests[0] in r.tests), None)


def baseline_received(chart: Chart, protocol: Protocol, tests, due: dt.date, vocabulary: Vocabulary) -> set[str]:
    """The codes with a result that counts for a baseline item (what a partial item has received)."""
    rule = baseline_rule(protocol, tests)
    return {r.test for r in counting_results(chart, rule, tests, due, vocabulary)}
