"""Issue 2: bad input gives a one-line error naming the field and value, exits non-zero, changes nothing."""

from __future__ import annotations

import pytest
from freezegun import freeze_time

from tests.conftest import dump_database


@pytest.fixture
def clinic(tracker):
    with freeze_time("2024-03-01"):
        tracker("patient add P001 --name 'Ann Lee' --dob 1980-05-01 --sex f --childbearing-potential no")
        tracker("therapy start P001 methotrexate --on 2024-01-01")
    return tracker


CASES = [
    # (command, expected words in the one-line error, exit code)
    ("therapy start P009 dupilumab --on 2024-03-01", ["mrn", "'P009'", "P001"], 3),
    ("therapy start P001 dupilumap --on 2024-03-01", ["drug", "'dupilumap'", "dupilumab"], 3),
    ("therapy start P001 dupilumab --on 2024-02-30", ["on", "'2024-02-30'", "not a real date"], 2),
    ("therapy start P001 dupilumab --on 01/03/2024", ["on", "'01/03/2024'", "YYYY-MM-DD"], 2),
    ("therapy start P001 dupilumab --on 1970-01-01", ["on", "1970-01-01", "before", "birth"], 2),
    ("therapy start P001 methotrexate --on 2024-03-01", ["drug", "'methotrexate'", "already on"], 4),
    ("therapy stop P001 methotrexate --on 2023-12-01 --reason x", ["on", "2023-12-01", "before the course"], 2),
    ("therapy stop P001 dupilumab --on 2024-03-01 --reason x", ["drug", "'dupilumab'", "methotrexate"], 3),
    ("therapy dose P001 methotrexate --on 2024-02-30 --dose 20mg", ["on", "'2024-02-30'"], 2),
    ("patient add P001 --name 'Someone Else' --dob 1990-01-01", ["mrn", "'P001'", "already exists"], 4),
    ("patient add P002 --name 'Bob Hall' --dob 2030-01-01", ["dob", "2030-01-01", "future"], 2),
    ("patient add P002 --name 'Bob Hall' --dob 1990-13-01", ["dob", "'1990-13-01'"], 2),
    ("result add P001 neutrophils low --on 2024-02-01", ["value", "'low'", "numeric"], 2),
    ("result add P001 tpmt maybe --on 2024-02-01", ["value", "'maybe'", "absent"], 2),
    ("result add P001 neutrofils 2.0 --on 2024-02-01", ["test", "'neutrofils'", "neutrophils"], 3),
    ("result add P001 alt 30 --on 2024-03-05", ["on", "2024-03-05", "future"], 2),
    ("therapy resume P001 methotrexate --on 2024-03-01", ["not paused"], 4),
    ("patient update P009 --name X", ["mrn", "'P009'"], 3),
    ("calendar P001 --from 2024-02-31", ["from", "'2024-02-31'"], 2),
    ("due --as-of tomorrow", ["as-of", "'tomorrow'"], 2),
    ("schedules show nosuchdrug", ["drug", "'nosuchdrug'"], 3),
]


@pytest.mark.parametrize("command,words,code", CASES, ids=[c[0][:48] for c in CASES])
def test_bad_input_is_one_line_nonzero_and_changes_nothing(clinic, db_url, command, words, code):
    before = dump_database(db_url)
    with freeze_time("2024-03-01"):
        result = clinic(command, ok=False)
    assert result.exit_code == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert result.stdout == ""
    assert dump_database(db_url) == before


def test_broken_protocol_file_is_reported_with_its_line(tracker, tmp_path, monkeypatch):
    clinic_dir = tmp_path / "clinic"
    clinic_dir.mkdir()
    (clinic_dir / "broken.yaml").write_text(
        "id: broken\nversion: 1\nname: Broken\nclass: csdmard\nsources:\n  S1: {citation: x}\n"
        "baseline:\n  - tests: [cbc]\n    gate: sometimes\n    sources: [S1]\n"
    )
    monkeypatch.setenv("TRACKER_SCHEDULES", str(clinic_dir))
    result = tracker("schedules list", ok=False)
    assert result.exit_code == 6
    assert f"{clinic_dir / 'broken.yaml'}:9: baseline[0].gate:" in result.stderr
