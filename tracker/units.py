"""Unit conversion through pint, for results reported in a unit other than the vocabulary's.

Unit strings are UCUM-style as laboratories write them (`10*9/L`, `10^9/L`, `x10^9/L`, `{cells}/uL`,
`cells/mm3`, `/uL`, `g/dL`, `mg/dL`, `umol/L`, `mm[Hg]`, `mL/min/{1.73_m2}`); they are rewritten into
pint's syntax and pint does every conversion. Conversions between mass and amount of substance
(creatinine mg/dL <-> umol/L) go through pint's `chemistry` context with the analyte's molar mass from
the vocabulary. There is no table of factors here. A unit may hold no number but a power of ten, a unit's
power and eGFR's 1.73 m2: pint would read any other as a factor (`10(9)/L` as 90 per litre).

pint reads its definition files when a registry is made (a fraction of a second; kept parsed in a disk cache,
`_new_registry`), so it is imported only when a result is recorded or imported, and one registry is kept per
process.
"""

from __future__ import annotations

import functools
import re

# UCUM annotations and lab spellings that pint cannot read as written, rewritten before parsing.
_BSA = re.compile(r"\{1\.73_?m2\}|1\.73\s*m(?:\^|\*\*)?2")      # eGFR per 1.73 m2 of body surface
_TIMES_TEN = re.compile(r"^[x×]\s*(?=10)")                      # x10^9/L
_POWER_OF_TEN = re.compile(r"10(?:\*|\s*\^\s*|[eE])([-+]?\d+)")  # 10*9 (UCUM), 10^9, 10E9: all mean 10 ** 9
_ANNOTATION = re.compile(r"\{[^{}]*\}")                          # {cells}/uL: an annotation counts as 1
_UNIT_POWER = re.compile(r"(?<=[A-Za-zµ])([23])(?![\d.])")        # mm3, m2
_SUPERSCRIPT = re.compile(r"[⁺⁻]?[⁰¹²³⁴⁵⁶⁷⁸⁹]+")                   # 10⁹/L, m²: a power written raised
_RAISED = str.maketrans("⁺⁻⁰¹²³⁴⁵⁶⁷⁸⁹", "+-0123456789")
# The only numbers a unit may hold once rewritten (B1: pint reads any other number as a factor, so that
# `x10(9)/L` would be 90 per litre, `10 9/L` 90 and `109/L` 109, a count stored a billion times too small):
# a power of ten (10**9, written 10*9, 10^9 or 10E9), a unit's power (mm**3), and a factor 1 (/uL, {cells}).
_NUMBERS_ALLOWED = (
    re.compile(r"(?<![\w.])10\*\*[-+]?\d+(?![\w.])"),
    re.compile(r"(?<=[A-Za-zµ_\])])(?:\*\*|\^)[-+]?\d+(?![\w.])"),
    re.compile(r"(?<![\w.])1(?![\w.])"),
)
_DIGIT = re.compile(r"\d")
_ALLOWED = re.compile(r"^[\w µ×/*^.\-+(){}\[\]%]+$")
_BIG_EXPONENT = re.compile(r"\*\*\s*[-+]?\d{3,}")                # 10**999999 would take pint a while

MAX_UNIT_LENGTH = 40  # the lab_result.unit column


class UnitProblem(ValueError):
    """A unit string pint cannot read, or cannot convert to the wanted unit."""


@functools.lru_cache(maxsize=1)
def registry():
    import pint

    return _with_lab_units(_new_registry(pint, _pint_cache_folder()))


def _with_lab_units(ureg):
    """`ureg` with the units laboratories write that pint lacks."""
    # Counted things are dimensionless: 800 cells/uL is 800 per microlitre.
    ureg.define("cell = count = cells")
    # eGFR is reported per 1.73 m2 of body surface; a unit so that "mL/min/1.73m2" parses as one.
    ureg.define("standard_body_surface = 1.73 * meter ** 2")
    for definition in SCALE_DEFINITIONS:
        ureg.define(definition)
    return ureg


def _new_registry(pint, folder):
    """pint's default registry, its definition files parsed once per machine: pint keeps the parsed files in
    a disk cache (keyed by their content's hash) when given a folder, which turns the registry's 0.2-0.25 s
    of CPU into a few hundredths (a tenth of a 10,000-row import). The cache holds pint's definitions only,
    no patient data. Without a writable cache folder, or if the cache cannot be read (another process
    writing it at that moment, or a file left torn), the registry is built from the files as before (the
    same registry) and the folder emptied, so the next registry writes it afresh."""
    if folder is not None:
        try:
            return pint.UnitRegistry(cache_folder=folder)
        except Exception:  # pint writes its cache files in place, not atomically
            try:
                for cached in folder.iterdir():
                    cached.unlink(missing_ok=True)
            except OSError:
                pass  # (emptied next time)
    return pint.UnitRegistry()


def _pint_cache_folder():
    """tracker's own folder in the user's cache directory (platformdirs), made 0700 if missing (pint loads
    pickles from it: only this account may write there); None when it cannot be made or written."""
    import os

    from platformdirs import user_cache_path

    from tracker.private_files import private_dir

    try:
        folder = user_cache_path("tracker", appauthor=False) / "pint"
        private_dir(folder)
    except OSError:
        return None
    return folder if os.access(folder, os.W_OK) else None


