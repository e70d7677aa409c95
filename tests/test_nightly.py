"""Issue 7: `tracker nightly` reminds each due item, overdue item and new alert exactly once, catches up
missed days in one digest, records its runs, and names patients by MRN and initials only."""

from __future__ import annotations

import datetime as dt
import json
import re

from tests.conftest import dump_database
from tests.nightly_support import jsonl_rows, small_clinic, write_config


def _config(tmp_path, extra: str = "") -> None:
    write_config(tmp_path / "site.toml", f"""
timezone = "Europe/London"
[reminders]
channels = ["stdout", "jsonl"]
[reminders.jsonl]
path = "out/reminders.jsonl"
{extra}
""")


def _items(rows, kind):
    return sorted((r["item_id"], r["due"]) for r in rows if r["kind"] == kind)


def test_running_twice_for_the_same_day_reminds_once(tracker, tmp_path):
    small_clinic(tracker)
    _config(tmp_path)
    first = tracker("nightly --as-of 2026-01-16")
    sent = jsonl_rows(tmp_path / "out" / "reminders.jsonl")
    overdue = tracker.json("overdue --as-of 2026-01-16")
    due = tracker.json("due --as-of 2026-01-16 --days 3")
    # Every overdue task and every item due within the 3-day lead time, each once: an overdue task that
    # already has an open alert about it (past the grace period) is reminded as that alert only.
    alerted = {r["item_id"] for r in sent if r["kind"] == "alert" and r["item_id"]}
    # A course's overdue baseline set is one alert (issue 14): it reminds of every baseline test it lists.
    grouped = {r["drug"] for r in sent if r["kind"] == "alert" and " baseline: " in (r["message"] or "")}
    alerted |= {r["id"] for r in overdue if r["kind"] == "baseline" and r["drug"] in grouped
                and (dt.date(2026, 1, 16) - dt.date.fromisoformat(r["due"])).days > 7}
    reminded = [i for i, _ in _items(sent, "overdue")] + sorted(alerted)
    assert sorted(reminded) == sorted(r["id"] for r in overdue)
    assert len(reminded) == len(set(reminded))
    assert _items(sent, "due") == sorted((r["id"], r["due"]) for r in due) == [(due[0]["id"], "2026-01-19")]
    assert first.stdout.startswith(f"tracker: {len(sent)} reminders for 2026-01-16")
    assert "Methotrexate monitoring: CBC, CMP" in first.stdout

    second = tracker("nightly --as-of 2026-01-16")
    assert jsonl_rows(tmp_path / "out" / "reminders.jsonl") == sent
    assert second.stdout.startswith("tracker: 0 reminders for 2026-01-16")
    assert "already done" in second.stderr
    runs = tracker.json("nightly status")
    assert [r["counts"]["reminders"] for r in runs] == [0, len(sent)]
    assert all(r["status"] == "ok" and r["finished_at"] for r in runs)


def test_three_skipped_days_are_caught_up_in_one_digest(tracker, tmp_path):
    small_clinic(tracker)
    _config(tmp_path)
    tracker("nightly --as-of 2026-01-28")
    before = jsonl_rows(tmp_path / "out" / "reminders.jsonl")
    # The machine was off on 01-29, 01-30 and 01-31.
    out = tracker("nightly --as-of 2026-02-01").stdout
    new = jsonl_rows(tmp_path / "out" / "reminders.jsonl")[len(before):]
    assert out.count("tracker: ") == 1  # one digest, not one per missed day
    assert out.startswith(f"tracker: {len(new)} reminder{'' if len(new) == 1 else 's'} for 2026-02-01 "
                          "(catching up from 2026-01-29)")
    assert [(r["kind"], r["due"]) for r in new if r["kind"] != "alert"] == [("due", "2026-02-02")]
    run = tracker.json("nightly status")[0]
    assert (run["from_day"], run["as_of"], run["counts"]["days"]) == ("2026-01-29", "2026-02-01", 4)

    # Off again 02-02 to 02-04: the 02-02 draw became overdue meanwhile and is reminded as such, once.
    tracker("nightly --as-of 2026-02-05")
    rows = jsonl_rows(tmp_path / "out" / "reminders.jsonl")
    draw = [r for r in rows if r["due"] == "2026-02-02" and r["kind"] in ("due", "overdue")]
    assert [r["kind"] for r in draw] == ["due", "overdue"]
    keys = [r["dedupe_key"] for r in rows]
    assert len(keys) == len(set(keys))
    ids = [r["reminder_id"] for r in rows]
    assert len(ids) == len(set(ids))


