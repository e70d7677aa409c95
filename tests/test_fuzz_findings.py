"""What the fuzz suite (tests/test_fuzz_cli.py, tests/test_fuzz_files.py) found, each kept as a plain
regression test named after the finding: one line, exit >= 2, the database unchanged."""

from __future__ import annotations

import pytest
from freezegun import freeze_time

from tests.conftest import dump_database
from tests.fuzz_support import review_clinic_file, use_review_clinic
from tests.test_bad_input_edge import PROTOCOL, TODAY, refused
from tracker.cli import cli


@pytest.fixture(scope="module")
def clinic_file(tmp_path_factory, migrated_template) -> str:
    return review_clinic_file(tmp_path_factory, migrated_template)


@pytest.fixture
def clinic(tracker, clinic_file):
    return use_review_clinic(tracker, clinic_file)


def test_alarm_lead_hours_nan_is_refused_not_a_traceback(clinic):
    # click's FloatRange(0, 672) let `nan` through (every comparison with it is false): ValueError traceback
    refused(clinic, "export ics --patient 100237 --alarm-lead-hours nan", 2, "alarm-lead-hours:", "'nan'")


def test_serve_timeouts_refuse_nan_before_anything_listens(clinic):
    # `--port -1` after it would be refused too: the message shows which option was read first
    refused(clinic, "serve --request-timeout nan --port -1", 2, "request-timeout:", "'nan'")


@pytest.mark.parametrize("args", [["patient", "show", "\udcff"], ["result", "list", "1002\udcff34"],
                                  ["therapy", "stop", "\udcff", "methotrexate", "--on", "2026-12-01",
                                   "--reason", "x"]])
def test_an_mrn_with_undecodable_bytes_is_not_found_not_a_traceback(clinic, args):
    # bytes the command line could not decode reach Python as lone surrogates; SQLite could not encode them
    refused(clinic, args, 3, "mrn:", "not found")


def test_alerts_for_an_mrn_with_undecodable_bytes_list_nothing(clinic):
    before = dump_database(clinic.db)
    with freeze_time(TODAY):
        result = clinic.runner.invoke(cli, ["--db", clinic.db, "alerts", "--mrn", "\udcff", "--json"])
    assert result.exit_code == 0 and result.stdout.strip() == "[]"
    assert dump_database(clinic.db) == before


def test_a_protocol_naming_a_list_as_a_source_is_refused_not_a_traceback(tracker, tmp_path):
    # `sources: [[]]` in a track: the reference check looked the list up in a set (TypeError)
    path = tmp_path / "p.yaml"
    path.write_text(PROTOCOL.replace("      tests: [cbc]\n      sources: [LOCAL]", "      tests: [cbc]\n"
                                     "      sources: [[]]"))
    result = tracker(["schedules", "validate", str(path)], ok=False)
    assert result.exit_code == 6, result.stdout + result.stderr
    assert "unknown source key []" in result.stdout + result.stderr


@pytest.mark.parametrize("args", [["feed", "revoke", "9" * 40], ["alert", "ack", "9" * 40], ["alert", "show", "0"]])
def test_a_row_id_beyond_64_bits_is_a_usage_error_not_a_traceback(clinic, args):
    # SQLite cannot bind an integer over 2**63 - 1 (OverflowError); ids start at 1
    refused(clinic, args, 2, "ID")


def test_a_usage_error_quoting_a_carriage_return_stays_one_visible_line(clinic):
    # click quotes the extra argument as typed; a raw CR made the one-line error two lines on a terminal
    line = refused(clinic, ["result", "add", "100234", "alt", "20", "\rX", "--on", "2026-12-01"], 2,
                   "unexpected extra argument")
    assert "\\r" in line


def test_an_unknown_config_key_holding_a_newline_is_named_on_one_line(clinic, tmp_path):
    config = tmp_path / "site.toml"
    config.write_text('[alerts]\n"\\n" = 1\n')
    refused(clinic, ["--config", str(config), "config", "show"], 8, "'alerts.\\n': unknown key")
