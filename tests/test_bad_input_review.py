"""Issue 18 item 7: every row of the bad-input review (/work/shared/bad-input-review.md, outside the repo; its
row ids are copied below) is a regression test somewhere in tests/. The rows not already replayed by
test_bad_input_edge.py are replayed here, grouped by kind, on the review's small clinic: a refusal is one
line naming the field, the right exit code and the database byte-identical; a legitimate input is
accepted correctly. The last test checks that no row id was dropped."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from freezegun import freeze_time

from tests.conftest import dump_database
from tests.fuzz_support import review_clinic_file, use_review_clinic
from tests.test_bad_input_edge import PROTOCOL, TODAY, refused
from tracker.cli import cli

# Every row id of the review, in its order (patients, results, assessments, therapy, worklists, alerts,
# export, nightly, demo, global options, database, CSV, protocol files, config).
REVIEW_ROW_IDS = """
pt-mrn-zwsp pt-mrn-cyrillic pt-mrn-esc pt-mrn-slash pt-mrn-nul pt-name-100k
pt-name-ansi pt-name-markup pt-name-markup2 pt-name-newline pt-name-rtl pt-name-bad-utf8
pt-weight-tiny pt-weight-underscore rs-nan rs-inf rs-1e309 rs-huge
rs-underscore rs-unit-cells rs-unit-gdl rs-unit-garbage rs-panel-empty rs-panel-junk
rs-panel-100k rs-ref-nan rs-ref-neg rs-ref-zero rs-ref-only-low-above rs-tb-positive-start
rs-preg-positive-mmf rs-unit-cells-low rs-unit-gdl-normal rs-neg-dashdash as-underscore as-dup-day
as-dup-day-flip th-far-future th-future-2090 th-far-past th-stop-future th-adjust-1000y
th-adjust-99999999y th-adjust-1d th-adjust-from-far wl-asof-far wl-cal-inverted al-asof-past
ex-out-nodir ex-out-devfull ex-to-far ng-asof-future ng-asof-9999 demo-replace-clinic
user-newline user-100k db-missing-dir db-status-creates csv-dup-header csv-unit-cells
csv-unit-gdl csv-nan csv-inf csv-neg csv-ref-nan csv-formula
csv-rejects-self csv-rejects-nodir csv-rejects-devfull csv-devzero yml-version-bool yml-version-huge
yml-class yml-dur-huge yml-below-inf yml-below-nan yml-latin1 yml-utf16
yml-cycle dir-dup-ids-load dir-latin1-load dir-algorithm-bad dir-huge-every-start dir-below-nan-start
cfg-dir cfg-channels-empty cfg-jsonl-dir cfg-merge-huge cfg-schedules-int cfg-schedules-list
cfg-typo-section cfg-typo-key cfg-latin1
""".split()



@pytest.fixture(scope="module")
def clinic_file(tmp_path_factory, migrated_template) -> str:
    return review_clinic_file(tmp_path_factory, migrated_template)


@pytest.fixture
def clinic(tracker, clinic_file):
    """The review's clinic (tests/fuzz_support.py): 100234 on azathioprine, 100235 on upadacitinib, 100237 on
    methotrexate (EASI 30 at its start), 100238 (a woman) without a course."""
    return use_review_clinic(tracker, clinic_file)


def run(tracker, args, **kwargs):
    with freeze_time(TODAY):
        return tracker(args, **kwargs)


# --- patients: names shown literally -------------------------------------------------------------------------

@pytest.mark.parametrize("case,name", [
    ("pt-name-markup", "Ann [/bold] Lee"),
    ("pt-name-markup2", "[blink red]Ann[/] [link=http://evil.example]Lee[/link]"),
])
def test_a_name_with_rich_markup_is_stored_and_shown_literally(clinic, case, name):
    run(clinic, ["patient", "add", "200001", "--name", name, "--dob", "1990-01-01"])
    assert name in run(clinic, "patient show 200001").stdout
    listing = run(clinic, "patient list").stdout  # the whole registry still lists
    assert "200001" in listing and "[/" in listing


# --- lab results on the command line (and one MRN) ----------------------------------------------------------

RESULT_CASES = [
    ("pt-mrn-nul", ["patient", "add", "12\x7f34", "--name", "X Y", "--dob", "1990-01-01"], 2, ["mrn:", "\\x7f"]),
    # review row id, arguments, exit code, words in the one-line error
    ("rs-inf", ["result", "add", "100234", "neutrophils", "inf", "--on", "2026-12-01"], 2, ["value:", "'inf'"]),
    ("rs-huge", ["result", "add", "100234", "alt", "1e300", "--on", "2026-12-01"], 2, ["value:", "outside"]),
    ("rs-unit-garbage", ["result", "add", "100234", "alt", "20", "--unit", "\x1b[31m" + "u" * 10_000, "--on",
                         "2026-12-01"], 2, ["unit:", "\\x1b"]),
    ("rs-panel-empty", ["result", "add", "100238", "cbc", "", "--on", "2026-12-01"], 2, ["value:", "empty"]),
    ("rs-panel-100k", ["result", "add", "100234", "cmp", "A" * 100_000, "--on", "2026-12-01"], 2,
     ["value:", "at most 500"]),
    ("rs-panel-esc", ["result", "add", "100238", "cbc", "ok\x1b[2J", "--on", "2026-12-01"], 2,
     ["value:", "U+001B"]),
    ("rs-ref-only-low-above", ["result", "add", "100234", "alt", "20", "--ref-low", "500", "--on", "2026-12-01"],
     2, ["ref_low:", "'500'", "below the upper limit 40"]),
    ("rs-neg-dashdash", ["result", "add", "100234", "neutrophils", "--on", "2026-12-01", "--", "-1"], 2,
     ["value:", "'-1'", "outside"]),
]


@pytest.mark.parametrize("case,args,code,words", RESULT_CASES, ids=[c[0] for c in RESULT_CASES])
def test_a_bad_result_is_refused_in_one_line(clinic, case, args, code, words):
    refused(clinic, args, code, *words)


def test_a_panel_note_is_accepted_but_does_not_satisfy_a_hard_gate(clinic):  # rs-panel-junk
    for test, value in (("tb", "negative"), ("hbv", "negative"), ("hcv", "negative"), ("cbc", "banana")):
        run(clinic, ["result", "add", "100238", test, value, "--on", "2026-12-01"])
    refused(clinic, "therapy start 100238 baricitinib --on 2026-12-02", 5, "cbc incomplete")


@pytest.mark.parametrize("case,args,shown,alert", [
    ("rs-unit-cells", "result add 100235 neutrophils 800 --unit cells/mm3 --on 2026-12-02",
     "neutrophils 0.8 10^9/L (reported 800 cells/mm3)", True),
    ("rs-unit-cells-low", "result add 100235 neutrophils 800 --unit cells/mm3 --on 2026-12-02", "< 1 10^9/L", True),
    ("rs-unit-gdl", "result add 100235 hb 7.5 --unit g/dL --on 2026-12-02", "hb 75 g/L (reported 7.5 g/dL)", True),
    ("rs-unit-gdl-normal", "result add 100235 hb 13.5 --unit g/dL --on 2026-12-02", "hb 135 g/L", False),
])
def test_a_value_in_a_label_unit_is_converted_before_it_is_judged(clinic, case, args, shown, alert):
    out = run(clinic, args).stdout
    assert shown in out
    assert ("(threshold, critical)" in out) is alert


def test_positive_screens_refuse_a_jak_start(clinic):  # rs-tb-positive-start
    for test, value in (("tb", "positive"), ("hbv", "positive"), ("hcv", "positive"), ("neutrophils", "3")):
        run(clinic, ["result", "add", "100238", test, value, "--on", "2026-12-01"])
    refused(clinic, "therapy start 100238 baricitinib --on 2026-12-02", 5, "tb positive", "hbv positive",
            "hcv positive")


def test_positive_pregnancy_tests_refuse_mycophenolate(clinic):  # rs-preg-positive-mmf
    run(clinic, "patient update 100238 --childbearing-potential")
    run(clinic, "result add 100238 pregnancy positive --on 2026-11-20")
    run(clinic, "result add 100238 pregnancy positive --on 2026-11-30")
    refused(clinic, "therapy start 100238 mycophenolate --on 2026-12-02", 5, "pregnancy positive")


# --- assessments ---------------------------------------------------------------------------------------------

def test_a_python_literal_score_is_refused(clinic):  # as-underscore
    refused(clinic, "assess 100237 --on 2026-12-01 --easi 1_0", 2, "easi:", "'1_0'")


def test_a_second_baseline_reading_is_refused_and_the_first_stays_the_baseline(clinic):  # as-dup-day
    refused(clinic, "assess 100237 --on 2026-09-01 --easi 5", 4, "on:", "--replace")
    # as-dup-day-flip: the week-12 reading is judged against EASI 30, not a silent 5
    assert "EASI 30 -> 12 (60% better" in run(clinic, "assess 100237 --on 2026-11-24 --easi 12").stdout


# --- therapy, alerts, export, nightly, demo, database --------------------------------------------------------

COMMAND_CASES = [
    ("th-far-future", "therapy start 100238 methotrexate --on 9999-12-01", 2, ["on:", "'9999-12-01'"]),
    ("th-future-2090", "therapy start 100238 methotrexate --on 2090-01-01", 2, ["on:", "365 days ahead"]),
    ("th-far-past", "therapy start 100238 methotrexate --on 1990-03-04", 2, ["on:", "--historic"]),
    ("th-stop-future", "therapy stop 100237 methotrexate --on 9999-01-01 --reason x", 2, ["on:", "'9999-01-01'"]),
    ("th-adjust-99999999y", "therapy adjust 100237 methotrexate --every 99999999y --reason x", 2,
     ["every:", "'99999999y'"]),
    ("th-adjust-from-far", "therapy adjust 100237 methotrexate --every 8w --reason x --from 9999-01-01", 2,
     ["from:", "'9999-01-01'"]),
    ("ex-out-nodir", "export ics --patient 100234 --out /nonexistent/dir/x.ics", 2,
     ["out:", "'/nonexistent/dir/x.ics'", "No such file"]),
    ("ex-out-devfull", "export ics --patient 100234 --out /dev/full", 2, ["out:", "'/dev/full'", "No space"]),
    ("ng-asof-future", "nightly --as-of 2029-12-03", 2, ["as-of:", "'2029-12-03'", "after today"]),
    ("demo-replace-clinic", "demo --replace --patients 3", 2, ["db:", "--replace", "not"]),  # PG: not a file
]


@pytest.mark.parametrize("case,command,code,words", COMMAND_CASES, ids=[c[0] for c in COMMAND_CASES])
def test_a_bad_command_is_refused_in_one_line(clinic, case, command, code, words):
    refused(clinic, command, code, *words)


def test_a_what_if_alerts_as_of_long_ago_changes_nothing(clinic):  # al-asof-past
    run(clinic, "alert ack 1 --note seen")
    before = dump_database(clinic.db)
    assert run(clinic, "alerts --as-of 2000-01-01 --json").exit_code == 0
    assert dump_database(clinic.db) == before


@pytest.mark.parametrize("case,args", [("db-missing-dir", "patient list"), ("db-status-creates", "db status")])
def test_a_reading_command_on_a_missing_database_creates_nothing(tracker, tmp_path, case, args):
    path = tmp_path / "nonexistent" / "x.db" if case == "db-missing-dir" else tmp_path / "new.db"
    result = tracker.runner.invoke(cli, ["--db", str(path), *args.split()])
    assert result.exit_code == 3
    assert result.stderr.startswith(f"error: no database at {path}") and len(result.stderr.splitlines()) == 1
    assert not path.exists() and not path.parent.exists() if case == "db-missing-dir" else not path.exists()


# --- CSV import ----------------------------------------------------------------------------------------------

HEADER = "mrn,test,value,unit,taken_on,ref_low,ref_high\n"

CSV_REFUSED = [
    ("csv-nan", "100237,alt,nan,,2026-12-01,,\n", ["value: 'nan'"]),
    ("csv-inf", "100237,alt,1e309,,2026-12-01,,\n", ["value: '1e309'"]),
    ("csv-neg", "100237,alt,-25,,2026-12-01,,\n", ["value: '-25'", "outside"]),
    ("csv-ref-nan", "100237,alt,20,,2026-12-01,,nan\n", ["ref_high: 'nan'"]),
]


def import_refused(tracker, path: Path, *words: str) -> None:
    """An import that must be refused: the first line `error: file: ...`, one more line per bad row naming
    it (`line N: ...`), nothing imported."""
    before = dump_database(tracker.db)
    result = run(tracker, ["result", "import", str(path)], ok=False)
    assert result.exit_code == 2, result.stderr
    first, *rows = result.stderr.splitlines()
    assert first.startswith("error: file: ") and "nothing imported" in first, result.stderr
    assert rows and all(re.match(r"line \d+: ", row) for row in rows), result.stderr
    for word in words:
        assert word in result.stderr, (word, result.stderr)
    assert dump_database(tracker.db) == before


@pytest.mark.parametrize("case,row,words", CSV_REFUSED, ids=[c[0] for c in CSV_REFUSED])
def test_a_csv_row_with_a_non_finite_or_implausible_number_imports_nothing(clinic, tmp_path, case, row, words):
    path = tmp_path / "r.csv"
    path.write_text(HEADER + row)
    import_refused(clinic, path, *words)


@pytest.mark.parametrize("case,row,shown", [
    ("csv-unit-cells", "100235,neutrophils,800,cells/mm3,2026-12-02,,\n", "0.8 10^9/L (reported 800 cells/mm3)"),
    ("csv-unit-gdl", "100235,hb,7.5,g/dL,2026-12-02,,\n", "hb 75 g/L (reported 7.5 g/dL)"),
])
def test_a_csv_value_in_a_label_unit_is_converted(clinic, tmp_path, case, row, shown):
    path = tmp_path / "r.csv"
    path.write_text(HEADER + row)
    assert shown in run(clinic, ["result", "import", str(path)]).stdout


@pytest.mark.parametrize("case,rejects", [("csv-rejects-nodir", "/nonexistent/dir/rej.csv"),
                                          ("csv-rejects-devfull", "/dev/full")])
def test_a_rejects_file_that_cannot_be_written_is_one_line_and_imports_nothing(clinic, tmp_path, case, rejects):
    path = tmp_path / "r.csv"
    path.write_text(HEADER + "100237,alt,20,,2026-12-01,,\n100237,alt,bad,,2026-12-01,,\n")
    refused(clinic, ["result", "import", str(path), "--skip-bad", "--rejects", rejects], 2, "error: ")


def test_a_duplicate_header_is_refused(clinic, tmp_path):  # csv-dup-header
    path = tmp_path / "r.csv"
    path.write_text("mrn,test,value,value,unit,taken_on,ref_low,ref_high\n100237,alt,20,9999,,2026-12-01,,\n")
    refused(clinic, ["result", "import", str(path)], 2, "value")


def test_the_rejects_file_escapes_formulas(clinic, tmp_path):  # csv-formula
    path = tmp_path / "r.csv"
    path.write_text(HEADER + '100237,alt,20,,2026-12-01,,\n100237,alt,"=HYPERLINK(""http://x"")",,2026-12-01,,\n'
                    "100237,+cmd|x,1,,2026-12-01,,\n")
    run(clinic, ["result", "import", str(path), "--skip-bad"])
    cells = [cell for line in (tmp_path / "r.rejects.csv").read_text().splitlines()[1:] for cell in line.split(",")]
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@")]


def test_rejects_never_overwrite_the_input(clinic, tmp_path):  # csv-rejects-self
    path = tmp_path / "r.csv"
    text = HEADER + "100237,alt,20,,2026-12-01,,\n100237,alt,bad,,2026-12-01,,\n"
    path.write_text(text)
    run(clinic, ["result", "import", str(path), "--skip-bad", "--rejects", str(path)], ok=False)
    assert path.read_text() == text


def test_an_endless_input_is_refused(clinic):  # csv-devzero
    refused(clinic, ["result", "import", "/dev/zero"], 2, "file:")


# --- protocol files in the clinic's folder --------------------------------------------------------------------

def _clinic_dir(tmp_path, files: dict[str, str | bytes]) -> Path:
    folder = tmp_path / "clinic"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    return folder


@pytest.mark.parametrize("case,files,command", [
    ("dir-dup-ids-load", {"a.yaml": PROTOCOL, "b.yaml": PROTOCOL.replace("Example drug", "Example B")},
     "schedules list"),
    ("dir-huge-every-start", {"p.yaml": PROTOCOL.replace("every: 3m", "every: 99999999999y")},
     "therapy start 100238 exampledrug --on 2026-12-01 --override-gate test"),
    ("dir-below-nan-start", {"p.yaml": PROTOCOL.replace("below: 1.0", "below: .nan")},
     "therapy start 100238 exampledrug --on 2026-12-01 --override-gate test"),
    ("dir-algorithm-bad", {"_algorithm.yaml": "after_class: [unclosed\n"}, "assess 100237 --on 2026-11-24 --easi 29"),
])
def test_a_bad_clinic_protocol_file_is_named_and_changes_nothing(clinic, tmp_path, monkeypatch, case, files,
                                                                 command):
    monkeypatch.setenv("TRACKER_SCHEDULES", str(_clinic_dir(tmp_path, files)))
    before = dump_database(clinic.db)
    result = run(clinic, command, ok=False)
    assert result.exit_code == 6, result.stderr
    assert result.stderr.startswith(str(tmp_path / "clinic")) and len(result.stderr.splitlines()) == 1
    assert dump_database(clinic.db) == before
    if case == "dir-dup-ids-load":
        assert "b.yaml: id: 'exampledrug': also the id of" in result.stderr


def test_a_non_utf8_clinic_file_is_skipped_by_other_commands(clinic, tmp_path, monkeypatch):  # dir-latin1-load
    latin1 = PROTOCOL.replace("Example drug", "Exampl\xe9 drug").encode("latin-1")
    monkeypatch.setenv("TRACKER_SCHEDULES", str(_clinic_dir(tmp_path, {"p.yaml": latin1})))
    result = run(clinic, "due")
    assert result.stderr.startswith("warning: skipped ") and "not UTF-8" in result.stderr


# --- the site config -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("case,text,command,words", [
    ("cfg-jsonl-dir", '[reminders]\nchannels = ["jsonl"]\n[reminders.jsonl]\npath = "{tmp}"\n',
     ["nightly", "--as-of", "2026-12-03"], ["reminders.jsonl.path", "is a directory"]),
    ("cfg-merge-huge", "[calendar]\nmerge_window_days = 100000\n",
     ["therapy", "dose", "100237", "methotrexate", "--on", "2026-12-01", "--dose", "20 mg"],
     ["calendar.merge_window_days", "100000"]),
    ("cfg-schedules-list", "schedules_dir = ['a']\n", ["due"], ["schedules_dir: ['a']"]),
])
def test_a_bad_config_is_one_line_before_anything_is_written(clinic, tmp_path, case, text, command, words):
    config = tmp_path / "site.toml"
    config.write_text(text.replace("{tmp}", str(tmp_path)))
    refused(clinic, ["--config", str(config), *command], 8, *words)


def test_a_config_path_that_is_a_directory_is_one_line(clinic, tmp_path):  # cfg-dir
    refused(clinic, ["--config", str(tmp_path), "config", "show"], 8, "is a directory")


# --- nothing dropped -----------------------------------------------------------------------------------------

def test_every_row_of_the_review_is_replayed_by_a_test():
    """Each review row id appears quoted (a parametrised case or a test's comment tag) in a test module."""
    here = Path(__file__)
    sources = "\n".join(path.read_text() for path in here.parent.glob("test_*.py") if path != here)
    own = here.read_text().split("REVIEW_ROW_IDS = ")[1].split('""".split()', 1)[1]  # this module after the list
    missing = [row for row in REVIEW_ROW_IDS
               if not re.search(rf"""["'#] ?{re.escape(row)}(?![\w-])""", sources + own)]
    assert len(REVIEW_ROW_IDS) == 93 and len(set(REVIEW_ROW_IDS)) == 93
    assert missing == []
