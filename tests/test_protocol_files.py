"""The shipped protocol library: every file validates, and each drug's first year is pinned.

Golden timelines live in tests/golden/timelines/<drug>.txt, one line per planned item (week, day offset,
date, kind, tests or target). After an intended change to a protocol or the planner, regenerate them with

    UPDATE_GOLDEN=1 .venv/bin/pytest -q tests/test_protocol_files.py

and review the diff like any other change: each line is a date a clinic will see.
The explicit tests below check the timelines against ../shared/clinical-reference.md.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from tracker.protocol_files import load_library
from tracker.schedule_validation import validate_paths
from tracker.resources import schedules_dir
from tracker.services.schedule_view import protocol_timeline

GOLDEN = Path(__file__).parent / "golden" / "timelines"
START = dt.date(2025, 1, 6)  # a Monday
DRUGS = [
    "abrocitinib", "apremilast", "azathioprine", "baricitinib", "ciclosporin", "dupilumab", "lebrikizumab",
    "methotrexate", "mycophenolate", "nbuvb", "nemolizumab", "prednisolone", "tralokinumab", "upadacitinib",
]
NICE_TARGET = "EASI-50 and DLQI reduced >= 4 points"
JAK_INHIBITORS = ["upadacitinib", "abrocitinib", "baricitinib"]
BIOLOGICS = ["dupilumab", "tralokinumab", "lebrikizumab", "nemolizumab"]


@pytest.fixture(scope="module")
def library():
    return load_library()


def timeline(library, drug: str) -> list[dict]:
    return protocol_timeline(library.get(drug), weeks=52, start=START)


def render(library, drug: str) -> str:
    protocol = library.get(drug)
    lines = [
        f"# {protocol.id} v{protocol.version}: first 52 weeks from Monday {START.isoformat()}",
        "# week  day   date        kind                  what",
    ]
    for row in timeline(library, drug):
        kind = row["kind"] + (f" ({row['gate']})" if row["gate"] else "")
        what = ", ".join(row["tests"]) if row["tests"] else (row["target"] or row["title"])
        week = f"{row['week']:g}"
        lines.append(f"{week:<6}{'+' + str(row['day']):<6}{row['date']}  {kind:<22}{what}".rstrip())
    return "\n".join(lines) + "\n"


def checkpoints(library, drug: str) -> list[dict]:
    return [r for r in timeline(library, drug) if r["kind"] == "checkpoint"]


def test_every_shipped_file_validates():
    reports = validate_paths([schedules_dir()])
    assert [p for r in reports for p in r.problems] == []
    assert sorted(r.protocol.id for r in reports if r.protocol) == DRUGS


@pytest.mark.parametrize("drug", DRUGS)
def test_golden_timeline(library, drug):
    path = GOLDEN / f"{drug}.txt"
    text = render(library, drug)
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden file for {drug}: run with UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{drug}'s timeline changed; if intended, regenerate with UPDATE_GOLDEN=1"


@pytest.mark.parametrize("drug", BIOLOGICS)
def test_biologics_are_checked_at_week_16_against_the_nice_target(library, drug):
    rows = checkpoints(library, drug)
    assert [(r["week"], r["date"], r["target"]) for r in rows] == [(16, "2025-04-28", NICE_TARGET)]
    # No lab monitoring for biologics: nothing but baselines and the checkpoint.
    assert {r["kind"] for r in timeline(library, drug)} <= {"baseline", "checkpoint"}
    checkpoint = library.get(drug).checkpoints[0]
    assert checkpoint.if_not_met == "stop"


def test_lebrikizumab_partial_responders_continue_to_week_24(library):
    partial = library.get("lebrikizumab").checkpoints[0].partial
    assert partial.recheck_week == 24
    assert not partial.clinic_default  # EU SmPC gives week 24
    for drug in ("tralokinumab", "nemolizumab"):
        partial = library.get(drug).checkpoints[0].partial
        assert partial is not None and partial.clinic_default  # the labels give no recheck week


def test_jak_inhibitor_checkpoints_as_chosen(library):
    # upadacitinib: NICE 16 chosen over EU 12; abrocitinib: NICE 16 chosen over EU 24.
    for drug in ("upadacitinib", "abrocitinib"):
        rows = checkpoints(library, drug)
        assert [(r["week"], r["target"]) for r in rows] == [(16, NICE_TARGET)]
        assert "NICE-814" in rows[0]["sources"]
    # baricitinib: NICE - assess from week 8, stop at week 16.
    rows = checkpoints(library, "baricitinib")
    assert [(r["week"], r["date"]) for r in rows] == [(8, "2025-03-03"), (16, "2025-04-28")]
    assert [c.if_not_met for c in library.get("baricitinib").checkpoints] == ["review", "stop"]


@pytest.mark.parametrize("drug", JAK_INHIBITORS)
def test_jak_inhibitors_gate_on_tb_hepatitis_and_blood_count(library, drug):
    hard = {tuple(r["tests"])[0] for r in timeline(library, drug) if r["gate"] == "hard"}
    assert {"tb", "hbv", "hcv", "cbc"} <= hard
    protocol = library.get(drug)
    refuse = {(t.analyte, t.below) for t in protocol.thresholds if t.action == "refuse"}
    # Label units converted to the vocabulary's: ANC < 1000/mm3 -> 1.0 x10^9/L, Hb < 8 g/dL -> 80 g/L.
    assert {("neutrophils", 1.0), ("lymphocytes", 0.5), ("hb", 80)} <= refuse
    interrupt = {(t.analyte, t.below) for t in protocol.thresholds if t.action == "interrupt"}
    assert {("neutrophils", 1.0), ("lymphocytes", 0.5), ("hb", 80)} <= interrupt


def test_jak_routine_blood_count_interval_is_a_marked_clinic_default(library):
    for drug in JAK_INHIBITORS:
        track = library.get(drug).monitoring.tracks[0]
        assert "cbc" in track.tests
        open_ended = track.phases[-1]
        assert open_ended.every is not None and open_ended.clinic_default


def test_jak_lipids_at_the_label_week(library):
    lipid_days = {drug: [r["day"] for r in timeline(library, drug) if "lipids" in r["tests"] and r["kind"] == "lab"]
                  for drug in JAK_INHIBITORS}
    assert lipid_days == {"upadacitinib": [84], "abrocitinib": [28], "baricitinib": [84]}


def test_methotrexate_checkpoint_at_12_weeks_and_bsr_schedule(library):
    rows = checkpoints(library, "methotrexate")
    assert [(r["week"], r["date"]) for r in rows] == [(12, "2025-03-31")]
    labs = [r["date"] for r in timeline(library, "methotrexate") if r["kind"] == "lab"]
    # Every 2 weeks until the dose is stable for 6 weeks, monthly for 3 months, then every 12 weeks.
    assert labs[:6] == ["2025-01-20", "2025-02-03", "2025-02-17", "2025-03-17", "2025-04-17", "2025-05-17"]
    assert labs[6:] == ["2025-08-09", "2025-11-01"]


def test_azathioprine_needs_tpmt_before_starting(library):
    hard = [r for r in timeline(library, "azathioprine") if r["gate"] == "hard"]
    assert [(r["day"], r["tests"]) for r in hard] == [(0, ["tpmt"])]
    refusals = [t for t in library.get("azathioprine").thresholds if t.action == "refuse"]
    assert [(t.analyte, t.equals) for t in refusals] == [("tpmt", ["absent"])]


def test_mycophenolate_excludes_pregnancy_before_starting(library):
    rule = next(r for r in library.get("mycophenolate").baseline if "pregnancy" in r.tests)
    assert (rule.gate, rule.when, rule.times) == ("hard", "childbearing_potential", 2)


def test_prednisolone_limit_at_day_7_is_a_product_and_clinic_default(library):
    rows = timeline(library, "prednisolone")
    assert [(r["kind"], r["day"]) for r in rows] == [("limit", 7)]
    limits = library.get("prednisolone").limits
    assert limits.clinic_default and "product-default" in limits.sources
    assert library.get("prednisone").id == "prednisolone"


def test_course_limits(library):
    assert [(r["kind"], r["day"]) for r in timeline(library, "nbuvb")] == [("limit", 56)]
    # Ciclosporin: UK licence 8 weeks chosen (BAD 16 weeks in a comment).
    limit = [r for r in timeline(library, "ciclosporin") if r["kind"] == "limit"]
    assert [(r["day"], r["sources"]) for r in limit] == [(56, ["RVI-CSA"])]


def test_ciclosporin_renal_rule_and_sps_schedule(library):
    protocol = library.get("ciclosporin")
    renal = [(t.analyte, t.fall_pct, t.action, t.confirmed) for t in protocol.thresholds if t.fall_pct]
    assert renal == [("egfr", 25, "reduce_dose", True), ("egfr", 35, "reduce_dose", True)]
    rows = timeline(library, "ciclosporin")
    creatinine = [r["date"] for r in rows if r["kind"] == "lab" and "creatinine" in r["tests"]]
    # SPS: creatinine/GFR every 2 weeks for 3 months (to 2025-04-06), then monthly for 3 months; once stable
    # it continues with the monthly bloods (`cmp` includes creatinine and eGFR).
    assert creatinine == ["2025-01-20", "2025-02-03", "2025-02-17", "2025-03-03", "2025-03-17", "2025-03-31",
                          "2025-05-06", "2025-06-06", "2025-07-06"]
    cmp = [r["date"] for r in rows if r["kind"] == "lab" and "cmp" in r["tests"]]
    assert cmp[-3:] == ["2025-10-17", "2025-11-17", "2025-12-17"]
    assert protocol.monitoring.restart_on_dose_change


def test_csdmard_checkpoints_are_clinic_defaults(library):
    for drug, week in (("azathioprine", 12), ("mycophenolate", 12), ("ciclosporin", 8), ("apremilast", 12)):
        (checkpoint,) = library.get(drug).checkpoints
        assert (checkpoint.week, checkpoint.clinic_default) == (week, True)


def test_every_rule_cites_a_defined_source(library):
    for protocol in library:
        for rule in protocol._rules():
            assert rule.sources or rule.clinic_default, protocol.id
            assert set(rule.sources) <= set(protocol.sources), protocol.id
