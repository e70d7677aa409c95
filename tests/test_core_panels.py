"""Issue 13, items 5, 6, 8 and the planning half of 2, on plain data in the core: when a draw is complete
(core/panels.py), baseline gates' "result completing a baseline item", pauses moving one-off draws
(core/plan.py), both readings of an advisory `times: 2` rule, and ciclosporin's mean renal baseline
(core/chart.py)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest

from tests.core_support import Result
from tracker.core.chart import Chart, ChartCourse, build_results
from tracker.core.gates import baseline_result
from tracker.core.panels import (
    Requirement,
    complete_days,
    describe_missing,
    is_complete,
    item_state,
    missing,
    nearest_draw,
)
from tracker.core.plan import CourseFacts, PatientFacts, Pause, plan_course, shift_for_pauses
from tracker.core.review import overdue_candidate
from tracker.core.vocabulary import parse_vocabulary
from tracker.errors import InputError
from tracker.protocol_files import load_library

LIBRARY = load_library()
VOCABULARY = LIBRARY.vocabulary
D = dt.date.fromisoformat


@dataclass
class Draw:
    id: int
    due: dt.date


@dataclass
class Item:
    id: int
    kind: str
    due: dt.date
    status: str
    title: str
    tests: str
    received: str | None
    patient_id: int = 1
    drug: str = "methotrexate"
    course_id: int = 1
    sources: str = ""


# --- what makes a panel complete ---------------------------------------------------------------------------


def test_a_single_analyte_does_not_complete_a_cbc_and_cmp_draw():
    needs = missing(["cbc", "cmp"], ["alt"], VOCABULARY)
    assert [n.text() for n in needs] == ["cbc: wbc", "cbc: neutrophils", "cbc: lymphocytes", "cbc: platelets",
                                         "cbc: hb", "cmp: creatinine or egfr", "cmp: albumin"]
    assert describe_missing(needs) == ("cbc: wbc, neutrophils, lymphocytes, platelets, hb; "
                                       "cmp: creatinine or egfr, albumin")
    assert describe_missing(needs, VOCABULARY).endswith("albumin (panel requirements: clinic default)")
    assert describe_missing(missing(["tpmt"], [], VOCABULARY), VOCABULARY) == "tpmt"
    assert not is_complete(["cbc", "cmp"], ["alt"], VOCABULARY)


def test_either_alternative_satisfies_a_requirement():
    cbc = ["wbc", "neutrophils", "lymphocytes", "platelets", "hb"]
    assert is_complete(["cbc", "cmp"], [*cbc, "ast", "egfr", "albumin"], VOCABULARY)
    assert is_complete(["cbc", "cmp"], [*cbc, "alt", "creatinine", "albumin"], VOCABULARY)
    assert is_complete(["lipids"], ["total_cholesterol", "ldl", "triglycerides"], VOCABULARY)
    assert [n.text() for n in missing(["lipids"], ["total_cholesterol", "triglycerides"], VOCABULARY)] == [
        "lipids: hdl or ldl"]
    assert [n.text() for n in missing(["bp"], ["bp_systolic"], VOCABULARY)] == ["bp: bp_diastolic"]


def test_eosinophils_and_mcv_are_optional_in_a_cbc_and_alone_complete_nothing():
    assert not is_complete(["cbc"], ["mcv", "eosinophils"], VOCABULARY)
    assert is_complete(["cbc"], ["wbc", "neutrophils", "lymphocytes", "platelets", "hb"], VOCABULARY)


def test_single_tests_need_themselves_and_a_note_under_a_panels_own_code_completes_nothing():
    assert [n.text() for n in missing(["cbc", "alt", "ast"], ["alt"], VOCABULARY)][-1] == "ast"
    # `result add X cbc normal` (or `cbc banana`) is a note, no count (finding B8): every analyte still missing.
    assert not is_complete(["cbc"], ["cbc"], VOCABULARY) and not is_complete(["cmp"], ["cmp"], VOCABULARY)
    assert [n.text() for n in missing(["cbc"], ["cbc"], VOCABULARY)] == [
        "cbc: wbc", "cbc: neutrophils", "cbc: lymphocytes", "cbc: platelets", "cbc: hb"]
    assert is_complete(["cbc"], ["cbc", "wbc", "neutrophils", "lymphocytes", "platelets", "hb"], VOCABULARY)
    assert missing(["tpmt"], [], VOCABULARY) == (Requirement("tpmt", ("tpmt",)),)


def test_item_state_is_partial_only_for_a_planned_item_with_something_received():
    assert item_state("planned", ["cbc"], [], VOCABULARY) == "planned"
    assert item_state("planned", ["cbc"], ["wbc"], VOCABULARY) == "partial"
    assert item_state("done", ["cbc"], ["wbc"], VOCABULARY) == "done"
    assert item_state("planned", ["cbc"], ["cbc"], VOCABULARY) == "partial"  # a panel note only


def test_a_panel_without_required_needs_every_analyte_and_required_must_name_its_analytes():
    vocabulary = parse_vocabulary({"tests": {"p": {"analytes": ["a", "b"]}, "a": {"unit": "g/L"},
                                             "b": {"unit": "g/L"}}})
    assert [n.text() for n in missing(["p"], ["a"], vocabulary)] == ["p: b"]
    with pytest.raises(InputError, match="tests.p.required: 'c': is not an analyte of p"):
        parse_vocabulary({"tests": {"p": {"analytes": ["a", "b"], "required": ["a", ["b", "c"]]}}})


def test_the_shipped_panels_mark_their_requirements_as_clinic_defaults():
    import yaml

    from tracker.resources import schedules_dir

    data = yaml.safe_load((schedules_dir() / "vocabulary.yaml").read_text())
    for code in ("cbc", "cmp", "lipids", "bp"):
        assert data["tests"][code]["required"] and data["tests"][code]["clinic_default"] is True


# --- which draw a result counts for; readings on days ------------------------------------------------------


def test_a_result_counts_for_the_nearest_draw_whose_window_has_opened():
    draws = [Draw(1, D("2026-01-19")), Draw(2, D("2026-02-02")), Draw(3, D("2026-02-16"))]
    assert nearest_draw(draws, D("2026-01-12")).id == 1  # 7 days early still counts
    assert nearest_draw(draws, D("2026-01-11")) is None  # too early for any
    assert nearest_draw(draws, D("2026-01-26")).id == 1  # tie (7 days each way): the earlier
    assert nearest_draw(draws, D("2026-01-27")).id == 2


def test_complete_days_count_days_each_complete_on_their_own():
    results = [Result(1, "bp_systolic", 120, D("2026-01-01")), Result(2, "bp_diastolic", 80, D("2026-01-01")),
               Result(3, "bp_systolic", 125, D("2026-01-08")), Result(4, "bp_diastolic", 82, D("2026-01-09"))]
    assert complete_days(results, ["bp"], VOCABULARY) == [D("2026-01-01")]


# --- baseline gates: the result completing a baseline item -------------------------------------------------


def chart(*results, sex="m") -> Chart:
    return Chart(1, "P1", sex, False, results=build_results(results))


def test_one_mcv_does_not_complete_a_jak_baseline_cbc():
    protocol = LIBRARY.get("upadacitinib")
    start = D("2026-03-02")
    assert baseline_result(chart(Result(1, "mcv", 90, D("2026-02-25"))), protocol, ["cbc"], start,
                           VOCABULARY) is None
    full = [Result(i, code, 5, D("2026-02-25")) for i, code in
            enumerate(["wbc", "neutrophils", "lymphocytes", "platelets"], start=1)]
    assert baseline_result(chart(*full), protocol, ["cbc"], start, VOCABULARY) is None
    done = baseline_result(chart(*full, Result(9, "hb", 130, D("2026-02-26"))), protocol, ["cbc"], start,
                           VOCABULARY)
    assert done.id == 9  # analytes on different days within the rule's window combine


def test_ciclosporin_blood_pressure_readings_each_need_a_complete_day():
    protocol = LIBRARY.get("ciclosporin")
    start = D("2026-03-02")
    first_day = [Result(1, "bp_systolic", 120, D("2026-02-10")), Result(2, "bp_diastolic", 80, D("2026-02-10"))]
    one = chart(*first_day)
    assert baseline_result(one, protocol, ["bp"], start, VOCABULARY, reading=1).id == 2
    assert baseline_result(one, protocol, ["bp"], start, VOCABULARY, reading=2) is None
    assert baseline_result(one, protocol, ["bp"], start, VOCABULARY) is None  # a single item needs both
    two = chart(*first_day, Result(3, "bp_systolic", 124, D("2026-02-24")),
                Result(4, "bp_diastolic", 82, D("2026-02-24")))
    assert baseline_result(two, protocol, ["bp"], start, VOCABULARY, reading=1).id == 2  # the first day's
    assert baseline_result(two, protocol, ["bp"], start, VOCABULARY, reading=2).id == 4


# --- a partial draw's overdue alert -------------------------------------------------------------------------


def test_a_partial_draw_is_overdue_like_a_missed_one_and_its_alert_names_what_is_missing():
    item = Item(7, "lab", D("2026-01-19"), "planned", "Methotrexate monitoring: CBC, CMP", "cbc cmp", "alt")
    alert = overdue_candidate(item, D("2026-01-30"), 7, VOCABULARY)
    assert alert.condition_key == "overdue:item7"
    assert alert.message == ("Methotrexate monitoring: CBC, CMP was due 2026-01-19 and is 11 days overdue "
                             "(partial: missing cbc: wbc, neutrophils, lymphocytes, platelets, hb; "
                             "cmp: creatinine or egfr, albumin (panel requirements: clinic default))")
    missed = Item(8, "lab", D("2026-01-19"), "planned", "Methotrexate monitoring: CBC, CMP", "cbc cmp", None)
    assert overdue_candidate(missed, D("2026-01-30"), 7, VOCABULARY).message.endswith("11 days overdue")


# --- advisory `times: 2`: both readings planned --------------------------------------------------------------


def test_ciclosporin_plans_both_baseline_readings_of_bp_and_creatinine():
    facts = CourseFacts(start=D("2026-03-02"), patient=PatientFacts(sex="m"))
    baseline = [i for i in plan_course(LIBRARY.get("ciclosporin"), facts, D("2026-04-01")) if i.kind == "baseline"]
    readings = [(i.tests, i.reading, i.title) for i in baseline if i.reading is not None]
    assert readings == [
        (("bp",), 1, "Baseline BP before Ciclosporin (advisory, reading 1 of 2)"),
        (("bp",), 2, "Baseline BP before Ciclosporin (advisory, reading 2 of 2)"),
        (("creatinine",), 1, "Baseline creatinine before Ciclosporin (advisory, reading 1 of 2)"),
        (("creatinine",), 2, "Baseline creatinine before Ciclosporin (advisory, reading 2 of 2)"),
        (("egfr",), 1, "Baseline EGFR before Ciclosporin (advisory, reading 1 of 2)"),
        (("egfr",), 2, "Baseline EGFR before Ciclosporin (advisory, reading 2 of 2)"),
    ]
    assert len({i.key for i in baseline}) == len(baseline)


def test_a_hard_gate_with_times_2_stays_one_item():
    facts = CourseFacts(start=D("2026-03-02"), patient=PatientFacts(sex="f", childbearing_potential=True))
    pregnancy = [i for i in plan_course(LIBRARY.get("mycophenolate"), facts, D("2026-04-01"))
                 if i.tests == ("pregnancy",)]
    assert [(i.kind, i.reading) for i in pregnancy] == [("baseline", None)]


# --- pauses move one-off draws --------------------------------------------------------------------------------


def labs(drug: str, facts: CourseFacts, until: str) -> list[tuple[str, tuple]]:
    return [(i.due.isoformat(), i.tests) for i in plan_course(LIBRARY.get(drug), facts, D(until))
            if i.kind == "lab"]


def test_abrocitinib_4_week_cbc_and_lipids_move_past_a_pause_instead_of_being_dropped():
    start = D("2026-01-05")
    plain = labs("abrocitinib", CourseFacts(start=start), "2026-06-30")
    assert plain[0] == ("2026-02-02", ("cbc", "lipids"))
    paused = CourseFacts(start=start, pauses=(Pause(D("2026-01-26"), D("2026-02-09")),))  # 14 days over week 4
    got = labs("abrocitinib", paused, "2026-06-30")
    assert got[0] == ("2026-02-16", ("cbc", "lipids"))  # week 4 of treatment: 02-02 + 14 days
    # The first 3-monthly CBC (4 weeks + 3 months) moves by the same 14 days.
    assert ("2026-05-02", ("cbc",)) in plain and ("2026-05-16", ("cbc",)) in got


def test_upadacitinib_12_week_lipids_move_past_a_pause():
    start = D("2026-01-05")
    facts = CourseFacts(start=start, pauses=(Pause(D("2026-03-20"), D("2026-04-10")),))  # 21 days over week 12
    got = labs("upadacitinib", facts, "2026-12-31")
    assert ("2026-04-20", ("lipids",)) in got  # 2026-03-30 + 21 days
    assert all(tests != ("lipids",) or day == "2026-04-20" for day, tests in got)
    # The first 3-monthly CBC and liver enzymes (2026-04-05, inside the pause) move by the same 21 days.
    assert got[1] == ("2026-04-26", ("cbc", "alt", "ast"))


def test_a_pause_after_a_one_off_draw_changes_nothing_before_it():
    start = D("2026-01-05")
    facts = CourseFacts(start=start, pauses=(Pause(D("2026-02-10"), D("2026-02-20")),))
    assert labs("abrocitinib", facts, "2026-03-01")[0] == ("2026-02-02", ("cbc", "lipids"))


def test_a_pause_beginning_on_the_day_of_a_one_off_draw_moves_it():
    facts = CourseFacts(start=D("2026-01-05"), pauses=(Pause(D("2026-02-02"), D("2026-02-05")),))
    assert labs("abrocitinib", facts, "2026-03-01")[0] == ("2026-02-05", ("cbc", "lipids"))


def test_a_one_off_draw_while_still_paused_waits_for_the_resume():
    facts = CourseFacts(start=D("2026-01-05"), pauses=(Pause(D("2026-01-26")),))
    assert labs("abrocitinib", facts, "2026-12-31") == []


def test_shift_for_pauses_counts_only_pauses_that_begin_before_the_day():
    facts = CourseFacts(start=D("2026-01-01"), pauses=(Pause(D("2026-01-10"), D("2026-01-20")),
                                                       Pause(D("2026-02-15"), D("2026-02-18"))))
    assert shift_for_pauses(facts, D("2026-01-09")) == D("2026-01-09")
    assert shift_for_pauses(facts, D("2026-02-10")) == D("2026-02-23")  # +10, now past the second pause: +3
    assert shift_for_pauses(facts, D("2026-02-01")) == D("2026-02-11")


# --- the mean renal baseline ----------------------------------------------------------------------------------


def course_on(drug: str, start: str) -> ChartCourse:
    return ChartCourse(1, 1, drug, "active", D(start), LIBRARY.get(drug))


def test_ciclosporin_creatinine_baseline_is_the_mean_of_the_latest_two_pre_start_readings():
    results = [Result(1, "creatinine", 70, D("2025-06-01")), Result(2, "creatinine", 80, D("2025-12-20")),
               Result(3, "creatinine", 84, D("2026-01-04")), Result(4, "creatinine", 120, D("2026-02-01"))]
    baseline = chart(*results).lab_baseline(course_on("ciclosporin", "2026-01-05"), "creatinine")
    assert baseline.value_num == 82 and [r.id for r in baseline.readings] == [2, 3]
    assert baseline.describe() == "baseline 82 (mean of 2 readings: 2025-12-20, 2026-01-04)"


def test_with_one_reading_the_baseline_says_two_are_wanted():
    baseline = chart(Result(1, "egfr", 90, D("2026-01-04"))).lab_baseline(course_on("ciclosporin", "2026-01-05"),
                                                                          "egfr")
    assert baseline.value_num == 90
    assert baseline.describe() == "baseline 90 (mean of 1 reading: 2026-01-04; 2 wanted)"


def test_other_protocols_keep_the_latest_single_result_as_baseline():
    results = [Result(1, "creatinine", 70, D("2025-12-20")), Result(2, "creatinine", 90, D("2026-01-04"))]
    baseline = chart(*results).lab_baseline(course_on("methotrexate", "2026-01-05"), "creatinine")
    assert baseline.value_num == 90 and baseline.describe() == "baseline 90"


def test_the_percent_change_rules_use_the_mean_and_say_so():
    from tracker.core.alerts import AlertSettings
    from tracker.core.algorithm import Algorithm
    from tracker.core.review import review

    results = [Result(1, "creatinine", 70, D("2025-12-20")), Result(2, "creatinine", 90, D("2026-01-04")),
               Result(3, "creatinine", 105, D("2026-02-01"))]  # +31% vs the mean 80; +17% vs the latest 90
    c = Chart(1, "P1", "m", False, courses=(course_on("ciclosporin", "2026-01-05"),),
              results=build_results(results))
    alerts = review(c, D("2026-02-02"), AlertSettings(), Algorithm(), VOCABULARY).alerts
    rise = [a for a in alerts if "creatinine+30%" in a.condition_key]
    assert len(rise) == 1
    assert "+31% vs baseline 80 (mean of 2 readings: 2025-12-20, 2026-01-04)" in rise[0].message


def test_counted_for_asks_nearest_draw_among_the_draws_open_when_the_result_came():
    import types

    from tracker.core.panels import counted_for

    day, booked = dt.date(2026, 1, 26), dt.datetime(2026, 1, 5)

    def draw(id, due, status="planned", done_on=None, created_at=booked):
        return types.SimpleNamespace(id=id, due=dt.date.fromisoformat(due), status=status,
                                     done_on=dt.date.fromisoformat(done_on) if done_on else None, created_at=created_at)

    first, second = draw(1, "2026-01-19", "done", "2026-01-26"), draw(2, "2026-02-02")
    arrived = dt.datetime(2026, 1, 26, 9)
    assert not counted_for(second, day, arrived, [first, second])  # a tie, to the earlier draw open then
    assert counted_for(second, day, arrived, [draw(1, "2026-01-19", "done", "2026-01-20"), second])  # done before
    assert counted_for(second, day, arrived, [draw(1, "2026-01-19", created_at=dt.datetime(2026, 1, 27)), second])
    assert not counted_for(second, dt.date(2026, 1, 20), arrived, [second])  # due too late for it
