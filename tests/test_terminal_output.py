"""Issue 18 item 6: a terminal a nurse can read.

Screenshot-free checks on a demo clinic: every listing rendered as on an 80-column terminal (rich's own
contract: `TTY_COMPATIBLE=1` makes stdout a terminal, `COLUMNS=80` its width) keeps every line within 80
columns, never splits a word across lines and takes at most two lines per row; piped output is never
wrapped or cut; planned items carry readable marks; headers count what is shown; `--json` help says what
the command prints; shell completion offers drug names, test codes and MRNs."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner
from freezegun import freeze_time

from tests.conftest import Tracker, record_panels
from tracker.cli import cli

DAY = "2026-12-03 12:00:00"
WIDTH = 80
TERMINAL = {"TTY_COMPATIBLE": "1", "COLUMNS": str(WIDTH), "NO_COLOR": "1", "TERM": "xterm"}
PIPED = {"TTY_COMPATIBLE": None, "FORCE_COLOR": None, "COLUMNS": "40"}  # a narrow COLUMNS changes nothing
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def clinic(tmp_path_factory, migrated_template) -> Tracker:
    """A demo clinic (SQLite) built once for this module, its alerts evaluated, on a fixed day."""
    where = tmp_path_factory.mktemp("terminal")
    db = where / "demo.db"
    shutil.copyfile(migrated_template, db)
    db.chmod(0o600)
    (where / "empty.toml").write_text("")
    clinic = Clinic(str(db), str(where / "empty.toml"))
    clinic("demo --patients 24")
    clinic("evaluate")
    clinic("feed create --clinic")
    clinic("nightly")
    return clinic


class Clinic(Tracker):
    """Runs commands against the module's clinic on DAY, with an empty site config."""

    def __init__(self, db: str, config: str):
        super().__init__(db)
        self.config = config

    def __call__(self, args, *, ok: bool = True, input=None, env: dict | None = None):
        args = args.split() if isinstance(args, str) else args
        with freeze_time(DAY):
            return super().__call__(["--config", self.config, *args], ok=ok, input=input, env=env)

    def screen(self, args) -> list[str]:
        """The command's output as an 80-column terminal shows it (colour codes removed)."""
        return ANSI.sub("", self(args, env=TERMINAL).stdout).splitlines()

    def piped(self, args) -> list[str]:
        return self(args, env=PIPED).stdout.splitlines()


def vocabulary(clinic: Clinic) -> set[str]:
    """The words a split would garble: drug names, test codes and names, MRNs."""
    from tracker.protocol_files import library, load_vocabulary

    words = {name for p in library(None) for name in p.names if " " not in name}
    for code, test in load_vocabulary().tests.items():
        words |= {code, *test.name.split()}
    words |= {p["mrn"] for p in clinic.json("patient list")}
    return {w for w in words if len(w) > 2}


TOKEN = re.compile(r"\w+")
TAIL, HEAD = re.compile(r"\w+$"), re.compile(r"^\w+")


def split_words(lines: list[str], words: set[str]) -> list[tuple[str, str]]:
    """Pairs of adjacent lines where a known word was split: the end of one and the start of the next
    make it up (e.g. "total_cholester" / "ol"). A word cut with an ellipsis is not split."""
    split = []
    for before, after in zip(lines, lines[1:]):
        tail, head = TAIL.search(before), HEAD.search(after.lstrip())
        if tail and head and tail.group() + head.group() in words:
            split.append((before, after))
    return split


def rows_over_two_lines(lines: list[str]) -> list[str]:
    """A row is one line of short columns and at most one indented line of text under it: two indented
    continuation lines in a row mean a row took three lines or more."""
    bad = []
    for above, line in zip(lines, lines[1:]):
        if above.startswith("    ") and line.startswith("    "):
            bad.append(line)
    return bad


LISTINGS = [
    "alerts", "alerts --all", "due --days 14", "overdue", "calendar {mrn} --all", "patient list",
    "patient show {mrn}", "result list {mrn}", "schedules list", "schedules show methotrexate",
    "schedules show ciclosporin", "feed list", "nightly status", "alert show {alert}",
]


