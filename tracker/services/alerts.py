"""The alert engine (issue 4). Interface used by the nightly job (issue 7):

    evaluate_clinic(session, library, as_of, config) -> EvaluationSummary

evaluates every live course as of `as_of` and returns the alerts that were newly raised or re-opened by
this evaluation (not the ones already open). It must be idempotent: evaluating twice raises nothing twice.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


@dataclass
class EvaluationSummary:
    raised: list = field(default_factory=list)  # Alert rows newly opened
    reopened: list = field(default_factory=list)  # Alert rows re-opened (snooze expired, condition back)
    resolved: list = field(default_factory=list)  # Alert rows auto-resolved


def evaluate_clinic(session, library, as_of: dt.date, config=None) -> EvaluationSummary:
    """Placeholder until the alert engine lands: raises nothing."""
    return EvaluationSummary()
