"""Alert rules (issue 4). Pure: plain data in (protocol objects, results, assessments, items, `today`,
settings), alert candidates out. No session, no clock.

Row arguments are duck-typed: anything with the named attributes works (the table rows do, and so do
small dataclasses in tests). Each candidate carries a stable `condition_key`: the shell keeps at most one
live alert per key, however often the rules are evaluated.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from tracker.errors import ConfigError
from tracker.core.protocol import MEASURE_RANGES, Checkpoint, Criterion, Protocol, Threshold
from tracker.core.settings import AlertSettings

MEASURE_NAMES = {"easi": "EASI", "iga": "IGA", "itch_nrs": "itch NRS", "dlqi": "DLQI", "poem": "POEM"}

# Kinds whose condition is re-derived on every evaluation: when the rules no longer produce the key, the
# condition has cleared and the live alert is resolved automatically. A checkpoint_failed alert is a
# decision about a judged response: it clears only when the course ends (or by hand).
DERIVED_KINDS = ("threshold", "gate", "limit", "overdue", "checkpoint_missed")
ALL_KINDS = (*DERIVED_KINDS, "checkpoint_failed")


@dataclass(frozen=True)
class FollowUp:
    """A new item the rules ask for (repeat a lab; a later checkpoint for a partial responder)."""

    kind: str  # lab | checkpoint
    due: dt.date
    title: str
    sources: tuple[str, ...]
    tests: tuple[str, ...] = ()
    week: int | None = None
    measure: str | None = None
    target: str | None = None
    origin: str = "threshold"  # threshold | partial


@dataclass(frozen=True)
class AlertCandidate:
    condition_key: str
    kind: str  # see ALL_KINDS
    severity: str  # info | warning | critical
    message: str
    patient_id: int
    drug: str | None = None
    course_id: int | None = None
    item_id: int | None = None
    result_id: int | None = None
    value: str | None = None
    limit_text: str | None = None
    sources: tuple[str, ...] = ()
    suggestions: tuple[str, ...] = ()


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


# --------------------------------------------------------------------------------------------------------
# Assessments and response


def improvement(baseline, current) -> dict:
    """Change from baseline per measure: EASI % improvement (EASI-50/75/90 reached), point changes."""
    out: dict = {}
    for measure in MEASURE_RANGES:
        before = getattr(baseline, measure, None) if baseline is not None else None
        now = getattr(current, measure, None)
        if before is None or now is None:
            continue
        entry = {"baseline": before, "current": now, "change": now - before}
        if before > 0:
            entry["improvement_pct"] = round((before - now) / before * 100, 1)
        out[measure] = entry
    easi = out.get("easi")
    if easi and "improvement_pct" in easi:
        easi["reached"] = [f"EASI-{n}" for n in (50, 75, 90) if easi["improvement_pct"] >= n]
    return out


def choose_baseline(assessments, start: dt.date, window_days: int):
    """The latest assessment on or before `start`, no older than the window; None if there is none."""
    earliest = start - dt.timedelta(days=window_days)
    eligible = [a for a in assessments if earliest <= a.assessed_on <= start]
    return max(eligible, key=lambda a: (a.assessed_on, a.id or 0), default=None)


@dataclass(frozen=True)
class CriterionResult:
    criterion: Criterion
    met: bool | None  # None: not evaluable (a value is missing)
    text: str


def judge_criterion(criterion: Criterion, baseline, current) -> CriterionResult:
    m = criterion.measure
    name = MEASURE_NAMES[m]
    now = getattr(current, m, None) if current is not None else None
    before = getattr(baseline, m, None) if baseline is not None else None
    label = criterion.label()
    if now is None:
        return CriterionResult(criterion, None, f"{label}: {name} not recorded at the checkpoint")
    if criterion.at_most is not None:
        met = now <= criterion.at_most
        short = "" if met else f", {_fmt(now - criterion.at_most)} above"
        return CriterionResult(criterion, met, f"{label}: {name} {_fmt(now)}{short}")
    if before is None:
        return CriterionResult(criterion, None, f"{label}: no baseline {name}")
    if criterion.improvement_pct is not None:
        if before <= 0:
            return CriterionResult(criterion, None, f"{label}: baseline {name} is 0, no % improvement")
        pct = (before - now) / before * 100
        met = pct >= criterion.improvement_pct
        short = "" if met else f", {criterion.improvement_pct - pct:.0f} percentage points short"
        return CriterionResult(criterion, met,
                               f"{label}: {name} {_fmt(before)} -> {_fmt(now)} ({pct:.0f}% improvement{short})")
    reduced = before - now
    met = reduced >= criterion.reduction
    short = "" if met else f", {_fmt(criterion.reduction - reduced)} points short"
    return CriterionResult(criterion, met,
                           f"{label}: {name} {_fmt(before)} -> {_fmt(now)} (reduced {_fmt(reduced)} points{short})")


IF_NOT_MET = {"stop": "; the protocol says stop", "consider_stopping": "; the protocol says consider stopping",
              "review": "; review the treatment"}


@dataclass(frozen=True)
class CheckpointOutcome:
    status: str  # met | failed | partial | missed | pending | unevaluable
    summary: str
    assessment: object | None = None
    missing: tuple[str, ...] = ()
    alert: AlertCandidate | None = None
    follow_up: FollowUp | None = None


def _judge(target: list[Criterion], baseline, current) -> tuple[bool | None, list[CriterionResult]]:
    results = [judge_criterion(c, baseline, current) for c in target]
    judged = [r for r in results if r.met is not None]
    if not judged:
        return None, results
    return all(r.met for r in judged), results


def checkpoint_for_item(protocol: Protocol, item) -> tuple[Checkpoint | None, bool]:
    """The protocol checkpoint an item stands for, and whether it is a partial responder's re-check."""
    if item.origin == "partial":
        for checkpoint in protocol.checkpoints:
            if checkpoint.partial and checkpoint.partial.recheck_week == item.week:
                return checkpoint, True
        return None, True
    for checkpoint in protocol.checkpoints:
        if checkpoint.week == item.week:
            return checkpoint, False
    return None, False


