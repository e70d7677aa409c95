"""Issue 16 leftovers: a laboratory's correction replaces the result it corrects (HL7 OBX-11 `C` in a later
message; a FHIR Observation sent again as amended or corrected), audited with before and after, the patient
evaluated again; sent again, it changes nothing. Through the real CLI and migrations."""

from __future__ import annotations

import json

import pytest
from freezegun import freeze_time

from tests.conftest import dump_database
from tests.test_lab_import import (
    CBC_CMP,
    assert_sent_again_changes_nothing,
    fhir_bundle,
    methotrexate_patient,
    oru,
)
from tracker.core.lab_corrections import Candidate, hl7_corrected, sender

ALT_CORRECTED = "OBX|1|NM|1742-6^ALT^LN||{alt}|U/L|0-40|N|||C|||20260119083000"


def alt_results(tracker, mrn="M1"):
    return [(r["value"], r["taken_on"]) for r in tracker.json(["result", "list", mrn, "--test", "alt"])]


def threshold_alerts(tracker):
    return [a for a in tracker.json(["alerts"]) if a["kind"] == "threshold"]


@freeze_time("2026-01-20")
def test_a_corrected_hl7_result_in_a_new_message_replaces_the_one_it_corrects(tracker, tmp_path):
    methotrexate_patient(tracker)
    first, correction = tmp_path / "oru1.hl7", tmp_path / "oru2.hl7"
    first.write_text(oru(alt="130"))
    correction.write_text(oru(id="MSG00002", obx=["OBR|1|ORD2|FIL2|24323-8^CMP^LN|||20260119083000",
                                                  ALT_CORRECTED.format(alt="30")]))
    tracker(["result", "import", str(first)])
    [alert] = threshold_alerts(tracker)
    assert alert["severity"] == "critical" and alert["state"] == "open"

    out = tracker(["result", "import", str(correction)]).stdout

    assert out.splitlines()[0] == f"imported 0 results from {correction} (hl7), 1 corrected"
    assert alt_results(tracker) == [(30, "2026-01-19")]  # replaced, not stored twice
    # Evaluated again: ALT 30 breaches nothing; a critical alert nobody acknowledged waits for a person.
    [waiting] = threshold_alerts(tracker)
    assert (waiting["id"], waiting["state"]) == (alert["id"], "cleared, awaiting acknowledgement")
    [audited] = tracker.json(["audit", "--action", "result.correct", "--json"])
    assert audited["mrn"] == "M1" and audited["before"]["value_num"] == 130 and audited["after"]["value_num"] == 30
    assert audited["before"]["source_id"] == "hl7:CITYLAB|MSG00001|6"
    assert audited["after"]["source_id"] == "hl7:CITYLAB|MSG00002|1"
    assert audited["after"]["id"] == audited["before"]["id"] == audited["entity_id"]

    # Either message again changes nothing: the first is not stored anew, the correction not re-applied.
    assert_sent_again_changes_nothing(tracker, (first, 8), (correction, 1))


@freeze_time("2026-01-20")
def test_a_correction_in_the_same_file_as_its_result_and_a_second_correction(tracker, tmp_path):
    methotrexate_patient(tracker)
    batch = tmp_path / "batch.hl7"
    batch.write_text(oru(alt="130") + oru(id="MSG00002", obx=[ALT_CORRECTED.format(alt="32")])
                     + oru(id="MSG00003", obx=[ALT_CORRECTED.format(alt="33")]))

    out = tracker(["result", "import", str(batch)]).stdout

    assert out.splitlines()[0] == f"imported 8 results from {batch} (hl7), 2 corrected"
    assert alt_results(tracker) == [(33, "2026-01-19")]
    assert [(a["before"]["value_num"], a["after"]["value_num"])
            for a in tracker.json(["audit", "--action", "result.correct", "--json"])] == [(32, 33), (130, 32)]
    assert_sent_again_changes_nothing(tracker, (batch, 10))


