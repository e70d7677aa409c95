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

# Opening a clinic at the schema's head needs neither the migrations' backups nor the audit record of one.
MIGRATING = ("tracker.services.backups", "tracker.db.backups")

# `main()` as the `tracker` script calls it; the modules loaded are written to stderr after it returns, with
# the collector's thresholds, the objects frozen when the clinic opened (tracker.cli.startup_over) and the
# cycle collections that ran while start-up's threshold (tracker.cli.STARTUP_GC_THRESHOLD) was in force.
RUN = """
import gc, json, sys
startup_collections = []
def watch(phase, info):
    startup = getattr(sys.modules.get("tracker.cli"), "STARTUP_GC_THRESHOLD", None)
    if phase == "start" and gc.get_freeze_count() == 0 and gc.get_threshold()[0] == startup:
        startup_collections.append([info["generation"], list(sys.modules)[-1], len(sys.modules)])
gc.callbacks.append(watch)
from tracker.cli import main
sys.argv = ["tracker", *sys.argv[1:]]
code = 0
try:
    main()
except SystemExit as exc:
    code = exc.code or 0
gc.callbacks.remove(watch)
sys.stderr.write("\\nMODULES " + json.dumps([code, sorted(sys.modules), gc.get_threshold(), gc.get_freeze_count(),
                                          startup_collections]) + "\\n")
"""


def loaded(args: list[str]) -> set[str]:
    """The top-level packages a fresh `tracker ARGS` process imported (it must succeed)."""
    return ran(args)[0]


def ran(args: list[str]) -> tuple[set[str], list[int]]:
    """(the top-level packages a fresh `tracker ARGS` process imported, the collector's thresholds at its
    end); the command must succeed."""
    found = process(args)
    return {name.split(".")[0] for name in found["modules"]}, found["thresholds"]