def evaluate_checkpoint(
    protocol: Protocol,
    item,
    course,
    assessments,
    today: dt.date,
    settings: AlertSettings,
    suggestions: tuple[str, ...] = (),
) -> CheckpointOutcome:
    """Judge a due checkpoint item on the patient's assessments.

    The assessment nearest the due date within +/- the window counts; after the window, a late one (the
    first after it) still counts, but until then the checkpoint is `missed`. Measures without a value are
    left out and named; nothing judgeable at all is `unevaluable` (an alert, like a missed checkpoint).
    """
    checkpoint, recheck = checkpoint_for_item(protocol, item)
    if checkpoint is None or item.due > today:
        return CheckpointOutcome("pending", "not due")
    window = dt.timedelta(days=settings.checkpoint_window_days)
    start, end = item.due - window, item.due + window
    seen = [a for a in assessments if a.assessed_on <= today]
    in_window = [a for a in seen if start <= a.assessed_on <= end]
    late = False
    if in_window:
        current = min(in_window, key=lambda a: (abs((a.assessed_on - item.due).days), -(a.id or 0)))
    else:
        after = [a for a in seen if a.assessed_on > end]
        current = min(after, key=lambda a: (a.assessed_on, a.id or 0), default=None)
        late = current is not None
    base_key = dict(patient_id=course.patient_id, drug=course.drug, course_id=course.id, item_id=item.id,
                    sources=tuple(checkpoint.sources))
    what = f"week {item.week} response check for {protocol.name}"
    if current is None:
        if today <= end:
            return CheckpointOutcome("pending", f"{what}: waiting for an assessment until {end}")
        return CheckpointOutcome("missed", f"{what}: no assessment", alert=AlertCandidate(
            condition_key=f"checkpoint_missed:item{item.id}", kind="checkpoint_missed", severity="warning",
            message=f"{what} (due {item.due}) missed: no assessment recorded between {start} and {end}",
            limit_text=checkpoint.target_label(), **base_key))
    baseline = choose_baseline([a for a in assessments], course.start_on, settings.baseline_window_days)
    met, results = _judge(checkpoint.target, baseline, current)
    missing = tuple(r.criterion.label() for r in results if r.met is None)
    detail = "; ".join(r.text for r in results)
    when = f"assessment of {current.assessed_on}{' (late)' if late else ''}"
    if met is None:
        reason = "no baseline assessment" if baseline is None else "no judgeable measure"
        return CheckpointOutcome("unevaluable", f"{what}: {reason}", current, missing, alert=AlertCandidate(
            condition_key=f"checkpoint_missed:item{item.id}", kind="checkpoint_missed", severity="warning",
            message=f"{what} cannot be judged on the {when}: {detail} (baseline = latest assessment within "
                    f"{settings.baseline_window_days} days before the start {course.start_on})",
            limit_text=checkpoint.target_label(), **base_key))
    note = f" (not recorded, left out: {', '.join(missing)})" if missing else ""
    if met:
        return CheckpointOutcome("met", f"{what}: target met on the {when}: {detail}", current, missing)
    partial = checkpoint.partial
    if partial is not None and not recheck:
        partial_met, partial_results = _judge(partial.target, baseline, current)
        if partial_met and partial.target:
            due = item.due + dt.timedelta(weeks=partial.recheck_week - checkpoint.week)
            return CheckpointOutcome(
                "partial",
                f"{what}: partial response on the {when} ({'; '.join(r.text for r in partial_results)}); "
                f"re-check at week {partial.recheck_week} ({due})", current, missing,
                follow_up=FollowUp(
                    kind="checkpoint", due=due, origin="partial", week=partial.recheck_week,
                    title=f"Week {partial.recheck_week} response re-check for {protocol.name} "
                          f"(partial response at week {checkpoint.week}): {checkpoint.target_label()}",
                    sources=tuple(checkpoint.sources), measure="+".join(checkpoint.measures),
                    target=checkpoint.target_label()))
    failed = [r.text for r in results if r.met is False]
    options = f"; consider: {', '.join(suggestions)}" if suggestions else ""
    rule = IF_NOT_MET.get(getattr(checkpoint, "if_not_met", "review"), "")
    if partial is not None and not recheck and not partial.target:
        rule += (f"; partial responders may continue to week {partial.recheck_week} "
                 f"({partial.target_label()})")
    return CheckpointOutcome("failed", f"{what}: target not met on the {when}: {detail}", current, missing,
                             alert=AlertCandidate(
        condition_key=f"checkpoint_failed:item{item.id}", kind="checkpoint_failed", severity="warning",
        message=f"{what}: target {checkpoint.target_label()} not met on the {when}: {'; '.join(failed)}"
                f"{note}{rule}{options}",
        value=detail, limit_text=checkpoint.target_label(), suggestions=tuple(suggestions), **base_key))


