"""Issue 18 item 7 / issue 15 item 9: hypothesis over every option and argument of every command, found by
walking the click tree (a new option is fuzzed without editing this file), run on a copy of the review's
small clinic. The property: exit 0 leaves the invariants holding (tests/fuzz_support.py); a refusal (exit
>= 2) is one line `error: ...` and the database file byte-identical; exit 1 or a traceback is a failure.

CI runs a few examples per command, derandomized (the same ones every run, so no flaky failure); hunt with
TRACKER_FUZZ_EXAMPLES=2000, which also draws new examples each run."""

from __future__ import annotations

import os
import shutil

import click
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz_support import (FUZZ_EXAMPLES, check_invocation, examples, hostile_text, odd_dates, odd_numbers,
                                review_clinic_file)
from tests.test_bad_input_edge import PROTOCOL
from tracker.cli import cli

pytestmark = pytest.mark.skipif(bool(os.environ.get("TRACKER_TEST_PG")),
                                reason="fuzzes a SQLite file copied per example (byte-identical on refusal)")

# Not fuzzed, by name: they run until stopped (serve, scheduler run, labs listen) or build a whole clinic of up to
# thousands of patients per call (demo, synth: tests/test_synth.py and the demo tests cover their options).
EXCLUDED = {"serve", "scheduler run", "labs listen", "demo", "synth"}


def commands(group: click.Group = cli, path: tuple = ()) -> list[tuple[str, click.Command]]:
    found = []
    for name, command in sorted(group.commands.items()):
        here = (*path, name)
        if isinstance(command, click.Group):
            if command.invoke_without_command:  # `tracker nightly` runs the job itself
                found.append((" ".join(here), command))
            found += commands(command, here)
        elif " ".join(here) not in EXCLUDED:
            found.append((" ".join(here), command))
    return found


COMMANDS = commands()

MRNS = ["100234", "100235", "100237", "100238", "999999", "dem01"]
DRUGS = ["methotrexate", "azathioprine", "upadacitinib", "dupilumab", "baricitinib", "ciclosporin",
         "prednisolone", "mycophenolate", "nosuchdrug"]
TESTS = ["alt", "neutrophils", "hb", "cbc", "cmp", "tb", "hbv", "pregnancy", "creatinine", "hba1c", "tpmt",
         "nosuch"]


def value_for(name: str, param: click.Parameter, files: dict):
    """A strategy for one parameter's value: mostly what the clinic knows, the rest hostile."""
    def pool(known):
        return st.one_of(st.sampled_from(known), hostile_text())

    if isinstance(param.type, click.Choice):
        return pool(list(param.type.choices))
    by_name = {
        "mrn": pool(MRNS), "new_mrn": pool(MRNS), "drug": pool(DRUGS), "from_drug": pool(DRUGS),
        "to_drug": pool(DRUGS), "test": pool(TESTS),
        "value": st.one_of(odd_numbers(), pool(["positive", "negative", "banana", "3.5", "20"])),
        "unit": pool(["cells/mm3", "10^9/L", "g/dL", "g/L", "mg/dL", "U/L", "%", "mmol/mol", "furlongs"]),
        "every": pool(["8w", "3m", "2y", "1d", "6d", "1000y", "99999999999y", "0w", "-1w", "1.5w", "w", "3"]),
        "dose": pool(["20 mg", "15 mg weekly"]), "name": pool(["Ann Lee", "Zoë Ødegård"]),
        "at": pool(["02:00", "25:00", "2:5"]), "timezone": pool(["Europe/London", "UTC", "Mars/Olympus"]),
        "file": st.sampled_from(files["csv"]), "paths": st.sampled_from(files["yaml"]),
        "out": st.sampled_from(files["out"]), "rejects": st.sampled_from(files["out"]),
    }
    if name in by_name:
        return by_name[name]
    type_name = getattr(param.type, "name", "")
    if type_name == "DATE":
        return odd_dates()
    if type_name in ("NUMBER", "float", "float range"):
        return odd_numbers()
    if type_name in ("integer", "integer range"):
        return st.one_of(st.integers(-3, 30).map(str), odd_numbers())
    return hostile_text()


@st.composite
def invocation(draw, command: click.Command, files: dict) -> list[str]:
    """An argv for `command`: some of its options (flags on or off), then its arguments, sometimes after
    `--` so values starting with `-` reach it as values."""
    options, arguments = [], []
    for param in command.params:
        if isinstance(param, click.Argument):
            count = 1 if param.nargs == 1 else draw(st.integers(0, 2))
            arguments += [draw(value_for(param.name, param, files)) for _ in range(count)]
        elif param.name in ("help",):
            continue
        elif draw(st.booleans()):
            if param.is_flag:
                options.append(draw(st.sampled_from([*param.opts, *param.secondary_opts])))
            else:
                options += [draw(st.sampled_from(param.opts)), draw(value_for(param.name, param, files))]
    separator = ["--"] if arguments and draw(st.booleans()) else []
    return [*options, *separator, *arguments]


@pytest.fixture(scope="module")
def clinic_file(tmp_path_factory, migrated_template) -> str:
    return review_clinic_file(tmp_path_factory, migrated_template)


@pytest.fixture
def files(tmp_path) -> dict:
    """Input files a command may be pointed at, and places an output may go (good and impossible)."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    (folder / "good.csv").write_text("mrn,test,value,unit,taken_on,ref_low,ref_high\n"
                                     "100237,alt,20,,2026-12-01,,\n100234,neutrophils,3.1,,2026-12-02,,\n")
    (folder / "bad.csv").write_text("mrn,test,value\n100237,alt,nan\n")
    (folder / "p.yaml").write_text(PROTOCOL)
    (folder / "latin1.yaml").write_bytes(PROTOCOL.replace("Example drug", "Exampl\xe9").encode("latin-1"))
    return {
        "csv": [str(folder / "good.csv"), str(folder / "bad.csv"), str(folder / "missing.csv"), str(folder),
                "/dev/null"],
        "yaml": [str(folder / "p.yaml"), str(folder / "latin1.yaml"), str(folder / "missing.yaml"), "/dev/null"],
        "out": [str(tmp_path / "out" / "x"), str(folder / "good.csv"), "/nonexistent/dir/x", "/dev/full",
                str(folder)],
    }


@pytest.mark.parametrize("name,command", COMMANDS, ids=[name for name, _ in COMMANDS])
def test_every_command_refuses_cleanly_or_keeps_the_invariants(clinic_file, files, tmp_path, name, command):
    @settings(max_examples=examples(5), deadline=None, derandomize=not FUZZ_EXAMPLES, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(argv=invocation(command, files), user=st.one_of(st.none(), hostile_text()))
    def check(argv, user):
        db = str(tmp_path / "clinic.db")
        shutil.copyfile(clinic_file, db)
        os.chmod(db, 0o600)
        work = tmp_path / "work"
        work.mkdir(exist_ok=True)
        (tmp_path / "out").mkdir(exist_ok=True)
        check_invocation(db, [*(["--user", user] if user is not None else []), *name.split(), *argv], work)

    check()


def test_the_walk_finds_every_command_and_excludes_only_the_named_ones():
    names = {name for name, _ in COMMANDS}
    assert {"patient add", "result import", "therapy adjust", "nightly", "export ics", "config show"} <= names
    assert not names & EXCLUDED
