"""Issue 4: limits, overdue items, idempotent evaluation and the alert lifecycle (ack, snooze, resolve)."""

from __future__ import annotations

import json

from freezegun import freeze_time

from tests.conftest import dump_database, record_panels
from tracker.cli import cli


def alerts(tracker, *extra, kind=None):
    rows = tracker.json(["alerts", *extra])
    return [r for r in rows if kind is None or r["kind"] == kind]


def audit_actions(db):
    table = dump_database(db)["audit_event"]
    return [row[3] for row in table]  # (id, at, user, action, ...)


def test_steroid_course_on_day_8_raises_a_limit_alert(tracker):
    with freeze_time("2026-03-01"):
        tracker("patient add S1 --name 'Sam Test' --dob 1970-01-01")
        tracker("therapy start S1 prednisone --on 2026-03-01")  # alias of prednisolone
    with freeze_time("2026-03-07"):
        # Day 7: only the lead-time warning (a quarter of the maximum, so one day ahead).
        assert [r["severity"] for r in alerts(tracker, kind="limit")] == ["warning"]
    with freeze_time("2026-03-08"):
        rows = alerts(tracker, kind="limit")  # day 8
    assert len(rows) == 1
    assert rows[0]["drug"] == "prednisolone" and rows[0]["severity"] == "critical"
    assert "day 8" in rows[0]["message"] and "7 days" in rows[0]["message"]
    with freeze_time("2026-03-09"):
        tracker("therapy stop S1 prednisolone --on 2026-03-09 --reason 'bridge done'")
        assert alerts(tracker, kind="limit") == []  # the course ended: condition cleared


def test_ciclosporin_nearing_its_maximum_warns_ahead(tracker):
    with freeze_time("2026-01-05"):
        tracker("patient add C1 --name 'Cy Test' --dob 1970-01-01")
        tracker("therapy start C1 ciclosporin --on 2026-01-05")  # maximum 8 weeks: 2026-03-02
    with freeze_time("2026-02-10"):
        assert alerts(tracker, kind="limit") == []
    with freeze_time("2026-02-20"):
        near = alerts(tracker, kind="limit")
        assert len(near) == 1 and near[0]["severity"] == "warning" and "2026-03-02" in near[0]["message"]
    with freeze_time("2026-03-02"):
        past = alerts(tracker, kind="limit")
    assert len(past) == 1 and past[0]["severity"] == "critical" and past[0]["id"] != near[0]["id"]


def test_overdue_lab_alerts_after_grace_and_clears_when_done(tracker):
    with freeze_time("2026-01-05"):
        tracker("patient add M1 --name 'Max Test' --dob 1970-01-01")
        tracker("therapy start M1 methotrexate --on 2026-01-05")  # first CBC+CMP due 2026-01-19
    with freeze_time("2026-01-26"):
        assert [r for r in alerts(tracker, kind="overdue") if "2026-01-19" in r["message"]] == []  # 7 days: grace
    with freeze_time("2026-01-27"):
        overdue = [r for r in alerts(tracker, kind="overdue") if "2026-01-19" in r["message"]]
        assert len(overdue) == 1 and "8 days overdue" in overdue[0]["message"]
        # One ALT makes the CBC+CMP draw partial: still overdue, its alert naming what is missing.
        out = tracker("result add M1 alt 30 --on 2026-01-25").stdout
        assert "completed" not in out
        overdue = [r for r in alerts(tracker, kind="overdue") if "2026-01-19" in r["message"]]
        assert len(overdue) == 1 and "partial: missing cbc: wbc, neutrophils, lymphocytes, platelets, hb; " \
            "cmp: creatinine or egfr, albumin" in overdue[0]["message"]
        # The rest of the draw, taken the next day, completes the item (on the day of its last result).
        outs = record_panels(tracker, "M1", "2026-01-26", "cbc", "cmp", skip=("alt",))
        assert "completed: 2026-01-19" in outs[-1] and "resolved alert" in outs[-1]
        assert [r for r in alerts(tracker, kind="overdue") if "2026-01-19" in r["message"]] == []


