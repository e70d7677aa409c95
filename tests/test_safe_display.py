"""Issue 15 item 7 / issue 18 item 1 (display): stored text is shown as typed and never drives the terminal.
Rich markup in MRNs and names prints literally (`MRN[red]X` stays `MRN[red]X`; `Ann [/bold] Lee` does not
crash `patient list`), and ANSI/OSC escapes, carriage returns and bidi overrides are written as visible
escapes, so a name cannot colour output, become a hyperlink or hide text.

The hostile values are written straight into the database: they stand for rows from before input
validation refused control characters, or from any other path in; display must be safe on its own."""

from __future__ import annotations

import pytest
from freezegun import freeze_time
from sqlalchemy import text

from tests.nightly_support import write_config
from tracker.db.engine import make_engine, resolve_url
from tracker.display import printable

MARKUP_MRN = "MRN[red]X"
MARKUP_NAME = "Ann [/bold] Lee"
OSC8_NAME = "Eve \x1b]8;;http://e.x\x1b\\Lee\x1b]8;;\x1b\\"
OSC8_SHOWN = "Eve \\x1b]8;;http://e.x\\x1b\\Lee\\x1b]8;;\\x1b\\"
ANSI_MRN = "Q\x1b[31m1\r"
ANSI_SHOWN = "Q\\x1b[31m1\\r"


def _set_patient(db: str, mrn: str, new_mrn: str, name: str) -> None:
    engine = make_engine(resolve_url(db))
    with engine.begin() as conn:
        conn.execute(text("UPDATE patient SET mrn = :new, name = :name WHERE mrn = :old"),
                     {"new": new_mrn, "name": name, "old": mrn})
    engine.dispose()


@pytest.fixture
def hostile_clinic(tracker):
    with freeze_time("2026-01-02"):
        for mrn in ("H1", "H2", "H3"):
            tracker(f"patient add {mrn} --name 'Plain Name' --dob 1980-01-01")
            tracker(f"therapy start {mrn} methotrexate --on 2026-01-05")
    _set_patient(tracker.db, "H1", MARKUP_MRN, MARKUP_NAME)
    _set_patient(tracker.db, "H2", "H2", OSC8_NAME)
    _set_patient(tracker.db, "H3", ANSI_MRN, "Rex \u202eeoJ")
    return tracker


def test_printable_makes_controls_visible_and_leaves_ordinary_text_alone():
    assert printable("Zoë Ødegård 日本 👍🏽 [b]") == "Zoë Ødegård 日本 👍🏽 [b]"
    assert printable(OSC8_NAME) == OSC8_SHOWN
    assert printable(ANSI_MRN) == ANSI_SHOWN
    assert printable("a\u200bb\u202ec\x7f\x9b\U000e0041") == "a\\u200bb\\u202ec\\x7f\\x9b\\U000e0041"
    assert printable("two\nlines\tok") == "two\nlines\tok"
    assert printable("two\nlines", newlines=False) == "two\\nlines"


def test_patient_list_shows_markup_and_escapes_literally(hostile_clinic):
    listed = hostile_clinic("patient list")
    assert listed.exit_code == 0
    out = listed.stdout
    assert MARKUP_MRN in out and MARKUP_NAME in out
    assert OSC8_SHOWN in out and ANSI_SHOWN in out and "Rex \\u202eeoJ" in out
    assert "\x1b" not in out and "\r" not in out and "\u202e" not in out


def test_patient_show_header_is_literal(hostile_clinic):
    for mrn, shown in ((MARKUP_MRN, f"{MARKUP_MRN}  {MARKUP_NAME}  born"), ("H2", f"H2  {OSC8_SHOWN}  born")):
        out = hostile_clinic(["patient", "show", mrn]).stdout
        assert out.startswith(shown) and "\x1b" not in out


@freeze_time("2026-01-10")
def test_worklists_alerts_and_the_stdout_digest_are_literal(hostile_clinic, tmp_path):
    due = hostile_clinic("due --days 30").stdout
    assert f"\n{MARKUP_MRN}  {MARKUP_NAME}\n" in due and f"\n{ANSI_SHOWN}  " in due and "\x1b" not in due
    overdue = hostile_clinic("overdue --as-of 2026-03-01").stdout
    assert MARKUP_MRN in overdue and "\x1b" not in overdue
    alerts = hostile_clinic("alerts --as-of 2026-03-01").stdout
    assert MARKUP_MRN in alerts and "\x1b" not in alerts
    write_config(tmp_path / "site.toml", '[reminders]\nchannels = ["stdout"]\n[privacy]\npatient_label = "name"\n')
    digest = hostile_clinic("nightly").stdout
    assert "\x1b" not in digest and "\r" not in digest and ANSI_SHOWN in digest


def test_an_error_naming_stored_text_stays_one_visible_line(hostile_clinic):
    refused = hostile_clinic(["patient", "show", "Q1"], ok=False)  # "did you mean" may name the stored MRN
    assert refused.exit_code == 3
    assert "\x1b" not in refused.stderr and "\r" not in refused.stderr
    assert len(refused.stderr.splitlines()) == 1
