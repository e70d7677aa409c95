"""The bad-input review's small clinic, built once per module through the real CLI and migrations and copied
per test (or per fuzz example: copying a file is cheap; building it is 9 commands), and the invariants an
accepted command must leave holding (issue 15 items 1 and 9)."""

from __future__ import annotations

import hashlib
import math
import os
import re
import shlex
import shutil
import sqlite3
import traceback
from pathlib import Path

import pendulum
from click.testing import CliRunner
from freezegun import freeze_time

from tracker.cli import cli
from tracker.core.plausibility import is_plausible
from tracker.db.tables import LIVE_ALERT_SQL, LIVE_COURSE_SQL

TODAY = "2026-12-03"

REVIEW_CLINIC = [
    "patient add 100234 --name 'Ann Lee' --dob 1980-05-01",
    "patient add 100235 --name 'Bo Chan' --dob 1985-05-01",
    "patient add 100237 --name 'Cy Dee' --dob 1975-02-01",
    "patient add 100238 --name 'Di Eve' --dob 1990-02-01 --sex f",
    "therapy start 100234 azathioprine --on 2026-11-01 --override-gate 'screened elsewhere'",
    "therapy start 100235 upadacitinib --on 2026-11-01 --override-gate 'screened elsewhere'",
    "therapy start 100237 methotrexate --on 2026-09-01 --override-gate 'screened elsewhere'",
    "assess 100237 --on 2026-09-01 --easi 30",
    "evaluate",
]


def isolated_env(folder: Path) -> dict:
    """The environment tests/conftest.py's autouse fixture sets, for work done outside a test function (a
    module's clinic is built before any test's monkeypatch exists)."""
    (folder / "no-config.toml").write_text("")
    return {"TRACKER_DB": None, "TRACKER_SCHEDULES": None, "TRACKER_CONFIG": str(folder / "no-config.toml"),
            "USER": "tester", "XDG_DATA_HOME": str(folder / "xdg-data"),
            "XDG_CONFIG_HOME": str(folder / "xdg-config")}


_BUILT: dict[str, str] = {}


def review_clinic_file(tmp_path_factory, migrated_template: str) -> str:
    """The review's clinic, built once per test session (the modules that use it share one file)."""
    if migrated_template not in _BUILT:
        _BUILT[migrated_template] = build_review_clinic(tmp_path_factory.mktemp("review-clinic"), migrated_template)
    return _BUILT[migrated_template]


def build_review_clinic(folder: Path, migrated_template: str) -> str:
    """A SQLite file holding the review's clinic as of TODAY, checkpointed so a plain file copy is whole."""
    path = folder / "clinic.db"
    shutil.copyfile(migrated_template, path)
    os.chmod(path, 0o600)
    run_commands(str(path), REVIEW_CLINIC, isolated_env(folder))
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    return str(path)


def run_commands(db: str, commands: list[str], env: dict | None = None) -> None:
    runner = CliRunner()
    pendulum.set_local_timezone(pendulum.timezone("UTC"))
    try:
        for command in commands:
            with freeze_time(TODAY):
                result = runner.invoke(cli, ["--db", db, *shlex.split(command)], env=env, catch_exceptions=False)
            assert result.exit_code == 0, (command, result.stderr)
    finally:
        pendulum.set_local_timezone()


def use_review_clinic(tracker, clinic_file: str):
    """Put the review's clinic in this test's database: a copy on SQLite, built again on PostgreSQL."""
    if os.environ.get("TRACKER_TEST_PG"):
        run_commands(tracker.db, REVIEW_CLINIC)
    else:
        shutil.copyfile(clinic_file, tracker.db)
    return tracker


def broken_invariants(db_path: str) -> list[str]:
    """What an accepted command must never leave behind (SQLite file): a condition with two live alerts, a
    drug with two live courses for one patient, a non-finite or negative result, a planned item outside the
    dates tracker can compute with, a dangling reference."""
    connection = sqlite3.connect(db_path)
    try:
        problems = []
        query = connection.execute
        for key, count in query(f"SELECT condition_key, count(*) FROM alert WHERE {LIVE_ALERT_SQL} "
                                "GROUP BY condition_key HAVING count(*) > 1"):
            problems.append(f"{count} live alerts for {key}")
        for patient, drug, count in query(f"SELECT patient_id, drug, count(*) FROM course WHERE {LIVE_COURSE_SQL} "
                                          "GROUP BY patient_id, drug HAVING count(*) > 1"):
            problems.append(f"{count} live {drug} courses for patient {patient}")
        vocabulary = _vocabulary()
        for result_id, test, value, ref_low, ref_high in query("SELECT id, test, value_num, ref_low, ref_high "
                                                               "FROM lab_result"):
            for number in (value, ref_low, ref_high):
                if number is not None and (not math.isfinite(number) or number < 0):
                    problems.append(f"result {result_id}: {number}")
            if value is not None and not is_plausible(vocabulary.get(test), value):
                problems.append(f"result {result_id}: {test} {value} is implausible")
            if ref_high is not None and ref_high <= 0 or (ref_low is not None and ref_high is not None
                                                           and ref_low >= ref_high):
                problems.append(f"result {result_id}: reference range {ref_low}-{ref_high}")
        for (item_id,) in query("SELECT id FROM item WHERE due < '1900-01-01' OR due > '2999-12-31'"):
            problems.append(f"item {item_id} dated outside 1900-2999")
        problems += [f"foreign key: {row}" for row in query("PRAGMA foreign_key_check")]
        return problems
    finally:
        connection.close()


