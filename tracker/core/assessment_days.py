"""One value per measure per patient per day: a second assessment of a measure on a day that already has
one is a conflict unless it explicitly replaces the first. Pure (plain objects with `assessed_on`,
`id` and the measure attributes).

Why: the baseline and every checkpoint read "the assessment on or before a day"; two values of one measure
on one day make the choice depend on insertion order, so a second reading silently flipped checkpoints.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from tracker.core.protocol import MEASURE_RANGES


@dataclass(frozen=True)
class SameDayPlan:
    """What recording `values` on a day comes to, given the assessments already on that day."""

    conflicts: tuple  # assessments that already hold one of the measures given (oldest first)
    measures: tuple[str, ...]  # the measures given that are already recorded that day
    merged: dict  # with replace: the replaced rows' other measures, then the new values (new win)


def same_day_plan(existing, on: dt.date, values: dict) -> SameDayPlan:
    """The assessments of `existing` on `on` that record a measure of `values` (its non-None entries), and
    the measures a replacement row carries: those of the conflicting rows it replaces, overridden by the
    new values, so replacing EASI does not lose an IGA recorded with it."""
    given = {m: v for m, v in values.items() if v is not None}
    conflicts = sorted((a for a in existing if a.assessed_on == on
                        and any(getattr(a, m, None) is not None for m in given)),
                       key=lambda a: a.id or 0)
    measures = tuple(m for m in MEASURE_RANGES if m in given
                     and any(getattr(a, m, None) is not None for a in conflicts))
    merged: dict = {}
    for row in conflicts:
        merged.update({m: getattr(row, m) for m in MEASURE_RANGES if getattr(row, m, None) is not None})
    merged.update(given)
    return SameDayPlan(tuple(conflicts), measures, merged)