def _fill(command: str, clinic: Clinic) -> str:
    alerts = clinic.json("alerts")
    busiest = max({a["mrn"] for a in alerts}, key=lambda mrn: sum(a["mrn"] == mrn for a in alerts))
    longest = max(alerts, key=lambda a: len(a["message"]))
    return command.format(mrn=busiest, alert=longest["id"])


@pytest.mark.parametrize("command", LISTINGS)
def test_every_listing_fits_80_columns_without_splitting_a_word_in_two_lines_per_row(clinic, command):
    command = _fill(command, clinic)
    lines = clinic.screen(command)
    assert len(lines) > 1
    from rich.cells import cell_len

    assert [line for line in lines if cell_len(line) > WIDTH] == []
    assert split_words(lines, vocabulary(clinic) | set(TOKEN.findall(" ".join(clinic.piped(command))))) == []
    if not command.startswith("alert show"):  # one alert: its message may wrap (at word boundaries)
        assert rows_over_two_lines(lines) == []


def test_alerts_take_two_lines_each_where_the_old_table_took_fifteen(clinic):
    alerts = clinic.json("alerts")
    lines = clinic.screen("alerts")
    assert len(alerts) > 10
    # A heading, the column names, two lines per alert and at most one note that text was shortened.
    assert len(lines) <= 2 + 2 * len(alerts) + 1
    for alert in alerts:
        row = next(i for i, line in enumerate(lines) if i > 1 and line.startswith(f"{alert['id']} "))
        assert alert["mrn"] in lines[row] and alert["drug"] in lines[row]
        shown = lines[row + 1].strip()
        assert lines[row + 1].startswith("    ")
        # The message itself, or its beginning cut at a word boundary with an ellipsis.
        assert alert["message"].startswith(shown.removesuffix("…")) and (shown == alert["message"]
                                                                         or shown.endswith("…"))
        if shown.endswith("…"):
            rest = alert["message"][len(shown) - 1:]
            assert rest[:1] in (" ", ",", ";", ":", "(", "-") or shown[-2:-1] in (" ", ",", ";", ":")
    assert any("shortened to fit 80 columns" in line for line in lines)


def test_piped_output_is_never_wrapped_or_cut(clinic):
    alerts = clinic.json("alerts")
    longest = max(alerts, key=lambda a: len(a["message"]))
    assert len(longest["message"]) > 2 * WIDTH
    lines = clinic.piped("alerts")
    # The whole message on one line (then the drugs to consider, if any), though COLUMNS=40.
    assert any(line.startswith("    " + longest["message"]) for line in lines)
    assert not any("…" in line or "shortened" in line for line in lines)
    assert len(lines) == 2 + 2 * len(alerts)
    partial = next(r for r in clinic.json("overdue") if r["missing_text"])
    calendar = clinic.json(f"calendar {partial['mrn']}")
    text = clinic.piped(f"calendar {partial['mrn']}")
    for item in calendar:
        assert any(line.startswith("      " + item["title"]) for line in text)
        if item["missing_text"]:
            assert any(f"missing {item['missing_text']}" in line for line in text)
    assert longest["message"] in clinic.piped(f"alert show {longest['id']}")


def test_alerts_for_one_patient_count_that_patients_alerts(clinic):
    everyone = clinic.json("alerts")
    mrn = everyone[0]["mrn"]
    mine = clinic.json(f"alerts --mrn {mrn}")
    assert 0 < len(mine) < len(everyone)
    heading = clinic.piped(f"alerts --mrn {mrn}")[0]
    assert heading.startswith(f"{len(mine)} open alert{'s' if len(mine) > 1 else ''} for {mrn} ")
    assert clinic.piped("alerts")[0].startswith(f"{len(everyone)} open alerts ")
    every = clinic.json("alerts --all")
    assert clinic.piped("alerts --all")[0].startswith(f"{len(every)} alerts ")
    summary = clinic.json(f"patient show {mrn}")
    shown = clinic.piped(f"patient show {mrn}")
    assert f"Alerts ({len(summary['alerts'])})" in shown
    assert f"Open and upcoming items ({len(summary['next_items'])})" in shown
    due = clinic.json("due --days 14")
    assert f"({len(due)} items, {len({r['mrn'] for r in due})} patients)" in clinic.piped("due --days 14")[0]
    calendar = clinic.json(f"calendar {mrn} --from 2026-06-01 --to 2027-01-31")
    heading = clinic.piped(f"calendar {mrn} --from 2026-06-01 --to 2027-01-31")[0]
    assert calendar and heading.endswith(f"({len(calendar)} item{'s' if len(calendar) != 1 else ''})")