# --------------------------------------------------------------------------------------------------------
# Treatment algorithm (schedules/_algorithm.yaml)


@dataclass(frozen=True)
class AlgorithmStep:
    next: tuple[str, ...]
    sources: tuple[str, ...]
    clinic_default: bool = False


@dataclass
class Algorithm:
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)  # jak_inhibitor -> drug ids
    after_drug: dict[str, AlgorithmStep] = field(default_factory=dict)
    after_class: dict[str, AlgorithmStep] = field(default_factory=dict)

    def step(self, drug: str, drug_class: str | None) -> AlgorithmStep | None:
        return self.after_drug.get(drug) or (self.after_class.get(drug_class) if drug_class else None)

    def suggest(self, drug: str, drug_class: str | None, exclude: set[str]) -> tuple[tuple[str, ...], tuple]:
        """Next options after `drug`, group names expanded, leaving out `exclude` and the drug itself."""
        step = self.step(drug, drug_class)
        if step is None:
            return (), ()
        out: list[str] = []
        for option in step.next:
            for candidate in self.groups.get(option, (option,)):
                if candidate != drug and candidate not in exclude and candidate not in out:
                    out.append(candidate)
        return tuple(out), step.sources


def parse_algorithm(data: dict, origin: str = "_algorithm.yaml") -> Algorithm:
    """Validate the algorithm file's shape; every step cites sources or is marked clinic_default."""
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping")
    sources = set((data.get("sources") or {}).keys())
    groups = {k: tuple(v) for k, v in (data.get("groups") or {}).items()}

    def steps(section: str) -> dict[str, AlgorithmStep]:
        out = {}
        for key, spec in (data.get(section) or {}).items():
            if not isinstance(spec, dict) or not isinstance(spec.get("next"), list):
                raise ConfigError(f"{origin}: {section}.{key}: expected `next: [drug ids]`")
            cited = tuple(spec.get("sources") or ())
            unknown = [s for s in cited if s not in sources]
            if unknown:
                raise ConfigError(f"{origin}: {section}.{key}.sources: unknown source key {unknown[0]!r}")
            if not cited and not spec.get("clinic_default"):
                raise ConfigError(f"{origin}: {section}.{key}: cite sources or mark clinic_default: true")
            out[key] = AlgorithmStep(tuple(spec["next"]), cited, bool(spec.get("clinic_default")))
        return out

    return Algorithm(groups, steps("after_drug"), steps("after_class"))