@freeze_time("2026-01-20")
def test_a_correction_that_could_mean_two_results_is_refused_and_changes_nothing(tracker, tmp_path):
    methotrexate_patient(tracker)
    two = tmp_path / "two.hl7"
    two.write_text(oru(alt="130") + oru(id="MSG00002", obx=["OBX|1|NM|1742-6^ALT^LN||131|U/L|0-40|H|||F|||20260119"]))
    tracker(["result", "import", str(two)])
    before = dump_database(tracker.db)
    correction = tmp_path / "correction.hl7"
    correction.write_text(oru(id="MSG00003", obx=[ALT_CORRECTED.format(alt="30")]))

    result = tracker(["result", "import", str(correction)], ok=False)

    assert result.exit_code == 2
    assert result.stderr.splitlines()[1].startswith(
        "message MSG00003 OBX[1]: result: 'LN:1742-6': corrects a alt result of 2026-01-19, but 2 from this "
        "laboratory match (#")
    assert dump_database(tracker.db) == before
    # A correction of a result tracker never had (e.g. a preliminary one, refused) is stored as new.
    other = tmp_path / "other.hl7"
    other.write_text(oru(id="MSG00004", obx=["OBX|1|NM|1751-7^Albumin^LN||41|g/L|35-50|N|||C|||20260118"]))
    assert "imported 1 results" in tracker(["result", "import", str(other)]).stdout


@freeze_time("2026-01-20")
def test_an_amended_fhir_observation_replaces_the_result_with_its_id(tracker, tmp_path):
    methotrexate_patient(tracker)
    bundle, amended = tmp_path / "bundle.json", tmp_path / "amended.json"
    bundle.write_text(json.dumps(fhir_bundle(value=130)))
    amended.write_text(json.dumps(fhir_bundle(status="amended", value=35)))
    tracker(["result", "import", str(bundle)])

    out = tracker(["result", "import", str(amended)]).stdout

    assert out.splitlines()[0] == f"imported 0 results from {amended} (fhir), 1 corrected (1 already on record)"
    assert alt_results(tracker) == [(35, "2026-01-19")]
    assert [a["state"] for a in threshold_alerts(tracker)] == ["cleared, awaiting acknowledgement"]
    [audited] = tracker.json(["audit", "--action", "result.correct", "--json"])
    assert (audited["before"]["value_num"], audited["after"]["value_num"]) == (130, 35)
    assert audited["before"]["source_id"] == audited["after"]["source_id"] == "fhir:Observation/o1"
    assert_sent_again_changes_nothing(tracker, (amended, 2))
    before = dump_database(tracker.db)
    # Amended to another day: refused, naming it (a replacement would move what the result answered).
    moved = fhir_bundle(status="corrected", value=36)
    moved["entry"][2]["resource"]["effectiveDateTime"] = "2026-01-18"
    amended.write_text(json.dumps(moved))
    refused = tracker(["result", "import", str(amended)], ok=False)
    assert refused.exit_code == 2 and "amends result #" in refused.stderr and "another patient, test or day" in refused.stderr
    assert dump_database(tracker.db) == before


def test_which_result_an_hl7_correction_replaces():
    import datetime as dt

    day = dt.date(2026, 1, 19)
    mine = Candidate("hl7:CITYLAB|M1|6", "alt", day, result_id=5)
    assert sender("hl7:CITYLAB|M2|1") == "hl7:CITYLAB|" and sender("fhir:Observation/o1") is None
    assert hl7_corrected("hl7:CITYLAB|M2|1", "alt", day, [mine]).candidate == mine
    others = [Candidate("hl7:OTHERLAB|X|6", "alt", day, result_id=6),  # another laboratory
              Candidate("hl7:CITYLAB|M1|7", "ast", day, result_id=7),  # another test
              Candidate("hl7:CITYLAB|M0|6", "alt", day - dt.timedelta(days=1), result_id=8)]  # another day
    assert hl7_corrected("hl7:CITYLAB|M2|1", "alt", day, others) == hl7_corrected("hl7:CITYLAB|M2|1", "alt", day, [])
    assert hl7_corrected("hl7:CITYLAB|M2|1", "alt", day, []).candidate is None
    twice = [mine, Candidate("hl7:CITYLAB|M1b|1", "alt", day, row=3)]
    target = hl7_corrected("hl7:CITYLAB|M2|1", "alt", day, twice)
    assert target.candidate is None and target.ambiguous == tuple(twice)


