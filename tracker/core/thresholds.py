"""Lab thresholds: whether a result breaches a protocol's action limit, and the alerts and repeat draws
that follow. Pure; a result is anything with `id, test, value_num, value_text, unit, taken_on, ref_high`
and, optionally, `reported_value, reported_unit` (the value as the laboratory sent it, before conversion).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from tracker.core.alerts import AlertCandidate, FollowUp
from tracker.core.chart import same_day_note
from tracker.core.protocol import Protocol, Threshold
from tracker.core.renal import qualified_limit, rule_applies
from tracker.core.terms import CLINIC_DEFAULT, SEVERITY_ORDER


def uln_of(result, vocabulary_ref_high: float | None) -> float | None:
    """The upper limit of normal: the result's own reference range when given, else the vocabulary's."""
    return result.ref_high if result.ref_high is not None else vocabulary_ref_high


def as_reported(result) -> str:
    """` (reported 800 cells/uL)` when the result was converted from another unit, else ``."""
    value, unit = getattr(result, "reported_value", None), getattr(result, "reported_unit", None)
    if value is None or unit is None or unit == result.unit:
        return ""
    return f" (reported {value:g} {unit})"


def breach(threshold: Threshold, result, baseline_value: float | None, uln: float | None,
           baseline_text: str | None = None):
    """(breached, value text, limit text); breached is None when the rule cannot be applied.
    `baseline_text` says what the baseline is (`baseline 80 (mean of 2 readings: ...)`, core/chart.py)."""
    unit = f" {threshold.unit or result.unit or ''}".rstrip()
    if threshold.equals is not None:
        value = result.value_text or ""
        return value in threshold.equals, value, threshold.describe()
    value = result.value_num
    if value is None:
        return None, result.value_text, threshold.describe()
    shown = f"{value:g}{unit}{as_reported(result)}"
    if threshold.below is not None:
        return value < threshold.below, shown, f"< {threshold.below:g}{unit}"
    if threshold.above is not None:
        return value > threshold.above, shown, f"> {threshold.above:g}{unit}"
    if threshold.above_uln is not None:
        if uln is None:
            return None, shown, threshold.describe()
        limit = threshold.above_uln * uln
        return value > limit, f"{shown} ({value / uln:.1f} x ULN {uln:g})", f"> {threshold.above_uln:g} x ULN ({limit:g}{unit})"
    if baseline_value is None or baseline_value == 0:
        return None, shown, threshold.describe()
    change = (value - baseline_value) / baseline_value * 100
    shown = f"{shown} ({change:+.0f}% vs {baseline_text or f'baseline {baseline_value:g}'})"
    if threshold.rise_pct is not None:
        return change > threshold.rise_pct, shown, f"> {threshold.rise_pct:g}% above baseline"
    return -change > threshold.fall_pct, shown, f"falls > {threshold.fall_pct:g}% below baseline"


ACTION_WORDS = {"interrupt": "interrupt", "stop": "stop", "discuss": "discuss with specialist",
                "withhold": "withhold and discuss", "reduce_dose": "reduce the dose", "refuse": "do not give",
                "review": "review", "repeat": "repeat"}


# Among matching rules of one result, which action leads (after severity, and acting now before
# "repeat to confirm"): the most far-reaching first.
ACTION_RANK = {"stop": 0, "withhold": 1, "interrupt": 2, "discuss": 3, "reduce_dose": 4, "review": 5}
# Actions after which the drug is off until the test recovers: the alert books a repeat of the test.
RESTART_ACTIONS = ("interrupt", "withhold")
PAUSE_ADVICE = "Pause the course in tracker if you withhold."


@dataclass(frozen=True)
class Match:
    """One alerting rule a day's results breach: its rule, the result that counts for it (the worst of the
    day's that breach it), shown value and limit, and the action in words."""

    threshold: Threshold
    value: str | None
    limit: str
    action: str
    immediate: bool  # False for a `confirmed` rule still waiting for its confirming repeat
    result: object = None

    def rank(self) -> tuple[int, int, int]:
        return (SEVERITY_ORDER.get(self.threshold.severity, 3), 0 if self.immediate else 1,
                ACTION_RANK.get(self.threshold.action, 9))


