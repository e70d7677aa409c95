"""What the rules produce: alert candidates and follow-up items, and the alert vocabulary (kinds,
severities). Pure.

Each candidate carries a stable `condition_key`, built from ids and the rule's own id (never display
text): the shell keeps at most one live alert per key, however often the rules are evaluated.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from tracker.errors import ConfigError

# Kinds whose condition is re-derived on every evaluation: when the rules no longer produce the key, the
# condition has cleared and the live alert is resolved automatically. A checkpoint_failed alert is a
# decision about a judged response: it clears only when the course ends (or by hand).
DERIVED_KINDS = ("threshold", "gate", "limit", "overdue", "checkpoint_missed")
ALL_KINDS = (*DERIVED_KINDS, "checkpoint_failed")


@dataclass(frozen=True)
class AlertSettings:
    """`[alerts]` in the site config. The windows are clinic defaults: the reference gives no numbers."""

    baseline_window_days: int = 28  # clinic_default: how old a pre-start assessment may be to count
    checkpoint_window_days: int = 14  # clinic_default: an assessment this many days either side counts
    overdue_grace_days: int = 7  # issue 4 default
    # clinic_default: warning lead before a course limit when the protocol gives no `warn_before`
    # (never more than a quarter of the maximum, so a 7-day steroid limit warns one day ahead).
    limit_lead_days: int = 14

    @classmethod
    def from_section(cls, section: dict | None) -> "AlertSettings":
        values = {}
        for name in ("baseline_window_days", "checkpoint_window_days", "overdue_grace_days", "limit_lead_days"):
            if section and name in section:
                value = section[name]
                if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 365:
                    raise ConfigError(f"alerts.{name}: {value!r}: expected a whole number of days 0-365")
                values[name] = value
        return cls(**values)


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