@pytest.mark.parametrize("status", ["F", "C"])
def test_the_parser_marks_corrections(status):
    from tracker.labs.hl7 import parse_hl7

    text = oru(obx=[CBC_CMP[0], f"OBX|1|NM|26464-8^WBC^LN||6.1|10*9/L|4.0-11.0|N|||{status}"])
    [row] = parse_hl7(text.encode())
    assert row.corrects is (status == "C") and row.problem is None


@pytest.mark.skipif(bool(__import__("os").environ.get("TRACKER_TEST_PG")), reason="rewinds a SQLite file's schema")
@freeze_time("2026-01-20")
def test_migration_0016_carries_results_and_their_sources(tracker, db_url, tmp_path):
    from tests.test_migrations import downgrade_sqlite
    from tracker.db.engine import SCHEMA_HEAD, current_revision, make_engine, resolve_url

    methotrexate_patient(tracker)
    first = tmp_path / "oru1.hl7"
    first.write_text(oru(alt="130"))
    tracker(["result", "import", str(first)])
    downgrade_sqlite(db_url, "0015")
    assert current_revision(make_engine(resolve_url(db_url))) == "0015"

    # The next command brings the database back to the current schema: the results and their sources are
    # there, the file is still on record, and a correction then replaces its result.
    assert "8 already on record" in tracker(["result", "import", str(first)]).stdout
    assert current_revision(make_engine(resolve_url(db_url))) == SCHEMA_HEAD
    correction = tmp_path / "oru2.hl7"
    correction.write_text(oru(id="MSG00002", obx=[ALT_CORRECTED.format(alt="30")]))
    assert "1 corrected" in tracker(["result", "import", str(correction)]).stdout
    assert alt_results(tracker) == [(30, "2026-01-19")]


# --- corrections that arrive out of order (migration 0020: lab_result.reported_at) --------------------------

def sent_at(message: str, moment: str) -> str:
    """The message with MSH-7 (when the laboratory sent it) set to `moment` (HL7 TS)."""
    return message.replace("|20260119153000|", f"|{moment}|", 1)


@freeze_time("2026-01-20")
def test_an_older_correction_arriving_after_a_newer_one_is_not_applied(tracker, tmp_path):
    methotrexate_patient(tracker)
    first, newer, older = tmp_path / "oru1.hl7", tmp_path / "oru3.hl7", tmp_path / "oru2.hl7"
    first.write_text(oru(alt="130"))
    newer.write_text(sent_at(oru(id="MSG00003", obx=[ALT_CORRECTED.format(alt="33")]), "20260119170000"))
    older.write_text(sent_at(oru(id="MSG00002", obx=[ALT_CORRECTED.format(alt="32")]), "20260119160000"))
    tracker(["result", "import", str(first)])
    assert "1 corrected" in tracker(["result", "import", str(newer)]).stdout
    before = dump_database(tracker.db)

    out = tracker(["result", "import", str(older)]).stdout

    assert out.splitlines()[0] == (f"imported 0 results from {older} (hl7), 1 correction not applied "
                                   f"(reported before the values on record)")
    assert dump_database(tracker.db) == before  # nothing written, not even an audit row
    # The same older message again: still not applied, still nothing written.
    assert "1 correction not applied" in tracker(["result", "import", str(older)]).stdout
    assert dump_database(tracker.db) == before
    assert alt_results(tracker) == [(33, "2026-01-19")]  # the newer correction stays


@freeze_time("2026-01-20")
def test_two_corrections_of_one_result_in_one_file_out_of_order_keep_the_newer(tracker, tmp_path):
    methotrexate_patient(tracker)
    batch = tmp_path / "batch.hl7"
    batch.write_text(oru(alt="130")
                     + sent_at(oru(id="MSG00003", obx=[ALT_CORRECTED.format(alt="33")]), "20260119170000")
                     + sent_at(oru(id="MSG00002", obx=[ALT_CORRECTED.format(alt="32")]), "20260119160000"))

    out = tracker(["result", "import", str(batch)]).stdout

    assert out.splitlines()[0] == (f"imported 8 results from {batch} (hl7), 1 corrected, 1 correction not applied "
                                   f"(reported before the values on record)")
    assert alt_results(tracker) == [(33, "2026-01-19")]
    [audited] = tracker.json(["audit", "--action", "result.correct", "--json"])
    assert (audited["before"]["value_num"], audited["after"]["value_num"]) == (130, 33)
    assert audited["after"]["reported_at"] == "2026-01-19T17:00:00+00:00"


