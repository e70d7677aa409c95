"""Which results of a test's latest day (every one of them: the core reads the day's worst, core/chart.py
latest_day) may breach some threshold: the bounds the shell's SQL uses to choose whose charts
a whole-clinic review loads. Derived mechanically from the protocol models, never written per rule.

`ThresholdBounds.may_breach` is the bounds' meaning in Python; tests/test_prefilter.py checks with
hypothesis that it admits every result `thresholds.breach` alerts on, and that the SQL built from the same
bounds (tracker/db/charts.py) selects exactly what `may_breach` admits.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ThresholdBounds:
    """For one test: the loosest `below` and `above`, every ULN factor, every categorical value, and the
    loosest rise / fall from a course's baseline (in %)."""

    below: float | None = None
    above: float | None = None
    uln_factors: set[float] = field(default_factory=set)
    equals: set[str] = field(default_factory=set)
    rise_pct: float | None = None
    fall_pct: float | None = None

    @property
    def absolute(self) -> bool:
        """Judged on the result alone (or its ULN), without a course's baseline."""
        return self.below is not None or self.above is not None or bool(self.uln_factors) or bool(self.equals)

    @property
    def relative(self) -> bool:
        return self.rise_pct is not None or self.fall_pct is not None

    def may_breach(self, value_num, value_text, uln, baseline=None) -> bool:
        """Whether some rule of these bounds could alert on this result of its test's latest day. `uln`: the result's own
        ref_high, else the vocabulary's; `baseline`: the course's baseline value for relative rules."""
        if self.equals and (value_text or "") in self.equals:
            return True
        if value_num is None:
            return False
        if self.below is not None and value_num < self.below:
            return True
        if self.above is not None and value_num > self.above:
            return True
        if uln is not None and any(value_num > factor * uln for factor in self.uln_factors):
            return True
        if baseline:
            change = (value_num - baseline) / baseline * 100
            if self.rise_pct is not None and change > self.rise_pct:
                return True
            if self.fall_pct is not None and change < -self.fall_pct:
                return True
        return False


def threshold_bounds(protocols, vocabulary=None) -> dict[str, ThresholdBounds]:
    """Bounds per test over every threshold of `protocols` that can alert during a course (initiation
    limits cannot, but for categorical ones: TPMT absent), and, given the vocabulary, the screening values
    that do not pass a gate (a positive test during a course alerts: core/gates.py screening_candidates)."""
    bounds: dict[str, ThresholdBounds] = {}
    for protocol in protocols:
        if vocabulary is not None:
            for rule in [*protocol.baseline, *protocol.during_treatment]:
                for test in rule.tests:
                    spec = vocabulary.tests.get(test)
                    if spec is not None and spec.passes:
                        bounds.setdefault(test, ThresholdBounds()).equals.update(
                            v for v in spec.values if v not in spec.passes)
        for t in protocol.thresholds:
            if t.action == "refuse":
                # A categorical initiation limit (TPMT absent) is read during a course as a screen
                # (core/gates.py screened_tests); numeric ones act at a start only.
                if t.equals is not None:
                    bounds.setdefault(t.analyte, ThresholdBounds()).equals.update(t.equals)
                continue
            _widen(bounds.setdefault(t.analyte, ThresholdBounds()), t)
            if t.analyte == "crcl" and protocol.clearance is not None and "egfr" in protocol.clearance.estimate:
                # eGFR stands in for a clearance not on record (core/renal.py); Cockcroft-Gault estimates
                # depend on age, weight and sex: tracker/db/charts.py admits every patient on such a protocol.
                _widen(bounds.setdefault("egfr", ThresholdBounds()), t)
    return bounds


def _widen(b: ThresholdBounds, t) -> None:
    """Loosen `b` to admit every result threshold `t` may alert on."""
    if t.below is not None:
        b.below = t.below if b.below is None else max(b.below, t.below)
    elif t.above is not None:
        b.above = t.above if b.above is None else min(b.above, t.above)
    elif t.above_uln is not None:
        b.uln_factors.add(t.above_uln)
    elif t.equals is not None:
        b.equals.update(t.equals)
    elif t.rise_pct is not None:
        b.rise_pct = t.rise_pct if b.rise_pct is None else min(b.rise_pct, t.rise_pct)
    elif t.fall_pct is not None:
        b.fall_pct = t.fall_pct if b.fall_pct is None else min(b.fall_pct, t.fall_pct)