def test_done_partial_cancelled_and_overdue_items_are_marked_in_words_with_a_legend(tracker):
    with freeze_time("2026-01-05"):
        tracker("patient add M1 --name 'Max Test' --dob 1970-01-01")
        tracker("therapy start M1 methotrexate --on 2026-01-05")  # CBC+CMP draws every 2 weeks
    with freeze_time("2026-01-19"):
        record_panels(tracker, "M1", "2026-01-19", "cbc", "cmp")  # the 01-19 draw: done
    with freeze_time("2026-02-02"):
        tracker("result add M1 alt 30 --on 2026-02-02")  # the 02-02 draw: partial
    with freeze_time("2026-03-01"):  # 02-02 and 02-16 past the 7-day grace: overdue
        # A stop announced for a later day: the items after it are cancelled, the course is monitored until then.
        tracker("therapy stop M1 methotrexate --on 2026-03-10 --reason 'clear skin'")
        items = {(r["due"], r["kind"]): r for r in tracker.json("calendar M1 --all")}
        screen = ANSI.sub("", tracker("calendar M1 --all", env=TERMINAL).stdout).splitlines()
        piped = tracker("calendar M1 --all").stdout.splitlines()
        shown = tracker("patient show M1").stdout.splitlines()

    def mark(lines, due, kind="lab"):
        return next(line for line in lines if line.startswith(f"  {due}") and f" {kind} " in line).split(kind, 1)[1].strip()

    assert items[("2026-01-19", "lab")]["status"] == "done"
    assert items[("2026-02-02", "lab")]["status"] == "partial" and items[("2026-02-02", "lab")]["overdue"]
    assert items[("2026-02-16", "lab")]["overdue"] and items[("2026-03-16", "lab")]["status"] == "cancelled"
    for lines in (screen, piped):  # the same words with or without a terminal, and without colour
        assert mark(lines, "2026-01-19") == "done"
        assert mark(lines, "2026-02-02") == "OVERDUE partial"
        assert mark(lines, "2026-02-16") == "OVERDUE"
        assert mark(lines, "2026-03-16") == "cancelled"
        assert mark(lines, "2026-03-30", "checkpoint") == "cancelled"
        start = next(i for i, line in enumerate(lines) if line.startswith("Marks: "))
        legend = " ".join(lines[start:])  # on a terminal the legend wraps at word boundaries
        for word in ("OVERDUE", "partial", "done", "cancelled"):
            assert word in legend
    partial = next(i for i, line in enumerate(piped) if line.startswith("  2026-02-02"))
    assert "missing cbc: wbc, neutrophils" in piped[partial + 1]
    row = next(line for line in shown if line.startswith("2026-02-02") and " lab " in line)
    assert row.split()[-2:] == ["OVERDUE", "partial"]
    assert next(line for line in shown if line.startswith("Marks: ")).count("=") == 2  # only the marks shown
    assert not any(line.startswith("2026-01-19") and " lab " in line for line in shown)  # done: not open


# Arguments for the commands whose --json needs some; every other command with --json runs bare. A new
# command with a required argument fails the test below until it is added here.
JSON_ARGUMENTS = {
    "alert show": "{alert}", "calendar show": "{mrn}", "patient show": "{mrn}", "result list": "{mrn}",
    "schedules show": "methotrexate", "schedules validate": "", "synth": "--patients 2",
    "report quality": "--from 2026-06-01 --to 2026-12-03",
}
WRITES_A_FRESH_CLINIC = {"synth"}
# Commands whose --json needs something outside the clinic (a CalDAV server, a backup file, a lab inbox
# folder): their own tests check what they print (tests/test_caldav_push.py, tests/test_backups.py,
# tests/test_lab_inbox.py); here only what the help says.
NEEDS_A_PEER = {"calendar push": "a JSON object", "db restore": "a JSON object", "labs import-inbox": "a JSON object"}


def _commands(group, path=()):
    import click

    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield " ".join((*path, name)), command


