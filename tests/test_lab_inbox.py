"""Issue 16 item 2, the inbox: result files dropped in `[labs] inbox` are imported by `tracker labs
import-inbox` and by the nightly run (HL7 v2, FHIR JSON, CSV, chosen by content), one transaction per file,
moved to done/ or to rejected/ with a one-line reason beside them; never imported twice; files still being
written wait. Real files, the real CLI and migrations.

Clocks: the commands run with the clock frozen (freezegun also freezes `time.time()`, the run's start), and
each file's modification time is set explicitly (os.utime): before the start = complete, after = still
being written. No sleeps."""

from __future__ import annotations

import calendar
import json
import os

import pytest
from freezegun import freeze_time

from tests.conftest import dump_database
from tests.test_lab_import import methotrexate_patient, oru

NOW = "2026-01-20 12:00:00"
BEFORE = calendar.timegm((2026, 1, 20, 11, 0, 0))  # an hour before the run: written and closed
AFTER = calendar.timegm((2026, 1, 20, 12, 0, 5))  # touched after the run started: still being written
CSV = "mrn,test,value,unit,taken_on,ref_low,ref_high\nM1,alt,30,U/L,2026-01-19,,\n"


@pytest.fixture
def inbox(tmp_path, tracker):
    folder = tmp_path / "inbox"
    folder.mkdir()
    config = tmp_path / "site.toml"
    config.write_text('[labs]\ninbox = "inbox"\n')  # relative to the config file
    os.environ["TRACKER_CONFIG"] = str(config)  # the autouse fixture restores it after the test
    with freeze_time("2026-01-06"):
        methotrexate_patient(tracker)
    return folder


def drop(folder, name: str, text: str, mtime: float = BEFORE):
    path = folder / name
    path.write_text(text)
    os.utime(path, (mtime, mtime))
    return path


def run_inbox(tracker, ok=True):
    with freeze_time(NOW):
        return tracker(["labs", "import-inbox", "--json"], ok=ok)


def listing(folder) -> dict[str, list[str]]:
    return {where: sorted(p.name for p in (folder / where).iterdir()) if (folder / where).is_dir() else []
            for where in ("done", "rejected")} | {"inbox": sorted(p.name for p in folder.iterdir() if p.is_file())}


def actions(tracker) -> list[str]:
    return [row["action"] for row in tracker.json(["audit"])]


def test_each_format_is_imported_by_content_and_moved_to_done(tracker, inbox):
    drop(inbox, "a.hl7", oru(id="MSG1", alt="30"))  # names are not formats: the bytes decide
    drop(inbox, "b.txt", CSV.replace("2026-01-19", "2026-01-18"))
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {
        "resourceType": "Observation", "id": "obs-1", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "1751-7"}]},
        "subject": {"identifier": {"value": "M1"}}, "effectiveDateTime": "2026-01-17",
        "valueQuantity": {"value": 41, "unit": "g/L"}}}]}
    drop(inbox, "c.json", json.dumps(bundle))

    report = json.loads(run_inbox(tracker).stdout)

    assert [(f["file"], f["outcome"], f.get("format")) for f in report["files"]] == [
        ("a.hl7", "imported", "hl7"), ("b.txt", "imported", "csv"), ("c.json", "imported", "fhir")], report
    assert listing(inbox) == {"done": ["a.hl7", "b.txt", "c.json"], "rejected": [], "inbox": []}
    with freeze_time(NOW):
        tests = {r["test"] for r in tracker.json(["result", "list", "M1"])}
    assert {"alt", "platelets", "albumin"} <= tests and len(tests) >= 3
    assert actions(tracker).count("labs.inbox_import") == 3
    assert oct((inbox / "done").stat().st_mode & 0o777) == "0o700"


def test_a_bad_file_is_rejected_with_a_one_line_reason_and_the_database_unchanged(tracker, inbox):
    drop(inbox, "bad.hl7", oru(id="MSG2", mrn="NOBODY"))
    drop(inbox, "bad.csv", "mrn,test,value,unit,taken_on,ref_low,ref_high\nM1,alt,abc,U/L,2026-01-19,,\n")
    before = dump_database(tracker.db)

    report = json.loads(run_inbox(tracker).stdout)

    assert report["rejected"] == 2 and report["imported"] == 0
    assert dump_database(tracker.db) == before  # nothing of either file, not even an audit row
    assert listing(inbox)["rejected"] == ["bad.csv", "bad.csv.reason.txt", "bad.hl7", "bad.hl7.reason.txt"]
    reason = (inbox / "rejected" / "bad.hl7.reason.txt").read_text()
    assert reason.count("\n") == 1 and "mrn: 'NOBODY'" in reason and "no such patient" in reason
    assert "line 2" in (inbox / "rejected" / "bad.csv.reason.txt").read_text()


def test_a_good_file_after_a_bad_one_is_still_imported(tracker, inbox):
    drop(inbox, "1-bad.hl7", oru(id="MSG3", mrn="NOBODY"))
    drop(inbox, "2-good.hl7", oru(id="MSG4", alt="30"))
    report = json.loads(run_inbox(tracker).stdout)
    assert (report["imported"], report["rejected"]) == (1, 1)
    assert listing(inbox)["done"] == ["2-good.hl7"]


