"""The test vocabulary (schedules/vocabulary.yaml, read by tracker/protocol_files.py): panels, analytes and
single tests. Pure."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from tracker.core.inputs import finite_number
from tracker.errors import InputError, NotFoundError, ProtocolError


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
    # Units and plausibility (numeric analytes): the range a real result can fall in, in `unit`; the molar
    # mass (g/mol) that converts mass to substance concentrations; other units labs report it in.
    plausible: tuple[float, float] | None = None
    plausible_clinic_default: bool = False
    molar_mass: float | None = None
    # A named scale with units of its own (HbA1c: IFCC mmol/mol and NGSP %, related by an equation, not a
    # factor): tracker/units.py converts on it.
    scale: str | None = None
    also_reported_in: tuple[str, ...] = ()
    # Gate reading of a categorical screen (a clinic default: the reference states no rule, section 15a):
    # the values that let a start go ahead, and those that ask to repeat the test or refer. Any other value
    # (positive) refuses. Empty `passes`: any result satisfies the gate.
    passes: tuple[str, ...] = ()
    repeat_or_refer: tuple[str, ...] = ()
    # What makes a panel complete: each entry is satisfied by a result for any one of its analytes
    # (`[alt, ast]` = ALT or AST). Empty = every analyte of the panel (tracker/core/panels.py).
    required: tuple[tuple[str, ...], ...] = ()
    clinic_default: bool = False  # `required` (or ranges) chosen by the clinic, not given by the reference
    # Standard codes (tracker/core/codes.py): the LOINC code of the test as tracker stores it (the SI/molar
    # variant where `unit` is molar), other LOINC codes a laboratory may send for it (converted through
    # `unit`, e.g. creatinine by mass), and `unit` in UCUM. None: no public source confirmed one.
    loinc: str | None = None
    also_loinc: tuple[str, ...] = ()
    ucum: str | None = None
    # Why a test has no LOINC code where none fits (a clinical review staff record, not an observation a
    # laboratory reports): stated instead of the code, so `schedules validate` does not list it as missing.
    no_loinc: str | None = None

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

    def check_value(self, code: str, value: str, on: dt.date | None = None) -> tuple[float | None, str | None]:
        """Split a result into (numeric, text), rejecting what the test cannot hold. `on`, the day the
        sample was taken, is named in the refusal."""
        test = self.get(code)
        text = value.strip()
        said = f"{code} on {on}" if on is not None else code
        if test.is_numeric:
            try:
                number = finite_number(text, "value")
            except InputError:
                raise InputError("value", value, f"{said} is numeric ({test.unit}): a plain finite number") from None
            return number, None
        if test.is_categorical:
            if text.lower() not in test.values:
                raise InputError("value", value, f"{said} takes one of {', '.join(test.values)}")
            return None, text.lower()
        # Free text (a panel's note): one visible line of bounded length, never empty (fuzz: an empty, a
        # 100,000-character or an ESC-carrying `cbc` value was stored and echoed).
        from tracker.core.inputs import clean_text

        return None, clean_text(text, "value")

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

    def by_loinc(self) -> dict[str, str]:
        """LOINC code -> test code, over `loinc` and `also_loinc`, for the results a laboratory reports:
        analytes and single tests. A panel's own code names an order (FHIR ServiceRequest, a calendar
        entry), not a result: a laboratory reports the panel's analytes (see `panel_by_loinc`)."""
        out: dict[str, str] = {}
        for test in self.tests.values():
            if test.is_panel:
                continue
            for loinc in (test.loinc, *test.also_loinc):
                if loinc:
                    out.setdefault(loinc, test.code)
        return out

    def panel_by_loinc(self) -> dict[str, str]:
        """A panel's LOINC code -> the panel: to name it when a result arrives under an order's code."""
        return {t.loinc: t.code for t in self.tests.values() if t.is_panel and t.loinc}

    def missing_codes(self) -> list[str]:
        """Tests without a LOINC code (or a stated reason for none) and numeric tests without a UCUM unit
        (warnings, not errors)."""
        out = [f"tests.{t.code}.loinc: missing" for t in self.tests.values() if not t.loinc and not t.no_loinc]
        out += [f"tests.{t.code}.ucum: missing" for t in self.tests.values() if t.is_numeric and not t.ucum]
        return out

    def plain_names(self, codes: list[str]) -> str:
        names = [self.tests[c].plain if c in self.tests else c for c in codes]
        if len(names) <= 1:
            return "".join(names)
        return ", ".join(names[:-1]) + " and " + names[-1]


def _plausible(code: str, spec: dict, sources: dict, problems: list[str]) -> tuple[tuple[float, float] | None, bool]:
    value = spec.get("plausible")
    if value is None:
        return None, False
    if not isinstance(value, dict) or not _numbers(value.get("low"), value.get("high")) \
            or value["low"] > value["high"]:
        problems.append(f"vocabulary.yaml: tests.{code}.plausible: expected {{low: X, high: Y}} with X <= Y")
        return None, False
    _check_marked(f"tests.{code}.plausible", value, sources, problems)
    return (float(value["low"]), float(value["high"])), bool(value.get("clinic_default"))


