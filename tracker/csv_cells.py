"""CSV files tracker writes, safe to open in a spreadsheet (OWASP "CSV injection").

A cell beginning with `=`, `+`, `-`, `@`, a tab or a carriage return is read by spreadsheets as a formula
(`=HYPERLINK(...)`, `+cmd|' /C calc'!A0`); such a cell is written with a single quote in front, which
spreadsheets show as text. A plain number (`-1.5`, `+3`, `-2e-3`) stays as it is: it is a value, not a
formula. Every CSV tracker writes goes through `writer` (or `cell`).
"""

from __future__ import annotations

import csv
import re

FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def cell(value: object) -> str:
    """`value` as a CSV cell a spreadsheet will not run."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_LEADS) and not _PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return text


class _SafeWriter:
    def __init__(self, fh):
        self._writer = csv.writer(fh)

    def writerow(self, row) -> None:
        self._writer.writerow([cell(v) for v in row])

    def writerows(self, rows) -> None:
        for row in rows:
            self.writerow(row)


def writer(fh) -> _SafeWriter:
    """A csv.writer whose every cell goes through `cell`."""
    return _SafeWriter(fh)
