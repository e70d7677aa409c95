"""Issue 4: `tracker result import FILE.csv`: all or nothing, --skip-bad with a rejects file."""

from __future__ import annotations

import csv

from freezegun import freeze_time

from tests.conftest import dump_database

HEADER = "mrn,test,value,unit,taken_on,ref_low,ref_high\n"


def setup(tracker):
    tracker("patient add M1 --name 'Max Test' --dob 1970-01-01")
    tracker("patient add M2 --name 'Mia Test' --dob 1972-01-01")
    tracker("therapy start M1 methotrexate --on 2026-01-05")


@freeze_time("2026-03-02")
def test_one_bad_row_imports_nothing_and_names_the_row(tracker, db_url, tmp_path):
    setup(tracker)
    path = tmp_path / "labs.csv"
    path.write_text(HEADER + "M1,alt,30,U/L,2026-02-20,,\n"
                             "M1,neutrophils,lots,,2026-02-20,,\n"
                             "M2,cbc_typo,4,,2026-02-20,,\n"
                             "M9,alt,30,,2026-02-20,,\n"
                             "M2,alt,30,,2026-02-31,,\n")
    before = dump_database(db_url)
    result = tracker(["result", "import", str(path)], ok=False)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert "4 of 5 rows rejected, nothing imported" in lines[0]
    assert lines[1].startswith("line 3: value: 'lots'")
    assert lines[2].startswith("line 4: test: 'cbc_typo'")
    assert lines[3].startswith("line 5: mrn: 'M9'")
    assert lines[4].startswith("line 6: taken_on: '2026-02-31'")
    assert dump_database(db_url) == before


@freeze_time("2026-03-02")
def test_good_file_imports_completes_items_and_evaluates_as_results_land(tracker, tmp_path):
    setup(tracker)
    path = tmp_path / "labs.csv"
    path.write_text(HEADER + "M1,alt,130,U/L,2026-02-28,0,40\n"
                             "M1,neutrophils,4.2,10^9/L,2026-02-28,,\n"
                             "M2,tpmt,normal,,2026-02-01,,\n")
    out = tracker(["result", "import", str(path)]).stdout
    assert "imported 3 results" in out
    assert "threshold, critical" in out
    alerts = tracker.json("alerts")
    assert any(a["kind"] == "threshold" and a["mrn"] == "M1" and a["severity"] == "critical" for a in alerts)
    again = tracker(["result", "import", str(path)], ok=False)  # the same file twice: nothing doubles
    assert again.exit_code == 2 and "already on record" in again.stderr


@freeze_time("2026-03-02")
def test_skip_bad_imports_good_rows_and_writes_rejects(tracker, tmp_path):
    setup(tracker)
    path = tmp_path / "labs.csv"
    path.write_text(HEADER + "M1,alt,30,U/L,2026-02-20,,\n"
                             "M1,alt,abc,U/L,2026-02-21,,\n"
                             "M2,tpmt,normal,,2026-02-01,,\n")
    result = tracker(["result", "import", str(path), "--skip-bad"])
    assert "imported 2 results" in result.stdout
    assert "line 3: value: 'abc'" in result.stderr
    rejects = tmp_path / "labs.rejects.csv"
    rows = list(csv.DictReader(rejects.open()))
    assert len(rows) == 1 and rows[0]["line"] == "3" and rows[0]["value"] == "abc" and "numeric" in rows[0]["reason"]
    shown = tracker.json("patient show M2")
    assert [r["test"] for r in shown["results"]] == ["tpmt"]
    custom = tmp_path / "out" / "bad.csv"
    custom.parent.mkdir()
    path.write_text(HEADER + "M1,alt,abc,U/L,2026-02-22,,\n")
    tracker(["result", "import", str(path), "--skip-bad", "--rejects", str(custom)])
    assert custom.exists()


def test_missing_column_is_one_error(tracker, tmp_path):
    path = tmp_path / "labs.csv"
    path.write_text("mrn,test,value\nM1,alt,30\n")
    result = tracker(["result", "import", str(path)], ok=False)
    assert result.exit_code == 2 and "missing column(s) taken_on" in result.stderr
