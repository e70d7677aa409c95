"""Renal decline is never silent: which renal rules act on a result, and the creatinine clearance a
protocol's `crcl` rules read when no clearance is on record. Pure.

- A rule with `after_repeat_below` acts on a repeat only: this result and the latest one of the same test
  taken on an earlier day (a same-day result is not the repeat; of several that day, any: the worst counts)
  are both below the value (BSR csDMARD set: "eGFR < 60, repeat in 1 week; if still > 30 % from
  baseline, withhold and discuss" [SPS-MMF] [DG-DMARD]).
- A rule with `without_baseline` acts only when the course has no pre-start value of its test (ciclosporin's
  change rules cannot judge a course started without renal baselines).
- Creatinine clearance (baricitinib, apremilast labels dose by it; labs rarely report it): a recorded CrCl
  at least as recent as the latest creatinine and eGFR, else the protocol's `clearance.estimate` in order:
  Cockcroft-Gault from the latest creatinine, age, weight and sex [CG-TABERS] [CG-MEDALG], then the
  latest eGFR standing in for CrCl. The weight is a weight result (the latest taken on or before the
  creatinine, else the latest) when there is one, else the weight on the patient record: the record's weight
  carries no date of its own (the patient row's `updated_at` moves with any change), so a dated result is
  preferred to it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace

# 1 mg/dL creatinine = 88.4 umol/L [SI-CONV-JAMA] [SI-CONV-CSMU]; the vocabulary stores umol/L.
CREATININE_UMOL_PER_MG_DL = 88.4
# Cockcroft-Gault: women x 0.85 [CG-TABERS] [CG-MEDALG].
CG_FEMALE_FACTOR = 0.85


def rule_applies(threshold, result, previous, baseline_value: float | None) -> bool:
    """Whether `threshold` may act on `result` at all (before its comparison is judged)."""
    if threshold.without_baseline and baseline_value is not None:
        return False
    limit = threshold.after_repeat_below
    if limit is not None:
        return (result.value_num is not None and result.value_num < limit and previous is not None
                and previous.value_num is not None and previous.value_num < limit)
    return True


def qualified_limit(threshold, limit: str) -> str:
    """A limit's text with the renal qualifiers that decide when it acts."""
    if threshold.after_repeat_below is not None:
        limit += f" on a repeat still < {threshold.after_repeat_below:g}"
    if threshold.without_baseline:
        limit += " (no pre-start value)"
    return limit


def cockcroft_gault(creatinine_umol_l: float, age: int, weight_kg: float, female: bool) -> float | None:
    """CrCl (mL/min) = (140 - age) x weight (kg) / (72 x creatinine (mg/dL)), x 0.85 for women; None when
    the inputs give no meaningful estimate (creatinine 0, age 140 or more)."""
    if creatinine_umol_l <= 0 or age >= 140 or weight_kg <= 0:
        return None
    mg_dl = creatinine_umol_l / CREATININE_UMOL_PER_MG_DL
    value = (140 - age) * weight_kg / (72 * mg_dl)
    return value * CG_FEMALE_FACTOR if female else value


@dataclass(frozen=True)
class EstimatedClearance:
    """A creatinine clearance the chart does not hold, with what it was computed from. `id` is the id of the
    result it rests on (creatinine or eGFR), so an alert's key names a stored result."""

    id: int
    value_num: float
    taken_on: dt.date
    basis: str
    test: str = "crcl"
    value_text: str | None = None
    unit: str = "mL/min"
    ref_high: float | None = None


def clearance_day(chart, protocol, test: str = "crcl") -> tuple:
    """The clearances `protocol`'s `crcl` rules read on `chart`, one per result of the day they rest on (the
    rules read the worst of a day: Chart.latest_day): the recorded ones of their latest day when it is at
    least as recent as the latest creatinine and eGFR (or the protocol estimates nothing), else the first
    estimate its `clearance.estimate` can make, from each numeric result of the latest creatinine (eGFR) day;
    () when there is nothing to read."""
    recorded = chart.latest_day(test)
    rule = protocol.clearance
    if rule is None:
        return recorded
    creatinine, egfr = (tuple(r for r in chart.latest_day(code) if r.value_num is not None)
                        for code in ("creatinine", "egfr"))
    newer = [day[0].taken_on for day in (creatinine, egfr) if day]
    if recorded and (not newer or recorded[0].taken_on >= max(newer)):
        return recorded
    for how in rule.estimate:
        if how == "cockcroft_gault" and creatinine:
            estimates = tuple(e for r in creatinine if (e := _cockcroft_gault_result(chart, r)) is not None)
            if estimates:
                return estimates
        if how == "egfr" and egfr:
            return tuple(EstimatedClearance(r.id, r.value_num, r.taken_on,
                                            f"eGFR {r.value_num:g} mL/min/1.73m2 of {r.taken_on} standing in "
                                            "for creatinine clearance") for r in egfr)
    return recorded


def clearance_result(chart, protocol, test: str = "crcl"):
    """The last recorded of `clearance_day`, or None."""
    day = clearance_day(chart, protocol, test)
    return day[-1] if day else None


def clearance_weight(chart, on: dt.date) -> tuple[float, str] | None:
    """The body weight a Cockcroft-Gault estimate on `on` reads, and where it comes from: the latest weight
    result taken on or before `on`, else the latest weight result, else the weight on the patient record
    (undated, so any weight result is preferred to it); None without any."""
    results = [r for r in chart.results_of("weight") if r.value_num is not None]
    if results:
        weight = next((r for r in reversed(results) if r.taken_on <= on), results[-1])
        return weight.value_num, str(weight.taken_on)
    recorded = getattr(chart, "weight_kg", None)
    if recorded is not None and recorded > 0:
        return recorded, "patient record"
    return None


def _cockcroft_gault_result(chart, creatinine):
    weight = clearance_weight(chart, creatinine.taken_on)
    age = chart.age_on(creatinine.taken_on)
    if weight is None or age is None or chart.sex not in ("f", "m"):
        return None
    kg, where = weight
    value = cockcroft_gault(creatinine.value_num, age, kg, chart.sex == "f")
    if value is None:
        return None
    sex = "female" if chart.sex == "f" else "male"
    basis = (f"Cockcroft-Gault from creatinine {creatinine.value_num:g} umol/L of {creatinine.taken_on}, "
             f"age {age}, weight {kg:g} kg ({where}), {sex}")
    return EstimatedClearance(creatinine.id, round(value, 1), creatinine.taken_on, basis)


def with_basis(alerts, result):
    """Alerts on an estimated clearance say how it was estimated."""
    basis = getattr(result, "basis", None)
    if not basis:
        return alerts
    return [replace(a, message=f"{a.message} (estimated: {basis})") for a in alerts]


def estimates_clearance_from_creatinine(protocol) -> bool:
    """Whether `protocol`'s crcl rules may alert on a creatinine result (Cockcroft-Gault): such alerts
    depend on age, weight and sex, so the whole-clinic prefilter admits every patient on the protocol."""
    return (protocol.clearance is not None and "cockcroft_gault" in protocol.clearance.estimate
            and any(t.analyte == "crcl" for t in protocol.thresholds))
