"""Whether a numeric result can be real, and which unit its reporter probably meant. Pure.

Each numeric analyte may carry a plausible range in the vocabulary (in its own unit; clinic defaults). A
result outside it is refused rather than stored: `neutrophils 800` read as 800 x10^9/L is a typing or unit
mistake, not a patient. The shell converts the reported number as if it had been written in each of the
analyte's other usual units (`also_reported_in`) and the first unit that makes it plausible is suggested.
"""

from __future__ import annotations

import datetime as dt

from tracker.core.vocabulary import TestCode


def is_plausible(test: TestCode, value: float) -> bool:
    """Within the analyte's plausible range (inclusive); an analyte without one accepts any number."""
    if test.plausible is None:
        return True
    low, high = test.plausible
    return low <= value <= high


def suggest_unit(test: TestCode, readings: dict[str, float]) -> str | None:
    """The first unit whose reading makes the result plausible. `readings` maps a candidate unit to the
    reported number read in that unit and converted to the analyte's unit, in the order to try them."""
    for unit, value in readings.items():
        if is_plausible(test, value):
            return unit
    return None


def implausible_reason(test: TestCode, value: float, reported_value: float, reported_unit: str,
                       taken_on: dt.date, readings: dict[str, float]) -> str | None:
    """None when `value` (in the analyte's unit) is plausible; else one line naming the test, the value
    and unit as reported, the date, the range and, when one fits, the unit the reporter probably meant."""
    if is_plausible(test, value):
        return None
    low, high = test.plausible
    said = f"{test.code} {reported_value:g} {reported_unit} on {taken_on}"
    if reported_unit != test.unit:
        said += f" (= {value:g} {test.unit})"
    marker = " (clinic default)" if test.plausible_clinic_default else ""
    text = f"{said} is outside {low:g}-{high:g} {test.unit}{marker}"
    suggestion = suggest_unit(test, {u: v for u, v in readings.items() if u != reported_unit})
    if suggestion is not None:
        text += f"; did you mean {suggestion}?"
    return text
