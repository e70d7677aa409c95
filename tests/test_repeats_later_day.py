"""Found exploring (A8): a repeat is another occasion. A repeat booked after a result is done only by a
result of its test taken on a later day, and a `confirmed` rule ("stop if confirmed ALT/AST > 3 x ULN"
[MTX-2009-recs]) needs a breaching result of an earlier day, not a same-day duplicate."""

from __future__ import annotations

import csv
import datetime as dt

from freezegun import freeze_time

from tests.core_support import Result
from tracker.core.chart import Chart, build_results

D = dt.date


def _repeats(tracker, mrn):
    return [r for r in tracker.json(["calendar", mrn]) if r["title"].startswith("Repeat neutrophils")]


@freeze_time("2026-12-05")
def test_a_same_day_result_does_not_complete_the_repeat_a_later_day_does(tracker):
    tracker("patient add R2 --name 'R two' --dob 1970-01-01 --sex m --childbearing-potential no")
    tracker("therapy start R2 methotrexate --on 2026-12-01 --override-gate 'bloods drawn'")
    tracker("result add R2 neutrophils 1.2 --on 2026-12-03")  # < 1.6: withhold, repeat booked for 12-10
    out = tracker("result add R2 neutrophils 1.5 --on 2026-12-03").stdout
    assert "completed:" not in out
    [repeat] = _repeats(tracker, "R2")
    assert repeat["due"] == "2026-12-10" and repeat["status"] == "planned"
    assert any(r["title"].startswith("Repeat neutrophils") for r in tracker.json("due --days 14"))
    [alert] = [a for a in tracker.json("alerts") if a["kind"] == "threshold"]
    assert "Repeat neutrophils booked for 2026-12-10" in alert["message"]
    out = tracker("result add R2 neutrophils 1.8 --on 2026-12-04").stdout
    assert "completed: 2026-12-10 Repeat neutrophils" in out
    [repeat] = _repeats(tracker, "R2")
    assert repeat["status"] == "done"


@freeze_time("2026-12-05")
def test_an_import_counts_repeats_the_same_way(tracker, tmp_path):
    tracker("patient add R2 --name 'R two' --dob 1970-01-01 --sex m --childbearing-potential no")
    tracker("therapy start R2 methotrexate --on 2026-12-01 --override-gate 'bloods drawn'")
    tracker("result add R2 neutrophils 1.2 --on 2026-12-03")
    path = tmp_path / "labs.csv"
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([["mrn", "test", "value", "taken_on"], ["R2", "neutrophils", "1.5", "2026-12-03"]])
    tracker(["result", "import", str(path)])
    assert [r["status"] for r in _repeats(tracker, "R2")] == ["planned"]
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([["mrn", "test", "value", "taken_on"], ["R2", "neutrophils", "1.8", "2026-12-04"]])
    tracker(["result", "import", str(path)])
    assert [r["status"] for r in _repeats(tracker, "R2")] == ["done"]


@freeze_time("2026-12-05")
def test_a_same_day_duplicate_does_not_confirm(tracker):
    tracker("patient add Q1 --name 'Q one' --dob 1970-01-01 --sex m --childbearing-potential no")
    tracker("therapy start Q1 methotrexate --on 2026-11-20 --override-gate 'bloods drawn'")
    tracker("result add Q1 alt 90 --on 2026-12-03")
    tracker("result add Q1 alt 90 --on 2026-12-03")
    [alert] = [a for a in tracker.json("alerts") if a["kind"] == "threshold"]
    assert "repeat to confirm, then reduce the dose" in alert["message"] and "confirmed" not in alert["message"]
    tracker("result add Q1 alt 95 --on 2026-12-04")
    [alert] = [a for a in tracker.json("alerts") if a["kind"] == "threshold"]
    assert "-> reduce the dose (confirmed: also 2026-12-03)" in alert["message"]


def test_the_core_reads_the_result_of_an_earlier_day():
    from tracker.core.panels import answers_repeat

    rows = [Result(1, "alt", 90, D(2026, 12, 1)), Result(2, "alt", 90, D(2026, 12, 3)), Result(3, "alt", 95, D(2026, 12, 3))]
    chart = Chart(1, results=build_results(rows))
    assert chart.earlier_day(rows[2]).id == 1 and chart.earlier_day(rows[0]) is None

    class Item:
        origin = "threshold"

    assert not answers_repeat(Item, D(2026, 12, 3), D(2026, 12, 3))
    assert answers_repeat(Item, D(2026, 12, 4), D(2026, 12, 3)) and answers_repeat(Item, D(2026, 12, 4), None)
    Item.origin = "plan"
    assert answers_repeat(Item, D(2026, 12, 3), D(2026, 12, 3))