def _molar_mass(code: str, spec: dict, sources: dict, problems: list[str]) -> float | None:
    value = spec.get("molar_mass")
    if value is None:
        return None
    if not isinstance(value, dict) or not _numbers(value.get("g_per_mol")) or value["g_per_mol"] <= 0:
        problems.append(f"vocabulary.yaml: tests.{code}.molar_mass: expected {{g_per_mol: X}} with X > 0")
        return None
    _check_marked(f"tests.{code}.molar_mass", value, sources, problems)
    return float(value["g_per_mol"])


def _numbers(*values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _check_marked(where: str, value: dict, sources: dict, problems: list[str]) -> None:
    """A number in the vocabulary is either cited (`sources`) or marked `clinic_default: true`."""
    cited = value.get("sources") or []
    if not cited and not value.get("clinic_default"):
        problems.append(f"vocabulary.yaml: {where}: needs sources or clinic_default: true")
    for key in cited:
        if key not in sources:
            problems.append(f"vocabulary.yaml: {where}.sources: {key!r} is not defined in sources")
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


def _codes(code: str, spec: dict, problems: list[str]) -> tuple[str | None, tuple[str, ...], str | None]:
    """`loinc`, `also_loinc` and `ucum` of one test, each checked for form (tracker/core/codes.py)."""
    from tracker.core.codes import loinc_problem, ucum_problem

    loinc = spec.get("loinc")
    also = spec.get("also_loinc") or []
    ucum = spec.get("ucum")
    if loinc is not None and (why := loinc_problem(loinc)):
        problems.append(f"vocabulary.yaml: tests.{code}.loinc: {why}")
    if not isinstance(also, list):
        problems.append(f"vocabulary.yaml: tests.{code}.also_loinc: expected a list of LOINC codes")
        also = []
    for other in also:
        if why := loinc_problem(other):
            problems.append(f"vocabulary.yaml: tests.{code}.also_loinc: {why}")
    if ucum is not None:
        if why := ucum_problem(ucum):
            problems.append(f"vocabulary.yaml: tests.{code}.ucum: {why}")
        elif spec.get("unit") is None:
            problems.append(f"vocabulary.yaml: tests.{code}.ucum: a test without a unit takes no UCUM unit")
    return (str(loinc) if loinc is not None else None, tuple(str(a) for a in also),
            str(ucum) if ucum is not None else None)


def parse_vocabulary(data: dict) -> Vocabulary:
    tests: dict[str, TestCode] = {}
    sources = data.get("sources") or {}
    problems: list[str] = []
    for code, spec in (data.get("tests") or {}).items():
        spec = spec or {}
        plausible, plausible_clinic_default = _plausible(code, spec, sources, problems)
        loinc, also_loinc, ucum = _codes(code, spec, problems)
        no_loinc = spec.get("no_loinc")
        if no_loinc is not None and (not isinstance(no_loinc, str) or not no_loinc.strip() or loinc):
            problems.append(f"vocabulary.yaml: tests.{code}.no_loinc: the reason there is no LOINC code "
                            "(a non-empty text), never beside `loinc`")
        if (loinc or also_loinc) and not spec.get("code_sources"):
            problems.append(f"vocabulary.yaml: tests.{code}.code_sources: a LOINC code needs the source it was taken from")
        for key in spec.get("code_sources") or []:
            if key not in sources:
                problems.append(f"vocabulary.yaml: tests.{code}.code_sources: {key!r} is not defined in sources")
        tests[code] = TestCode(
            code=code,
            name=spec.get("name", code),
            plain=spec.get("plain", spec.get("name", code)),
            analytes=tuple(spec.get("analytes", ())),
            unit=spec.get("unit"),
            values=tuple(str(v) for v in spec.get("values", ())),
            ref_low=spec.get("ref_low"),
            ref_high=spec.get("ref_high"),
            plausible=plausible,
            plausible_clinic_default=plausible_clinic_default,
            molar_mass=_molar_mass(code, spec, sources, problems),
            scale=str(spec["scale"]) if spec.get("scale") is not None else None,
            also_reported_in=tuple(str(u) for u in spec.get("also_reported_in", ())),
            passes=tuple(str(v) for v in spec.get("passes", ())),
            repeat_or_refer=tuple(str(v) for v in spec.get("repeat_or_refer", ())),
            required=_required(code, spec),
            clinic_default=bool(spec.get("clinic_default", False)),
            loinc=loinc,
            also_loinc=also_loinc,
            ucum=ucum,
            no_loinc=str(no_loinc).strip() if isinstance(no_loinc, str) else None,
        )
    if problems:
        raise ProtocolError(problems)
    return Vocabulary(tests)
