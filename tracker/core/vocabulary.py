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
    # What makes a panel complete: each entry is satisfied by a result for any one of its analytes
    # (`[alt, ast]` = ALT or AST). Empty = every analyte of the panel (tracker/core/panels.py).
    required: tuple[tuple[str, ...], ...] = ()
    clinic_default: bool = False  # `required` (or ranges) chosen by the clinic, not given by the reference

    @property
    def is_panel(self) -> bool:
        return bool(self.analytes)

    @property
    def required_groups(self) -> tuple[tuple[str, ...], ...]:
        """A panel's requirements (each: any one of these analytes); a single test requires itself."""
        if not self.analytes:
            return ((self.code,),)
        return self.required or tuple((a,) for a in self.analytes)

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

    def plain_names(self, codes: list[str]) -> str:
        names = [self.tests[c].plain if c in self.tests else c for c in codes]
        if len(names) <= 1:
            return "".join(names)
        return ", ".join(names[:-1]) + " and " + names[-1]


def _required(code: str, spec: dict) -> tuple[tuple[str, ...], ...]:
    """`required: [wbc, [alt, ast]]` -> ((wbc,), (alt, ast)); each analyte must belong to the panel."""
    groups = []
    for entry in spec.get("required") or ():
        group = tuple(str(a) for a in entry) if isinstance(entry, (list, tuple)) else (str(entry),)
        for analyte in group:
            if analyte not in (spec.get("analytes") or ()):
                raise InputError(f"tests.{code}.required", analyte, f"is not an analyte of {code}")
        groups.append(group)
    return tuple(groups)


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
            required=_required(code, spec),
            clinic_default=bool(spec.get("clinic_default", False)),
        )
    return Vocabulary(tests)
