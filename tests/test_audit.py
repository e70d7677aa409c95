"""Issue 15 item 6: an audit log you can read and trust.

`tracker audit` lists it (filters, newest first, 80 columns, --json); reads of patient data are recorded as
`access.*` rows; every row is chained by hash and `tracker audit verify` finds an edit, a deletion (in the
middle, at the end) or an insertion made with SQL. SQLite, and PostgreSQL with TRACKER_TEST_PG.
"""

from __future__ import annotations

import json
import os

import pytest
from freezegun import freeze_time
from sqlalchemy import text

from tracker.db.engine import make_engine, resolve_url

ON_PG = bool(os.environ.get("TRACKER_TEST_PG"))


def sql(db: str, *statements: str, **params):
    """Run statements on the database behind tracker's back; returns the last one's rows, if any."""
    engine = make_engine(resolve_url(db))
    try:
        with engine.begin() as conn:
            result = None
            for statement in statements:
                result = conn.execute(text(statement), params)
            return result.all() if result is not None and result.returns_rows else None
    finally:
        engine.dispose()


def small_clinic(tracker) -> None:
    with freeze_time("2026-03-01 09:00:00"):
        tracker("patient add P1 --name 'Ann Lee' --dob 1980-01-01")
        tracker("patient add P2 --name 'Bo Chan' --dob 1975-05-05")
    with freeze_time("2026-03-02 10:00:00"):
        tracker("--user drsmith therapy start P1 dupilumab --on 2026-03-02")
    with freeze_time("2026-03-03 11:00:00"):
        tracker("--user drjones patient update P2 --name 'Bo Chang'")


def audit_json(tracker, *args: str) -> list[dict]:
    return tracker.json(["audit", *args])


# --- listing ----------------------------------------------------------------------------------------------


def test_audit_lists_newest_first_with_filters(tracker):
    small_clinic(tracker)
    rows = audit_json(tracker)
    assert [r["action"] for r in rows] == ["patient.update", "therapy.start", "patient.add", "patient.add"]
    assert [r["id"] for r in rows] == sorted((r["id"] for r in rows), reverse=True)
    update = rows[0]
    assert update["user"] == "drjones" and update["mrn"] == "P2" and update["entity"] == "patient"
    assert update["before"]["name"] == "Bo Chan" and update["after"]["name"] == "Bo Chang"  # parsed JSON
    assert set(update) == {"id", "seq", "at", "user", "action", "entity", "entity_id", "mrn", "before", "after",
                           "hash"}

    assert [r["action"] for r in audit_json(tracker, "--action", "therapy.")] == ["therapy.start"]
    assert [r["action"] for r in audit_json(tracker, "--action", "patient.*")] == ["patient.update", "patient.add",
                                                                                 "patient.add"]
    both = audit_json(tracker, "--action", "therapy.start", "--action", "patient.update")
    assert [r["action"] for r in both] == ["patient.update", "therapy.start"]
    assert audit_json(tracker, "--action", "patient") == []  # no dot, no star: the exact name only
    assert [r["action"] for r in audit_json(tracker, "--user", "drsmith")] == ["therapy.start"]
    assert [r["action"] for r in audit_json(tracker, "--since", "2026-03-02", "--until", "2026-03-02")] == [
        "therapy.start"]
    assert len(audit_json(tracker, "--limit", "2")) == 2

    # --patient: that patient's rows.
    p2 = audit_json(tracker, "--patient", "P2")
    assert [(r["action"], r["mrn"]) for r in p2] == [("patient.update", "P2"), ("patient.add", "P2")]


def test_the_text_listing_fits_80_columns_and_shows_changes_compactly(tracker):
    small_clinic(tracker)
    out = tracker("audit").stdout
    lines = out.splitlines()
    assert lines and all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    assert any("drjones patient.update patient#2 P2" in line for line in lines)
    assert "name: Bo Chan→Bo Chang" in out  # only what changed
    assert "2026-03-03 11:00:00" in out


