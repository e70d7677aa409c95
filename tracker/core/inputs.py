"""The rules every value from outside (command-line options, CSV rows, files) must meet before anything
uses it. Pure: text and numbers in, a typed value (or a one-line InputError naming the field) out. The
shell calls them at its edges (tracker/validation.py, tracker/cli/options.py, the services' checks).

Why a strict number grammar: Python's float() reads `nan`, `inf`, `1e309` (inf) and `7_0` (70); none of
them is a value a person or a laboratory system meant.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import unicodedata
from dataclasses import dataclass

from tracker.core.durations import Duration
from tracker.errors import InputError

# Plain decimal numbers: digits with an optional fraction and exponent; no `_`, `nan`, `inf`, hex.
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d{1,3})?", re.ASCII)
# MRNs: letters, digits and `-`, `.`, `_`, `/` inside; ASCII only, so no look-alike letters from other
# scripts, and no path or shell meaning at either end.
_MRN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._/-]*[A-Za-z0-9])?")
MRN_MAX = 32
NAME_MAX = 200
USER_MAX = 64
TEXT_MAX = 500  # reasons, doses, gate-override notes
# Calendar arithmetic on a date (a plan 2 years out, a window) must stay inside Python's dates.
EARLIEST_DATE = dt.date(1900, 1, 1)
LATEST_DATE = dt.date(2999, 12, 31)
# A per-patient interval: shorter floods the calendar with draws, longer silently ends monitoring.
INTERVAL_MIN_DAYS = 7
INTERVAL_MAX_DAYS = 731


def finite_number(text: object, field: str, *, low: float | None = None, high: float | None = None,
                  positive: bool = False) -> float:
    """A plain decimal number, finite, within [low, high] (and > 0 when `positive`)."""
    if isinstance(text, bool):
        raise InputError(field, text, "expected a number")
    if isinstance(text, (int, float)):
        number = float(text)
    else:
        raw = str(text).strip()
        if not _NUMBER.fullmatch(raw):
            raise InputError(field, text, "expected a plain number like 12 or 0.5")
        number = float(raw)
    if not math.isfinite(number):
        raise InputError(field, text, "expected a finite number")
    if positive and number <= 0:
        raise InputError(field, text, "must be greater than 0")
    if low is not None and number < low:
        raise InputError(field, text, f"must be at least {low:g}")
    if high is not None and number > high:
        raise InputError(field, text, f"must be at most {high:g}")
    return number


def reference_limits(low: float | None, high: float | None, field: str = "ref") -> tuple[float | None, float | None]:
    """A laboratory's reference range: finite, the upper limit positive, the lower not negative and below
    it (a zero or negative ULN turns every "x ULN" rule into nonsense)."""
    if low is not None:
        low = finite_number(low, f"{field}_low", low=0)
    if high is not None:
        high = finite_number(high, f"{field}_high", positive=True)
    if low is not None and high is not None and low >= high:
        raise InputError(f"{field}_low", f"{low:g}", f"must be below {field}_high ({high:g})")
    return low, high


def _refuse_invisible(text: str, field: str) -> None:
    """Control characters (ESC, DEL, newlines), format characters (zero-width, bidirectional overrides)
    and undecodable bytes change what a line shows without being seen."""
    for ch in text:
        category = unicodedata.category(ch)
        if category in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            raise InputError(field, _shown(text), f"contains an invisible or control character U+{ord(ch):04X}")


def encodable(text: str) -> bool:
    """False for text holding lone surrogates: bytes the command line could not decode (Python passes them
    on as U+DC80..U+DCFF), which no database or file can store."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(text: str) -> str:
    """A refused value cut short for a one-line error (its repr there escapes invisible characters)."""
    return text if len(text) <= 60 else text[:60] + "..."


def clean_text(value: object, field: str, *, max_len: int = TEXT_MAX, required: bool = True) -> str:
    """Free text (a name, a reason, a dose): NFC-normalised, trimmed, no invisible characters, capped."""
    text = unicodedata.normalize("NFC", str(value)).strip() if value is not None else ""
    if not text:
        if required:
            raise InputError(field, value if value is not None else "", "must not be empty")
        return text
    _refuse_invisible(text, field)
    if len(text) > max_len:
        raise InputError(field, _shown(text), f"is {len(text)} characters long (at most {max_len})")
    return text


def clean_mrn(value: object, field: str = "mrn") -> str:
    """An MRN as stored: NFC-normalised, trimmed; ASCII letters, digits and `-._/` inside, at most 32."""
    text = clean_text(value, field, max_len=MRN_MAX)
    if not _MRN.fullmatch(text):
        raise InputError(field, _shown(text), "expected letters A-Z, digits and - . _ / inside (ASCII only)")
    return text


def mrn_key(mrn: str) -> str:
    """The form MRNs are compared in for duplicates: compatibility-normalised and upper-cased, so `dem01`
    and `DEM01` (or a full-width digit) are the same patient."""
    return unicodedata.normalize("NFKC", mrn).strip().upper()


def bounded_date(value: dt.date, field: str) -> dt.date:
    """Any date tracker computes from: within 1900-01-01..2999-12-31 (plans and windows add years)."""
    if not EARLIEST_DATE <= value <= LATEST_DATE:
        raise InputError(field, value.isoformat(), f"outside {EARLIEST_DATE}..{LATEST_DATE}")
    return value


def date_range(start: dt.date | None, end: dt.date | None) -> None:
    """`--from` after `--to` selects nothing; say so instead of "no items"."""
    if start is not None and end is not None and start > end:
        raise InputError("from", start.isoformat(), f"is after --to {end.isoformat()}")


@dataclass(frozen=True)
class DateWindow:
    """`[dates]` in the site config: how far from today a course event may be dated. Clinic defaults (no
    clinical source gives them): a start or stop at most a year ahead, no start before 2000 unless marked
    historic, and a warning for an event more than about six months back (a typo for this year)."""

    max_ahead_days: int = 365  # clinic_default
    earliest_start: dt.date = dt.date(2000, 1, 1)  # clinic_default
    warn_back_days: int = 183  # clinic_default


def event_date(on: dt.date, today: dt.date, field: str, window: DateWindow, *, start: bool = False,
               historic: bool = False) -> str | None:
    """Refuse a course event dated outside the window; return a warning for one long past (or None)."""
    bounded_date(on, field)
    if on > today + dt.timedelta(days=window.max_ahead_days):
        raise InputError(field, on.isoformat(), f"is more than {window.max_ahead_days} days ahead (clinic default)")
    if start and on < window.earliest_start and not historic:
        raise InputError(field, on.isoformat(), f"is before {window.earliest_start} (give --historic if it "
                                                "really is)")
    if on < today - dt.timedelta(days=window.warn_back_days):
        return f"{field} {on.isoformat()} is {(today - on).days} days ago; planned items before today are overdue"
    return None


def interval(value: object, field: str = "every") -> Duration:
    """A monitoring interval between 1 week and 2 years."""
    duration = Duration.parse(value, field)
    if duration.count > 10_000 or not INTERVAL_MIN_DAYS <= duration.approx_days() <= INTERVAL_MAX_DAYS:
        raise InputError(field, str(value).strip(), "must be between 1 week and 2 years")
    return duration
