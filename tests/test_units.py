"""Issue 13 (units): results are converted to the vocabulary's unit through pint; what cannot be converted,
and what no patient could have, is refused and changes nothing; the value as reported is kept and shown."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from freezegun import freeze_time

from tests.conftest import dump_database
from tracker.protocol_files import load_vocabulary
from tracker.units import UnitProblem, convert

HEADER = "mrn,test,value,unit,taken_on,ref_low,ref_high\n"


# --- conversions (pint) -----------------------------------------------------------------------------------

@pytest.mark.parametrize("value,unit,target,molar_mass,expected", [
    # The equivalences ../shared/clinical-reference.md (section 15a, [SI-CONV-JAMA] [SI-CONV-CSMU]) states.
    (500, "cells/mm3", "10^9/L", None, 0.5),
    (1000, "cells/mm3", "10^9/L", None, 1.0),
    (150, "10^3/uL", "10^9/L", None, 150),
    (800, "cells/uL", "10^9/L", None, 0.8),
    (8, "g/dL", "g/L", None, 80),
    (1, "mg/dL", "umol/L", 113.12, 88.4),        # creatinine
    (1, "mg/dL", "umol/L", 584.66, 17.1),        # bilirubin
    (1, "mg/dL", "mmol/L", 386.65, 0.02586),     # cholesterol
    (88.4, "umol/L", "mg/dL", 113.12, 1.0),      # and back
    # UCUM and lab spellings of the same units.
    (4.2, "10*9/L", "10^9/L", None, 4.2),
    (4.2, "x10^9/L", "10^9/L", None, 4.2),
    (4.2, "10E9/L", "10^9/L", None, 4.2),
    (800, "/uL", "10^9/L", None, 0.8),
    (800, "{cells}/uL", "10^9/L", None, 0.8),
    (4.2, "/nL", "10^9/L", None, 4.2),
    (120, "mm[Hg]", "mmHg", None, 120),
    (90, "mL/min/{1.73_m2}", "mL/min/1.73m2", None, 90),
])
def test_pint_converts_lab_units(value, unit, target, molar_mass, expected):
    assert convert(value, unit, target, molar_mass) == pytest.approx(expected, rel=2e-3)


@pytest.mark.parametrize("value,unit,target,expected", [
    # Every power-of-ten spelling laboratories use, and the 1.73 m2 of body surface, are still read.
    (250, "10*9/L", "10^9/L", 250),
    (250, "x10E9/L", "10^9/L", 250),
    (250, "x 10^9/L", "10^9/L", 250),
    (250, "10⁹/L", "10^9/L", 250),
    (250, "10^3/uL", "10^9/L", 250),
    (250, "x10E3/uL", "10^9/L", 250),
    (250, "10^3/mcL", "10^9/L", 250),
    (250, "10*3{cells}/uL", "10^9/L", 250),       # an annotation after a power is not a digit of it
    (800, "cells/uL", "10^9/L", 0.8),
    (800, "1/uL", "10^9/L", 0.8),
    (1.5, "mL/s/1.73m2", "mL/min/1.73m2", 90),
    (90, "mL/min/1.73 m2", "mL/min/1.73m2", 90),
    (2, "mg/{total}dL", "g/L", 0.02),
])
def test_powers_of_ten_and_body_surface_are_read(value, unit, target, expected):
    assert convert(value, unit, target) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("unit", ["x10(9)/L", "10(9)/L", "10 9/L", "x 10 9/L", "109/L", "10.E9/L", "2/uL",
                                  "1 9/L", "110^9/L"])
def test_a_number_in_a_unit_that_is_no_power_of_ten_is_refused_not_read_as_a_factor(unit):
    """Finding B1: pint reads `10(9)` as 10 x 9 and `109` as 109, so 250 x10(9)/L was stored as 2.25e-05
    10^9/L. The only numbers a unit may hold are powers of ten, powers of a unit and the 1.73 of eGFR."""
    with pytest.raises(UnitProblem, match="not a power of ten"):
        convert(250, unit, "10^9/L")


@pytest.mark.parametrize("unit,target,molar_mass", [
    ("%", "10^9/L", None),                   # a differential percentage is not a count
    ("mg/dL", "umol/L", None),               # mass to substance needs a molar mass
    ("mL/min", "mL/min/1.73m2", None),       # a clearance is not an eGFR
    ("furlongs", "10^9/L", None),
    ("banana", "g/L", None),
    ("10**99999/L", "10^9/L", None),
    ("\x1b[31mu", "U/L", None),
    ("u" * 10_000, "U/L", None),
])
def test_what_pint_cannot_convert_is_a_unit_problem(unit, target, molar_mass):
    with pytest.raises(UnitProblem):
        convert(1.0, unit, target, molar_mass)


def test_every_vocabulary_unit_converts_and_every_numeric_analyte_has_a_plausible_range():
    vocabulary = load_vocabulary()
    numeric = [t for t in vocabulary.tests.values() if t.is_numeric]
    assert len(numeric) > 25
    for test in numeric:
        assert test.plausible is not None and test.plausible_clinic_default, test.code
        low, high = test.plausible
        for limit in (test.ref_low, test.ref_high):
            assert limit is None or low <= limit <= high, (test.code, limit)
        assert convert(1.0, test.unit, test.unit) == 1.0
        for other in test.also_reported_in:
            assert convert(1.0, other, test.unit, test.molar_mass) > 0, (test.code, other)


def test_a_value_already_in_the_wanted_unit_converts_as_pint_would_without_asking_it():
    """The import's fast path (tracker/units.py: convert) gives pint's own answer for every vocabulary unit,
    on values at a laboratory's precision and on arbitrary floats."""
    import random

    from tracker.units import _converted

    rng = random.Random(18)
    units = sorted({t.unit for t in load_vocabulary().tests.values() if t.is_numeric and t.scale is None})
    for unit in units:
        for _ in range(150):
            value = round(rng.uniform(0, 5000) / 10 ** rng.randint(0, 4), rng.choice([0, 1, 2, 3, 6, 9]))
            for number in (value, rng.uniform(0, 1000)):
                assert convert(number, unit, unit) == _converted(number, unit, unit, None, None), (unit, number)
    with pytest.raises(UnitProblem):
        convert(1.0, "banana", "banana")