def test_audit_of_a_missing_database_creates_nothing_and_an_unknown_mrn_is_not_found(tracker, tmp_path):
    small_clinic(tracker)
    result = tracker("audit --patient NOPE", ok=False)
    assert result.exit_code == 3 and "mrn: 'NOPE': not found" in result.stderr
    assert tracker("audit --since 2026-03-05 --until 2026-03-01", ok=False).exit_code == 2
    tracker.db = str(tmp_path / "typo.db")
    for command in ("audit", "audit verify"):
        assert tracker(command, ok=False).exit_code == 3
    assert not (tmp_path / "typo.db").exists()


@pytest.mark.skipif(ON_PG, reason="holds SQLite's write lock from a second connection")
def test_audit_and_verify_read_while_another_writer_holds_the_lock(tracker):
    """Neither waits for the write lock (a writer holding it for the whole run does not delay them)."""
    import sqlite3

    small_clinic(tracker)
    holder = sqlite3.connect(tracker.db, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        holder.execute("INSERT INTO setting (key, value) VALUES ('x', 'y')")
        assert len(audit_json(tracker)) == 4
        assert tracker("audit verify").stdout.startswith("ok: 4 rows, chain intact")
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_listing_a_patients_audit_is_itself_an_access(tracker):
    small_clinic(tracker)
    tracker("--user auditor audit --patient P1")
    [access] = audit_json(tracker, "--action", "access.audit")
    assert (access["user"], access["mrn"], access["after"]["command"]) == ("auditor", "P1", "audit")
    tracker("audit")  # the whole log, no patient named: not recorded
    assert len(audit_json(tracker, "--action", "access.")) == 1


def test_demo_builds_are_audited_and_listed(tracker, tmp_path):
    tracker.db = str(tmp_path / "demo.db")
    tracker("--user trainer demo --patients 2 --seed 3")
    [build] = audit_json(tracker, "--action", "demo.build")
    assert build["user"] == "trainer" and build["after"]["patients"] == 2 and build["after"]["seed"] == 3
    assert tracker("audit verify").exit_code == 0


# --- access events ----------------------------------------------------------------------------------------


def test_reads_of_patient_data_are_recorded_once_per_command(tracker, tmp_path):
    small_clinic(tracker)
    with freeze_time("2026-03-04 12:00:00"):
        shown = tracker("--user nurse patient show P1").stdout
        assert "Ann Lee" in shown
        tracker("--user nurse patient show P1 --json")
        tracker("--user nurse calendar P1 --to 2026-06-30")
        tracker("--user nurse result list P1")
        tracker("--user nurse patient list")
        tracker(f"--user nurse export ics --patient P1 --out {tmp_path / 'p1.ics'}")
        clinic_ics = tracker("--user nurse export ics").stdout
        assert clinic_ics.startswith("BEGIN:VCALENDAR")
        assert tracker("patient show NOPE", ok=False).exit_code == 3  # nothing read, nothing recorded
    rows = list(reversed(audit_json(tracker, "--action", "access.")))
    assert [(r["action"], r["user"], r["mrn"], r["entity"]) for r in rows] == [
        ("access.patient", "nurse", "P1", "patient"),
        ("access.patient", "nurse", "P1", "patient"),
        ("access.calendar", "nurse", "P1", "patient"),
        ("access.results", "nurse", "P1", "patient"),
        ("access.patient_list", "nurse", None, "clinic"),
        ("access.export", "nurse", "P1", "patient"),
        ("access.export", "nurse", None, "clinic"),  # one row for the whole clinic, with its counts
    ]
    assert rows[2]["after"]["items"] > 0 and rows[2]["after"]["to"] == "2026-06-30"
    assert rows[4]["after"]["patients"] == 2
    assert rows[6]["after"]["scope"] == "clinic" and rows[6]["after"]["events"] == clinic_ics.count("BEGIN:VEVENT")
    assert all(r["entity_id"] == rows[0]["entity_id"] for r in rows[:4])  # the patient's id
    # A patient's listing includes the whole-clinic reads, which showed that patient too.
    p2 = [r["action"] for r in audit_json(tracker, "--patient", "P2", "--action", "access.")]
    assert p2 == ["access.export", "access.patient_list"]
    assert tracker("audit verify").exit_code == 0


def refuse_audit_inserts(db: str) -> None:
    """Make the database refuse new audit rows (as a read-only database would) but serve reads."""
    if ON_PG:
        name = make_engine(resolve_url(db)).url.database
        sql(db, f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    else:
        sql(db, "CREATE TRIGGER no_audit BEFORE INSERT ON audit_event "
                "BEGIN SELECT RAISE(ABORT, 'attempt to write a readonly database'); END")


def test_a_read_the_audit_cannot_record_is_shown_with_a_warning(tracker):
    """The audit never keeps a clinic from reading: the data is shown, exit 0, one warning line."""
    small_clinic(tracker)
    before = audit_json(tracker)
    refuse_audit_inserts(tracker.db)
    result = tracker("patient show P1")
    assert result.exit_code == 0 and "Ann Lee" in result.stdout
    assert result.stderr.startswith("warning: this read was not recorded in the audit log: ")
    assert result.stderr.count("\n") == 1 and "read" in result.stderr
    result = tracker("export ics")
    assert result.exit_code == 0 and result.stdout.startswith("BEGIN:VCALENDAR") and "warning:" in result.stderr
    assert audit_json(tracker) == before


def test_a_feed_fetch_served_is_recorded_without_its_token(tracker, tmp_path):
    from tests.test_feeds import SERVE_CONFIG, URL, Server

    small_clinic(tracker)
    token = URL.match(tracker("feed create --patient P1").stdout.strip()).group(1)
    config = tmp_path / "serve.toml"
    config.write_text(SERVE_CONFIG)
    server = Server(tracker.db, str(config), at="2026-03-04 09:00:00")
    try:
        path = f"/feeds/{token}.ics"
        status, headers, body = server.get(path)
        assert status == 200
        assert server.get(path, headers={"If-None-Match": headers["ETag"]})[0] == 304  # nothing new read
        assert server.get(path, method="HEAD")[0] == 200  # headers only
        assert server.get("/feeds/not-a-real-token-at-all-0123456789.ics")[0] == 404
    finally:
        server.stop()
    [fetch] = audit_json(tracker, "--action", "access.feed")
    assert (fetch["user"], fetch["mrn"], fetch["entity"]) == ("feed 1", "P1", "patient")
    assert fetch["after"] == {"feed": 1, "scope": "patient", "audience": "staff", "bytes": len(body)}
    assert token not in json.dumps(sql(tracker.db, "SELECT * FROM audit_event"), default=str)


# --- the hash chain ---------------------------------------------------------------------------------------


def verify(tracker, *args: str):
    return tracker(["audit", "verify", *args], ok=False)


def chained_clinic(tracker) -> None:
    """Ten rows: 2 patients, 1 start, 1 update, and evaluations' alert.raise rows (bulk-inserted)."""
    small_clinic(tracker)
    with freeze_time("2026-05-01 08:00:00"):
        tracker("evaluate")
        tracker("patient show P2")


def test_an_untouched_log_verifies_and_prints_its_head(tracker):
    chained_clinic(tracker)
    count = sql(tracker.db, "SELECT count(*) FROM audit_event")[0][0]
    result = verify(tracker)
    assert result.exit_code == 0
    ok, head = result.stdout.splitlines()
    assert ok == f"ok: {count} rows, chain intact"
    [(seq, hash_)] = sql(tracker.db, "SELECT seq, hash FROM audit_event ORDER BY seq DESC LIMIT 1")
    assert head == f"head {seq}:{hash_}" and seq == count
    assert tracker.json("audit verify") == {"ok": True, "rows": count, "head": f"{seq}:{hash_}", "problem": None}
    assert verify(tracker, "--anchor", f"{seq}:{hash_}").stdout.startswith(f"ok: {count} rows, chain intact, anchor")
    # Ids and chain positions agree: the rows were chained in the order they were written.
    assert [tuple(r) for r in sql(tracker.db, "SELECT id, seq FROM audit_event ORDER BY id")] == [
        (n, n) for n in range(1, count + 1)]


def broken(tracker, *args: str) -> tuple[int | None, str]:
    """`audit verify` must fail with exit 12: (first bad row id, the error line)."""
    result = verify(tracker, *args)
    assert result.exit_code == 12, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: audit chain broken: ") and result.stderr.count("\n") == 1
    data = tracker.json(["audit", "verify", *args], ok=False)
    assert data["ok"] is False
    return data["problem"]["row_id"], result.stderr


@pytest.mark.parametrize("column, value", [('"user"', "mallory"), ("action", "alert.resolve"), ("mrn", "P9"),
                                           ("after", '{"status": "acknowledged"}'), ("entity_id", 99)])
def test_an_update_of_any_field_is_found(tracker, column, value):
    chained_clinic(tracker)
    sql(tracker.db, f"UPDATE audit_event SET {column} = :value WHERE id = 5", value=value)
    row_id, line = broken(tracker)
    assert row_id == 5 and "contents changed" in line


def test_an_update_of_the_timestamp_is_found(tracker):
    chained_clinic(tracker)
    sql(tracker.db, "UPDATE audit_event SET at = (SELECT at FROM audit_event WHERE id = 1) WHERE id = 4")
    assert broken(tracker)[0] == 4


def test_a_deleted_row_in_the_middle_is_found(tracker):
    """The issue's case: an `alert.ack`-like row removed quietly."""
    chained_clinic(tracker)
    sql(tracker.db, "DELETE FROM audit_event WHERE id = 3")
    row_id, line = broken(tracker)
    assert row_id == 4 and "missing (deleted)" in line


def test_a_deleted_row_in_the_middle_with_the_rest_renumbered_is_found(tracker):
    chained_clinic(tracker)
    sql(tracker.db, "DELETE FROM audit_event WHERE id = 3", "UPDATE audit_event SET seq = seq - 1 WHERE id > 3")
    row_id, line = broken(tracker)
    assert row_id == 4 and "does not follow the previous row" in line


def test_a_deleted_newest_row_is_found_against_the_head(tracker):
    chained_clinic(tracker)
    [(last,)] = sql(tracker.db, "SELECT max(id) FROM audit_event")
    sql(tracker.db, "DELETE FROM audit_event WHERE id = :last", last=last)
    row_id, line = broken(tracker)
    assert row_id is None and "newest rows are missing" in line


def test_a_newest_row_deleted_with_the_head_rewritten_is_found_only_against_a_noted_anchor(tracker):
    """The documented limit: a deleter who also rewrites the head record leaves a valid, shorter chain."""
    chained_clinic(tracker)
    anchor = verify(tracker).stdout.splitlines()[1].removeprefix("head ")
    [(last, seq)] = sql(tracker.db, "SELECT id, seq FROM audit_event ORDER BY seq DESC LIMIT 1")
    sql(tracker.db, "DELETE FROM audit_event WHERE id = :last", "UPDATE audit_head SET seq = :seq - 1, "
        "hash = (SELECT hash FROM audit_event WHERE seq = :seq - 1)", last=last, seq=seq)
    assert verify(tracker).exit_code == 0
    row_id, line = broken(tracker, "--anchor", anchor)
    assert "the anchored row is gone" in line


def test_a_recomputed_chain_is_found_only_against_a_noted_anchor(tracker):
    from tracker.core.audit_chain import Head

    chained_clinic(tracker)
    anchor = verify(tracker).stdout.splitlines()[1].removeprefix("head ")
    sql(tracker.db, "UPDATE audit_event SET \"user\" = 'mallory' WHERE id = 2")
    from sqlalchemy import select

    from tracker.db.tables import AuditEvent

    engine = make_engine(resolve_url(tracker.db))
    with engine.connect() as conn:
        rows = conn.execute(select(AuditEvent.__table__).order_by(AuditEvent.seq)).all()
    engine.dispose()
    head = Head()
    for row in rows:  # the forger recomputes every hash after the edit, and the head
        seq, prev_hash, hash_ = head.link(row._asdict())
        sql(tracker.db, "UPDATE audit_event SET prev_hash = :p, hash = :h WHERE id = :i", p=prev_hash, h=hash_,
            i=row.id)
        head = Head(seq, hash_)
    sql(tracker.db, "UPDATE audit_head SET hash = :h", h=head.hash)
    assert verify(tracker).exit_code == 0
    row_id, line = broken(tracker, "--anchor", anchor)
    assert "differs from the anchor" in line


def test_an_inserted_row_is_found(tracker):
    chained_clinic(tracker)
    columns = 'at, "user", action, entity, entity_id, mrn, before, after'
    sql(tracker.db, f"INSERT INTO audit_event ({columns}) SELECT {columns} FROM audit_event WHERE id = 2")
    [(forged,)] = sql(tracker.db, "SELECT max(id) FROM audit_event")
    row_id, line = broken(tracker)
    assert row_id == forged and "not in the chain" in line


def test_an_inserted_row_with_a_made_up_place_in_the_chain_is_found(tracker):
    chained_clinic(tracker)
    [(seq, hash_)] = sql(tracker.db, "SELECT seq, hash FROM audit_event ORDER BY seq DESC LIMIT 1")
    columns = 'at, "user", action, entity, entity_id, mrn, before, after'
    sql(tracker.db, f"INSERT INTO audit_event ({columns}, seq, prev_hash, hash) SELECT {columns}, :seq, :prev, "
        f"'{'f' * 64}' FROM audit_event WHERE id = 2", seq=seq + 1, prev=hash_)
    [(forged,)] = sql(tracker.db, "SELECT max(id) FROM audit_event")
    row_id, line = broken(tracker)
    assert row_id == forged and "contents changed" in line


def test_a_bad_anchor_is_refused_as_input(tracker):
    chained_clinic(tracker)
    result = verify(tracker, "--anchor", "12:nothex")
    assert result.exit_code == 2 and "anchor" in result.stderr


def test_writes_after_tampering_keep_appending_and_the_break_stays_visible(tracker):
    chained_clinic(tracker)
    sql(tracker.db, "UPDATE audit_event SET mrn = 'P9' WHERE id = 2")
    tracker("patient add P3 --name 'Cy Dee' --dob 1990-01-01")
    assert broken(tracker)[0] == 2


def test_a_recorded_read_does_not_count_as_a_change_for_the_next_incremental_review(tracker):
    """An `access.*` row names a patient, but reading changes nothing the nightly must review again."""
    from sqlmodel import Session

    from tracker.protocol_files import library
    from tracker.services.evaluate import _changed_since

    small_clinic(tracker)
    engine = make_engine(resolve_url(tracker.db))

    def changed() -> set | None:
        with Session(engine) as session:
            return _changed_since(session, library(None))

    with freeze_time("2026-03-04 12:00:00"):
        tracker("nightly")
        # (On PostgreSQL the mark's xmin safety net also lists what the marking run itself wrote.)
        before = changed()
        tracker("patient show P1")
        tracker("calendar P1")
    assert before is not None and changed() == before
    engine.dispose()


@freeze_time("2026-03-02")
def test_bulk_written_audit_rows_keep_the_chain_intact(tracker, tmp_path):
    """The CSV import and the lab-file import write their `result.add` rows in bulk (and the evaluation its
    `alert.raise` rows): each takes its place in the chain, so `audit verify` still says ok."""
    tracker("patient add M1 --name 'Max Test' --dob 1970-01-01")
    tracker("therapy start M1 dupilumab --on 2026-02-01")
    path = tmp_path / "labs.csv"
    path.write_text("mrn,test,value,unit,taken_on,ref_low,ref_high\n"
                    "M1,alt,30,U/L,2026-02-20,,\nM1,eosinophils,3.5,10^9/L,2026-02-20,,\n")
    tracker(["result", "import", str(path)])
    tracker("result add M1 alt 31 --on 2026-02-21")
    result = tracker("audit verify")
    assert result.stdout.startswith("ok: "), result.stdout
    actions = [row["action"] for row in tracker.json("audit --limit 0")]
    assert actions.count("result.add") == 3


def test_audit_of_a_patient_follows_an_mrn_correction(tracker):
    # Events are stored under the MRN of their day: after `patient update --new-mrn`, `audit --patient` by the new
    # MRN (or the old one) must still show what happened under the old one.
    with freeze_time("2026-03-01 09:00:00"):
        tracker("patient add P9 --name 'Cy Dee' --dob 1980-01-01")
        tracker("patient add Q1 --name 'Other Patient' --dob 1980-01-01")
        tracker("--user drsmith therapy start P9 dupilumab --on 2026-03-01")
    with freeze_time("2026-03-02 09:00:00"):
        tracker("patient update P9 --new-mrn P90")
        tracker("--user drsmith therapy stop P90 dupilumab --on 2026-03-02 --reason 'clear skin'")
    expected = ["therapy.stop", "patient.update", "therapy.start", "patient.add"]
    for mrn in ("P90", "P9"):
        rows = audit_json(tracker, "--patient", mrn, "--action", "patient.*", "--action", "therapy.*")
        assert [r["action"] for r in rows] == expected, mrn
    assert [r["action"] for r in audit_json(tracker, "--patient", "Q1", "--action", "patient.*")] == ["patient.add"]


def test_an_mrn_given_up_and_reused_keeps_each_patients_audit_apart(tracker):
    # P9 becomes P90; a new patient then registers as P9. Each audit shows its own patient's events only:
    # P9's audit is the new patient's (not the events the first one had under P9), P90's is the first one's,
    # from before its change too.
    with freeze_time("2026-03-01 09:00:00"):
        tracker("patient add P9 --name 'Cy Dee' --dob 1980-01-01")
        tracker("therapy start P9 dupilumab --on 2026-03-01")
    with freeze_time("2026-03-02 09:00:00"):
        tracker("patient update P9 --new-mrn P90")
        tracker("patient add P9 --name 'Ann Other' --dob 1990-02-02")
        tracker("therapy start P9 methotrexate --on 2026-03-02")
    actions = ("--action", "patient.*", "--action", "therapy.*")
    first = audit_json(tracker, "--patient", "P90", *actions)
    second = audit_json(tracker, "--patient", "P9", *actions)
    assert [r["action"] for r in first] == ["patient.update", "therapy.start", "patient.add"]
    assert "dupilumab" in json.dumps(first) and "methotrexate" not in json.dumps(first)
    assert [r["action"] for r in second] == ["therapy.start", "patient.add"]
    assert "methotrexate" in json.dumps(second) and "dupilumab" not in json.dumps(second)
    assert {r["id"] for r in first}.isdisjoint({r["id"] for r in second})


def test_which_events_are_a_patients_by_mrn_and_time():
    from tracker.services.audit import MrnSpan, Rename, holder_of, mrn_spans

    # Patient 1: A -> B at event 10, B -> C at event 20. Patient 2 registered as A afterwards.
    renames = [Rename(10, 1, "A", "B"), Rename(20, 1, "B", "C")]
    assert mrn_spans(1, "C", renames) == [MrnSpan("A", None, 10), MrnSpan("B", 9, 20), MrnSpan("C", 19, None)]
    assert mrn_spans(2, "A", renames) == [MrnSpan("A", 10, None)]  # only after patient 1 gave A up
    assert mrn_spans(3, "Z", renames) == [MrnSpan("Z", None, None)]
    assert holder_of("A", 2, renames) == 2  # who has it now
    assert holder_of("B", None, renames) == 1  # else who had it last
    assert holder_of("Q", None, renames) is None
