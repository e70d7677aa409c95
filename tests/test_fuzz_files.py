"""Issue 18 item 7 / issue 15 item 9: hypothesis over the files tracker reads, with the property of
tests/test_fuzz_cli.py (refused: one line, exit >= 2, the database byte-identical; accepted: the invariants
hold; never exit 1, a traceback or a hang):

- CSV files for `result import` (headers shuffled, duplicated, missing or unknown; odd cells, quoting, BOM,
  encodings), with and without --skip-bad;
- clinic protocol YAML (the example protocol with a value replaced, a key dropped or added, text inserted,
  truncated, re-encoded, alias bombs and cycles) for `schedules validate` and a `therapy start` that loads it;
- site config TOML (known tables and keys with odd values, unknown ones, broken text) for `config show` and
  a `therapy dose` that plans with it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from itertools import count

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz_support import (FUZZ_EXAMPLES, check_invocation, examples, hostile_text, odd_dates, odd_numbers,
                                review_clinic_file)
from tests.test_bad_input_edge import ALIAS_BOMB, PROTOCOL
from tracker.core.settings import KNOWN_KEYS

pytestmark = pytest.mark.skipif(bool(os.environ.get("TRACKER_TEST_PG")),
                                reason="fuzzes a SQLite file copied per example (byte-identical on refusal)")

FUZZ = settings(max_examples=examples(20), deadline=None, derandomize=not FUZZ_EXAMPLES, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SERIAL = count()  # a new folder per example: protocol libraries are cached per folder path


@pytest.fixture(scope="module")
def clinic_file(tmp_path_factory, migrated_template) -> str:
    return review_clinic_file(tmp_path_factory, migrated_template)


@pytest.fixture
def fresh(clinic_file, tmp_path):
    """A function giving, per example, a copy of the clinic and an empty folder beside it."""
    def make():
        folder = tmp_path / f"example-{next(SERIAL)}"
        folder.mkdir()
        db = str(folder / "clinic.db")
        shutil.copyfile(clinic_file, db)
        os.chmod(db, 0o600)
        return db, folder

    return make


# --- CSV -------------------------------------------------------------------------------------------------

COLUMNS = ["mrn", "test", "value", "unit", "taken_on", "ref_low", "ref_high"]
CELLS = {
    "mrn": st.one_of(st.sampled_from(["100234", "100235", "100237", "100238", "999999", ""]), hostile_text()),
    "test": st.one_of(st.sampled_from(["alt", "neutrophils", "hb", "cbc", "tb", "creatinine", "nosuch"]),
                      hostile_text()),
    "value": st.one_of(odd_numbers(), st.sampled_from(["negative", "positive", "=HYPERLINK(\"x\")", "3.1"])),
    "unit": st.one_of(st.sampled_from(["", "cells/mm3", "g/dL", "U/L", "mg/dL"]), hostile_text()),
    "taken_on": st.one_of(st.sampled_from(["2026-12-01", "2026-11-20"]), odd_dates()),
    "ref_low": st.one_of(st.just(""), odd_numbers()),
    "ref_high": st.one_of(st.just(""), odd_numbers()),
}


@st.composite
def csv_files(draw) -> bytes:
    header = draw(st.lists(st.one_of(st.sampled_from(COLUMNS), hostile_text()), min_size=0, max_size=9))
    if draw(st.booleans()):  # most files name every column, in some order
        header = draw(st.permutations(COLUMNS)) + header[:draw(st.integers(0, 2))]
    rows = [[draw(CELLS.get(name, hostile_text())) for name in header] for _ in range(draw(st.integers(0, 4)))]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=draw(st.sampled_from(["\n", "\r\n", "\r"])))
    writer.writerow(header)
    writer.writerows(rows)
    text = out.getvalue()
    if draw(st.integers(0, 4)) == 0:  # a stray quote, NUL or truncation somewhere
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(['"', "\x00", "", ",", "\n"])) + text[at + 1:]
    prefix = draw(st.sampled_from(["", "\ufeff"]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "latin-1", "utf-16"]))
    return (prefix + text).encode(encoding, errors="surrogatepass" if encoding == "utf-8" else "replace")


def test_csv_import_refuses_cleanly_or_keeps_the_invariants(fresh):
    @FUZZ
    @given(data=csv_files(), skip_bad=st.booleans())
    def check(data, skip_bad):
        db, folder = fresh()
        (folder / "r.csv").write_bytes(data)
        check_invocation(db, ["result", "import", str(folder / "r.csv"), *(["--skip-bad"] if skip_bad else [])],
                         folder)

    check()


# --- protocol YAML -------------------------------------------------------------------------------------------

def _paths(node, path=()):
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*path, index))


YAML_VALUES = st.one_of(
    st.sampled_from([None, True, False, 0, -1, 10 ** 30, float("nan"), float("inf"), -0.0, "", [], {}, "3m",
                     "99999999999y", "0w", "homeopathy", ".nan", "stop", "critical", "cbc", "LOCAL"]),
    st.integers(), st.floats(), hostile_text(), st.lists(hostile_text(), max_size=2))
SNIPPETS = ["&a x", "*a", "!!python/object:os.system", "{", "]", "- ", ": :", "\t", "\x00", "\udcff", "%YAML 9.9",
            "--- ", "...", "key: [*a, *a]", "? ", "<<: *a", "\"\\x", "'''"]


@st.composite
def protocol_files(draw) -> bytes:
    kind = draw(st.sampled_from(["replace", "drop", "add", "insert", "truncate", "encode", "alias"]))
    if kind in ("replace", "drop", "add"):
        data = yaml.safe_load(PROTOCOL)
        path = draw(st.sampled_from([p for p in _paths(data) if p]))
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        if kind == "replace":
            parent[path[-1]] = draw(YAML_VALUES)
        elif kind == "drop":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(hostile_text())] = draw(YAML_VALUES)
        return yaml.safe_dump(data, allow_unicode=True, sort_keys=False).encode("utf-8", errors="surrogatepass")
    if kind == "insert":
        at = draw(st.integers(0, len(PROTOCOL)))
        text = PROTOCOL[:at] + draw(st.one_of(st.sampled_from(SNIPPETS), hostile_text())) + PROTOCOL[at:]
        return text.encode("utf-8", errors="surrogatepass")
    if kind == "truncate":
        return PROTOCOL[:draw(st.integers(0, len(PROTOCOL)))].encode()
    if kind == "encode":
        return PROTOCOL.replace("Example drug", "Exampl\xe9 drug").encode(draw(st.sampled_from(
            ["latin-1", "utf-16", "utf-32", "cp1252"])))
    return (PROTOCOL + draw(st.sampled_from([ALIAS_BOMB, "notes: &a [*a]\n", "notes: &a {b: *a}\n",
                                             "x: &a 1\ny: *a\n"]))).encode()


def test_protocol_files_are_refused_cleanly_or_loaded(fresh):
    from tracker import protocol_files as loader

    @FUZZ
    @given(data=protocol_files())
    def check(data):
        db, folder = fresh()
        clinic_dir = folder / "clinic"
        clinic_dir.mkdir()
        (clinic_dir / "p.yaml").write_bytes(data)
        check_invocation(db, ["schedules", "validate", str(clinic_dir / "p.yaml")], folder)
        try:
            check_invocation(db, ["therapy", "start", "100238", "exampledrug", "--on", "2026-12-01",
                                  "--override-gate", "test"], folder, env={"TRACKER_SCHEDULES": str(clinic_dir)})
        finally:
            loader._LIBRARY.pop(str(clinic_dir), None)  # one folder per example: do not keep them all

    check()


# --- site config TOML --------------------------------------------------------------------------------------

TOML_SCALARS = st.one_of(
    st.sampled_from([0, -1, 1, 3, 28, 29, 10 ** 6, 2 ** 63 - 1, float("nan"), float("inf"), 0.5, True, "",
                     "UTC", "Mars/Olympus", "stdout", "jsonl", "email", "webhook", "name", "mrn", "initials",
                     "02:00", "https://example.invalid/x", "/nonexistent/dir", "2000-01-01", "starttls"]),
    st.integers(), st.floats(), hostile_text())
TOML_VALUES = st.one_of(TOML_SCALARS, st.lists(TOML_SCALARS, max_size=3),
                        st.sampled_from([["stdout"], [], ["stdout", "stdout"], ["pigeon"]]))


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if value != value else ("inf" if value > 0 else "-inf") if abs(value) == float("inf") \
            else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return json.dumps(value)  # a TOML basic string (an escaped surrogate is a TOML error, as it should be)


@st.composite
def config_files(draw) -> bytes:
    tables = draw(st.lists(st.sampled_from(sorted(KNOWN_KEYS)), max_size=4, unique=True))
    lines = []
    for table in tables:
        keys = [k for k in KNOWN_KEYS[table] if (f"{table}.{k}" if table else k) not in KNOWN_KEYS]
        if table:
            lines.append(f"[{draw(st.sampled_from([table, table, table + 's', 'reminder']))}]")
        for key in draw(st.lists(st.sampled_from(keys), max_size=3, unique=True)) if keys else []:
            lines.append(f"{key} = {_toml(draw(TOML_VALUES))}")
        if draw(st.integers(0, 5)) == 0:
            lines.append(f"{json.dumps(draw(hostile_text()))} = 1")
    text = "\n".join(lines) + "\n"
    if draw(st.integers(0, 4)) == 0:
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["[", "=", '"', "\x00", "\udcff", "\n[[x]]\n"])) + text[at:]
    return _encode(text, draw(st.sampled_from(["utf-8", "utf-8", "latin-1"])))


def _encode(text: str, encoding: str) -> bytes:
    return text.encode(encoding, errors="surrogatepass" if encoding == "utf-8" else "replace")


def test_site_configs_are_refused_cleanly_or_used(fresh):
    @FUZZ
    @given(data=config_files())
    def check(data):
        db, folder = fresh()
        (folder / "site.toml").write_bytes(data)
        config = ["--config", str(folder / "site.toml")]
        check_invocation(db, [*config, "config", "show"], folder)
        check_invocation(db, [*config, "therapy", "dose", "100237", "methotrexate", "--on", "2026-12-01",
                              "--dose", "20 mg"], folder)

    check()
