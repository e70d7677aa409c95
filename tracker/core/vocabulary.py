"""The test vocabulary (schedules/vocabulary.yaml, read by tracker/protocol_files.py): panels, analytes and
single tests. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field

from tracker.errors import InputError, NotFoundError


@dataclass(frozen=True)
class TestCode:
    code: str
    name: str
    plain: str
    analytes: tuple[str, ...] = ()
    unit: str | None = None
    values: tuple[str, ...] = ()
    ref_low: float | None = None
    ref_high: float | None = None
    # Gate reading of a categorical screen (a clinic default: the reference states no rule, section 15a):
    # the values that let a start go ahead, and those that ask to repeat the test or refer. Any other value
    # (positive) refuses. Empty `passes`: any result satisfies the gate.
    passes: tuple[str, ...] = ()
    repeat_or_refer: tuple[str, ...] = ()

    @property
    def is_panel(self) -> bool:
        return bool(self.analytes)

    @property
    def is_numeric(self) -> bool:
        return self.unit is not None and not self.analytes

    @property
    def is_categorical(self) -> bool:
        return bool(self.values)


@dataclass
class Vocabulary:
    tests: dict[str, TestCode] = field(default_factory=dict)

    def __contains__(self, code: str) -> bool:
        return code in self.tests

    def get(self, code: str) -> TestCode:
        code = code.strip().lower()
        if code not in self.tests:
            import difflib

            raise NotFoundError("test", code, difflib.get_close_matches(code, self.tests, n=3))
        return self.tests[code]

    def covers(self, code: str) -> set[str]:
        """Every test code a result for `code` counts for: itself and each panel containing it."""
        out = {code}
        for test in self.tests.values():
            if code in test.analytes:
                out.add(test.code)
        return out

    def members(self, code: str) -> set[str]:
        """Codes whose results satisfy a requirement for `code`: the code and, for a panel, its analytes."""
        test = self.tests.get(code)
        return {code, *(test.analytes if test else ())}

    def check_value(self, code: str, value: str) -> tuple[float | None, str | None]:
        """Split a result into (numeric, text), rejecting what the test cannot hold."""
        test = self.get(code)
        text = value.strip()
        if test.is_numeric:
            try:
                return float(text), None
            except ValueError:
                raise InputError("value", value, f"{code} is numeric ({test.unit})") from None
        if test.is_categorical:
            if text.lower() not in test.values:
                raise InputError("value", value, f"{code} takes one of {', '.join(test.values)}")
            return None, text.lower()
        return None, text

    def gate_reading(self, code: str, value_text: str | None) -> str:
        """How a gate reads a result of `code`: `pass`, `repeat` (repeat or refer) or `fail`; `pass` for a
        test without gate values (any result satisfies it)."""
        test = self.tests.get(code)
        if test is None or not test.passes:
            return "pass"
        value = (value_text or "").strip().lower()
        if value in test.passes:
            return "pass"
        return "repeat" if value in test.repeat_or_refer else "fail"

    def plain_names(self, codes: list[str]) -> str:
        names = [self.tests[c].plain if c in self.tests else c for c in codes]
        if len(names) <= 1:
            return "".join(names)
        return ", ".join(names[:-1]) + " and " + names[-1]


def parse_vocabulary(data: dict) -> Vocabulary:
    tests: dict[str, TestCode] = {}
    for code, spec in (data.get("tests") or {}).items():
        spec = spec or {}
        tests[code] = TestCode(
            code=code,
            name=spec.get("name", code),
            plain=spec.get("plain", spec.get("name", code)),
            analytes=tuple(spec.get("analytes", ())),
            unit=spec.get("unit"),
            values=tuple(str(v) for v in spec.get("values", ())),
            ref_low=spec.get("ref_low"),
            ref_high=spec.get("ref_high"),
            passes=tuple(str(v) for v in spec.get("passes", ())),
            repeat_or_refer=tuple(str(v) for v in spec.get("repeat_or_refer", ())),
        )
    return Vocabulary(tests)
