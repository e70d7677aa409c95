"""Standard codes carried by the vocabulary and the protocols: LOINC (tests), UCUM (units), ATC, SNOMED CT
and RxNorm (drugs). Pure: what a well-formed code looks like, and which codes are missing.

A malformed code is an error (`schedules validate` fails); a missing one is reported as a warning, because
a code is left out on purpose where no public source confirmed it (never invented)."""

from __future__ import annotations

import re

LOINC = re.compile(r"^(\d{1,7})-(\d)$")
ATC = re.compile(r"^[A-Z]\d{2}[A-Z]{2}\d{2}$")
SNOMED = re.compile(r"^[1-9]\d{5,17}$")  # an SCTID: 6 to 18 digits
RXNORM = re.compile(r"^[1-9]\d{0,9}$")   # an RxCUI
# UCUM's case-sensitive syntax, loosely: atoms, prefixes, powers of ten (10*9), brackets (mm[Hg]),
# annotations ({cells}), `.` and `/`, exponents. A unit pint then cannot convert is caught in the shell.
UCUM = re.compile(r"^(?:[A-Za-z%'\[\]0-9.*/^+\-_]|\{[^{}]*\})+$")


def loinc_check_digit(number: str) -> int:
    """LOINC's mod-10 check digit of the digits before the hyphen (the Luhn scheme: every second digit from
    the right doubled, the digits of the products summed)."""
    total = 0
    for position, char in enumerate(reversed(number)):
        digit = int(char)
        if position % 2 == 0:
            digit *= 2
            digit = digit // 10 + digit % 10
        total += digit
    return (10 - total % 10) % 10


def loinc_problem(code: object) -> str | None:
    """Why `code` is not a well-formed LOINC code, or None."""
    match = LOINC.match(code) if isinstance(code, str) else None
    if match is None:
        return f"{code!r} is not a LOINC code (digits, hyphen, check digit: 14682-9)"
    if loinc_check_digit(match.group(1)) != int(match.group(2)):
        return f"{code!r}: wrong check digit (expected {match.group(1)}-{loinc_check_digit(match.group(1))})"
    return None


def atc_problem(code: object) -> str | None:
    if isinstance(code, str) and ATC.match(code):
        return None
    return f"{code!r} is not an ATC code (7 characters, e.g. L04AX03)"


def snomed_problem(code: object) -> str | None:
    if isinstance(code, str) and SNOMED.match(code):
        return None
    return f"{code!r} is not a SNOMED CT identifier (6 to 18 digits)"


def rxnorm_problem(code: object) -> str | None:
    if isinstance(code, str) and RXNORM.match(code):
        return None
    return f"{code!r} is not an RxNorm concept id (digits)"


def ucum_problem(code: object) -> str | None:
    if isinstance(code, str) and code and UCUM.match(code) and code.count("[") == code.count("]"):
        return None
    return f"{code!r} is not a UCUM unit (e.g. umol/L, 10*9/L, mm[Hg])"
