"""What a checkpoint's target means as a value on a measure's scale, for drawing it against the assessments
on record (the web view's patient page): EASI-50 is half the baseline EASI, a DLQI reduction of 4 points is
the baseline DLQI minus 4, IGA <= 1 is 1. Pure; the judgement itself is core/response.py's."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from tracker.core.protocol import Criterion, Protocol
from tracker.core.terms import MEASURE_NAMES


@dataclass(frozen=True)
class TargetLine:
    drug: str
    week: int
    due: dt.date  # the checkpoint's date (its planned item's, so pauses count)
    measure: str
    value: float  # the measure's value that just meets the criterion
    label: str  # "EASI-50 (dupilumab week 16): 12.4"
    partial: bool = False  # the partial-response bar (continue to a re-check), not the target


def target_value(criterion: Criterion, baseline) -> float | None:
    """The value of `criterion.measure` that just meets the criterion, given the baseline assessment (anything
    with the measures as attributes); None when it needs a baseline value there is not."""
    if criterion.at_most is not None:
        return float(criterion.at_most)
    before = getattr(baseline, criterion.measure, None) if baseline is not None else None
    if before is None:
        return None
    if criterion.improvement_pct is not None:
        return before * (1 - criterion.improvement_pct / 100)
    return max(0.0, before - criterion.reduction)


def checkpoint_targets(drug: str, protocol: Protocol, start: dt.date, baseline,
                       due_of_week: Mapping[int, dt.date] | None = None) -> list[TargetLine]:
    """Each checkpoint criterion of a course as a line on its measure, at the checkpoint's date
    (`due_of_week`: the planned items' dates by week; otherwise `start` + the week)."""
    due_of_week = due_of_week or {}
    out = []
    for checkpoint in protocol.checkpoints:
        due = due_of_week.get(checkpoint.week, start + dt.timedelta(weeks=checkpoint.week))
        criteria = [(c, False) for c in checkpoint.target]
        if checkpoint.partial is not None:
            criteria += [(c, True) for c in checkpoint.partial.target]
        for criterion, partial in criteria:
            value = target_value(criterion, baseline)
            if value is None:
                continue
            what = f"{criterion.label()}{' (partial response)' if partial else ''}"
            out.append(TargetLine(drug, checkpoint.week, due, criterion.measure, value,
                                  f"{what} ({drug} week {checkpoint.week}): {value:.3g} {MEASURE_NAMES[criterion.measure]}",
                                  partial))
    return out
