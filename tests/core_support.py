"""Plain data for the core's unit tests: what the core reads of a stored result (tracker/core/chart.py)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass
class Result:
    id: int
    test: str
    value_num: float | None
    taken_on: dt.date
    value_text: str | None = None
    unit: str | None = None
    ref_high: float | None = None
