"""Baseline gates: what a start needs, and which results on record refuse it. Pure, on a patient's Chart.

Used by `therapy start` (to refuse or warn), by the review (a course started with an overridden gate keeps
a gate alert open until the result arrives), and by plan sync's "baseline satisfied by a result".
"""

from __future__ import annotations

import datetime as dt

from tracker.core.alerts import AlertCandidate
from tracker.core.chart import Chart, result_order
from tracker.core.panels import complete_days, is_complete
from tracker.core.plan import PatientFacts, applicable_baseline
from tracker.core.protocol import Protocol
from tracker.core.thresholds import breach, uln_of
from tracker.core.vocabulary import Vocabulary


def counting_results(chart: Chart, rule, tests, start: dt.date, vocabulary: Vocabulary) -> list:
    """Results that count for baseline `tests` of `rule` (a panel counts its analytes), within the rule's
    validity before `start` if it has one."""
    earliest = (start - dt.timedelta(days=rule.valid_for.approx_days())
                if rule is not None and rule.valid_for is not None else None)
    return [result for test in tests for code in sorted(vocabulary.members(test))
            for result in chart.results_of(code) if earliest is None or result.taken_on >= earliest]


def satisfying_days(chart: Chart, rule, test: str, start: dt.date, vocabulary: Vocabulary) -> set[dt.date]:
    return {result.taken_on for result in counting_results(chart, rule, [test], start, vocabulary)}


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
    return max((r for r in results if r.taken_on <= days[needed - 1]), key=result_order)


def baseline_rule(protocol: Protocol, tests):
    return next((r for r in protocol.baseline if tests and tests[0] in r.tests), None)


def baseline_received(chart: Chart, protocol: Protocol, tests, due: dt.date, vocabulary: Vocabulary) -> set[str]:
    """The codes with a result that counts for a baseline item (what a partial item has received)."""
    rule = baseline_rule(protocol, tests)
    return {r.test for r in counting_results(chart, rule, tests, due, vocabulary)}


def missing_gate_tests(chart: Chart, protocol: Protocol, start: dt.date, vocabulary: Vocabulary) -> list[str]:
    """Hard-gate baseline tests without enough results on record (within the rule's validity, if any).

    A rule with `times: N` (e.g. two pregnancy tests 8-10 days apart) needs results on N different days.
    """
    applies, _ = applicable_baseline(protocol, PatientFacts(chart.sex, chart.childbearing_potential))
    missing = []
    for rule in applies:
        if rule.gate != "hard":
            continue
        for test in rule.tests:
            days = satisfying_days(chart, rule, test, start, vocabulary)
            if len(days) < rule.times:
                missing.append(test if rule.times == 1
                               else f"{test} ({rule.times} results needed, {len(days)} on record)")
    return missing


def refusing_results(chart: Chart, protocol: Protocol, on: dt.date | None, vocabulary: Vocabulary) -> list[str]:
    """Results on record that a protocol's `refuse` threshold says forbid starting the drug: each rule
    judged by the same `breach` as the alerts, on the latest result on or before the start. Change-from-
    baseline rules cannot apply before a start (there is no baseline yet); a rule that cannot be judged
    (x ULN without a range) is left out."""
    reasons = []
    for threshold in protocol.thresholds:
        if threshold.action != "refuse" or threshold.rise_pct or threshold.fall_pct:
            continue
        latest = chart.latest(threshold.analyte, on=on)
        if latest is None:
            continue
        ref_high = vocabulary.tests[latest.test].ref_high if latest.test in vocabulary else None
        hit, shown, limit = breach(threshold, latest, None, uln_of(latest, ref_high))
        if hit:
            reasons.append(f"{threshold.analyte} {shown} on {latest.taken_on} ({limit}): "
                           f"{threshold.message or 'do not initiate'} [{', '.join(threshold.sources)}]")
    return reasons


def gate_candidates(protocol: Protocol, course, missing_tests: list[str]) -> list[AlertCandidate]:
    """A course started with an overridden hard gate: one alert per test still without a result."""
    out = []
    for test in missing_tests:
        code = test.split(" ")[0]
        rule = next((r for r in protocol.baseline if code in r.tests), None)
        out.append(AlertCandidate(
            condition_key=f"gate:course{course.id}:{code}", kind="gate", severity="critical",
            message=f"{protocol.name} started {course.start_on} without the required {test} result "
                    f"(gate overridden: {course.gate_override}); record it with `tracker result add`",
            patient_id=course.patient_id, drug=course.drug, course_id=course.id, limit_text=f"{code} required",
            sources=tuple(rule.sources) if rule else ()))
    return out