def test_reminders_name_patients_by_mrn_and_initials_by_default(tracker, tmp_path):
    small_clinic(tracker)
    _config(tmp_path)
    out = tracker("nightly --as-of 2026-01-16").stdout
    rows = jsonl_rows(tmp_path / "out" / "reminders.jsonl")
    assert {r["patient"] for r in rows} == {"P1 AB", "P2 BC"}
    text = out + (tmp_path / "out" / "reminders.jsonl").read_text()
    assert "Ada" not in text and "Byron" not in text and "Chan" not in text
    assert "  P1 AB\n" in out


def test_patient_label_is_configurable(tracker, tmp_path):
    small_clinic(tracker)
    _config(tmp_path, "[privacy]\npatient_label = \"mrn\"")
    tracker("nightly --as-of 2026-01-16")
    assert {r["patient"] for r in jsonl_rows(tmp_path / "out" / "reminders.jsonl")} == {"P1", "P2"}


def test_jsonl_lines_have_stable_keys(tracker, tmp_path):
    small_clinic(tracker)
    _config(tmp_path)
    tracker("nightly --as-of 2026-01-16")
    rows = jsonl_rows(tmp_path / "out" / "reminders.jsonl")
    expected = {"reminder_id", "reminder_uid", "dedupe_key", "kind", "severity", "patient", "drug", "drugs", "due", "item_id",
                "item_kind", "title", "tests", "missing", "missing_text", "alert_id", "alert_kind", "message", "sources"}
    assert rows and all(set(r) == expected for r in rows)
    due = next(r for r in rows if r["kind"] == "due")
    assert due["dedupe_key"] == f"due:{due['item_id']}:2026-01-19"
    assert (due["severity"], due["tests"], due["drug"]) == ("info", ["cbc", "cmp"], "methotrexate")


def test_nightly_records_an_audit_event_and_status_lists_runs(tracker, tmp_path):
    small_clinic(tracker)
    _config(tmp_path)
    assert "No nightly runs yet." in tracker("nightly status").stdout
    tracker("nightly --as-of 2026-01-16")
    table = tracker("nightly status").stdout
    assert "2026-01-16" in table and "ok" in table
    data = dump_database(tracker.db)
    actions = [row for row in data["audit_event"] if "nightly.run" in row]
    assert len(actions) == 1
    settings = dict(data["setting"])
    assert settings["nightly.last_completed"] == "2026-01-16"


def test_a_second_run_while_one_holds_the_lock_refuses_and_changes_nothing(tracker, tmp_path):
    from tracker.db.engine import open_engine
    from tracker.locks import nightly_lock

    small_clinic(tracker)
    _config(tmp_path)
    before = dump_database(tracker.db)
    engine = open_engine(tracker.db)
    with nightly_lock(engine):
        result = tracker("nightly --as-of 2026-01-16", ok=False)
    engine.dispose()
    assert result.exit_code == 9
    assert "another nightly run" in result.stderr
    assert dump_database(tracker.db) == before
    assert not (tmp_path / "out" / "reminders.jsonl").exists()