@freeze_time("2026-01-20")
def test_obr_22_orders_corrections_before_the_message_time(tracker, tmp_path):
    # OBR-22 (results reported / status changed) is the report time; MSH-7 only stands in without it. The
    # later message here carries the earlier report.
    methotrexate_patient(tracker)
    reported_16h = "OBR|1|ORD2|FIL2|24323-8^CMP^LN|||20260119083000" + "|" * 15 + "202601191600+0000"
    first, newer, resent = tmp_path / "oru1.hl7", tmp_path / "oru2.hl7", tmp_path / "oru3.hl7"
    first.write_text(oru(alt="130"))
    newer.write_text(sent_at(oru(id="MSG00002", obx=[ALT_CORRECTED.format(alt="33")]), "20260119170000"))
    resent.write_text(sent_at(oru(id="MSG00003", obx=[reported_16h, ALT_CORRECTED.format(alt="32")]),
                              "20260119180000"))
    tracker(["result", "import", str(first)])
    tracker(["result", "import", str(newer)])

    assert "1 correction not applied" in tracker(["result", "import", str(resent)]).stdout
    assert alt_results(tracker) == [(33, "2026-01-19")]


@freeze_time("2026-01-20")
def test_an_amended_fhir_observation_issued_before_the_values_on_record_is_not_applied(tracker, tmp_path):
    methotrexate_patient(tracker)

    def bundle(status, value, issued):
        document = fhir_bundle(status=status, value=value)
        document["entry"][2]["resource"]["issued"] = issued
        return json.dumps(document)

    files = {name: tmp_path / f"{name}.json" for name in ("final", "second", "first")}
    files["final"].write_text(bundle("final", 130, "2026-01-19T10:00:00+01:00"))
    files["second"].write_text(bundle("amended", 35, "2026-01-19T14:00:00+01:00"))
    files["first"].write_text(bundle("amended", 34, "2026-01-19T12:00:00Z"))  # 13:00 at +01:00: older
    tracker(["result", "import", str(files["final"])])
    assert "1 corrected" in tracker(["result", "import", str(files["second"])]).stdout
    before = dump_database(tracker.db)

    out = tracker(["result", "import", str(files["first"])]).stdout

    assert "1 correction not applied (reported before the values on record)" in out
    assert dump_database(tracker.db) == before
    assert alt_results(tracker) == [(35, "2026-01-19")]


def test_which_correction_is_superseded():
    import datetime as dt

    from tracker.core.lab_corrections import latest_report, superseded

    noon, one = dt.datetime(2026, 1, 19, 12), dt.datetime(2026, 1, 19, 13)
    assert superseded(noon, one) and not superseded(one, noon)
    assert not superseded(noon, noon)  # a tie: the order of arrival decides
    assert not superseded(None, one) and not superseded(noon, None)  # an unknown time never holds one back
    assert latest_report(one, noon) == one and latest_report(None, noon) == noon


def test_the_parser_reads_the_report_time():
    import datetime as dt

    from tracker.labs.hl7 import _hl7_timestamp, parse_hl7

    [row] = parse_hl7(oru(obx=[f"OBX|1|NM|26464-8^WBC^LN||6.1|10*9/L|4.0-11.0|N|||F"]).encode())
    utc = dt.timezone.utc
    assert row.reported_at == dt.datetime(2026, 1, 19, 15, 30, tzinfo=utc)  # MSH-7, no offset: as written
    obr = "OBR|1|ORD1|FIL1|58410-2^CBC^LN|||20260119083000" + "|" * 15 + "20260119160000.25+0100"
    [row] = parse_hl7(oru(obx=[obr, "OBX|1|NM|26464-8^WBC^LN||6.1|10*9/L|4.0-11.0|N|||F"]).encode())
    assert row.reported_at == dt.datetime(2026, 1, 19, 15, 0, 0, 250000, tzinfo=utc)  # OBR-22, in UTC
    assert _hl7_timestamp("20260119") is None and _hl7_timestamp("2026011916") is None  # too coarse to order
    assert _hl7_timestamp("20261319160000") is None and _hl7_timestamp("soon") is None
