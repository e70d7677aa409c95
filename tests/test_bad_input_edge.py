"""Issue 18 items 1 and 2: the bad-input review's rows (/work/shared/bad-input-review.md) for patients,
assessments, lab values, courses and dates, global options, the site config and protocol files, replayed
through the real CLI on a real database. A refusal is one line `error: FIELD: 'VALUE': why` with the right
exit code and the database byte-identical; a legitimate input is accepted."""

from __future__ import annotations

import textwrap

import pytest
from freezegun import freeze_time

from tests.conftest import dump_database

TODAY = "2026-12-03"


@pytest.fixture
def clinic(tracker):
    """Patients 100234 (no course) and 100237 on methotrexate, as in the review's small clinic."""
    with freeze_time(TODAY):
        tracker("patient add 100234 --name 'Ann Lee' --dob 1980-05-01")
        tracker("patient add 100237 --name 'Bo Lee' --dob 1975-02-01")
        tracker("therapy start 100237 methotrexate --on 2026-11-01 --override-gate 'screened elsewhere'")
    return tracker


def refused(tracker, args, code: int, *words: str):
    """Run a command that must be refused: one line on stderr naming the words, nothing on stdout, the
    database unchanged."""
    before = dump_database(tracker.db)
    with freeze_time(TODAY):
        result = tracker(args, ok=False)
    assert result.exit_code == code, (args, result.exit_code, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert result.stdout == ""
    assert dump_database(tracker.db) == before
    return lines[0]


# --- patients: MRNs, names, weights, the audit user --------------------------------------------------------

PATIENT_CASES = [
    # review row id, arguments, words in the one-line error
    ("pt-mrn-zwsp", ["patient", "add", "100234\u200b", "--name", "Ann Lee", "--dob", "1980-05-01"],
     ["mrn:", "\\u200b", "U+200B"]),
    ("pt-mrn-cyrillic", ["patient", "add", "DEM\u041e1", "--name", "X Y", "--dob", "1990-01-01"],
     ["mrn:", "ASCII"]),
    ("pt-mrn-esc", ["patient", "add", "1\x1b[2J2", "--name", "X Y", "--dob", "1990-01-01"], ["mrn:", "\\x1b"]),
    ("pt-mrn-slash", ["patient", "add", "../../x", "--name", "X Y", "--dob", "1990-01-01"], ["mrn:", "'../../x'"]),
    ("pt-mrn-del", ["patient", "add", "12\x7f34", "--name", "X Y", "--dob", "1990-01-01"], ["mrn:", "U+007F"]),
    ("pt-mrn-long", ["patient", "add", "1" * 33, "--name", "X Y", "--dob", "1990-01-01"], ["mrn:", "at most 32"]),
    ("pt-name-100k", ["patient", "add", "200001", "--name", "A" * 100_000, "--dob", "1990-01-01"],
     ["name:", "100000 characters", "at most 200"]),
    ("pt-name-ansi", ["patient", "add", "200001", "--name", "\x1b[31mRed\x1b[0m Tom", "--dob", "1990-01-01"],
     ["name:", "U+001B"]),
    ("pt-name-newline", ["patient", "add", "200001", "--name", "Ann\nLee", "--dob", "1990-01-01"],
     ["name:", "U+000A"]),
    ("pt-name-rtl", ["patient", "add", "200001", "--name", "Ann \u202eeeL", "--dob", "1990-01-01"],
     ["name:", "U+202E"]),
    ("pt-name-bad-utf8", ["patient", "add", "200001", "--name", "Ann \udcff\udcfe Lee", "--dob", "1990-01-01"],
     ["name:", "U+DCFF"]),
    ("pt-weight-tiny", ["patient", "add", "200001", "--name", "X Y", "--dob", "1990-01-01", "--weight-kg",
                        "0.000001"], ["weight-kg:", "at least 0.2"]),
    ("pt-weight-underscore", ["patient", "add", "200001", "--name", "X Y", "--dob", "1990-01-01", "--weight-kg",
                              "7_0"], ["weight-kg:", "'7_0'", "plain number"]),
    ("pt-weight-nan", ["patient", "add", "200001", "--name", "X Y", "--dob", "1990-01-01", "--weight-kg",
                       "nan"], ["weight-kg:", "'nan'"]),
    ("pt-update-name", ["patient", "update", "100234", "--name", "Ann\x1b]0;pwned\x07"], ["name:", "U+001B"]),
    ("user-newline", ["--user", "nurse\nadmin\x1b[2J", "patient", "add", "200001", "--name", "X Y", "--dob",
                      "1990-01-01"], ["user:", "U+000A"]),
    ("user-100k", ["--user", "A" * 100_000, "patient", "add", "200001", "--name", "X Y", "--dob", "1990-01-01"],
     ["user:", "at most 64"]),
]


@pytest.mark.parametrize("case,args,words", PATIENT_CASES, ids=[c[0] for c in PATIENT_CASES])
def test_patient_input_is_refused_in_one_line(clinic, case, args, words):
    refused(clinic, args, 2, *words)


@pytest.mark.parametrize("mrn", ["100234", "dem01", "DEM01"])
def test_an_mrn_equal_in_normalised_form_is_a_duplicate(clinic, mrn):
    with freeze_time(TODAY):
        clinic("patient add DEM01 --name 'Dee Em' --dob 1990-01-01")
    line = refused(clinic, ["patient", "add", mrn, "--name", "X Y", "--dob", "1990-01-01"], 4, "mrn:", "already exists")
    if mrn == "dem01":
        assert "'DEM01'" in line  # the look-alike on record is named


def test_an_mrn_renamed_onto_a_look_alike_is_a_duplicate(clinic):
    refused(clinic, ["patient", "update", "100237", "--new-mrn", "100234"], 4, "already exists")


def test_names_are_stored_nfc_normalised_and_legitimate_ones_accepted(clinic):
    decomposed = "Jose\u0301 Mu\u0308ller-O'Brien"
    with freeze_time(TODAY):
        clinic(["patient", "add", "200001", "--name", decomposed, "--dob", "1990-01-01", "--weight-kg", "70.5"])
        [row] = [p for p in clinic.json("patient list") if p["mrn"] == "200001"]
    assert row["name"] == "Jos\u00e9 M\u00fcller-O'Brien"
    with freeze_time(TODAY):
        clinic("patient show 200001")  # and the MRN is found as typed


# --- assessments and numbers on the command line -----------------------------------------------------------

NUMBER_CASES = [
    ("as-easi-nan", "assess 100234 --on 2026-12-01 --easi nan", 2, ["easi:", "'nan'"]),
    ("as-easi-inf", "assess 100234 --on 2026-12-01 --easi inf", 2, ["easi:", "'inf'"]),
    ("as-easi-underscore", "assess 100234 --on 2026-12-01 --easi 1_0", 2, ["easi:", "'1_0'"]),
    ("as-easi-1e309", "assess 100234 --on 2026-12-01 --easi 1e309", 2, ["easi:", "'1e309'"]),
    ("as-iga-hex", "assess 100234 --on 2026-12-01 --iga 0x2", 2, ["iga:", "'0x2'"]),
    ("as-on-9999", "assess 100234 --on 9999-12-31 --easi 10", 2, ["on:", "'9999-12-31'"]),
    ("rs-underscore", "result add 100234 neutrophils 1_5 --on 2026-12-01", 2, ["value:", "'1_5'"]),
    ("rs-nan", "result add 100234 neutrophils nan --on 2026-12-01", 2, ["value:", "'nan'"]),
    ("rs-1e309", "result add 100234 neutrophils 1e309 --on 2026-12-01", 2, ["value:", "'1e309'"]),
    ("rs-neg", "result add 100237 alt -25 --on 2026-12-01", 2, ["value:", "'-25'", "outside"]),
    ("rs-ref-nan", "result add 100237 alt 20 --ref-high nan --on 2026-12-01", 2, ["ref-high:", "'nan'"]),
    ("rs-ref-neg", "result add 100237 alt 20 --ref-high -5 --on 2026-12-01", 2, ["ref_high:", "greater than 0"]),
    ("rs-ref-zero", "result add 100237 alt 20 --ref-high 0 --on 2026-12-01", 2, ["ref_high:", "greater than 0"]),
    ("rs-ref-inverted", "result add 100237 alt 20 --ref-low 40 --ref-high 30 --on 2026-12-01", 2,
     ["ref_low:", "below ref_high"]),
    ("rs-ref-low-neg", "result add 100237 alt 20 --ref-low -1 --ref-high 30 --on 2026-12-01", 2,
     ["ref_low:", "at least 0"]),
]


@pytest.mark.parametrize("case,command,code,words", NUMBER_CASES, ids=[c[0] for c in NUMBER_CASES])
def test_numbers_are_plain_finite_and_bounded(clinic, case, command, code, words):
    refused(clinic, command, code, *words)


def test_a_plain_reference_range_is_accepted(clinic):
    with freeze_time(TODAY):
        out = clinic("result add 100237 alt 20 --ref-low 0 --ref-high 40 --on 2026-12-01").stdout
    assert out.startswith("recorded alt 20 U/L")


def test_a_csv_row_with_a_python_literal_or_bad_reference_limit_is_refused(clinic, tmp_path):
    for name, row in (("underscore", "100237,alt,2_0,,2026-12-01,,"), ("ref-nan", "100237,alt,20,,2026-12-01,,nan"),
                      ("ref-zero", "100237,alt,20,,2026-12-01,,0")):
        path = tmp_path / f"{name}.csv"
        path.write_text("mrn,test,value,unit,taken_on,ref_low,ref_high\n" + row + "\n")
        before = dump_database(clinic.db)
        with freeze_time(TODAY):
            result = clinic(["result", "import", str(path)], ok=False)
        assert result.exit_code == 2, (name, result.stderr)
        assert dump_database(clinic.db) == before


# --- courses and dates ---------------------------------------------------------------------------------------

DATE_CASES = [
    ("th-start-9999", "therapy start 100234 methotrexate --on 9999-01-01", ["on:", "'9999-01-01'"]),
    ("th-start-typo-1990", "therapy start 100234 methotrexate --on 1990-03-04 --override-gate x",
     ["on:", "'1990-03-04'", "--historic"]),
    ("th-start-far-ahead", "therapy start 100234 methotrexate --on 2028-01-01 --override-gate x",
     ["on:", "'2028-01-01'", "365 days ahead"]),
    ("th-stop-9999", "therapy stop 100237 methotrexate --on 9999-01-01 --reason x", ["on:", "'9999-01-01'"]),
    ("th-stop-far-ahead", "therapy stop 100237 methotrexate --on 2028-06-01 --reason x", ["on:", "days ahead"]),
    ("th-dose-far-ahead", "therapy dose 100237 methotrexate --on 2029-01-01 --dose '20 mg'", ["on:", "days ahead"]),
    ("th-adjust-1000y", "therapy adjust 100237 methotrexate --every 1000y --reason x",
     ["every:", "'1000y'", "1 week and 2 years"]),
    ("th-adjust-1d", "therapy adjust 100237 methotrexate --every 1d --reason x", ["every:", "'1d'"]),
    ("th-adjust-huge", "therapy adjust 100237 methotrexate --every 99999999999y --reason x", ["every:"]),
    ("th-reason-esc", ["therapy", "stop", "100237", "methotrexate", "--on", "2026-12-01", "--reason", "x\x1b[2J"],
     ["reason:", "U+001B"]),
    ("wl-asof-far", "due --as-of 9999-12-31", ["as-of:", "'9999-12-31'", "outside"]),
    ("ng-asof-9999", "nightly --as-of 9999-12-31", ["as-of:", "'9999-12-31'"]),
    ("wl-cal-inverted", "calendar 100237 --from 2027-12-01 --to 2026-01-01", ["from:", "'2027-12-01'", "after --to"]),
    ("ex-inverted", "export ics --patient 100237 --from 2027-12-01 --to 2026-01-01", ["from:", "after --to"]),
    ("ex-to-far", "export ics --patient 100237 --to 9999-12-31", ["to:", "'9999-12-31'"]),
]


@pytest.mark.parametrize("case,command,words", DATE_CASES, ids=[c[0] for c in DATE_CASES])
def test_course_dates_and_intervals_stay_in_their_window(clinic, case, command, words):
    refused(clinic, command, 2, *words)


def test_historic_allows_an_old_start_and_an_old_date_is_a_warning(clinic):
    with freeze_time(TODAY):
        result = clinic("therapy start 100234 methotrexate --on 1999-06-01 --override-gate x --historic")
    assert result.exit_code == 0
    assert "warning: on 1999-06-01 is" in result.stderr and "days ago" in result.stderr


def test_the_date_window_is_configurable(clinic, tmp_path):
    config = tmp_path / "site.toml"
    config.write_text("[dates]\nmax_ahead_days = 800\nearliest_start = 1990-01-01\n")
    with freeze_time(TODAY):
        clinic(["--config", str(config), "therapy", "stop", "100237", "methotrexate", "--on", "2028-06-01",
                "--reason", "planned end"])
        out = clinic(["--config", str(config), "config", "show"]).stdout
    assert "[dates]" in out and "max_ahead_days = 800  # clinic default" in out


# --- click's own usage errors ----------------------------------------------------------------------------

USAGE_CASES = [
    ("unknown-option", "therapy start 100234 methotrexate --on 2026-12-01 --nope", ["--nope"]),
    ("negative-as-option", "patient list -1", ["-1"]),
    ("missing-argument", "patient add", ["MRN"]),
    ("bad-choice", "patient add 200001 --name 'X Y' --dob 1990-01-01 --sex q", ["--sex", "'q'"]),
    ("int-range", "due --days 99999", ["--days"]),
]


@pytest.mark.parametrize("case,command,words", USAGE_CASES, ids=[c[0] for c in USAGE_CASES])
def test_usage_errors_are_one_line(clinic, case, command, words):
    refused(clinic, command, 2, *words)


# --- the site config -------------------------------------------------------------------------------------------

CONFIG_CASES = [
    ("cfg-typo-section", "[reminder]\nlead_days = 30\n", ["reminder: unknown table", "'reminders'"]),
    ("cfg-typo-key", "[alerts]\noverdue_grace_day = 1\n", ["alerts.overdue_grace_day", "'overdue_grace_days'"]),
    ("cfg-typo-top", "time_zone = 'UTC'\n", ["time_zone", "'timezone'"]),
    ("cfg-channels-empty", "[reminders]\nchannels = []\n", ["reminders.channels: []", "at least one"]),
    ("cfg-section-scalar", "alerts = 5\n", ["alerts: 5", "expected a table"]),
    ("cfg-latin1", b"timezone = 'Europe/Z\xfcrich'\n", ["line 1", "not UTF-8"]),
    ("cfg-schedules-int", "schedules_dir = 5\n", ["schedules_dir: 5"]),
    ("cfg-dates-bad", "[dates]\nearliest_start = 'soon'\n", ["dates.earliest_start"]),
]


@pytest.mark.parametrize("case,text,words", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_config_problems_are_one_line_and_name_the_nearest_key(clinic, tmp_path, case, text, words):
    config = tmp_path / "site.toml"
    config.write_bytes(text if isinstance(text, bytes) else text.encode())
    refused(clinic, ["--config", str(config), "due"], 8, *words)


def test_a_config_that_is_a_directory_is_one_line(clinic, tmp_path):
    refused(clinic, ["--config", str(tmp_path), "config", "show"], 8, "is a directory")


def test_config_show_lists_every_section_with_clinic_defaults_marked(clinic):
    with freeze_time(TODAY):
        out = clinic("config show").stdout
    for section in ("[reminders]", "[privacy]", "[scheduler]", "[alerts]", "[calendar]", "[feeds]", "[dates]"):
        assert section in out, section
    assert "baseline_window_days = 28  # clinic default" in out
    assert "merge_window_days = 3  # clinic default" in out
    assert 'earliest_start = "2000-01-01"  # clinic default' in out


# --- protocol files ------------------------------------------------------------------------------------------

PROTOCOL = """\
id: exampledrug
version: 1
name: Example drug
class: biologic
sources:
  LOCAL:
    citation: Our clinic's protocol
monitoring:
  sources: [LOCAL]
  tracks:
    - name: Blood count
      tests: [cbc]
      sources: [LOCAL]
      phases:
        - every: 3m
          sources: [LOCAL]
thresholds:
  - analyte: neutrophils
    below: 1.0
    action: stop
    severity: critical
    sources: [LOCAL]
"""

PROTOCOL_CASES = [
    ("yml-version-bool", ("version: 1", "version: true"), "version"),
    ("yml-version-huge", ("version: 1", "version: 1000000000000000000000000000000"), "version"),
    ("yml-class", ("class: biologic", "class: homeopathy"), "class"),
    ("yml-dur-huge", ("every: 3m", "every: 99999999999y"), "every"),
    ("yml-every-1d", ("every: 3m", "every: 1d"), "every"),
    ("yml-below-inf", ("below: 1.0", "below: .inf"), "below"),
    ("yml-below-nan", ("below: 1.0", "below: .nan"), "below"),
]


def _clinic_dir(tmp_path, text: str | bytes, name: str = "p.yaml"):
    clinic_dir = tmp_path / "clinic"
    clinic_dir.mkdir(exist_ok=True)
    (clinic_dir / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    return clinic_dir


def test_the_example_protocol_validates(tracker, tmp_path):
    clinic_dir = _clinic_dir(tmp_path, PROTOCOL)
    assert tracker(["schedules", "validate", str(clinic_dir / "p.yaml")]).exit_code == 0


@pytest.mark.parametrize("case,change,field", PROTOCOL_CASES, ids=[c[0] for c in PROTOCOL_CASES])
def test_protocol_validation_refuses_wrong_types_classes_non_finite_numbers_and_intervals(tracker, tmp_path, case,
                                                                                          change, field):
    old, new = change
    clinic_dir = _clinic_dir(tmp_path, PROTOCOL.replace(old, new))
    result = tracker(["schedules", "validate", str(clinic_dir / "p.yaml")], ok=False)
    assert result.exit_code == 6, result.stdout + result.stderr
    assert f": {field}" in result.stdout + result.stderr or f".{field}:" in result.stdout + result.stderr


ALIAS_BOMB = textwrap.dedent("""\
    notes_a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    notes_b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    notes_c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    notes_d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    notes_e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    notes_f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    notes_g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    """)


@pytest.mark.parametrize("case,text", [("yml-alias-bomb", PROTOCOL + ALIAS_BOMB),
                                       ("yml-cycle", PROTOCOL + "notes: &a [*a]\n")])
def test_yaml_aliases_are_refused_before_they_expand(tracker, tmp_path, case, text):
    clinic_dir = _clinic_dir(tmp_path, text)
    result = tracker(["schedules", "validate", str(clinic_dir / "p.yaml")], ok=False)
    assert result.exit_code == 6
    assert "anchors and aliases are not allowed" in result.stdout + result.stderr


@pytest.mark.parametrize("case,data", [
    ("yml-latin1", PROTOCOL.replace("Example drug", "Exampl\xe9 drug").encode("latin-1")),
    ("yml-utf16", PROTOCOL.encode("utf-16")),
])
def test_a_non_utf8_protocol_is_named_by_validate_and_skipped_by_other_commands(clinic, tmp_path, monkeypatch,
                                                                               case, data):
    clinic_dir = _clinic_dir(tmp_path, data)
    result = clinic(["schedules", "validate", str(clinic_dir / "p.yaml")], ok=False)
    assert result.exit_code == 6 and "not UTF-8" in result.stdout + result.stderr
    monkeypatch.setenv("TRACKER_SCHEDULES", str(clinic_dir))
    with freeze_time(TODAY):
        due = clinic("due")  # an unrelated command still works
    assert due.exit_code == 0
    [warning] = [line for line in due.stderr.splitlines() if "p.yaml" in line]
    assert warning.startswith("warning: skipped ") and "not UTF-8" in warning


def test_an_oversized_protocol_file_is_skipped_with_a_warning(clinic, tmp_path, monkeypatch):
    clinic_dir = _clinic_dir(tmp_path, PROTOCOL + "notes: '" + "x" * 1_000_001 + "'\n")
    monkeypatch.setenv("TRACKER_SCHEDULES", str(clinic_dir))
    with freeze_time(TODAY):
        due = clinic("due")
    assert "larger than 1000000 bytes" in due.stderr


def test_a_broken_clinic_algorithm_is_one_line(clinic, tmp_path, monkeypatch):
    clinic_dir = _clinic_dir(tmp_path, "after_class: [unclosed\n", name="_algorithm.yaml")
    monkeypatch.setenv("TRACKER_SCHEDULES", str(clinic_dir))
    before = dump_database(clinic.db)
    with freeze_time(TODAY):
        result = clinic("assess 100237 --on 2026-11-24 --easi 29", ok=False)
    assert result.exit_code == 6
    assert len(result.stderr.splitlines()) == 1 and "_algorithm.yaml" in result.stderr
    assert dump_database(clinic.db) == before