# --------------------------------------------------------------------------------------------------------
# Lab thresholds


def uln_of(result, vocabulary_ref_high: float | None) -> float | None:
    """The upper limit of normal: the result's own reference range when given, else the vocabulary's."""
    return result.ref_high if result.ref_high is not None else vocabulary_ref_high


def breach(threshold: Threshold, result, baseline_value: float | None, uln: float | None):
    """(breached, value text, limit text); breached is None when the rule cannot be applied."""
    unit = f" {threshold.unit or result.unit or ''}".rstrip()
    if threshold.equals is not None:
        value = result.value_text or ""
        return value in threshold.equals, value, threshold.describe()
    value = result.value_num
    if value is None:
        return None, result.value_text, threshold.describe()
    shown = f"{value:g}{unit}"
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
    shown = f"{shown} ({change:+.0f}% vs baseline {baseline_value:g})"
    if threshold.rise_pct is not None:
        return change > threshold.rise_pct, shown, f"> {threshold.rise_pct:g}% above baseline"
    return -change > threshold.fall_pct, shown, f"falls > {threshold.fall_pct:g}% below baseline"


ACTION_WORDS = {"interrupt": "interrupt", "stop": "stop", "discuss": "discuss with specialist",
                "withhold": "withhold and discuss", "reduce_dose": "reduce the dose", "refuse": "do not give",
                "review": "review", "repeat": "repeat"}


def threshold_candidates(protocol: Protocol, course, result, baseline_value: float | None,
                         vocabulary_ref_high: float | None, previous=None):
    """Alerts and follow-ups for one result against one course's protocol thresholds.

    Change-from-baseline rules apply only to results taken after the course start. Each alert's key names
    the result, so a new breaching result is a new condition and a result dealt with by hand stays dealt
    with; the shell resolves an alert when its result is no longer the latest for that test.
    A rule marked `confirmed` acts once the previous result of the test breached it too; a first breach
    still alerts (with the rule's severity), asking for the confirming repeat.
    """
    alerts: list[AlertCandidate] = []
    follow_ups: list[FollowUp] = []
    for threshold in protocol.thresholds:
        if threshold.analyte != result.test:
            continue
        if (threshold.rise_pct or threshold.fall_pct) and result.taken_on <= course.start_on:
            continue
        hit, value, limit = breach(threshold, result, baseline_value, uln_of(result, vocabulary_ref_high))
        if not hit:
            continue
        if threshold.action == "repeat":
            due = threshold.repeat_in.after(result.taken_on)
            follow_ups.append(FollowUp(
                kind="lab", due=due, tests=(result.test,), origin="threshold", sources=tuple(threshold.sources),
                title=f"Repeat {result.test} for {protocol.name}: {value} on {result.taken_on} ({limit})"))
            continue
        action = ACTION_WORDS[threshold.action]
        if getattr(threshold, "confirmed", False):
            confirmed = previous is not None and not (
                (threshold.rise_pct or threshold.fall_pct) and previous.taken_on <= course.start_on
            ) and breach(threshold, previous, baseline_value, uln_of(previous, vocabulary_ref_high))[0]
            if confirmed:
                action = f"{action} (confirmed: also {previous.taken_on})"
            else:
                action = f"repeat to confirm, then {action}"
        text = f"{result.test} {value} on {result.taken_on}: {limit} -> {action}"
        if threshold.message:
            text += f". {threshold.message.strip()}"
        alerts.append(AlertCandidate(
            condition_key=f"threshold:course{course.id}:{threshold.describe()}:result{result.id}",
            kind="threshold", severity=threshold.severity, message=f"{protocol.name}: {text}",
            patient_id=course.patient_id, drug=course.drug, course_id=course.id, result_id=result.id,
            value=value[:100] if value else None, limit_text=limit[:200], sources=tuple(threshold.sources)))
    return alerts, follow_ups


