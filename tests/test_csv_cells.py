"""Issue 18 item 5: every CSV tracker writes escapes cells a spreadsheet would run as a formula (OWASP CSV
injection), and leaves plain numbers as numbers (tracker/csv_cells.py)."""

from __future__ import annotations

import csv
import io

import pytest

from tracker.csv_cells import cell, writer


@pytest.mark.parametrize("value,written", [
    ("=HYPERLINK(\"http://x\",\"y\")", "'=HYPERLINK(\"http://x\",\"y\")"),
    ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
    ("-2+3", "'-2+3"),
    ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1", "'\t=1"),
    ("\r=1", "'\r=1"),
    ("-", "'-"),
    ("-1.5", "-1.5"),
    ("+3", "+3"),
    ("-2e-3", "-2e-3"),
    ("-.5", "-.5"),
    ("alt", "alt"),
    ("a=b", "a=b"),
    ("", ""),
    (None, ""),
    (-1.5, "-1.5"),
    (42, "42"),
])
def test_formula_leading_cells_are_quoted_and_numbers_kept(value, written):
    assert cell(value) == written


def test_the_writer_escapes_every_cell():
    out = io.StringIO()
    writer(out).writerows([["=1+1", "-4", "ok"], ["@x", 7, None]])
    assert list(csv.reader(io.StringIO(out.getvalue()))) == [["'=1+1", "-4", "ok"], ["'@x", "7", ""]]


def test_no_other_csv_writer_in_tracker():
    """Any CSV file tracker writes goes through tracker/csv_cells.py."""
    from pathlib import Path

    import tracker

    root = Path(tracker.__file__).parent
    users = [p.relative_to(root).as_posix() for p in root.rglob("*.py")
             if "csv.writer(" in p.read_text() or "csv.DictWriter(" in p.read_text()]
    assert users == ["csv_cells.py"]
