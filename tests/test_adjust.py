"""Issue 3 item 6: a per-patient interval for the maintenance phase (`tracker therapy adjust`).

Methotrexate from Mon 2026-01-05: monthly draws to 05-16, then every 12 weeks (08-08, 10-31, 2027-01-23).
"""

from __future__ import annotations

import json

import pytest
from freezegun import freeze_time

from tests.conftest import dump_database


@pytest.fixture
def mtx(tracker):
    with freeze_time("2026-01-02"):
        tracker("patient add P1 --name 'Ada Byron' --dob 1980-01-01")
        tracker("therapy start P1 methotrexate --on 2026-01-05")
        tracker("patient add P2 --name 'Bo Chan' --dob 1975-05-05")
        tracker("therapy start P2 dupilumab --on 2026-01-05")
    return tracker


def labs(tracker, start="2026-05-01", to="2026-12-31"):
    rows = tracker.json(["calendar", "P1", "--from", start, "--to", to])
    return [r for r in rows if r["kind"] == "lab"]


def test_adjust_sets_the_maintenance_interval_from_today_and_shows_it(mtx):
    with freeze_time("2026-06-01"):
        out = mtx("--user dr.who therapy adjust P1 methotrexate --every 8w --reason 'stable, risk-based'")
        rows = labs(mtx)
    assert "adjusted to every 8w from 2026-06-01" in out.stdout
    # The monthly phase is untouched; from the adjustment on, every 8 weeks counted from 06-01.
    assert [(r["due"], r["adjusted"]) for r in rows] == [
        ("2026-05-16", False), ("2026-07-27", True), ("2026-09-21", True), ("2026-11-16", True)]
    assert "every 8 weeks (adjusted for this course: stable, risk-based)" in rows[1]["detail"]
    assert "every 1 month" in rows[0]["detail"]
    with freeze_time("2026-06-01"):
        course = mtx.json("patient show P1")["courses"][0]
        text = mtx("calendar P1 --from 2026-07-01 --to 2026-08-01").stdout
    assert course["adjust_every"] == "8w"
    assert "2026-07-27" in text

    from sqlalchemy import text as sql

    from tracker.db.engine import make_engine, resolve_url

    engine = make_engine(resolve_url(mtx.db))
    with engine.connect() as conn:
        [(user, before, after)] = conn.execute(
            sql("SELECT \"user\", before, after FROM audit_event WHERE action = 'therapy.adjust'")).all()
    engine.dispose()
    assert user == "dr.who"
    assert json.loads(before) == {"adjust_every": None, "adjust_from": None, "adjust_reason": None}
    assert json.loads(after) == {"adjust_every": "8w", "adjust_from": "2026-06-01",
                                 "adjust_reason": "stable, risk-based"}


def test_adjust_from_a_date_in_an_earlier_phase_takes_effect_when_maintenance_starts(mtx):
    with freeze_time("2026-01-10"):
        mtx("therapy adjust P1 methotrexate --every 3m --reason 'stable' --from 2026-01-10")
        rows = labs(mtx)
    assert [r["due"] for r in rows] == ["2026-05-16", "2026-08-16", "2026-11-16"]
    assert [r["adjusted"] for r in rows] == [False, True, True]


def test_adjust_survives_a_dose_change_and_can_be_changed_again(mtx):
    with freeze_time("2026-06-01"):
        mtx("therapy adjust P1 methotrexate --every 8w --reason 'stable'")
        mtx("therapy dose P1 methotrexate --on 2026-06-01 --dose '20 mg weekly'")
        # 2-weekly to 07-13, monthly to 10-13, then 8-weekly from there.
        assert [r["due"] for r in labs(mtx, "2026-10-01", "2027-02-28")] == ["2026-10-13", "2026-12-08", "2027-02-02"]
        mtx("therapy adjust P1 methotrexate --every 6w --reason 'creatinine drifting' --from 2026-06-01")
        assert [r["due"] for r in labs(mtx, "2026-10-01", "2027-02-28")] == ["2026-10-13", "2026-11-24", "2027-01-05",
                                                                             "2027-02-16"]
        live = [(r["due"], r["kind"], tuple(r["tests"])) for r in mtx.json("calendar P1")]
    assert len(live) == len(set(live))


BAD = [
    ("P1 methotrexate --every 0w --reason x", "every"),
    ("P1 methotrexate --every -2w --reason x", "every"),
    ("P1 methotrexate --every soon --reason x", "every"),
    ("P1 methotrexate --every 8w --reason ' '", "reason"),
    ("P1 methotrexate --every 8w --reason x --from 2025-12-01", "from"),
    ("P1 methotrexate --every 8w --reason x --from 2026-02-30", "from"),
    ("P2 dupilumab --every 8w --reason x", "drug"),  # no open-ended monitoring phase
    ("P1 dupilumab --every 8w --reason x", "drug"),
    ("P9 methotrexate --every 8w --reason x", "mrn"),
]


def test_bad_adjustments_are_refused_with_one_line_and_change_nothing(mtx):
    snapshot = dump_database(mtx.db)
    for args, field in BAD:
        with freeze_time("2026-06-01"):
            out = mtx(f"therapy adjust {args}", ok=False)
        assert out.exit_code != 0, args
        assert out.stderr.startswith(f"error: {field}:") and out.stderr.count("\n") == 1, (args, out.stderr)
    assert dump_database(mtx.db) == snapshot


def test_reason_is_required(mtx):
    out = mtx("therapy adjust P1 methotrexate --every 8w", ok=False)
    assert out.exit_code == 2 and "--reason" in out.stderr