def depth(threshold: Threshold, result, baseline_value: float | None, uln: float | None) -> float:
    """How far `result` lies past `threshold`'s limit, in the rule's direction (larger: worse), for a result
    that breaches it: of one day's results breaching a rule, the deepest counts (a categorical rule: the
    first recorded)."""
    value = result.value_num
    if threshold.equals is not None or value is None:
        return 0.0
    if threshold.below is not None:
        return -value
    if threshold.above is not None:
        return value
    if threshold.above_uln is not None:
        return value / uln
    change = (value - baseline_value) / baseline_value
    return change if threshold.rise_pct is not None else -change


def threshold_candidates(protocol: Protocol, course, result, baseline_value: float | None,
                         vocabulary_ref_high: float | None, previous=None, baseline_text: str | None = None,
                         restart_repeat_days: int | None = None):
    """`day_candidates` for a day holding `result` alone, `previous` the one result of the earlier day."""
    return day_candidates(protocol, course, (result,), baseline_value, vocabulary_ref_high,
                          () if previous is None else (previous,), baseline_text, restart_repeat_days)


def day_candidates(protocol: Protocol, course, results, baseline_value: float | None,
                   vocabulary_ref_high: float | None, earlier=(), baseline_text: str | None = None,
                   restart_repeat_days: int | None = None):
    """The alert (at most one) and follow-ups for one test's results of one day (`results`, in
    `result_order`: the latest day, Chart.latest_day) against one course's protocol thresholds.

    For each rule, the worst of the day's results that breach it counts (`depth`; equally deep: the first
    recorded), never whichever was entered last: neutrophils 0.8 and 3 the same day are "< 1 -> interrupt"
    in either order, as a gate reads the worst of a day (core/gates.py read_day). The alert names the day's
    other values (`same_day_note`: "(same day also: neutrophils 3 10^9/L; conflicting results, the worst
    counts)"). A result corrected by the laboratory or by hand replaces the old value: it is not a second one.
    `refuse` (do-not-initiate) limits never alert here. Change-from-baseline rules apply only to results
    taken after the course start. One problem is one alert: of the rules breached, the most severe action
    leads (critical before warning; acting now before "repeat to confirm"; stop, withhold, interrupt,
    discuss, reduce the dose, review), only its message is shown (a lesser rule's text, "elevated up to 3 x
    ULN", would contradict a value at 5 x ULN), and every other breached rule is named in it with its limit
    and action (and its value, where another of the day's results breaches it). The key is the leading
    rule's and its result's (`threshold:courseC:<rule id>:resultR`), so a new breaching result is a new
    condition and a result dealt with by hand stays dealt with; the shell resolves an alert when no longer
    asked for.
    A rule marked `confirmed` acts once a result of `earlier` (the results of the latest day before:
    Chart.earlier_day_results) breached it too; a first breach, or one with only a same-day result before
    it, still alerts (with the rule's severity), asking for the confirming repeat. A rule acting on a repeat
    still low (`after_repeat_below`) reads `earlier` the same way.
    An interrupt or withhold alert books a repeat of the test `restart_repeat_days` after the result (a
    clinic default: the reference says "restart when recovered" without an interval).
    """
    day = tuple(results)
    earlier = tuple(earlier)
    matches: list[Match] = []
    follow_ups: list[FollowUp] = []
    for threshold in protocol.thresholds:
        if threshold.action == "refuse":
            # Initiation limits are judged at a start only (core/gates.py: refusing_results); during
            # treatment the protocol's own interrupt/stop limits act (abrocitinib platelets < 50, not < 150).
            continue
        hits = []
        for result in day:
            if threshold.analyte != result.test:
                continue
            if (threshold.rise_pct or threshold.fall_pct) and result.taken_on <= course.start_on:
                continue
            # repeat-only / no-baseline rules
            if not any(rule_applies(threshold, result, before, baseline_value) for before in earlier or (None,)):
                continue
            uln = uln_of(result, vocabulary_ref_high)
            hit, value, limit = breach(threshold, result, baseline_value, uln, baseline_text)
            if hit:
                hits.append((depth(threshold, result, baseline_value, uln), result, value, limit))
        if not hits:
            continue
        _, result, value, limit = max(hits, key=lambda hit: hit[0])  # the first of the deepest
        if threshold.action == "repeat":
            due = threshold.repeat_in.after(result.taken_on)
            follow_ups.append(FollowUp(
                kind="lab", due=due, tests=(result.test,), origin="threshold", sources=tuple(threshold.sources),
                title=f"Repeat {result.test} for {protocol.name}: {value} on {result.taken_on} ({limit})"))
            continue
        action, immediate = ACTION_WORDS[threshold.action], True
        if getattr(threshold, "confirmed", False):
            confirmed = [before for before in earlier if not (
                (threshold.rise_pct or threshold.fall_pct) and before.taken_on <= course.start_on
            ) and breach(threshold, before, baseline_value, uln_of(before, vocabulary_ref_high))[0]]
            if confirmed:
                action = f"{action} (confirmed: also {confirmed[0].taken_on})"
            else:
                action, immediate = f"repeat to confirm, then {action}", False
        shown_limit = qualified_limit(threshold, limit)  # "(repeat below 60)", "(no pre-start value)"
        shown_limit = f"{shown_limit} ({CLINIC_DEFAULT})" if threshold.clinic_default else shown_limit
        matches.append(Match(threshold, value, shown_limit, action, immediate, result))
    if not matches:
        return [], follow_ups
    matches.sort(key=Match.rank)  # stable: equal ranks keep the protocol's order
    lead = matches[0]
    result = lead.result
    # A rule listed twice (a clinic copy adding what the file already has) is named once; a rule breached by
    # another of the day's results than the leading one says by which value.
    named = dict.fromkeys(f"{m.limit} -> {m.action}" + (f" ({m.value})" if m.result is not result else "")
                          for m in matches[1:])
    named.pop(f"{lead.limit} -> {lead.action}", None)
    threshold = lead.threshold
    text = f"{result.test} {lead.value} on {result.taken_on}{same_day_note(result, day)}: {lead.limit} -> {lead.action}"
    if threshold.message:
        text += f". {threshold.message.strip()}"
    if named:
        text = _then(text, "Also breached: " + "; ".join(named) + ".")
    repeat_booked = any(f.kind == "lab" and result.test in f.tests for f in follow_ups)  # one problem, one repeat
    if threshold.action in RESTART_ACTIONS and lead.immediate and restart_repeat_days and not repeat_booked:
        due = result.taken_on + dt.timedelta(days=restart_repeat_days)
        follow_ups.append(FollowUp(
            kind="lab", due=due, tests=(result.test,), origin="threshold", sources=tuple(threshold.sources),
            title=f"Repeat {result.test} for {protocol.name} before restarting: {lead.value} on "
                  f"{result.taken_on} ({lead.limit}; {restart_repeat_days} days, {CLINIC_DEFAULT})"))
        text = _then(text, f"Repeat {result.test} booked for {due} ({restart_repeat_days} days, "
                           f"{CLINIC_DEFAULT}). {PAUSE_ADVICE}")
    sources = tuple(dict.fromkeys(s for m in matches for s in m.threshold.sources))
    alert = AlertCandidate(
        condition_key=f"threshold:course{course.id}:{threshold.rule_id}:result{result.id}",
        kind="threshold", severity=threshold.severity, message=f"{protocol.name}: {text}",
        patient_id=course.patient_id, drug=course.drug, course_id=course.id, result_id=result.id,
        value=lead.value[:100] if lead.value else None, limit_text=lead.limit[:200], sources=sources)
    return [alert], follow_ups


def _then(text: str, sentence: str) -> str:
    return f"{text}{' ' if text.endswith('.') else '. '}{sentence}"