def test_json_help_says_array_or_object_as_the_command_prints(clinic, tmp_path, migrated_template):
    checked = []
    for path, command in _commands(cli):
        option = next((p for p in command.params if "--json" in getattr(p, "opts", ())), None)
        if option is None:
            continue
        if path in NEEDS_A_PEER:
            assert NEEDS_A_PEER[path] in option.help, f"`tracker {path} --json` help: {option.help}"
            continue
        if path in WRITES_A_FRESH_CLINIC:
            fresh = tmp_path / f"{path}.db"
            shutil.copyfile(migrated_template, fresh)
            runner = Clinic(str(fresh), clinic.config)
        else:
            runner = clinic
        alerts = clinic.json("alerts")
        args = JSON_ARGUMENTS.get(path, "").format(mrn=alerts[0]["mrn"], alert=alerts[0]["id"])
        result = runner(f"{path} {args} --json".split(), ok=False)
        assert result.exit_code == 0, f"`tracker {path} --json` failed (add its arguments to JSON_ARGUMENTS): " \
                                      f"{result.stderr}"
        printed = json.loads(result.stdout)
        says = "a JSON array" if isinstance(printed, list) else "a JSON object"
        assert says in option.help, f"`tracker {path} --json` prints {says} but its help says: {option.help}"
        checked.append(path)
    assert {"alerts", "alert show", "patient show", "config show", "db status", "calendar show"} <= set(checked)


def complete(words: str, env: dict | None = None, shell: str = "bash") -> list[str]:
    """What click's completion offers for the last of `words` (bash, as the bash_source script asks)."""
    parts = words.split(" ")
    result = CliRunner().invoke(cli, [], prog_name="tracker", env={
        "_TRACKER_COMPLETE": f"{shell}_complete", "COMP_WORDS": words, "COMP_CWORD": str(len(parts) - 1),
        **(env or {})})
    assert result.exit_code == 0, result.output
    if shell == "bash":
        return [line.split(",", 1)[1] for line in result.stdout.splitlines() if line]
    return result.stdout.splitlines()


def test_completion_offers_drug_names_test_codes_and_mrns(clinic):
    db = ["--db", clinic.db, "--config", clinic.config]
    assert complete("tracker therapy start P1 up") == ["upadacitinib"]
    assert {"dupilumab", "methotrexate", "ciclosporin"} <= set(complete("tracker therapy start P1 "))
    assert complete("tracker therapy switch P1 methotrexate dup") == ["dupilumab"]
    assert complete("tracker schedules show mt") == ["mtx"]  # an alias when no id starts so
    assert complete("tracker result add P1 neu") == ["neutrophils"]
    assert "cbc" in complete("tracker result list P1 --test c")
    mrns = [p["mrn"] for p in clinic.json("patient list")]
    assert complete(" ".join(["tracker", *db, "calendar", "DEMO"])) == sorted(mrns)
    assert complete(" ".join(["tracker", *db, "therapy", "start", mrns[3]])) == [mrns[3]]
    assert complete(" ".join(["tracker", *db, "alerts", "--mrn", "DEMO000"])) == sorted(mrns)[:9]
    zsh = complete("tracker result add P1 alt", shell="zsh")
    assert "alt" in zsh and "ALT" in zsh  # zsh gets each code's name as its description


def test_completing_an_mrn_never_creates_a_database(tmp_path):
    missing = tmp_path / "typo" / "clinic.db"
    assert complete(f"tracker --db {missing} calendar D") == []
    assert complete(f"tracker --db {tmp_path / 'clinic.db'} patient show D") == []
    assert complete("tracker calendar D") == []  # the default database (XDG_DATA_HOME) does not exist
    assert not missing.parent.exists() and not (tmp_path / "clinic.db").exists()
    assert not (tmp_path / "xdg-data").exists()


def test_the_shell_scripts_come_from_the_installed_command():
    for shell, marker in (("bash", "_tracker_completion"), ("zsh", "#compdef tracker"),
                          ("fish", "complete --no-files --command tracker")):
        out = subprocess.run([sys.executable, "-m", "tracker"], capture_output=True, text=True, check=True,
                             env={**__import__("os").environ, "_TRACKER_COMPLETE": f"{shell}_source"}).stdout
        assert marker in out