def process(args: list[str]) -> dict:
    """What a fresh `tracker ARGS` process did (it must succeed): `modules` (every module it imported),
    `thresholds` (the collector's at its end), `frozen` (objects frozen as its clinic opened), and
    `startup_collections` (cycle collections while start-up's threshold held: [generation, module, count])."""
    proc = subprocess.run([sys.executable, "-c", RUN, *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    last = proc.stderr.rstrip("\n").rsplit("\n", 1)[-1]
    assert last.startswith("MODULES "), proc.stderr[-2000:]
    code, modules, thresholds, frozen, collections = json.loads(last.removeprefix("MODULES "))
    assert code == 0, proc.stderr[-2000:]
    return {"modules": set(modules), "thresholds": thresholds, "frozen": frozen,
            "startup_collections": collections}


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
    modules = process(["--db", db, "due", "--json", "--days", "30"])["modules"]
    assert heavy_in({name.split(".")[0] for name in modules}) == []
    if not os.environ.get("TRACKER_TEST_PG"):
        # A SQLite clinic never needs the PostgreSQL driver, nor SQLAlchemy's PostgreSQL dialect (which the
        # partial indexes' `postgresql_where` used to load: tracker/db/tables.py partial_index).
        assert "psycopg" not in modules and "sqlalchemy.dialects.postgresql" not in modules


def test_due_json_loads_the_planner_only_when_a_plan_falls_short(clinic):
    """`due --json` asks first (one index seek: services/horizons.py) whether any plan must be rolled forward;
    the planner (services/plan_sync.py and the core modules only it uses) is loaded only when one must."""
    db, _ = clinic
    planner = {"tracker.services.plan_sync", "tracker.core.gates", "tracker.db.snapshots"}
    # Planned in March (the fixture's frozen day) to 13 months ahead: short of a year from the real today.
    assert planner <= process(["--db", db, "due", "--json"])["modules"]
    process(["--db", db, "due"])  # the plain listing keeps the plans it rolled forward
    assert process(["--db", db, "due", "--json"])["modules"].isdisjoint(planner)


def test_the_collector_has_its_usual_thresholds_once_the_clinic_is_open(clinic):
    """tracker.cli.main makes collections rare while modules are imported, until the command opens its
    clinic; from then on (the command's own work) the interpreter's usual thresholds apply."""
    import gc

    db, _ = clinic
    assert ran(["--db", db, "due", "--json"])[1] == list(gc.get_threshold())


def test_patient_show_json_loads_no_heavy_package(clinic):
    db, _ = clinic
    assert heavy_in(loaded(["--db", db, "patient", "show", "M1", "--json"])) == []


def test_patient_show_loads_neither_the_review_nor_the_result_recording_nor_the_planner(clinic):
    """`patient show` shapes its alerts and results with services/row_shapes.py: the services that raise,
    review and record them (and the planner behind recording) are not its start-up."""
    db, _ = clinic
    for args in (["patient", "show", "M1", "--json"], ["patient", "show", "M1"]):
        modules = process(["--db", db, *args])["modules"]
        assert "tracker.services.row_shapes" in modules, args  # the patient has a result: it was shaped
        assert modules.isdisjoint({"tracker.services.alerts", "tracker.services.evaluate",
                                   "tracker.services.review_apply", "tracker.services.results",
                                   "tracker.services.plan_sync"}), args


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


def test_opening_a_clinic_at_the_schema_head_loads_nothing_of_migrations(clinic):
    """The schema check on open is one query (tests/test_migrations.py: no alembic); recording a migration
    (services/backups.py) is imported only when one runs."""
    db, _ = clinic
    for args in (["due", "--json"], ["patient", "show", "M1", "--json"], ["alerts", "--json"]):
        modules = process(["--db", db, *args])["modules"]
        assert sorted(modules & set(MIGRATING)) == [] and "alembic" not in modules, args


def test_alerts_and_nightly_load_no_heavy_package(clinic):
    db, _ = clinic
    assert heavy_in(loaded(["--db", db, "alerts", "--json"])) == []
    # piped and without [caldav]: no progress bar (rich) and no calendar push (icalendar)
    assert heavy_in(loaded(["--db", db, "nightly"])) == []


def test_no_cycle_collection_runs_before_the_clinic_opens_and_start_up_is_frozen(clinic):
    """Start-up makes fewer objects than tracker.cli.STARTUP_GC_THRESHOLD, so the collector never walks them
    before the clinic opens; then they are frozen, so no later collection (the command's, the one at exit)
    walks them either. Counts, not clocks: a start-up that grows past the threshold fails here, naming the
    module being imported when the collection ran."""
    db, csv = clinic
    for args in (["due", "--json"], ["patient", "show", "M1", "--json"], ["alerts", "--json"],
                 ["result", "import", str(csv)]):
        found = process(["--db", db, *args])
        assert found["startup_collections"] == [], (args, found["startup_collections"])
        assert found["frozen"] > 50_000, args  # SQLAlchemy, SQLModel, the tables, the protocol library


def test_the_tables_annotations_are_objects_not_strings():
    """tracker/db/tables.py does not postpone annotations: pydantic and SQLAlchemy would otherwise evaluate
    every column's annotation string again at every start-up."""
    from tracker.db import tables

    annotations = {name: kind for model in (tables.Patient, tables.Course, tables.Item, tables.LabResult)
                   for name, kind in model.__annotations__.items()}
    assert annotations and not [name for name, kind in annotations.items() if isinstance(kind, str)]


def test_partial_indexes_keep_their_condition_on_both_engines_without_loading_postgresql_at_import():
    """tracker/db/tables.py partial_index: SQLite's condition is a `sqlite_where`; PostgreSQL's is added as
    a PostgreSQL database creates the table, so that importing the tables loads no PostgreSQL dialect. The
    DDL that `create_all` emits (tests build schemas so) is what `postgresql_where` gave."""
    code = ("import sys, tracker.db.tables; print('sqlalchemy.dialects.postgresql' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.stdout.strip() == "False"

    from sqlalchemy import create_mock_engine
    from sqlmodel import SQLModel

    from tracker.db import tables

    partial = {index.name: index.info[tables.WHERE] for table in SQLModel.metadata.tables.values()
               for index in table.indexes if tables.WHERE in index.info}
    assert sorted(partial) == ["ix_course_live_planned_through", "ix_course_live_stop_on", "ix_item_limit_status",
                               "ix_item_partial_due", "ix_reminder_delivery_unsent", "uq_alert_live_condition",
                               "uq_course_live_patient_drug"]
    for url in ("sqlite://", "postgresql+psycopg://"):
        statements: list[str] = []
        engine = create_mock_engine(url, lambda sql, *_, **__: statements.append(
            str(sql.compile(dialect=engine.dialect)).strip()))
        SQLModel.metadata.create_all(engine, checkfirst=False)
        created = {s.split(" ON ")[0].split()[-1]: s for s in statements if s.startswith("CREATE") and " INDEX " in s}
        for name, where in partial.items():
            assert created[name].endswith(f" WHERE {where}"), (url, created[name])
        assert sum(" WHERE " in s for s in created.values()) == len(partial), url


# A cycle no one can reach, with a finaliser: collected only by an explicit collection (the collector is off).
EXIT = """
import gc, sys, weakref
gc.disable()
import tracker.db.engine as engine
from tracker.cli import _before_exit
if sys.argv[1] == "open":
    from sqlalchemy import text
    with engine.make_engine("sqlite:///" + sys.argv[2]).connect() as conn:
        conn.execute(text("SELECT 1"))
class Node:
    pass
node = Node()
node.itself = node
finalised = []
weakref.finalize(node, finalised.append, True)
del node
_before_exit()
print(engine.sqlite_opened, bool(finalised))
"""


@pytest.mark.parametrize("opened", ["open", "none"])
def test_the_exit_collects_cycles_only_after_sqlite_was_opened(opened, tmp_path):
    """tracker.cli._before_exit: a SQLite connection left to the collector must close at exit (SQLite folds its
    WAL back), so a process that opened SQLite collects once; one that opened none (PostgreSQL's connections
    end with the process) spares the collection (40-50 ms after a typical PostgreSQL night)."""
    proc = subprocess.run([sys.executable, "-c", EXIT, opened, str(tmp_path / "exit.db")], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    expected = "True True" if opened == "open" else "False False"
    assert proc.stdout.split("\n")[-2] == expected
