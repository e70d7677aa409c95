"""Issue 3 item 5: a patient on two drugs gets both protocols, with close lab draws merged into one.

Methotrexate from Mon 2026-01-05 draws CBC+CMP on 01-19, 02-02, 02-16, then monthly (03-16, 04-16, 05-16),
then 12-weekly (08-08, ...). Azathioprine from Wed 2026-01-07 draws CBC+CMP on 01-21, 02-04, 02-18, then
monthly (03-18, 04-18, 05-18), then 3-monthly (08-18, ...). The first six pairs are 2 days apart (within the
clinic default of 3 days), the later ones are not.
"""

from __future__ import annotations

import datetime as dt

import pytest
from freezegun import freeze_time

from tests.conftest import dump_database, record_panels
from tracker.core.merge import Draw, group_draws

MERGED = ["2026-01-19", "2026-02-02", "2026-02-16", "2026-03-16", "2026-04-16", "2026-05-16"]
ABSORBED = ["2026-01-21", "2026-02-04", "2026-02-18", "2026-03-18", "2026-04-18", "2026-05-18"]


@pytest.fixture
def both(tracker):
    with freeze_time("2026-01-02"):
        tracker("patient add P1 --name 'Ada Byron' --dob 1980-01-01 --sex f --childbearing-potential no")
        tracker("therapy start P1 methotrexate --on 2026-01-05")
        out = tracker("therapy start P1 azathioprine --on 2026-01-07 --override-gate 'TPMT sent, result pending'")
    assert "6 merged" in out.stdout
    return tracker


def labs(tracker, *extra, to="2026-12-31"):
    with freeze_time("2026-01-02"):
        rows = tracker.json(["calendar", "P1", "--to", to, *extra])
    return [r for r in rows if r["kind"] == "lab"]


def by_drug_and_due(rows):
    return {(r["drug"], r["due"]): r for r in rows}


def test_close_draws_of_the_same_tests_are_one_draw_on_the_earlier_date(both):
    rows = labs(both)
    merged = [r for r in rows if len(r["drugs"]) == 2]
    assert [r["due"] for r in merged] == MERGED
    for row in merged:
        assert row["drug"] == "methotrexate"
        assert row["drugs"] == ["methotrexate", "azathioprine"]
        assert row["tests"] == ["cbc", "cmp"]
        assert "with azathioprine" in row["title"]
    # The absorbed azathioprine draws are not shown a second time; the far-apart ones are kept separate.
    dues = [(r["drug"], r["due"]) for r in rows]
    assert not any(("azathioprine", d) in dues for d in ABSORBED)
    assert ("methotrexate", "2026-08-08") in dues and ("azathioprine", "2026-08-18") in dues
    assert len(dues) == len(set(dues))


def test_worklists_list_a_merged_draw_once(both):
    with freeze_time("2026-01-02"):
        due = both.json("due --as-of 2026-01-18 --days 5")
        overdue = both.json("overdue --as-of 2026-01-25")
    assert [(r["due"], r["drugs"]) for r in due if r["kind"] == "lab"] == [
        ("2026-01-19", ["methotrexate", "azathioprine"])]
    assert [(r["due"], r["drugs"]) for r in overdue if r["kind"] == "lab"] == [
        ("2026-01-19", ["methotrexate", "azathioprine"])]


def test_a_result_completes_the_merged_draw_for_both_courses(both):
    with freeze_time("2026-01-20"):
        both("result add P1 wbc 6.1 --on 2026-01-20")
        partial = by_drug_and_due([r for r in both.json("calendar P1 --to 2026-03-01") if r["kind"] == "lab"])
        assert partial[("methotrexate", "2026-01-19")]["status"] == "partial"  # one analyte: not done yet
        assert ("azathioprine", "2026-01-21") not in partial  # absorbed into the merged draw, still open
        record_panels(both, "P1", "2026-01-20", "cbc", "cmp", skip=("wbc",))
        rows = both.json("calendar P1 --to 2026-03-01 --all")
        overdue = both.json("overdue --as-of 2026-01-25")
    draws = by_drug_and_due([r for r in rows if r["kind"] == "lab"])
    assert draws[("methotrexate", "2026-01-19")]["status"] == "done"
    assert draws[("azathioprine", "2026-01-21")]["status"] == "done"
    assert draws[("azathioprine", "2026-01-21")]["done_on"] == "2026-01-20"
    assert [r for r in overdue if r["kind"] == "lab"] == []


