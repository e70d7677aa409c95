"""What the rules produce: alert candidates and follow-up items, and the alert vocabulary (kinds,
severities). Pure.

Each candidate carries a stable `condition_key`, built from ids and the rule's own id (never display
text): the shell keeps at most one live alert per key, however often the rules are evaluated.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from tracker.core.settings import AlertSettings  # noqa: F401  (re-exported: the rules' settings)

# Kinds whose condition is re-derived on every evaluation: when the rules no longer produce the key, the
# condition has cleared and the live alert is resolved automatically. A checkpoint_failed alert is a
# decision about a judged response: it clears only when the course ends (or by hand).
DERIVED_KINDS = ("threshold", "gate", "limit", "overdue", "checkpoint_missed")
ALL_KINDS = (*DERIVED_KINDS, "checkpoint_failed")
# Kinds whose condition moves only with a change on the chart (a result, an assessment, a course event),
# never with the day alone: a threshold breach or an open gate reads results, not the calendar. The other
# kinds (DATED_KINDS) read planned items, assessments and today, never results: the day alone can move
# them, so an incremental pass reviews them for every patient with an item in a review window.
CHANGE_DRIVEN_KINDS = ("threshold", "gate")
DATED_KINDS = tuple(k for k in ALL_KINDS if k not in CHANGE_DRIVEN_KINDS)


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


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"