# Analytes measured on a scale of their own, whose units are related by an equation rather than a factor.
# HbA1c: IFCC (mmol/mol) and NGSP/DCCT (%) by the IFCC-NGSP master equation [NGSP-IFCC in the vocabulary's
# sources]: IFCC = 10.929 x (NGSP - 2.15). pint writes it as an offset unit on a dimension of its own, so that
# pint (never a factor of ours) converts, and "%" or "mmol/mol" on HbA1c never means a plain fraction.
SCALE_DEFINITIONS = (
    "hba1c_ifcc = [glycated_haemoglobin]",
    "hba1c_ngsp = 10.929 * hba1c_ifcc; offset: -23.4974",  # 10.929 x 2.15
)
SCALE_UNITS = {"hba1c": {"mmol/mol": "hba1c_ifcc", "%": "hba1c_ngsp"}}


def to_pint(unit: str) -> str:
    """A lab's unit string in pint's syntax."""
    text = unit.strip()
    if not text or len(text) > MAX_UNIT_LENGTH or not _ALLOWED.match(text):
        raise UnitProblem("is not a unit")
    text = _SUPERSCRIPT.sub(lambda m: "^" + m.group().translate(_RAISED), text)
    text = _BSA.sub("standard_body_surface", text)
    text = _TIMES_TEN.sub("", text)
    text = _ANNOTATION.sub(_annotation, text)
    text = _POWER_OF_TEN.sub(r"10**\1", text)
    text = text.replace("[Hg]", "_Hg").replace("×", "*")
    text = _UNIT_POWER.sub(r"**\1", text)
    if text.startswith("/"):
        text = "1" + text
    if _BIG_EXPONENT.search(text):
        raise UnitProblem("is not a unit")
    rest = text
    for allowed in _NUMBERS_ALLOWED:
        rest = allowed.sub("", rest)
    if _DIGIT.search(rest):
        raise UnitProblem("holds a number that is not a power of ten (10^9, 10*9, x10E9) or a unit's power: "
                          "it would be read as a factor")
    return text


def _annotation(match: re.Match) -> str:
    """A UCUM annotation counts as 1: a factor 1 where it stands alone as a term (`{cells}/uL`), nothing where
    it is attached to a unit or a power of ten (`10*3{cells}/uL` is 10^3/uL, not 10^31/uL)."""
    before, after = match.string[:match.start()].rstrip(), match.string[match.end():].lstrip()
    alone = (not before or before[-1] in "/(*") and (not after or after[0] in "/)*")
    return "1" if alone else ""


def quantity(unit: str):
    """One `unit` as a pint quantity (a scale such as 10^9 stays in the magnitude)."""
    ureg = registry()
    try:
        parsed = ureg.Quantity(to_pint(unit))
    except UnitProblem:
        raise
    except Exception:  # pint raises several error types (undefined unit, syntax, ...) for one problem
        raise UnitProblem("is not a unit pint knows") from None
    if not isinstance(parsed, ureg.Quantity) or parsed.magnitude <= 0:
        raise UnitProblem("is not a unit")
    return parsed


def convert(value: float, unit: str, target: str, molar_mass: float | None = None,
            scale: str | None = None) -> float:
    """`value` in `unit` expressed in `target`; mass <-> substance through `molar_mass` (g/mol) if given;
    on a named `scale` (SCALE_UNITS) only between that scale's own units.

    A conversion takes pint a quarter of a millisecond, too slow for an import of 100,000 rows: a value
    already in the wanted unit is only rounded as pint's answer would be (pint multiplies it by one; checked
    over every vocabulary unit by tests/test_units.py; `same_unit` compares spellings), and other answers are
    remembered."""
    if scale is None and same_unit(unit, target) and _readable(target.strip()):
        return float(f"{value:.10g}")
    return _converted(value, unit, target, molar_mass, scale)


@functools.lru_cache(maxsize=1024)
def same_unit(unit: str, target: str) -> bool:
    """Whether two spellings read as the same unit (`10*9/L` and `10^9/L`), without loading pint."""
    try:
        return to_pint(unit) == to_pint(target)
    except UnitProblem:
        return False


@functools.lru_cache(maxsize=256)
def _readable(unit: str) -> bool:
    quantity(unit)  # raises UnitProblem (not remembered) when pint cannot read it
    return True


@functools.lru_cache(maxsize=65536)
def _converted(value: float, unit: str, target: str, molar_mass: float | None, scale: str | None) -> float:
    ureg = registry()
    if scale is not None:
        units = SCALE_UNITS.get(scale)
        if units is None:
            raise UnitProblem(f"is on an unknown scale {scale!r}")
        if unit.strip() not in units or target.strip() not in units:
            raise UnitProblem(f"cannot be converted to {target} (on this test: {', '.join(units)})")
        converted = ureg.Quantity(value, units[unit.strip()]).to(units[target.strip()])
        return float(f"{converted.magnitude:.10g}")
    # Ten significant digits: enough for any lab value, and 800 cells/mm3 shows as 0.8, not 0.8000000000000002.
    return float(f"{value * _factor(unit, target, molar_mass):.10g}")


@functools.lru_cache(maxsize=4096)
def _factor(unit: str, target: str, molar_mass: float | None) -> float:
    """How many `target` one `unit` is. Units off a named scale convert by a factor (mass <-> substance too),
    so pint parses and converts each pair once per process: an import of 10,000 results asks for the same
    few pairs (issue 16: parsing them per result took most of an HL7 import's time). A unit that cannot be
    converted raises each time (an exception is not cached)."""
    ureg = registry()
    source, wanted = quantity(unit), quantity(target)
    try:
        if molar_mass is not None:
            with ureg.context("chemistry", mw=molar_mass * ureg.gram / ureg.mole):
                converted = source.to(wanted.units)
        else:
            converted = source.to(wanted.units)
    except Exception:  # DimensionalityError and friends: the units measure different things
        raise UnitProblem(f"cannot be converted to {target}") from None
    return converted.magnitude / wanted.magnitude