def test_re_planning_either_course_keeps_the_merge_and_the_uids(both):
    before = labs(both, "--all")
    with freeze_time("2026-01-02"):
        both("therapy replan P1 azathioprine")
        both("therapy replan P1 methotrexate")
    assert labs(both, "--all") == before  # same rows, uids and sequence numbers
    before = by_drug_and_due(before)

    # A dose change of azathioprine on 03-01 restarts its 2-weekly phase (03-15, 03-29, 04-12, then monthly
    # 05-12, ...). Draws before it stay merged with the same uids; after it the pairs are different.
    with freeze_time("2026-02-20"):
        both("therapy dose P1 azathioprine --on 2026-03-01 --dose '100 mg'")
        rows = both.json("calendar P1 --to 2026-12-31 --all")
    every = by_drug_and_due([r for r in rows if r["kind"] == "lab"])
    shown = [r for r in rows if r["kind"] == "lab" and r["status"] != "cancelled"]
    for due in MERGED[:3]:
        assert every[("methotrexate", due)]["uid"] == before[("methotrexate", due)]["uid"]
        assert every[("methotrexate", due)]["drugs"] == ["methotrexate", "azathioprine"]
    # Azathioprine's new 03-15 draw now hosts methotrexate's 03-16 one, which keeps its uid while hidden.
    assert every[("azathioprine", "2026-03-15")]["drugs"] == ["azathioprine", "methotrexate"]
    assert every[("methotrexate", "2026-03-16")]["status"] == "cancelled"
    assert every[("methotrexate", "2026-03-16")]["uid"] == before[("methotrexate", "2026-03-16")]["uid"]
    # 04-12 and 04-16 are 4 days apart: two draws.
    assert every[("azathioprine", "2026-04-12")]["drugs"] == ["azathioprine"]
    assert every[("methotrexate", "2026-04-16")]["drugs"] == ["methotrexate"]
    # The old azathioprine draws after the change are gone for good (cancelled, not merged anywhere).
    assert every[("azathioprine", "2026-03-18")]["status"] == "cancelled"
    dues = [(r["due"], r["drug"]) for r in shown]
    assert len(dues) == len(set(dues))
    assert [d for d, _ in dues if d in ("2026-03-15", "2026-03-16")] == ["2026-03-15"]


def test_stopping_the_host_course_brings_back_the_absorbed_draws_with_their_uids(both):
    hidden = {r["due"]: r for r in labs(both, "--all") if r["drug"] == "azathioprine" and r["due"] in ABSORBED}
    assert {r["status"] for r in hidden.values()} == {"cancelled"}
    with freeze_time("2026-01-10"):
        both("therapy stop P1 methotrexate --on 2026-01-10 --reason 'nausea'")
    rows = by_drug_and_due(labs(both))
    for due, row in hidden.items():
        back = rows[("azathioprine", due)]
        assert back["uid"] == row["uid"]
        assert back["status"] == "planned"
        assert back["drugs"] == ["azathioprine"]
    assert not any(drug == "methotrexate" for drug, _ in rows)


def test_stopping_the_absorbed_course_un_merges_the_host(both):
    with freeze_time("2026-01-10"):
        both("therapy stop P1 azathioprine --on 2026-01-10 --reason 'TPMT low'")
    rows = labs(both)
    assert {r["drug"] for r in rows} == {"methotrexate"}
    assert all(r["drugs"] == ["methotrexate"] and "with" not in r["title"] for r in rows)


