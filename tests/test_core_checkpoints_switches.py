"""Issue 14 items 3, 4, 6 and 7 in the pure core: checkpoint judgement and re-judgement, switch advice,
continuous steroid days, clinic defaults in alert texts. Plain dataclasses, the built-in protocols."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
import yaml

from tracker.core.algorithm import algorithm_problems, parse_algorithm
from tracker.core.chart import Chart, ChartCourse
from tracker.core.review import continuous_run, limit_candidates, review
from tracker.core.response import evaluate_checkpoint
from tracker.core.settings import AlertSettings
from tracker.protocol_files import load_algorithm, load_library
from tracker.resources import schedules_dir

D = dt.date
SETTINGS = AlertSettings()


@dataclass
class Assessment:
    id: int
    assessed_on: dt.date
    easi: float | None = None
    dlqi: int | None = None
    iga: int | None = None
    itch_nrs: float | None = None
    poem: int | None = None


@dataclass
class Item:
    id: int
    course_id: int
    due: dt.date
    kind: str = "checkpoint"
    status: str = "planned"
    week: int | None = 16
    origin: str = "plan"
    patient_id: int = 1
    drug: str = "dupilumab"
    title: str = "checkpoint"
    sources: str = ""


@dataclass
class Stopped:
    drug: str
    start_on: dt.date
    stop_on: dt.date
    stop_category: str | None = None


@pytest.fixture(scope="module")
def library():
    return load_library()


@pytest.fixture(scope="module")
def algorithm():
    return load_algorithm()


START = D(2026, 1, 5)
WEEK16 = START + dt.timedelta(weeks=16)


def course(library, drug="dupilumab", course_id=1, start=START):
    return ChartCourse(course_id, 1, drug, "active", start, library.get(drug))


def judge(library, drug, assessments, today=WEEK16, item=None, week=16):
    c = course(library, drug)
    item = item or Item(1, c.id, START + dt.timedelta(weeks=week), week=week, drug=drug)
    return evaluate_checkpoint(c.protocol, item, c, assessments, today, SETTINGS)


# -- item 3: a target is met only when every criterion was measured and met ----------------------------------


def test_easi_met_without_dlqi_is_unevaluable_not_met(library):
    outcome = judge(library, "dupilumab", [Assessment(1, D(2026, 1, 2), easi=20, dlqi=12),
                                           Assessment(2, WEEK16, easi=9)])
    assert outcome.status == "unevaluable"
    alert = outcome.alert
    assert alert.condition_key == "checkpoint_unevaluable:item1" and alert.kind == "checkpoint_missed"
    assert alert.message.startswith("unevaluable: DLQI not recorded")


def test_dlqi_only_without_easi_is_unevaluable(library):
    outcome = judge(library, "upadacitinib", [Assessment(1, D(2026, 1, 2), easi=20, dlqi=12),
                                              Assessment(2, WEEK16, dlqi=2)])
    assert outcome.status == "unevaluable" and outcome.alert.message.startswith("unevaluable: EASI not recorded")


def test_a_measured_criterion_missed_fails_whatever_is_missing(library):
    outcome = judge(library, "dupilumab", [Assessment(1, D(2026, 1, 2), easi=30, dlqi=12),
                                           Assessment(2, WEEK16, easi=20)])
    assert outcome.status == "failed" and "not recorded: DLQI" in outcome.alert.message


def test_every_criterion_measured_and_met_is_met(library):
    outcome = judge(library, "dupilumab", [Assessment(1, D(2026, 1, 2), easi=20, dlqi=12),
                                           Assessment(2, WEEK16, easi=9, dlqi=6)])
    assert outcome.status == "met" and outcome.alert is None


def test_the_assessment_closest_to_the_due_date_decides(library):
    week14 = Assessment(2, WEEK16 - dt.timedelta(days=14), easi=25, dlqi=11)  # fails
    week16 = Assessment(3, WEEK16, easi=5, dlqi=3)  # EASI-75
    outcome = judge(library, "dupilumab", [Assessment(1, D(2026, 1, 2), easi=20, dlqi=12), week14, week16],
                    today=WEEK16)
    assert outcome.status == "met" and outcome.assessment is week16


def test_a_judged_checkpoint_is_judged_again_on_a_closer_assessment(library):
    done = Item(1, 1, WEEK16, status="done")
    base = Assessment(1, D(2026, 1, 2), easi=20, dlqi=12)
    week14 = Assessment(2, WEEK16 - dt.timedelta(days=14), easi=25, dlqi=11)
    assert judge(library, "dupilumab", [base, week14], item=done).status == "failed"
    met = judge(library, "dupilumab", [base, week14, Assessment(3, WEEK16, easi=5, dlqi=3)], item=done)
    assert met.status == "met"
    # A closer assessment that cannot judge it leaves the earlier judgement standing.
    unjudgeable = judge(library, "dupilumab", [base, week14, Assessment(3, WEEK16, easi=5)], item=done)
    assert unjudgeable.status == "pending" and unjudgeable.alert is None


def _chart(library, drug, items, assessments, **extra):
    return Chart(1, "M1", "f", "no", courses=(course(library, drug),), items=tuple(items),
                 assessments=tuple(assessments), **extra)


def test_review_clears_the_failure_of_a_checkpoint_judged_again_as_met(library, algorithm):
    chart = _chart(library, "dupilumab", [Item(7, 1, WEEK16, status="done")],
                   [Assessment(1, D(2026, 1, 2), easi=20, dlqi=12), Assessment(3, WEEK16, easi=5, dlqi=3)])
    result = review(chart, WEEK16, SETTINGS, algorithm, library.vocabulary)
    assert [j.status for j in result.judged] == ["met"]
    assert [(c.course_id, c.item_ids) for c in result.cleared] == [(1, (7,))]
    assert result.alerts == ()


def test_a_met_week16_settles_baricitinib_week8_review_failure(library, algorithm):
    item = Item(9, 1, WEEK16, drug="baricitinib")
    chart = _chart(library, "baricitinib", [item],
                   [Assessment(1, D(2026, 1, 2), easi=20, dlqi=12), Assessment(3, WEEK16, easi=8, dlqi=4)])
    chart = Chart(1, "M1", "f", "no", None, (course(library, "baricitinib"),), (item,), {}, chart.assessments)
    cleared = review(chart, WEEK16, SETTINGS, algorithm, library.vocabulary).cleared
    assert len(cleared) == 1 and cleared[0].weeks == (8,)
    assert cleared[0].reason == f"week 16 target met on the assessment of {WEEK16}"


def test_lebrikizumab_failure_books_a_week24_recheck_instead_of_a_bare_stop(library):
    outcome = judge(library, "lebrikizumab", [Assessment(1, D(2026, 1, 2), easi=20, dlqi=12),
                                              Assessment(2, WEEK16, easi=15, dlqi=10)])
    assert outcome.status == "failed"
    assert "stop unless the response is partial" in outcome.alert.message
    assert outcome.follow_up is not None and outcome.follow_up.week == 24
    assert outcome.follow_up.due == START + dt.timedelta(weeks=24) and outcome.follow_up.origin == "partial"
    assert f"re-check is booked for {START + dt.timedelta(weeks=24)}" in outcome.alert.message


def test_a_met_partial_recheck_settles_its_checkpoint_failure(library, algorithm):
    recheck = Item(11, 1, START + dt.timedelta(weeks=24), week=24, origin="partial", drug="lebrikizumab")
    chart = Chart(1, "M1", "f", "no", None, (course(library, "lebrikizumab"),), (recheck,), {},
                  (Assessment(1, D(2026, 1, 2), easi=20, dlqi=12), Assessment(2, recheck.due, easi=8, dlqi=5)))
    result = review(chart, recheck.due, SETTINGS, algorithm, library.vocabulary)
    assert [j.status for j in result.judged] == ["met"]
    assert result.cleared[0].weeks == (16,)


def test_the_methotrexate_failure_alert_carries_the_protocols_decision_note(library):
    outcome = judge(library, "methotrexate", [Assessment(1, D(2026, 1, 2), easi=20),
                                              Assessment(2, START + dt.timedelta(weeks=12), easi=18)], week=12,
                    today=START + dt.timedelta(weeks=12))
    assert outcome.status == "failed" and "consider switching to subcutaneous before stopping" in outcome.alert.message
    assert "EASI-50 (clinic default)" in outcome.alert.message  # item 7: the target no source gives


# -- item 4: switch advice ----------------------------------------------------------------------------------


def test_an_adverse_event_stop_of_a_jak_leaves_out_the_class_saying_why(algorithm):
    advice = algorithm.advise("dupilumab", "biologic", {"upadacitinib"}, adverse_event_drugs={"upadacitinib"})
    assert not {"upadacitinib", "abrocitinib", "baricitinib"} & set(advice.options)
    assert "tralokinumab" in advice.options
    assert any("left out: abrocitinib, baricitinib (upadacitinib stopped for an adverse event" in n
               for n in advice.notes)
    failure_only = algorithm.advise("dupilumab", "biologic", {"upadacitinib"})
    assert "abrocitinib" in failure_only.options and failure_only.notes == ()


def test_jak_suggestions_for_a_patient_aged_65_or_over_carry_the_restriction(algorithm):
    old = algorithm.advise("dupilumab", "biologic", set(), age=76)
    assert any(n.startswith("upadacitinib, abrocitinib, baricitinib for a patient aged 76: EU restriction")
               and "CIBINQO-NO-SAFETY" in n for n in old.notes)
    assert algorithm.advise("dupilumab", "biologic", set(), age=64).notes == ()


def test_review_passes_the_advice_into_the_failure_alert(library, algorithm):
    chart = _chart(library, "dupilumab", [Item(1, 1, WEEK16)],
                   [Assessment(1, D(2026, 1, 2), easi=20, dlqi=12), Assessment(2, WEEK16, easi=18, dlqi=11)],
                   dob=D(1950, 3, 1), adverse_event_drugs=frozenset({"baricitinib"}),
                   failed_drugs=frozenset({"baricitinib"}))
    [alert] = review(chart, WEEK16, SETTINGS, algorithm, library.vocabulary).alerts
    assert alert.kind == "checkpoint_failed"
    assert "upadacitinib" not in alert.suggestions and "left out: upadacitinib, abrocitinib" in alert.message


def test_chart_age_counts_whole_years():
    chart = Chart(1, dob=D(1950, 6, 15))
    assert chart.age_on(D(2026, 6, 14)) == 75 and chart.age_on(D(2026, 6, 15)) == 76
    assert Chart(1).age_on(D(2026, 1, 1)) is None


def test_the_built_in_algorithm_names_every_class_and_drug_of_the_library(library, algorithm):
    drugs = set(library.protocols)
    classes = {p.drug_class for p in library.protocols.values()}
    assert algorithm_problems(algorithm, drugs, classes) == []


def test_algorithm_problems_catch_a_class_typo_and_a_missing_class():
    data = yaml.safe_load((schedules_dir() / "_algorithm.yaml").read_text())
    data["after_class"]["jak"] = data["after_class"].pop("jak_inhibitor")
    problems = algorithm_problems(parse_algorithm(data), {"dupilumab", "upadacitinib", "abrocitinib",
                                                          "baricitinib", "tralokinumab", "lebrikizumab",
                                                          "nemolizumab", "nbuvb", "methotrexate", "ciclosporin",
                                                          "prednisolone"},
                                  {"jak_inhibitor", "biologic"})
    messages = [m for _, m in problems]
    assert "unknown class 'jak'; did you mean 'jak_inhibitor'?" in messages
    assert "no entry for class 'jak_inhibitor' (every class needs one)" in messages


# -- item 6: continuous steroid days across back-to-back courses --------------------------------------------


def test_continuous_run_joins_courses_at_most_the_gap_apart():
    now = ChartCourse(2, 1, "prednisolone", "active", D(2026, 3, 7), None)
    day6 = Stopped("prednisolone", D(2026, 3, 1), D(2026, 3, 6))  # stopped on day 6, restarted the next day
    assert continuous_run(now, [day6], 3) == (D(2026, 3, 1), 6)
    three_off = Stopped("prednisolone", D(2026, 2, 25), D(2026, 3, 3))  # 3 days off (4, 5, 6 March)
    assert continuous_run(now, [three_off], 3) == (D(2026, 2, 25), 7)
    four_off = Stopped("prednisolone", D(2026, 2, 25), D(2026, 3, 2))
    assert continuous_run(now, [four_off], 3) == (D(2026, 3, 7), 0)
    other_drug = Stopped("methotrexate", D(2026, 3, 1), D(2026, 3, 6))
    assert continuous_run(now, [other_drug], 3) == (D(2026, 3, 7), 0)
    chain = [Stopped("prednisolone", D(2026, 2, 20), D(2026, 2, 22)), day6]  # 6 days off, then 22-24 Feb
    assert continuous_run(now, chain, 3) == (D(2026, 3, 1), 6)
    chain = [Stopped("prednisolone", D(2026, 2, 24), D(2026, 2, 27)), day6]  # 1 day off (28 Feb)
    assert continuous_run(now, chain, 3) == (D(2026, 2, 24), 10)


def test_the_steroid_limit_counts_the_days_of_a_course_restarted_the_next_day(library):
    protocol = library.get("prednisolone")
    now = ChartCourse(2, 1, "prednisolone", "active", D(2026, 3, 7), protocol)
    limit = Item(5, 2, D(2026, 3, 14), kind="limit", week=None, drug="prednisolone")
    earlier = [Stopped("prednisolone", D(2026, 3, 1), D(2026, 3, 6))]
    assert limit_candidates(protocol, now, limit, D(2026, 3, 7), 14) == []  # alone: day 1 of 7
    [alert] = limit_candidates(protocol, now, limit, D(2026, 3, 8), 14, earlier)  # day 8 of the run
    assert alert.condition_key == "limit:course2:past" and alert.severity == "critical"
    assert "continuous since 2026-03-01" in alert.message and "day 8" in alert.message
    assert "maximum of 7 days (clinic default)" in alert.message
    [near] = limit_candidates(protocol, now, limit, D(2026, 3, 7), 14, earlier)
    assert near.condition_key == "limit:course2:near" and "2026-03-08" in near.message


# -- item 7: clinic defaults and sources ----------------------------------------------------------------------


def test_nbuvb_course_length_is_a_clinic_default_warning(library):
    protocol = library.get("nbuvb")
    assert protocol.limits.clinic_default and protocol.limits.severity == "warning"
    assert protocol.limits.sources == []  # "around 6-8 weeks" is a typical length, not a maximum
    now = ChartCourse(3, 1, "nbuvb", "active", START, protocol)
    limit = Item(6, 3, START + dt.timedelta(weeks=8), kind="limit", week=None, drug="nbuvb")
    [alert] = limit_candidates(protocol, now, limit, limit.due, 14)
    assert alert.severity == "warning" and "8 weeks (clinic default)" in alert.message


def test_the_steroid_limit_cites_only_the_product_default(library):
    limits = library.get("prednisolone").limits
    assert limits.sources == ["product-default"] and limits.clinic_default
    assert limits.join_courses_within is not None and limits.join_courses_within.approx_days() == 3


def test_clinic_default_words_for_items_and_thresholds(library):
    from tracker.core.defaults import item_clinic_defaults, threshold_words

    ciclosporin = library.get("ciclosporin")
    bp = [t for t in ciclosporin.thresholds if t.clinic_default]
    assert bp and all(threshold_words(t).endswith("(clinic default)") for t in bp)
    sourced = [t for t in ciclosporin.thresholds if not t.clinic_default][0]
    assert "clinic default" not in threshold_words(sourced)
    assert item_clinic_defaults(ciclosporin, "checkpoint", week=8) == ("week 8 target",)
    assert item_clinic_defaults(library.get("dupilumab"), "checkpoint", week=16) == ()
    assert item_clinic_defaults(library.get("tralokinumab"), "checkpoint", week=24, origin="partial") == (
        "week 24 partial re-check",)
    assert item_clinic_defaults(library.get("lebrikizumab"), "checkpoint", week=24, origin="partial") == ()


@pytest.mark.parametrize("section, spec, message", [
    ("class_effects", {"jak_inhibitor": {"clinic_default": True}}, "class_effects.jak_inhibitor: expected `note:"),
    ("class_effects", {"jak_inhibitor": {"note": "why"}}, "class_effects.jak_inhibitor: cite sources or mark"),
    ("restrictions", {"jak_inhibitor": {"text": "words", "sources": ["s"]}}, "restrictions.jak_inhibitor: expected"),
    ("restrictions", {"jak_inhibitor": {"min_age": 65, "text": "w", "sources": ["x"]}}, "unknown source key 'x'"),
])
def test_a_malformed_class_effect_or_restriction_is_a_one_line_error(section, spec, message):
    from tracker.errors import ConfigError

    data = {"sources": {"s": {"citation": "c"}}, "groups": {"jak_inhibitor": ["upadacitinib"]}, section: spec}
    with pytest.raises(ConfigError) as error:
        parse_algorithm(data, "_algorithm.yaml")
    assert message in str(error.value) and "\n" not in str(error.value)
