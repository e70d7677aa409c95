"""benchmarks/growth.py and the timeline of benchmarks/statement_counts.py (issue 19 item 3): the growth
table's ratios and the phases read from run.py's JSON, on plain data; the time attributed to statement
shapes, on a real SQLite engine."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from sqlalchemy import create_engine, event

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


def clinic(patients: int, scale: float, phases: list[dict] | None = None) -> dict:
    run = {"s": 2.0 * scale, "cpu_s": 1.0 * scale, "peak_mib": 100.0,
           "sql": {"statements": int(100 * scale), "round_trips": 30},
           "sql_detail": {"by_time": phases or []}}
    return {"patients": patients, "rows": {"patient": patients, "item": 14 * patients},
            "synth": run, "nightly": run, "floor": {"s": 0.5 * scale}}


def test_growth_table_gives_each_figure_at_every_size_and_the_ratio_to_the_next():
    growth = _module("growth")
    text = growth.growth_table([clinic(10_000, 1), clinic(100_000, 10), clinic(1_000_000, 120)])
    lines = text.splitlines()
    assert lines[0] == ("| figure | 10,000 | 100,000 | 1,000,000 | 10,000 -> 100,000 (10x patients) | "
                        "100,000 -> 1,000,000 (10x patients) |")
    assert "| rows: item | 140,000 | 1,400,000 | 14,000,000 | 10.0x | 10.0x |" in lines
    assert "| `tracker synth`: CPU s | 1.00 | 10.00 | 120 | 10.0x | 12.0x |" in lines
    assert "| `tracker nightly`, first run (cold): round trips | 30 | 30 | 30 | 1.0x | 1.0x |" in lines
    assert "| raw-SQL floor of the first night, s | 0.50 | 5.00 | 60.00 | 10.0x | 12.0x |" in lines
    # A command that was not run at some size is n/a there, and so are its ratios.
    assert "| raw-SQL floor of the next night, s | n/a | n/a | n/a | n/a | n/a |" in lines


def test_phases_are_the_shapes_with_most_time_at_the_largest_size_shown_at_every_size():
    growth = _module("growth")
    small = [{"sql": "COPY item (id)", "seconds": 1.0, "cpu_s": 0.5, "statements": 5}]
    large = [{"sql": "ANALYZE patient", "seconds": 3.0, "cpu_s": 0.0, "statements": 1},
             {"sql": "COPY item (id)", "seconds": 9.0, "cpu_s": 4.0, "statements": 50}]
    text = growth.phases_table([clinic(10_000, 1, small), clinic(100_000, 10, large)], "synth")
    rows = text.splitlines()[2:]
    assert rows == ["| `COPY item (id)` | 1.0 (0.5) / 5 | 9.0 (4.0) / 50 |",
                    "| `ANALYZE patient` | - | 3.0 (0.0) / 1 |"]
    # A size measured without the command (a clinic reused, not built) leaves the order to the next largest.
    text = growth.phases_table([clinic(10_000, 1, small), clinic(100_000, 10, large), clinic(1_000_000, 100)],
                               "synth")
    assert text.splitlines()[2] == "| `COPY item (id)` | 1.0 (0.5) / 5 | 9.0 (4.0) / 50 | - |"


def test_a_later_json_replaces_an_earlier_clinic_of_the_same_size(tmp_path):
    growth = _module("growth")
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    import json

    first.write_text(json.dumps({"clinics": [clinic(10_000, 1), clinic(100_000, 10)]}))
    second.write_text(json.dumps({"clinics": [clinic(100_000, 11)]}))
    clinics = growth.load([str(first), str(second)])
    assert [(c["patients"], c["synth"]["cpu_s"]) for c in clinics] == [(10_000, 1.0), (100_000, 11.0)]


def test_the_timeline_attributes_all_time_to_statement_shapes_in_order():
    counts = _module("statement_counts")
    counter = counts.StatementCounter()
    engine = create_engine("sqlite://")
    event.listen(engine, "before_cursor_execute", counter.before_execute)
    event.listen(engine, "commit", counter.end_transaction)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
        conn.exec_driver_sql("INSERT INTO t VALUES (?)", [(1,), (2,), (3,)])
        conn.exec_driver_sql("SELECT x FROM t").fetchall()
    report = counter.report()
    phases = {p["sql"]: p for p in report["by_time"]}
    assert phases["INSERT INTO t VALUES (?)"]["statements"] == 3
    assert phases["SELECT x FROM t"]["statements"] == 1
    assert {"(start-up)", "COMMIT / ROLLBACK"} <= set(phases)
    assert phases["CREATE TABLE t (x INTEGER)"]["first_s"] <= phases["SELECT x FROM t"]["first_s"] \
        <= phases["COMMIT / ROLLBACK"]["first_s"]
    # Every moment from start-up to the report belongs to exactly one shape.
    assert abs(sum(p["seconds"] for p in report["by_time"]) - report["wall_s"]) < 0.02  # each figure is rounded to 1 ms
    assert all(p["seconds"] >= 0 and p["cpu_s"] >= 0 for p in report["by_time"])
