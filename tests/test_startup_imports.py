"""Issue 18 item 5, issue 19 item 2: a command's start-up is what it imports. Each command below runs in a
fresh interpreter (the real `tracker` entry point on a real database) and must not load the heavy packages
it does not use: what it would cost is guarded by what is imported, never by a clock (in the spirit of
tests/test_core_purity.py). SQLAlchemy, SQLModel and pydantic are what every command that opens the clinic
pays; the packages here are those only some commands need."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from freezegun import freeze_time

ROOT = Path(__file__).parents[1]

# Loaded only by the commands that use them: the terminal renderer, the unit converter, calendar, HL7 and
# FHIR formats, the web view and its server, the scheduler, and the schema migrations.
HEAVY = ("rich", "pint", "icalendar", "hl7apy", "fhir", "starlette", "jinja2", "uvicorn", "apscheduler",
         "alembic")
DATABASE = ("sqlalchemy", "sqlmodel", "pydantic", "yaml")

# `main()` as the `tracker` script calls it; the modules loaded are written to stderr after it returns.
RUN = """
import json, sys
from tracker.cli import main
sys.argv = ["tracker", *sys.argv[1:]]
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code or 0
import gc
sys.stderr.write("\\nMODULES " + json.dumps([code, sorted(sys.modules), gc.get_threshold()]) + "\\n")
"""


def loaded(args: list[str]) -> set[str]:
    """The top-level packages a fresh `tracker ARGS` process imported (it must succeed)."""
    return ran(args)[0]


def ran(args: list[str]) -> tuple[set[str], list[int]]:
    """(the top-level packages a fresh `tracker ARGS` process imported, the collector's thresholds at its
    end); the command must succeed."""
    proc = subprocess.run([sys.executable, "-c", RUN, *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    last = proc.stderr.rstrip("\n").rsplit("\n", 1)[-1]
    assert last.startswith("MODULES "), proc.stderr[-2000:]
    code, modules, thresholds = json.loads(last.removeprefix("MODULES "))
    assert code == 0, proc.stderr[-2000:]
    return {name.split(".")[0] for name in modules}, thresholds


def heavy_in(modules: set[str], allowed: tuple = ()) -> list[str]:
    return sorted(m for m in modules if m in HEAVY and m not in allowed)


@pytest.fixture
def clinic(tracker, tmp_path):
    with freeze_time("2026-03-02"):
        tracker("patient add M1 --name 'Max Test' --dob 1970-01-01")
        tracker("therapy start M1 methotrexate --on 2026-02-20")
        tracker("result add M1 alt 30 --on 2026-02-25")
    csv = tmp_path / "labs.csv"
    # Values in the vocabulary's units: nothing to convert, so pint has no reason to load.
    csv.write_text("mrn,test,value,unit,taken_on,ref_low,ref_high\n"
                   "M1,alt,31,U/L,2026-02-27,,\n"
                   "M1,creatinine,70,,2026-02-27,,\n")
    return tracker.db, csv


def test_help_loads_neither_the_database_layer_nor_heavy_packages():
    modules = loaded(["--help"])
    assert heavy_in(modules) == [] and sorted(modules & set(DATABASE)) == []


def test_due_json_loads_no_heavy_package(clinic):
    db, _ = clinic
    modules = loaded(["--db", db, "due", "--json", "--days", "30"])
    assert heavy_in(modules) == []
    if not os.environ.get("TRACKER_TEST_PG"):
        assert "psycopg" not in modules  # a SQLite clinic never needs the PostgreSQL driver


def test_the_collector_has_its_usual_thresholds_once_the_clinic_is_open(clinic):
    """tracker.cli.main makes collections rare while modules are imported, until the command opens its
    clinic; from then on (the command's own work) the interpreter's usual thresholds apply."""
    import gc

    db, _ = clinic
    assert ran(["--db", db, "due", "--json"])[1] == list(gc.get_threshold())


def test_patient_show_json_loads_no_heavy_package(clinic):
    db, _ = clinic
    assert heavy_in(loaded(["--db", db, "patient", "show", "M1", "--json"])) == []


def test_patient_show_for_people_loads_rich_and_nothing_else_heavy(clinic):
    db, _ = clinic
    modules = loaded(["--db", db, "patient", "show", "M1"])
    assert "rich" in modules  # the check above would pass vacuously if the command never ran
    assert heavy_in(modules, allowed=("rich",)) == []


def test_result_import_without_conversions_loads_no_heavy_package(clinic):
    db, csv = clinic
    modules = loaded(["--db", db, "result", "import", str(csv)])
    assert heavy_in(modules) == []  # piped: no progress bar, so no rich; no unit converted, so no pint


def test_result_import_with_a_conversion_loads_pint_only(clinic, tmp_path):
    db, _ = clinic
    csv = tmp_path / "grams.csv"
    csv.write_text("mrn,test,value,unit,taken_on,ref_low,ref_high\nM1,hb,13.5,g/dL,2026-02-28,,\n")
    modules = loaded(["--db", db, "result", "import", str(csv)])
    assert "pint" in modules and heavy_in(modules, allowed=("pint",)) == []
