"""Response checkpoints: the change from a course's baseline assessment, whether a target is met, and
what a due checkpoint item comes to (met, failed, partial, missed, unevaluable). Pure.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from tracker.core.alerts import AlertCandidate, AlertSettings, FollowUp
from tracker.core.alerts import fmt as _fmt
from tracker.core.protocol import MEASURE_RANGES, Checkpoint, Criterion, Protocol
from tracker.core.terms import CLINIC_DEFAULT, MEASURE_NAMES



EASI_STEPS = (50, 75, 90)


def places_keeping_side(value: float, limits, least: int = 0) -> int:
    """The fewest decimal places (from `least`) at which `value` rounds to the same side of every limit in
    `limits` as it lies: 49.5 % is shown as 49.5, never as 50 against a target of 50 (a miss stays visible)."""
    for places in range(least, 7):
        shown = float(f"{value:.{places}f}")
        if all((shown >= limit) == (value >= limit) for limit in limits):
            return places
    return 7


def improvement(baseline, current) -> dict:
    """Change from baseline per measure: EASI % improvement (EASI-50/75/90 reached), point changes. The %
    improvement is rounded to one decimal, or more where one would put it on the other side of an EASI step
    (49.96 is not 50.0)."""
    out: dict = {}
    for measure in MEASURE_RANGES:
        before = getattr(baseline, measure, None) if baseline is not None else None
        now = getattr(current, measure, None)
        if before is None or now is None:
            continue
        entry = {"baseline": before, "current": now, "change": now - before}
        if before > 0:
            pct = (before - now) / before * 100
            entry["improvement_pct"] = round(pct, places_keeping_side(pct, EASI_STEPS, least=1))
            if measure == "easi":
                entry["reached"] = [f"EASI-{n}" for n in EASI_STEPS if pct >= n]
        out[measure] = entry
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
        target = criterion.improvement_pct
        met = pct >= target
        # Whole percentages, with decimals where rounding would show a miss as the target reached.
        places = places_keeping_side(pct, (target,))
        shown = f"{pct:.{places}f}"
        short = "" if met else f", {target - float(shown):.{places}f} percentage points short"
        return CriterionResult(criterion, met,
                               f"{label}: {name} {_fmt(before)} -> {_fmt(now)} ({shown}% improvement{short})")
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
    """A target is met only when every criterion was measured and met; one criterion measured and missed
    fails it whatever is missing; otherwise (something missing, nothing missed) it cannot be judged."""
    results = [judge_criterion(c, baseline, current) for c in target]
    if any(r.met is False for r in results):
        return False, results
    if all(r.met for r in results):
        return True, results
    return None, results


def _why_unjudgeable(result: CriterionResult, baseline, current) -> str:
    """`DLQI not recorded`, `no baseline EASI`: what stops one criterion being judged."""
    measure = result.criterion.measure
    name = MEASURE_NAMES[measure]
    if current is None or getattr(current, measure, None) is None:
        return f"{name} not recorded"
    if baseline is None or getattr(baseline, measure, None) is None:
        return f"no baseline {name}"
    return f"baseline {name} is 0"


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


def target_words(checkpoint: Checkpoint) -> str:
    """The target as alerts and calendars show it, marked when the clinic chose it (no source gives it)."""
    label = checkpoint.target_label()
    return f"{label} ({CLINIC_DEFAULT})" if checkpoint.clinic_default else label


def evaluate_checkpoint(
    protocol: Protocol,
    item,
    course,
    assessments,
    today: dt.date,
    settings: AlertSettings,
    suggestions: tuple[str, ...] = (),
    advice: tuple[str, ...] = (),
) -> CheckpointOutcome:
    """Judge a due checkpoint item on the patient's assessments.

    The assessment nearest the due date within +/- the window decides (a tie: the one recorded last); after
    the window, a late one (the first after it) still counts, but until then the checkpoint is `missed`. A
    target is met only when every criterion was measured and met: a missing measure with nothing failed is
    `unevaluable` (an alert naming what is missing), never a pass.

    An item already judged (status done) is judged again while its window is open, so a closer assessment
    recorded later decides instead (the shell keeps one alert per item); an assessment that cannot judge it
    leaves the earlier judgement standing (`pending`).

    `advice`: what the treatment algorithm says about the suggestions (class left out, age restriction).
    """
    checkpoint, recheck = checkpoint_for_item(protocol, item)
    if checkpoint is None or item.due > today:
        return CheckpointOutcome("pending", "not due")
    outcome = _evaluate(protocol, checkpoint, recheck, item, course, assessments, today, settings, suggestions,
                        advice)
    if item.status == "done" and outcome.status not in JUDGED:
        return CheckpointOutcome("pending", "judged earlier; nothing closer can judge it")
    return outcome


JUDGED = ("met", "failed", "partial")


def _evaluate(protocol, checkpoint, recheck, item, course, assessments, today, settings, suggestions,
              advice) -> CheckpointOutcome:
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
    target = target_words(checkpoint)
    if current is None:
        if today <= end:
            return CheckpointOutcome("pending", f"{what}: waiting for an assessment until {end}")
        return CheckpointOutcome("missed", f"{what}: no assessment", alert=AlertCandidate(
            condition_key=f"checkpoint_missed:item{item.id}", kind="checkpoint_missed", severity="warning",
            message=f"{what} (due {item.due}) missed: no assessment recorded between {start} and {end}",
            limit_text=target, **base_key))
    baseline = choose_baseline([a for a in assessments], course.start_on, settings.baseline_window_days)
    met, results = _judge(checkpoint.target, baseline, current)
    missing = tuple(r.criterion.label() for r in results if r.met is None)
    detail = "; ".join(r.text for r in results)
    when = f"assessment of {current.assessed_on}{' (late)' if late else ''}"
    if met is None:
        if baseline is None:
            why = ["no baseline assessment"]
        else:
            why = list(dict.fromkeys(_why_unjudgeable(r, baseline, current) for r in results if r.met is None))
        return CheckpointOutcome("unevaluable", f"{what}: unevaluable: {', '.join(why)}", current, missing,
                                 alert=AlertCandidate(
            condition_key=f"checkpoint_unevaluable:item{item.id}", kind="checkpoint_missed", severity="warning",
            message=f"unevaluable: {', '.join(why)}: {what} cannot be judged on the {when} ({detail}); record "
                    f"the missing measure at a visit between {start} and {end}, or judge it yourself (baseline ="
                    f" latest assessment within {settings.baseline_window_days} days ({CLINIC_DEFAULT}) before the"
                    f" start {course.start_on})",
            value=detail, limit_text=target, **base_key))
    note = f" (not recorded: {', '.join(missing)})" if missing else ""
    if met:
        return CheckpointOutcome("met", f"{what}: target met on the {when}: {detail}", current, missing)
    partial = checkpoint.partial
    if partial is not None and not recheck and partial.target:
        partial_met, partial_results = _judge(partial.target, baseline, current)
        if partial_met:
            due = _recheck_due(item, checkpoint, partial)
            return CheckpointOutcome(
                "partial",
                f"{what}: partial response on the {when} ({'; '.join(r.text for r in partial_results)}); "
                f"re-check at week {partial.recheck_week} ({due})", current, missing,
                follow_up=_recheck(protocol, checkpoint, partial, due))
    failed = [r.text for r in results if r.met is False]
    options = f"; consider: {', '.join(suggestions)}" if suggestions else ""
    options += "".join(f"; {text}" for text in advice)
    rule = IF_NOT_MET.get(getattr(checkpoint, "if_not_met", "review"), "")
    follow_up = None
    if partial is not None and not recheck and not partial.target:
        # The labels let partial responders continue but define no partial response: the clinician judges,
        # and the re-check is booked so that continuing is a decision with a date, not an open end.
        due = _recheck_due(item, checkpoint, partial)
        follow_up = _recheck(protocol, checkpoint, partial, due)
        rule = (f"{rule} unless the response is partial: partial responders may continue to week "
                f"{partial.recheck_week}{' (' + CLINIC_DEFAULT + ')' if partial.clinic_default else ''}; a week-"
                f"{partial.recheck_week} re-check is booked for {due} (stopping the course cancels it)")
    if checkpoint.note:
        rule += f"; protocol note: {checkpoint.note.strip().rstrip('.')}"
    return CheckpointOutcome("failed", f"{what}: target not met on the {when}: {detail}", current, missing,
                             alert=AlertCandidate(
        condition_key=f"checkpoint_failed:item{item.id}", kind="checkpoint_failed", severity="warning",
        message=f"{what}: target {target} not met on the {when}: {'; '.join(failed)}"
                f"{note}{rule}{options}",
        value=detail, limit_text=target, suggestions=tuple(suggestions), **base_key),
                             follow_up=follow_up)


def _recheck_due(item, checkpoint: Checkpoint, partial) -> dt.date:
    return item.due + dt.timedelta(weeks=partial.recheck_week - checkpoint.week)


def _recheck(protocol: Protocol, checkpoint: Checkpoint, partial, due: dt.date) -> FollowUp:
    return FollowUp(
        kind="checkpoint", due=due, origin="partial", week=partial.recheck_week,
        title=f"Week {partial.recheck_week} response re-check for {protocol.name} "
              f"(partial response at week {checkpoint.week}): {checkpoint.target_label()}",
        sources=tuple(dict.fromkeys([*checkpoint.sources, *partial.sources])),
        measure="+".join(checkpoint.measures), target=checkpoint.target_label())


def failures_cleared_by(protocol: Protocol, item, status: str) -> tuple[int, ...]:
    """The checkpoint weeks of a course whose open failures an outcome of `item` settles (besides its own).

    A met target settles an earlier checkpoint whose failure only asked for a review (baricitinib's week 8
    after a week-16 success); a met partial responder's re-check settles its own checkpoint's failure."""
    if status != "met":
        return ()
    checkpoint, recheck = checkpoint_for_item(protocol, item)
    if checkpoint is None:
        return ()
    week = item.week or checkpoint.week
    weeks = [c.week for c in protocol.checkpoints if c.if_not_met == "review" and c.week < week]
    if recheck:
        weeks.append(checkpoint.week)
    return tuple(sorted(set(weeks)))
