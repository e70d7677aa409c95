"""benchmarks/statement_guard.py (issue 19): the CI guard's comparison of statement counts with the committed
baseline, on plain data; and the committed baseline itself has the shape the guard reads."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _guard():
    spec = importlib.util.spec_from_file_location("statement_guard", BENCHMARKS / "statement_guard.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def counts(statements: int, round_trips: int) -> dict:
    return {"statements": statements, "round_trips": round_trips}


BASE = {"sqlite": {"nightly cold": counts(1000, 200), "due --json": counts(3, 3)},
        "postgresql": {"nightly cold": counts(500, 100), "due --json": counts(3, 8)}}


def test_counts_within_twenty_percent_pass():
    failures, notes = _guard().compare(BASE, {
        "sqlite": {"nightly cold": counts(1200, 240), "due --json": counts(3, 3)},
        "postgresql": {"nightly cold": counts(500, 100), "due --json": counts(3, 8)}})
    assert failures == [] and notes == []


def test_a_count_grown_by_more_than_twenty_percent_fails_naming_engine_command_and_metric():
    failures, _ = _guard().compare(BASE, {
        "sqlite": {"nightly cold": counts(1000, 241), "due --json": counts(3, 3)},
        "postgresql": {"nightly cold": counts(601, 121), "due --json": counts(3, 8)}})
    assert len(failures) == 3
    assert failures[0].startswith("postgresql nightly cold: statements 601 against 500 in the baseline (+20%")
    assert failures[1].startswith("postgresql nightly cold: round_trips 121 against 100")
    assert failures[2].startswith("sqlite nightly cold: round_trips 241 against 200 in the baseline (+20%")


def test_sqlite_statements_follow_the_rows_written_and_are_reported_not_judged():
    # An executemany is one SQLite statement per row: the day's data moves the figure, not the code.
    failures, notes = _guard().compare(BASE, {
        "sqlite": {"nightly cold": counts(5000, 200), "due --json": counts(3, 3)},
        "postgresql": BASE["postgresql"]})
    assert failures == [] and notes == []


def test_small_counts_may_grow_by_two_but_not_more():
    guard = _guard()
    base = {"postgresql": {"due --json": counts(3, 3)}}
    assert guard.compare(base, {"postgresql": {"due --json": counts(5, 5)}})[0] == []
    failures, _ = guard.compare(base, {"postgresql": {"due --json": counts(6, 3)}})
    assert failures == ["postgresql due --json: statements 6 against 3 in the baseline (+100%; at most 5)"]
    assert guard.compare({"postgresql": {"x": counts(0, 0)}}, {"postgresql": {"x": counts(3, 0)}})[0] == [
        "postgresql x: statements 3 against 0 in the baseline"]


def test_a_command_of_the_baseline_that_did_not_run_fails_and_new_ones_are_noted():
    failures, notes = _guard().compare(BASE, {
        "sqlite": {"nightly cold": counts(1000, 200), "patient show": counts(12, 12)}})
    assert failures == ["sqlite due --json: did not run"]
    assert notes == ["sqlite patient show: not in the baseline"]


def test_an_engine_not_measured_is_not_compared_and_one_not_in_the_baseline_is_noted():
    failures, notes = _guard().compare({"sqlite": BASE["sqlite"]}, {
        "sqlite": BASE["sqlite"], "postgresql": BASE["postgresql"]})
    assert failures == []
    assert notes == ["postgresql: not in the baseline (add it with --write-baseline)"]


def test_counts_that_fell_are_noted_for_the_baseline():
    failures, notes = _guard().compare(BASE, {
        "sqlite": {"nightly cold": counts(1000, 100), "due --json": counts(3, 3)},
        "postgresql": BASE["postgresql"]})
    assert failures == []
    assert notes == ["sqlite nightly cold: round_trips fell to 100 from 200 (rewrite the baseline to keep the gain)"]


def test_the_committed_baseline_covers_both_engines_and_every_command_the_guard_runs():
    baseline = json.loads((BENCHMARKS / "statement_baseline.json").read_text())
    assert baseline["patients"] == 10000
    commands = {"synth", "nightly cold", "nightly same day", "nightly next day", "due --json", "overdue --json",
                "alerts --json", "patient show"}
    for engine in ("sqlite", "postgresql"):
        assert set(baseline[engine]) == commands
        assert all(set(c) == {"statements", "round_trips"} for c in baseline[engine].values())


def _counting():
    spec = importlib.util.spec_from_file_location("statement_counts", BENCHMARKS / "statement_counts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_multi_row_insert_counts_once_and_an_executemany_per_row():
    # SQLAlchemy reports an "insertmanyvalues" batch (one INSERT ... VALUES of many rows) as an executemany
    # of its flattened values: counted as one statement, not one per value.
    from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, event, insert, update

    engine = create_engine("sqlite://")
    table = Table("t", MetaData(), Column("id", Integer, primary_key=True), Column("name", String))
    table.metadata.create_all(engine)
    counter = _counting().StatementCounter()
    event.listen(engine, "before_cursor_execute", counter.before_execute)
    with engine.begin() as conn:
        conn.execute(insert(table).returning(table.c.id), [{"name": f"n{i}"} for i in range(50)])
        assert counter.statements == 1
        conn.execute(update(table).values(name="x").where(table.c.id == 1))
        assert counter.statements == 2
        conn.execute(insert(table), [{"name": f"m{i}"} for i in range(7)])  # a plain executemany
        assert counter.statements == 9
