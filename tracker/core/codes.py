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


# Verhoeff's dihedral-group tables: the check digit scheme of SNOMED CT identifiers (SNOMED CT Technical
# Implementation Guide, "Check-digit"), which catches every single-digit error and adjacent transposition.
_VERHOEFF_D = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 2, 3, 4, 0, 6, 7, 8, 9, 5), (2, 3, 4, 0, 1, 7, 8, 9, 5, 6),
    (3, 4, 0, 1, 2, 8, 9, 5, 6, 7), (4, 0, 1, 2, 3, 9, 5, 6, 7, 8), (5, 9, 8, 7, 6, 0, 4, 3, 2, 1),
    (6, 5, 9, 8, 7, 1, 0, 4, 3, 2), (7, 6, 5, 9, 8, 2, 1, 0, 4, 3), (8, 7, 6, 5, 9, 3, 2, 1, 0, 4),
    (9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
)
_VERHOEFF_P = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8, 9), (1, 5, 7, 6, 2, 8, 3, 0, 9, 4), (5, 8, 0, 3, 7, 9, 6, 1, 4, 2),
    (8, 9, 1, 6, 0, 4, 3, 5, 2, 7), (9, 4, 5, 3, 1, 2, 6, 8, 7, 0), (4, 2, 8, 6, 5, 7, 3, 9, 0, 1),
    (2, 7, 9, 3, 8, 0, 6, 4, 1, 5), (7, 0, 4, 6, 9, 1, 3, 2, 5, 8),
)


def verhoeff_valid(number: str) -> bool:
    """Whether the last digit of `number` is its Verhoeff check digit."""
    check = 0
    for position, char in enumerate(reversed(number)):
        check = _VERHOEFF_D[check][_VERHOEFF_P[position % 8][int(char)]]
    return check == 0


def snomed_problem(code: object) -> str | None:
    if not (isinstance(code, str) and SNOMED.match(code)):
        return f"{code!r} is not a SNOMED CT identifier (6 to 18 digits)"
    if not verhoeff_valid(code):
        return f"{code!r}: wrong check digit (SNOMED CT identifiers end in a Verhoeff check digit)"
    if code[-3:-1] not in ("00", "10"):  # the partition identifier: a concept's, short or long format
        return f"{code!r} is not a SNOMED CT concept identifier (partition {code[-3:-1]}, not 00 or 10)"
    return None


def rxnorm_problem(code: object) -> str | None:
    if isinstance(code, str) and RXNORM.match(code):
        return None
    return f"{code!r} is not an RxNorm concept id (digits)"


def ucum_problem(code: object) -> str | None:
    if isinstance(code, str) and code and UCUM.match(code) and code.count("[") == code.count("]"):
        return None
    return f"{code!r} is not a UCUM unit (e.g. umol/L, 10*9/L, mm[Hg])"