# --------------------------------------------------------------------------------------------------------
# Gates, limits, overdue


def gate_candidates(protocol: Protocol, course, missing_tests: list[str]) -> list[AlertCandidate]:
    """A course started with an overridden hard gate: one alert per test still without a result."""
    out = []
    for test in missing_tests:
        rule = next((r for r in protocol.baseline if test in r.tests), None)
        out.append(AlertCandidate(
            condition_key=f"gate:course{course.id}:{test}", kind="gate", severity="critical",
            message=f"{protocol.name} started {course.start_on} without the required {test} result "
                    f"(gate overridden: {course.gate_override}); record it with `tracker result add`",
            patient_id=course.patient_id, drug=course.drug, course_id=course.id, limit_text=f"{test} required",
            sources=tuple(rule.sources) if rule else ()))
    return out


def limit_candidates(protocol: Protocol, course, limit_item, today: dt.date,
                     default_lead_days: int = 14) -> list[AlertCandidate]:
    """A course nearing (within `warn_before`, else the clinic's lead time) or past its maximum duration
    (the planner's limit item date, already moved later by pauses)."""
    limits = protocol.limits
    if limits is None or limit_item is None:
        return []
    reached = limit_item.due
    common = dict(patient_id=course.patient_id, drug=course.drug, course_id=course.id, item_id=limit_item.id,
                  sources=tuple(limits.sources), limit_text=f"maximum {limits.max_duration.words()}")
    day = (today - course.start_on).days + 1
    if today >= reached:
        return [AlertCandidate(
            condition_key=f"limit:course{course.id}:past", kind="limit", severity="critical",
            message=f"{protocol.name} course started {course.start_on} is on day {day}, past its maximum of "
                    f"{limits.max_duration.words()} (reached {reached})",
            value=f"day {day}", **common)]
    if limits.warn_before is not None:
        lead = limits.warn_before.approx_days()
    else:
        lead = min(default_lead_days, limits.max_duration.approx_days() // 4)
    if lead > 0 and today >= reached - dt.timedelta(days=lead):
        return [AlertCandidate(
            condition_key=f"limit:course{course.id}:near", kind="limit", severity="warning",
            message=f"{protocol.name} course started {course.start_on} reaches its maximum of "
                    f"{limits.max_duration.words()} on {reached} (in {(reached - today).days} days)",
            value=f"day {day}", **common)]
    return []


def overdue_candidate(item, today: dt.date, grace_days: int) -> AlertCandidate | None:
    """A lab or baseline item past its due date plus the grace period."""
    if item.kind not in ("lab", "baseline") or item.status != "planned":
        return None
    late = (today - item.due).days
    if late <= grace_days:
        return None
    return AlertCandidate(
        condition_key=f"overdue:item{item.id}", kind="overdue", severity="warning",
        message=f"{item.title} was due {item.due} and is {late} days overdue",
        patient_id=item.patient_id, drug=item.drug, course_id=item.course_id, item_id=item.id,
        value=f"{late} days overdue", limit_text=f"grace {grace_days} days",
        sources=tuple((item.sources or "").split()))