def test_evaluating_twice_raises_nothing_twice(tracker, db_url):
    with freeze_time("2026-03-01"):
        tracker("patient add S1 --name 'Sam Test' --dob 1970-01-01")
        tracker("therapy start S1 prednisolone --on 2026-03-01")
        tracker("patient add M1 --name 'Max Test' --dob 1970-01-01")
        tracker("therapy start M1 methotrexate --on 2026-01-05")
        tracker("result add M1 alt 130 --on 2026-03-01")
    with freeze_time("2026-03-20"):
        first = alerts(tracker, "--all")
        before = dump_database(db_url)
        second = alerts(tracker, "--all")
        after = dump_database(db_url)
    assert first == second and len(first) >= 3
    assert len({r["condition_key"] for r in first}) == len(first)
    assert before["alert"] == after["alert"] and before["audit_event"] == after["audit_event"]
    out = tracker("alerts --as-of 2026-03-20").stdout
    assert "what-if: nothing stored" in out


def test_a_what_if_as_of_a_later_date_stores_nothing(tracker, db_url):
    """Issue 12: `alerts --as-of` next year used to store every alert it would raise then (raised_on in the
    future), and the next plain evaluation auto-resolved them all."""
    with freeze_time("2026-03-01"):
        tracker("patient add M1 --name 'Max Test' --dob 1970-01-01")
        tracker("therapy start M1 methotrexate --on 2026-01-05")
        tracker("result add M1 alt 130 --on 2026-03-01")
        today = alerts(tracker)
        before = dump_database(db_url)
        future = alerts(tracker, "--as-of", "2027-03-01")
        assert dump_database(db_url) == before
        assert {r["status"] for r in future} <= {"open", "would open", "would re-open"}
        assert any(r["kind"] == "overdue" and r["id"] is None for r in future)  # a year of missed draws
        # The stored alerts that would still hold, with their texts as of that day (A9: day counts).
        def as_stored(row):
            return {k: v for k, v in row.items() if k not in ("message", "value")}

        assert [as_stored(r) for r in future if r["id"] is not None] == [
            as_stored(r) for r in today
            if r["kind"] != "overdue" or r["condition_key"] in {f["condition_key"] for f in future}]
        assert alerts(tracker) == today  # nothing to undo
        assert dump_database(db_url)["audit_event"] == before["audit_event"]


def test_a_what_if_counts_days_as_of_its_day_for_stored_alerts_too(tracker, db_url):
    """Found exploring (A9): `alerts --as-of` showed a stored alert's text with the day counts of the day
    it was raised ("(due 2026-08-10, 117 days)" on any day asked), while a would-be alert's were right."""
    with freeze_time("2026-12-05"):
        tracker("patient add X1 --name 'X one' --dob 1970-01-01 --sex m --childbearing-potential no")
        tracker("therapy start X1 methotrexate --on 2026-08-10")
        stored = {r["condition_key"]: r for r in alerts(tracker, kind="overdue")}
        assert "(due 2026-08-10, 117 days)" in stored["overdue:course1:baseline"]["message"]
        before = dump_database(db_url)
        for day, late in (("2026-08-25", 15), ("2027-02-01", 175)):
            [row] = [r for r in alerts(tracker, "--as-of", day, kind="overdue")
                     if r["condition_key"] == "overdue:course1:baseline"]
            assert row["id"] == stored["overdue:course1:baseline"]["id"]
            assert f"(due 2026-08-10, {late} days)" in row["message"] and row["value"] == f"{late} days overdue"
        draws = [r for r in alerts(tracker, "--as-of", "2027-02-01", kind="overdue")
                 if r["id"] is not None and r["condition_key"] != "overdue:course1:baseline"]
        assert draws and all(r["message"] != stored[r["condition_key"]]["message"] for r in draws)
        assert any("was due 2026-08-24 and is 161 days overdue" in r["message"] for r in draws)
        assert dump_database(db_url) == before  # a what-if writes nothing