def _factor_in(ureg, unit: str, target: str, molar_mass: float | None) -> float:
    """How many `target` one `unit` is, asked of the registry `ureg` (as tracker/units.py: _factor asks)."""
    from tracker.units import to_pint

    source, wanted = ureg.Quantity(to_pint(unit)), ureg.Quantity(to_pint(target))
    if molar_mass is None:
        return source.to(wanted.units).magnitude / wanted.magnitude
    with ureg.context("chemistry", mw=molar_mass * ureg.gram / ureg.mole):
        return source.to(wanted.units).magnitude / wanted.magnitude


def test_a_registry_from_pints_disk_cache_converts_as_one_parsed_from_the_files(tmp_path):
    """The registry's definitions come from pint's disk cache after the first build (tracker/units.py:
    _new_registry); a damaged cache file is not fatal. Every vocabulary unit converts to the same factor in
    each."""
    import pint

    from tracker.units import _new_registry, _with_lab_units

    parsed = _with_lab_units(_new_registry(pint, None))
    _new_registry(pint, tmp_path)
    assert list(tmp_path.glob("*.pickle"))  # the cache was written
    cached = _with_lab_units(_new_registry(pint, tmp_path))
    for cache_file in tmp_path.glob("*.pickle"):
        cache_file.write_bytes(b"torn")  # as if another process were still writing it
    from_damaged = _with_lab_units(_new_registry(pint, tmp_path))
    assert not list(tmp_path.iterdir())  # emptied: the next registry writes the cache afresh
    pairs = [(other, test.unit, test.molar_mass) for test in load_vocabulary().tests.values()
             if test.is_numeric and test.scale is None for other in (test.unit, *test.also_reported_in)]
    assert len(pairs) > 30
    for unit, target, molar_mass in pairs:
        expected = _factor_in(parsed, unit, target, molar_mass)
        assert _factor_in(cached, unit, target, molar_mass) == expected, (unit, target)
        assert _factor_in(from_damaged, unit, target, molar_mass) == expected, (unit, target)