_VOCABULARY = []


def _vocabulary():
    if not _VOCABULARY:
        from tracker.protocol_files import load_vocabulary

        _VOCABULARY.append(load_vocabulary())
    return _VOCABULARY[0]


# --- generated values --------------------------------------------------------------------------------------

# How many examples each fuzz test runs: modest in CI (the suite's 10 minutes), more with
# TRACKER_FUZZ_EXAMPLES=2000 when hunting locally.
FUZZ_EXAMPLES = int(os.environ.get("TRACKER_FUZZ_EXAMPLES", "0") or 0)


def examples(ci_default: int) -> int:
    return FUZZ_EXAMPLES or ci_default


def hostile_text():
    """Text a person, a paste or an attacker could type: control, zero-width, bidi and look-alike characters,
    markup, surrogates, very long runs, empty and blank."""
    from hypothesis import strategies as st

    specials = st.sampled_from(["\x00", "\x1b[2J", "\x7f", "\n", "\r", "\t", "\u200b", "\u202e", "\ufeff",
                                "\u041e", "\udcff", "[/b]", "[red]", "%s", "'", '"', "\\", "--", "-1", " ",
                                "é", "e\u0301", "日本", "👍🏽", "A" * 600, ""])
    return st.one_of(st.text(max_size=12), specials,
                     st.lists(st.one_of(specials, st.text(max_size=4)), max_size=4).map("".join))


def odd_dates():
    from hypothesis import strategies as st

    near = st.dates(min_value=__import__("datetime").date(2024, 1, 1),
                    max_value=__import__("datetime").date(2028, 1, 1)).map(lambda d: d.isoformat())
    return st.one_of(near, st.dates().map(lambda d: d.isoformat()),
                     st.sampled_from(["9999-12-31", "0001-01-01", "1899-12-31", "3000-01-01", "2026-02-30",
                                      "2026-13-01", "26-12-03", "2026-12-03T10:00", "today", "", " 2026-12-01",
                                      "２０２６-12-01", "2026-12-01\n", "1999-12-31", "2027-12-03"]),
                     hostile_text())


def odd_numbers():
    from hypothesis import strategies as st

    return st.one_of(
        st.sampled_from(["nan", "-nan", "inf", "-inf", "1e309", "-1e309", "1e300", "0", "-0", "-5", "1_0",
                         "0x10", "1e-320", "9" * 40, "", " 3", "3 ", "1,5", "٣", "+2", ".5", "5.", "1e3"]),
        st.floats().map(repr), st.integers().map(str),
        st.floats(min_value=0, max_value=500, allow_nan=False).map(lambda f: f"{f:g}"), hostile_text())


# --- the property --------------------------------------------------------------------------------------------

def digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_invocation(db: str, argv: list[str], workdir: Path, env: dict | None = None) -> None:
    """Run `tracker --db DB argv` once and assert the property."""
    before = digest(db)
    runner = CliRunner()
    home = os.getcwd()
    os.chdir(workdir)  # a relative --out or --rejects lands in the example's folder
    try:
        with freeze_time(TODAY):
            result = runner.invoke(cli, ["--db", db, *argv], env=env)
    finally:
        os.chdir(home)
    shown = f"tracker {argv!r} exited {result.exit_code}\nstderr: {result.stderr[:2000]}"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(shown + "\n" + "".join(traceback.format_exception(*result.exc_info)))
    assert result.exit_code != 1, shown
    if result.exit_code == 0:
        assert broken_invariants(db) == [], shown
        return
    lines = [line for line in result.stderr.splitlines() if not line.startswith("warning: ")]
    if result.exit_code == 6:  # protocol files: one `FILE:LINE: field: problem` line each (and validate's tally)
        assert lines and all(not line.startswith("Traceback") for line in lines), shown
    else:
        assert lines and lines[0].startswith("error: "), shown
        # one line, except `result import`, which names each refused row under its one-line summary
        assert all(re.match(r"line \d+: ", line) for line in lines[1:]), shown
    assert digest(db) == before, "database changed although refused: " + shown
    wal = Path(db + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0, shown