def test_lifecycle_ack_snooze_resolve_with_audit(tracker, db_url):
    with freeze_time("2026-03-08"):
        tracker("patient add S1 --name 'Sam Test' --dob 1970-01-01")
        tracker("therapy start S1 prednisolone --on 2026-03-01")
        tracker("patient add S2 --name 'Sue Test' --dob 1970-01-01")
        tracker("therapy start S2 prednisolone --on 2026-03-01")
        one, two = [r["id"] for r in alerts(tracker, kind="limit")]

        # Acknowledge: needs a note; leaves the open list, stays listed with --all.
        bad = tracker(f"alert ack {one} --note ''", ok=False)
        assert bad.exit_code == 2 and "note" in bad.stderr
        tracker(f"alert ack {one} --note 'tapering, stop on 2026-03-10'")
        assert one not in [r["id"] for r in alerts(tracker)]
        assert [r["status"] for r in alerts(tracker, "--all") if r["id"] == one] == ["acknowledged"]

        # Snooze: at most 30 days, reason required; it comes back on its date.
        too_long = tracker(f"alert snooze {two} --until 2026-04-08 --reason later", ok=False)
        assert too_long.exit_code == 2 and "30 days" in too_long.stderr
        assert tracker(f"alert snooze {two} --until 2026-03-15", ok=False).exit_code != 0  # no reason
        tracker(f"alert snooze {two} --until 2026-03-15 --reason 'seen in clinic on the 15th'")
        assert two not in [r["id"] for r in alerts(tracker)]
    with freeze_time("2026-03-14"):
        assert two not in [r["id"] for r in alerts(tracker)]
    with freeze_time("2026-03-15"):
        back = [r for r in alerts(tracker) if r["id"] == two]
        assert len(back) == 1 and back[0]["reopened_on"] == "2026-03-15"

        # Resolve by hand: reason required; the same condition does not come back.
        assert tracker(f"alert resolve {two} --reason ' '", ok=False).exit_code == 2
        tracker(f"alert resolve {two} --reason 'stopped by phone, course ends today'")
        assert two not in [r["id"] for r in alerts(tracker, "--as-of", "2026-03-16")]
        shown = tracker.json(f"alert show {two}")
        assert shown["status"] == "resolved" and shown["resolution"].startswith("stopped by phone")
        again = tracker(f"alert resolve {two} --reason twice", ok=False)
        assert again.exit_code != 0 and "already resolved" in again.stderr
        missing = tracker("alert show 999", ok=False)
        assert missing.exit_code == 3 and "alert" in missing.stderr

    assert [e["action"] for e in shown["history"]] == ["alert.raise", "alert.snooze", "alert.reopen",
                                                      "alert.resolve"]
    actions = audit_actions(db_url)
    assert "alert.ack" in actions and actions.count("alert.raise") == 2
    events = dump_database(db_url)["audit_event"]
    resolve_event = [e for e in events if e[3] == "alert.resolve"][0]
    assert json.loads(resolve_event[8])["resolution"].startswith("stopped by phone")
    assert resolve_event[2] == "tester"


@freeze_time("2026-03-08")
def test_alert_json_contract(tracker):
    tracker("patient add S1 --name 'Sam Test' --dob 1970-01-01")
    tracker("therapy start S1 prednisolone --on 2026-03-01")
    row = alerts(tracker)[0]
    assert set(row) >= {"id", "mrn", "drug", "kind", "severity", "status", "raised_on", "message", "suggestions",
                        "sources"}
    assert row["raised_on"] == "2026-03-08" and row["status"] == "open" and isinstance(row["suggestions"], list)
    human = tracker("alerts").stdout
    assert "S1" in human and "limit" in human


def test_listing_alerts_writes_nothing_and_evaluate_stores_them(tracker, db_url):
    """Issue 12: the nightly job (or `tracker evaluate`) writes alerts; `tracker alerts` only lists them."""
    with freeze_time("2026-03-01"):
        tracker("patient add M1 --name 'Max Test' --dob 1970-01-01 --sex m")
        tracker("therapy start M1 prednisolone --on 2026-02-01")  # long past its maximum: a limit alert
        before = dump_database(db_url)
        listed = tracker.runner.invoke(cli, ["--db", db_url, "alerts", "--json"])  # the bare command
        assert listed.exit_code == 0 and json.loads(listed.stdout) == []
        assert dump_database(db_url) == before
        assert "evaluated" in tracker("evaluate").stdout
        assert [a["kind"] for a in json.loads(tracker.runner.invoke(
            cli, ["--db", db_url, "alerts", "--json"]).stdout)] == ["limit"]