def test_help_does_not_load_pint():
    code = ("import sys\nfrom tracker.cli import main\nsys.argv = ['tracker', '--help']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\nprint('pint' in sys.modules, file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert out.stderr.strip() == "False"


# --- result add ----------------------------------------------------------------------------------------

@pytest.fixture
def jak(tracker):
    with freeze_time("2026-12-01"):
        tracker("patient add P1 --name 'Ann Lee' --dob 1980-05-01 --sex m")
        tracker("therapy start P1 upadacitinib --on 2026-10-01 --override-gate 'screens sent'")
    return tracker


@freeze_time("2026-12-03")
def test_neutrophils_in_cells_per_mm3_are_converted_and_alert_with_the_reported_value(jak):
    out = jak("result add P1 neutrophils 800 --unit cells/mm3 --on 2026-12-02").stdout
    assert "recorded neutrophils 0.8 10^9/L (reported 800 cells/mm3)" in out
    alert = next(a for a in jak.json("alerts") if a["kind"] == "threshold")
    assert alert["severity"] == "critical"
    assert "neutrophils 0.8 10^9/L (reported 800 cells/mm3) on 2026-12-02: < 1 10^9/L -> interrupt" in alert["message"]
    [row] = jak.json("result list P1 --test neutrophils")
    assert (row["value"], row["unit"], row["reported_value"], row["reported_unit"]) == (0.8, "10^9/L", 800, "cells/mm3")
    shown = jak.json("patient show P1")["results"][0]
    assert shown["value"] == 0.8 and shown["reported_unit"] == "cells/mm3"
    assert "800 cells/mm3" in jak("result list P1").stdout
    assert "800 cells/mm3" in jak("patient show P1").stdout


@freeze_time("2026-12-03")
def test_haemoglobin_in_g_per_dl_is_compared_in_g_per_l(jak):
    jak("result add P1 hb 13.5 --unit g/dL --on 2026-12-01")
    assert not [a for a in jak.json("alerts") if a["kind"] == "threshold"]  # 135 g/L is normal
    jak("result add P1 hb 7.5 --unit g/dL --on 2026-12-02")
    [alert] = [a for a in jak.json("alerts") if a["kind"] == "threshold"]
    assert "hb 75 g/L (reported 7.5 g/dL) on 2026-12-02: < 80 g/L" in alert["message"]


@freeze_time("2026-12-03")
def test_creatinine_in_mg_per_dl_is_converted_with_its_reference_range(jak):
    jak("result add P1 creatinine 1.2 --unit mg/dL --ref-low 0.6 --ref-high 1.3 --on 2026-12-02")
    [row] = jak.json("result list P1 --test creatinine")
    assert row["value"] == pytest.approx(106.08, abs=0.01) and row["unit"] == "umol/L"
    assert row["ref_low"] == pytest.approx(53.04, abs=0.01) and row["ref_high"] == pytest.approx(114.92, abs=0.01)
    assert (row["reported_value"], row["reported_unit"]) == (1.2, "mg/dL")


@pytest.mark.parametrize("value,unit,target,expected", [
    # The IFCC-NGSP master equation [NGSP-IFCC]: IFCC mmol/mol = 10.929 x (NGSP % - 2.15).
    (7.0, "%", "mmol/mol", 53.0),
    (6.5, "%", "mmol/mol", 47.5),
    (53, "mmol/mol", "%", 7.0),
    (48, "mmol/mol", "mmol/mol", 48),
])
def test_hba1c_converts_between_its_scales_by_the_master_equation(value, unit, target, expected):
    assert convert(value, unit, target, scale="hba1c") == pytest.approx(expected, abs=0.05)
    if unit != target:  # not as plain fractions: 7 % is not 70 mmol/mol
        assert convert(value, unit, target, scale="hba1c") != pytest.approx(convert(value, unit, target), abs=0.5)


def test_hba1c_takes_only_its_own_units():
    with pytest.raises(UnitProblem):
        convert(7, "mg/dL", "mmol/mol", scale="hba1c")


@freeze_time("2026-12-03")
def test_hba1c_in_percent_is_stored_in_mmol_per_mol_and_a_bare_percent_figure_is_refused(jak, db_url):
    jak("result add P1 hba1c 7 --unit % --on 2026-12-02")
    [row] = jak.json("result list P1 --test hba1c")
    assert row["value"] == pytest.approx(53.0, abs=0.05) and row["unit"] == "mmol/mol"
    assert (row["reported_value"], row["reported_unit"]) == (7, "%")
    before = dump_database(db_url)
    result = jak("result add P1 hba1c 7.2 --on 2026-12-02", ok=False)  # 7.2 mmol/mol: a % figure typed bare
    assert result.exit_code == 2 and "did you mean %?" in result.stderr and result.stderr.count("\n") == 1
    assert dump_database(db_url) == before


@freeze_time("2026-12-03")
def test_a_value_in_the_vocabulary_unit_is_stored_as_is_and_shown_without_a_reported_note(jak):
    out = jak("result add P1 neutrophils 4.2 --on 2026-12-02").stdout
    assert out.splitlines()[0] == "recorded neutrophils 4.2 10^9/L"
    [row] = jak.json("result list P1")
    assert (row["value"], row["reported_value"], row["reported_unit"]) == (4.2, 4.2, "10^9/L")


BAD_VALUES = [
    # (arguments after `result add P1`, words in the one-line error)
    ("neutrophils 800 --on 2026-12-02",
     ["value: '800'", "neutrophils 800 10^9/L on 2026-12-02 is outside 0-100 10^9/L (clinic default)",
      "did you mean cells/uL?"]),
    ("hb 7.5 --on 2026-12-02", ["hb 7.5 g/L on 2026-12-02", "outside 20-250", "did you mean g/dL?"]),
    ("creatinine 1.2 --on 2026-12-02", ["creatinine 1.2 umol/L on 2026-12-02", "did you mean mg/dL?"]),
    ("neutrophils 800000 --unit cells/uL --on 2026-12-02", ["neutrophils 800000 cells/uL on 2026-12-02 (= 800 10^9/L)"]),
    ("platelets --on 2026-12-02 -- -5", ["value: '-5'", "platelets -5 10^9/L on 2026-12-02 is outside 0-3000"]),
    ("neutrophils 4 --unit mg/dL --on 2026-12-02",
     ["unit: 'mg/dL'", "neutrophils 4 'mg/dL' on 2026-12-02", "cannot be converted to 10^9/L"]),
    ("neutrophils 60 --unit % --on 2026-12-02", ["unit: '%'", "neutrophils 60", "cannot be converted"]),
    ("alt 30 --unit banana --on 2026-12-02", ["unit: 'banana'", "alt 30 'banana' on 2026-12-02", "not a unit"]),
    ("alt 30 --unit \x1b[31m" + "u" * 10_000 + " --on 2026-12-02", ["unit: ", "alt 30", "is not a unit"]),
    ("neutrophils nan --on 2026-12-02", ["value: 'nan'", "neutrophils on 2026-12-02 is numeric"]),
    ("neutrophils low --on 2026-12-02", ["value: 'low'", "neutrophils on 2026-12-02 is numeric (10^9/L)"]),
    ("tb negative --unit mg --on 2026-12-02", ["unit: 'mg'", "tb negative on 2026-12-02", "takes no unit"]),
    ("platelets 250 --unit 109/L --on 2026-12-02",
     ["unit: '109/L'", "platelets 250 '109/L' on 2026-12-02", "not a power of ten"]),
    ("tb negative --unit " + "u" * 10_000 + " --on 2026-12-02", ["unit: ", "tb negative on 2026-12-02", "takes no unit"]),
]


@pytest.mark.parametrize("args,words", BAD_VALUES, ids=[a[:40] for a, _ in BAD_VALUES])
def test_a_bad_value_or_unit_is_one_line_exit_2_and_the_database_is_as_before(jak, db_url, args, words):
    with freeze_time("2026-12-03"):
        jak("result add P1 neutrophils 4.2 --on 2026-12-01")
    before_rows, before_bytes = dump_database(db_url), _file_bytes(db_url)
    with freeze_time("2026-12-03"):
        result = jak(["result", "add", "P1", *args.split(" ")], ok=False)
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and len(lines[0]) < 300, result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert result.stdout == ""
    assert dump_database(db_url) == before_rows
    assert _file_bytes(db_url) == before_bytes


def _file_bytes(db: str) -> bytes | None:
    """The SQLite file after a checkpoint (everything committed is in the main file); None on PostgreSQL."""
    if "://" in db:
        return None
    import sqlite3

    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return Path(db).read_bytes()


# --- CSV import ------------------------------------------------------------------------------------------

@freeze_time("2026-12-03")
def test_import_converts_units_and_keeps_what_was_reported(jak, tmp_path):
    path = tmp_path / "labs.csv"
    path.write_text(HEADER + "P1,neutrophils,800,cells/uL,2026-12-02,,\n"
                             "P1,hb,13.5,g/dL,2026-12-02,11.5,16.5\n"
                             "P1,creatinine,1.0,mg/dL,2026-12-02,,\n")
    out = jak(["result", "import", str(path)]).stdout
    assert "imported 3 results" in out
    rows = {r["test"]: r for r in jak.json("result list P1")}
    assert rows["neutrophils"]["value"] == 0.8 and rows["hb"]["value"] == 135
    assert rows["hb"]["ref_low"] == 115 and rows["hb"]["ref_high"] == 165
    assert rows["creatinine"]["value"] == pytest.approx(88.4, abs=0.05)
    assert rows["creatinine"]["reported_unit"] == "mg/dL"
    alert = next(a for a in jak.json("alerts") if a["kind"] == "threshold")
    assert "(reported 800 cells/uL)" in alert["message"]
    again = jak(["result", "import", str(path)], ok=False)  # converted values are recognised as on record
    assert again.exit_code == 2 and again.stderr.count("already on record") == 3


@freeze_time("2026-12-03")
def test_an_implausible_or_unconvertible_row_imports_nothing(jak, db_url, tmp_path):
    path = tmp_path / "labs.csv"
    path.write_text(HEADER + "P1,neutrophils,4.2,,2026-12-02,,\n"
                             "P1,neutrophils,800,,2026-12-02,,\n"
                             "P1,hb,7.5,g/L,2026-12-02,,\n"
                             "P1,alt,30,mmol/L,2026-12-02,,\n")
    before_rows, before_bytes = dump_database(db_url), _file_bytes(db_url)
    result = jak(["result", "import", str(path)], ok=False)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert "3 of 4 rows rejected, nothing imported" in lines[0]
    assert lines[1].startswith("line 3: value: '800': neutrophils 800 10^9/L on 2026-12-02 is outside")
    assert lines[1].endswith("did you mean cells/uL?")
    assert lines[2].startswith("line 4: value: '7.5': hb 7.5 g/L on 2026-12-02") and "g/dL" in lines[2]
    assert lines[3].startswith("line 5: unit: 'mmol/L': alt 30 'mmol/L' on 2026-12-02")
    assert dump_database(db_url) == before_rows
    assert _file_bytes(db_url) == before_bytes


@freeze_time("2026-12-03")
def test_skip_bad_imports_the_good_rows_and_gives_each_rejected_row_its_reason(jak, tmp_path):
    path = tmp_path / "labs.csv"
    path.write_text(HEADER + "P1,neutrophils,4.2,,2026-12-02,,\n"
                             "P1,neutrophils,800,,2026-12-01,,\n"
                             "P1,alt,30,mmol/L,2026-12-02,,\n")
    result = jak(["result", "import", str(path), "--skip-bad"])
    assert "imported 1 results" in result.stdout
    assert "line 3: value: '800'" in result.stderr and "line 4: unit: 'mmol/L'" in result.stderr
    rejects = list(csv.DictReader((tmp_path / "labs.rejects.csv").open()))
    assert [(r["line"], r["value"], r["unit"]) for r in rejects] == [("3", "800", ""), ("4", "30", "mmol/L")]
    assert "did you mean cells/uL?" in rejects[0]["reason"] and "cannot be converted" in rejects[1]["reason"]
    assert [r["value"] for r in jak.json("result list P1")] == [4.2]


# --- migration 0004 --------------------------------------------------------------------------------------

@pytest.mark.skipif(bool(os.environ.get("TRACKER_TEST_PG")), reason="builds a SQLite file at an old revision")
def test_migration_0004_keeps_existing_results_as_reported(tmp_path):
    import sqlite3

    from tracker.db.engine import SCHEMA_HEAD, make_engine, resolve_url, upgrade_schema

    db = str(tmp_path / "old.db")
    upgrade_schema(make_engine(resolve_url(db)), "0002")
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO patient (id, mrn, name, dob, childbearing_potential, created_at, updated_at) "
                     "VALUES (1, 'P1', 'Ann Lee', '1980-01-01', 0, '2026-01-01 00:00:00', '2026-01-01 00:00:00')")
        conn.executemany("INSERT INTO lab_result (patient_id, test, value_num, value_text, unit, taken_on, created_at) "
                         "VALUES (1, ?, ?, ?, ?, '2026-02-01', '2026-02-01 00:00:00')",
                         [("alt", 30.0, None, "U/L"), ("tb", None, "negative", None)])
    conn.close()
    assert upgrade_schema(make_engine(resolve_url(db)))[1] == SCHEMA_HEAD
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT test, value_num, unit, reported_value, reported_unit FROM lab_result "
                            "ORDER BY id").fetchall()
    conn.close()
    assert rows == [("alt", 30.0, "U/L", 30.0, "U/L"), ("tb", None, None, None, None)]


# --- a clinic's vocabulary ------------------------------------------------------------------------------

def test_validate_reports_unreadable_units_and_unmarked_numbers_in_a_vocabulary(tracker, tmp_path):
    path = tmp_path / "vocabulary.yaml"
    path.write_text("version: 1\ntests:\n"
                    "  neutrophils: {name: N, unit: 10^9/L, also_reported_in: [cels/uL, '%']}\n"
                    "  hb: {name: Hb, unit: g/L}\n")
    result = tracker(["schedules", "validate", str(path)], ok=False)
    assert result.exit_code == 6
    assert f"{path}:1: tests.neutrophils.also_reported_in: 'cels/uL' is not a unit pint knows" in result.stdout + result.stderr
    assert "tests.neutrophils.also_reported_in: '%' cannot be converted to 10^9/L" in result.stdout + result.stderr
    path.write_text("version: 1\ntests:\n  hb: {name: Hb, unit: g/L, plausible: {low: 20, high: 250}}\n")
    result = tracker(["schedules", "validate", str(path)], ok=False)
    assert result.exit_code == 6
    assert f"{path}:1: tests.hb.plausible: needs sources or clinic_default: true" in result.stdout + result.stderr