def test_the_merge_window_is_a_clinic_setting(tracker, tmp_path):
    config = tmp_path / "clinic.toml"
    config.write_text("[calendar]\nmerge_window_days = 1\n")
    env = {"TRACKER_CONFIG": str(config)}
    with freeze_time("2026-01-02"):
        tracker("patient add P1 --name 'Ada Byron' --dob 1980-01-01", env=env)
        tracker("therapy start P1 methotrexate --on 2026-01-05", env=env)
        tracker("therapy start P1 azathioprine --on 2026-01-07 --override-gate pending", env=env)
        rows = tracker.json("calendar P1 --to 2026-06-30", env=env)
    assert all(len(r["drugs"]) == 1 for r in rows)

    config.write_text("[calendar]\nmerge_window_days = 'three'\n")
    snapshot = dump_database(tracker.db)
    with freeze_time("2026-01-02"):
        out = tracker("therapy dose P1 methotrexate --on 2026-01-20 --dose 15mg", env=env, ok=False)
    assert out.exit_code != 0
    assert "merge_window_days" in out.stderr and out.stderr.count("\n") == 1
    assert dump_database(tracker.db) == snapshot


def test_switch_merges_with_the_commands_config_like_stop_then_start(tracker, tmp_path, monkeypatch):
    """Issue 12: `--config` sets the merge window for every step of a command. `therapy switch` used to
    re-plan the started drug with the file $TRACKER_CONFIG names instead (16 draws in 2026 instead of 10)."""
    ambient = tmp_path / "ambient.toml"
    ambient.write_text("[calendar]\nmerge_window_days = 0\n")
    monkeypatch.setenv("TRACKER_CONFIG", str(ambient))
    site = tmp_path / "site.toml"
    site.write_text("[calendar]\nmerge_window_days = 3\n")

    def run(*args):
        return tracker(["--config", str(site), *args])

    with freeze_time("2026-01-02"):
        for mrn in ("P1", "P2"):
            run("patient", "add", mrn, "--name", "Ada Byron", "--dob", "1980-01-01", "--sex", "f",
                "--childbearing-potential", "no")
            run("therapy", "start", mrn, "methotrexate", "--on", "2026-01-05")
            run("therapy", "start", mrn, "dupilumab", "--on", "2026-01-05")
        switched = run("therapy", "switch", "P1", "dupilumab", "azathioprine", "--on", "2026-01-07",
                       "--reason", "not enough", "--override-gate", "TPMT sent")
        run("therapy", "stop", "P2", "dupilumab", "--on", "2026-01-07", "--reason", "not enough")
        started = run("therapy", "start", "P2", "azathioprine", "--on", "2026-01-07",
                      "--override-gate", "TPMT sent")
        draws = {mrn: [(r["due"], r["drugs"]) for r in tracker.json(["--config", str(site), "calendar", mrn,
                                                                     "--to", "2026-12-31"])
                       if r["kind"] == "lab"] for mrn in ("P1", "P2")}
    assert "6 merged" in switched.stdout and "6 merged" in started.stdout
    assert draws["P1"] == draws["P2"]
    assert [due for due, drugs in draws["P1"] if len(drugs) == 2] == MERGED
    assert len(draws["P1"]) == 10  # 16 draws in 2026, 6 pairs merged


def test_grouping_rule_unions_overlapping_tests_one_draw_per_course():
    d = dt.date.fromisoformat
    draws = [
        Draw(1, 10, "ciclosporin", d("2026-03-02"), ("cbc", "cmp", "lipids")),
        Draw(2, 20, "methotrexate", d("2026-03-04"), ("cbc", "cmp")),
        Draw(3, 20, "methotrexate", d("2026-03-05"), ("cbc", "cmp")),  # same course: not absorbed twice
        Draw(4, 30, "upadacitinib", d("2026-03-06"), ("cbc",)),  # 4 days after the host: too late
        Draw(5, 40, "other", d("2026-03-03"), ("bp",)),  # no test in common
    ]
    groups = group_draws(draws, window=3)
    assert [(g.host.id, [m.id for m in g.members]) for g in groups] == [(1, [2]), (5, []), (3, [4])]
    assert groups[0].tests == ["cbc", "cmp", "lipids"]
    assert groups[0].other_drugs == ["methotrexate"]
    assert [(g.host.id, [m.id for m in g.members]) for g in group_draws(draws, window=0)] == [
        (1, []), (5, []), (2, []), (3, []), (4, [])]