def test_demo_then_nightly_prints_a_believable_morning_digest(tracker):
    import datetime as dt

    tracker("demo --patients 12")
    result = tracker("nightly")
    out = result.stdout
    today = dt.date.today().isoformat()  # the demo clinic is built around the real today (UTC config)
    first = out.splitlines()[0]
    assert first.startswith("tracker: ") and first.endswith(f"reminders for {today}")
    assert int(first.split()[1]) > 5
    # Missed work shows up either as an OVERDUE reminder or, past the grace period, as its overdue alert.
    assert "WARNING" in out and ("OVERDUE" in out or "overdue" in out)
    assert re.search(r"^  DEMO\d{4} [A-Z]{2}$", out, re.M)  # grouped under MRN + initials
    names = json.loads(tracker("patient list --json").stdout)
    assert not any(p["name"] in out for p in names)
    assert "new reminders" in result.stderr


def test_each_night_gives_each_of_its_reminders_one_delivery_per_channel(tracker, tmp_path):
    """Issue 19: a night's pending deliveries are made for its own reminders through a range of their ids,
    not a scan of every reminder ever emitted (the table grows every night); the nights before keep theirs."""
    from sqlalchemy import create_engine

    from tracker.db.engine import resolve_url

    small_clinic(tracker)
    _config(tmp_path)
    tracker("nightly --as-of 2026-01-16")
    tracker("nightly --as-of 2026-01-30")
    engine = create_engine(resolve_url(tracker.db))
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT r.run_id, r.id, d.channel FROM reminder r JOIN reminder_delivery d ON d.reminder_id = r.id").all()
        reminders = conn.exec_driver_sql("SELECT id, run_id FROM reminder").all()
    engine.dispose()
    assert len({run for _, run in reminders}) == 2  # both nights reminded of something
    assert sorted((reminder_id, channel) for _, reminder_id, channel in rows) == sorted(
        (reminder_id, channel) for reminder_id, _ in reminders for channel in ("jsonl", "stdout"))


def _sqlite_plans(tracker, *statements) -> list[str]:
    """SQLite's query plan of each statement, on a migrated database (skips on PostgreSQL)."""
    import pytest

    from tracker.db.engine import open_engine

    tracker("patient add P1 --name 'Ada Byron' --dob 1980-01-01")
    engine = open_engine(tracker.db)
    if engine.dialect.name != "sqlite":
        engine.dispose()
        pytest.skip("a SQLite query plan")
    plans = []
    with engine.connect() as conn:
        for statement in statements:
            compiled = statement.compile(engine)
            plans.append(" ".join(str(row[-1]) for row in conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN " + str(compiled), tuple(compiled.params[k] for k in compiled.positiontup))))
    engine.dispose()
    return plans


def test_a_nights_deliveries_read_its_reminders_by_id_range(tracker):
    """The SQLite plan of the deliveries' insert: a search of the primary key, not a scan of the reminders."""
    from tracker.services.reminders import deliveries_of_run

    [plan] = _sqlite_plans(tracker, deliveries_of_run("stdout", 7, 1000))
    assert "SEARCH reminder USING INTEGER PRIMARY KEY" in plan, plan


def test_deliveries_still_to_send_are_read_through_their_partial_index(tracker):
    """Issue 19, migration 0022: the digest and the counts of what is left to send read the unsent deliveries
    through their partial index, not every delivery ever made (an index on `state` cannot answer `<>`)."""
    from sqlalchemy import func, select

    from tracker.db.tables import ReminderDelivery, unsent_delivery
    from tracker.services.delivery import _digest_query, _pending

    D = ReminderDelivery.__table__
    plans = _sqlite_plans(tracker, _digest_query("stdout"), select(func.count()).where(_pending("jsonl")),
                          select(D.c.channel, func.count()).where(unsent_delivery()).group_by(D.c.channel))
    for plan in plans:  # its one read of the table goes through the index (the whole of it: only unsent rows)
        reads = re.findall(r"reminder_delivery(?: USING (?:COVERING )?INDEX (\w+))?", plan)
        assert reads == ["ix_reminder_delivery_unsent"], plan