def test_the_same_file_is_never_imported_twice(tracker, inbox):
    drop(inbox, "results.csv", CSV)
    run_inbox(tracker)
    before = dump_database(tracker.db)
    # The laboratory sends it again (a CSV has no result ids to make a re-import idempotent), and a name
    # already in done/ is not overwritten.
    drop(inbox, "results.csv", CSV)

    report = json.loads(run_inbox(tracker).stdout)

    assert report["already"] == 1 and report["imported"] == 0
    assert dump_database(tracker.db) == before
    assert listing(inbox)["done"] == ["results.csv", "results.csv.1"]


def test_files_still_being_written_wait_for_the_next_run(tracker, inbox):
    drop(inbox, "late.hl7", oru(id="MSG5", alt="30"), mtime=AFTER)
    drop(inbox, "partial.hl7.part", oru(id="MSG6", alt="30"))
    drop(inbox, ".hidden.hl7", oru(id="MSG7", alt="30"))
    before = dump_database(tracker.db)

    report = json.loads(run_inbox(tracker).stdout)

    assert report["waiting"] == 2 and report["imported"] == 0
    assert dump_database(tracker.db) == before
    assert listing(inbox)["inbox"] == [".hidden.hl7", "late.hl7", "partial.hl7.part"]
    # Renamed when complete, and older than the next run: imported then.
    os.rename(inbox / "partial.hl7.part", inbox / "partial.hl7")
    report = json.loads(run_inbox(tracker).stdout)
    assert [f["file"] for f in report["files"] if f["outcome"] == "imported"] == ["partial.hl7"]


def test_the_nightly_run_imports_the_inbox_first(tracker, inbox):
    drop(inbox, "oru.hl7", oru(id="MSG8", alt="30"))
    drop(inbox, "bad.hl7", oru(id="MSG9", mrn="NOBODY"))
    with freeze_time(NOW):
        tracker(["nightly", "--as-of", "2026-01-20"])
        run = tracker.json(["nightly", "status"])[0]
        draw = next(r for r in tracker.json(["calendar", "M1", "--all"]) if r["due"] == "2026-01-19")
    assert run["counts"]["inbox"] == {"imported": 1, "already": 0, "rejected": 1, "waiting": 0}
    assert draw["status"] == "done"  # the HL7 message completed the draw it answers
    assert listing(inbox)["done"] == ["oru.hl7"]


def test_no_inbox_configured_or_missing_folder_is_one_line_naming_the_setting(tracker, inbox, tmp_path):
    (tmp_path / "site.toml").write_text("")
    result = run_inbox(tracker, ok=False)
    assert result.exit_code == 2 and "labs.inbox" in result.stderr and len(result.stderr.splitlines()) == 1
    (tmp_path / "site.toml").write_text('[labs]\ninbox = "nowhere"\n')
    result = run_inbox(tracker, ok=False)
    assert result.exit_code == 2 and "not a folder" in result.stderr


def test_config_show_lists_the_inbox(tracker, inbox, tmp_path):
    shown = tracker.json(["config", "show"])
    assert shown["labs"]["inbox"] == str(tmp_path / "inbox")


TYPO = json.dumps({"resourceType": "Bundle", "type": "collection",
                   "entry": [{"resource": {"resourceType": "Obsrvation", "id": "x"}}]})
DEEP = '{"resourceType": "Bundle", "x": ' + "[" * 100000 + "]" * 100000 + "}"


def test_files_the_fhir_reader_cannot_read_are_rejected_and_the_nightly_run_goes_on(tracker, inbox):
    """A misspelled resourceType (fhir.resources fails with KeyError 'R4.ObsrvationType') and JSON nested
    past the stack (RecursionError) are the file's fault: each goes to rejected/ with a one-line reason, the
    good file is imported and the run ends ok (before: a traceback, the run failed every night)."""
    drop(inbox, "a-typo.json", TYPO)
    drop(inbox, "b-deep.json", DEEP)
    drop(inbox, "c-good.hl7", oru(id="MSG10", alt="30"))
    with freeze_time(NOW):
        tracker(["nightly", "--as-of", "2026-01-20"])
        run = tracker.json(["nightly", "status"])[0]
    assert run["status"] == "ok" and not run.get("failures"), run
    assert run["counts"]["inbox"] == {"imported": 1, "already": 0, "rejected": 2, "waiting": 0}
    assert listing(inbox) == {"done": ["c-good.hl7"], "inbox": [], "rejected": [
        "a-typo.json", "a-typo.json.reason.txt", "b-deep.json", "b-deep.json.reason.txt"]}
    typo = (inbox / "rejected" / "a-typo.json.reason.txt").read_text()
    assert typo == "resource: 'Bundle': not FHIR R4 fhir.resources can read (unknown resourceType 'Obsrvation')\n"
    deep = (inbox / "rejected" / "b-deep.json.reason.txt").read_text()
    assert deep.count("\n") == 1 and "JSON nested too deep to read" in deep
