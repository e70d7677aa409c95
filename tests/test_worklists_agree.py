"""Issue 12: "due" has one definition (tracker/core/worklist.py), so `tracker due --days N` lists exactly the
items the nightly digest with lead time N reminds of, and a course limit (a date marker, whose approach is a
`limit` alert) is on the calendar but in neither."""

from __future__ import annotations

from freezegun import freeze_time

from tests.nightly_support import jsonl_rows, write_config

AS_OF, DAYS = "2026-02-26", 5  # the ciclosporin course below reaches its 8-week maximum on 2026-03-02


def test_a_course_limit_is_on_the_calendar_but_neither_due_nor_reminded(tracker, tmp_path):
    with freeze_time("2026-01-02"):
        tracker("patient add P1 --name 'Ada Byron' --dob 1980-01-01")
        tracker("therapy start P1 ciclosporin --on 2026-01-05")
    write_config(tmp_path / "site.toml", f"""
timezone = "Europe/London"
[reminders]
channels = ["jsonl"]
lead_days = {DAYS}
[reminders.jsonl]
path = "out/reminders.jsonl"
""")
    limit = [r for r in tracker.json("calendar P1") if r["kind"] == "limit"]
    assert [(r["due"], r["status"], r["overdue"]) for r in limit] == [("2026-03-02", "planned", False)]
    limit_id = limit[0]["id"]

    due = tracker.json(f"due --as-of {AS_OF} --days {DAYS}")
    tracker(f"nightly --as-of {AS_OF}")
    sent = jsonl_rows(tmp_path / "out" / "reminders.jsonl")
    reminded_due = sorted((r["item_id"], r["due"]) for r in sent if r["kind"] == "due")

    assert limit_id not in {r["id"] for r in due}
    assert limit_id not in {r["item_id"] for r in sent if r["kind"] in ("due", "overdue")}
    # The same items, and not vacuously: the week-8 lab draw and response check share the limit's date.
    assert sorted((r["id"], r["due"]) for r in due) == reminded_due
    assert sorted((r["kind"], r["due"]) for r in due) == [("checkpoint", "2026-03-02"), ("lab", "2026-03-02")]
    # The limit's approach is an alert, and `patient show` still lists its date among the upcoming items.
    assert any(r["kind"] == "alert" and r["alert_kind"] == "limit" for r in sent)
    with freeze_time(f"{AS_OF} 12:00"):
        upcoming = tracker.json("patient show P1")["next_items"]
    assert limit_id in {r["id"] for r in upcoming}


def test_overdue_lists_tasks_only_and_flags_them(tracker):
    with freeze_time("2026-01-02"):
        tracker("patient add P1 --name 'Ada Byron' --dob 1980-01-01")
        tracker("therapy start P1 ciclosporin --on 2026-01-05")
    rows = tracker.json("overdue --as-of 2026-03-10")
    assert rows and all(r["overdue"] and r["kind"] != "limit" for r in rows)
    with freeze_time("2026-03-10 12:00"):
        shown = tracker.json("patient show P1")["next_items"]
    assert [r["id"] for r in shown if r["overdue"]] == [r["id"] for r in rows]
    assert not any(r["kind"] == "limit" for r in shown)  # past its date: the `limit` alert speaks for it
