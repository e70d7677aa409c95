"""Issue 13, on plain data: gates read the value, results expire, spacing, childbearing potential yes / no /
unknown, a hard CBC gate needs the analytes the initiation limits read, initiation limits act only at a
start, and a screen that does not pass during a course alerts."""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass

import pytest

from tracker.core.chart import Chart, ChartCourse, build_results
from tracker.core.gates import (
    course_gate_candidates,
    gate_findings,
    may_conceive,
    open_gate_findings,
    refusing_results,
    required_members,
    screening_candidates,
)
from tracker.core.prefilter import threshold_bounds
from tracker.core.protocol import BaselineTest
from tracker.core.thresholds import threshold_candidates
from tracker.protocol_files import load_library

START = dt.date(2026, 3, 2)
_ids = itertools.count(1)


@dataclass
class Result:
    test: str
    value_num: float | None
    value_text: str | None
    taken_on: dt.date
    unit: str | None = None
    ref_high: float | None = None
    id: int = 0

    def __post_init__(self):
        self.id = self.id or next(_ids)


def res(test: str, value, on: str) -> Result:
    day = dt.date.fromisoformat(on)
    if isinstance(value, str):
        return Result(test, None, value, day)
    return Result(test, float(value), None, day)


def chart(*results, sex="m", childbearing="unknown", dob=dt.date(1990, 1, 1), courses=()) -> Chart:
    return Chart(1, "P1", sex, childbearing, dob, tuple(courses), results=build_results(results))


@pytest.fixture(scope="module")
def lib():
    return load_library()


def jak_cbc(on: str):
    return [res("lymphocytes", 1.8, on), res("neutrophils", 3.1, on), res("hb", 135, on)]


def screens(on: str, tb="negative", hbv="negative", hcv="negative"):
    return [res("tb", tb, on), res("hbv", hbv, on), res("hcv", hcv, on)]


def whys(findings) -> list[str]:
    return [f.why for f in findings]


# --- childbearing potential --------------------------------------------------------------------------------

def test_childbearing_yes_no_unknown():
    on = dt.date(2026, 3, 2)
    assert may_conceive("m", "yes", dt.date(1960, 1, 1), on)  # recorded yes always counts
    assert not may_conceive("f", "no", dt.date(1996, 1, 1), on)
    assert may_conceive("f", "unknown", dt.date(1996, 1, 1), on)  # 30: unknown counts as yes
    assert not may_conceive("f", "unknown", dt.date(1960, 1, 1), on)  # 66
    assert not may_conceive("f", "unknown", dt.date(2015, 1, 1), on)  # 11
    assert may_conceive("f", "unknown", dt.date(2014, 3, 2), on)  # 12 today
    assert may_conceive("f", "unknown", dt.date(1970, 3, 3), on)  # still 55
    assert not may_conceive("f", "unknown", dt.date(1970, 3, 2), on)  # 56 today
    assert not may_conceive("m", "unknown", dt.date(1996, 1, 1), on)
    assert not may_conceive(None, "unknown", dt.date(1996, 1, 1), on)
    assert not may_conceive("f", "unknown", dt.date(1976, 1, 1), on, ages=(12, 45))  # configurable


# --- gates read the value ----------------------------------------------------------------------------------

def test_positive_screens_refuse_a_jak_start_naming_test_value_and_date(lib):
    c = chart(*screens("2026-02-25", tb="positive", hbv="positive", hcv="positive"), *jak_cbc("2026-02-25"))
    findings = gate_findings(c, lib.get("upadacitinib"), START, lib.vocabulary)
    assert [(f.test, f.status) for f in findings] == [("tb", "fail"), ("hbv", "fail"), ("hcv", "fail")]
    assert findings[0].why == "tb positive on 2026-02-25 does not pass (passes: negative)"
    assert "hbv positive on 2026-02-25 does not pass (passes: negative, immune)" in findings[1].why


def test_indeterminate_asks_to_repeat_or_refer_and_immune_hbv_passes(lib):
    c = chart(*screens("2026-02-25", tb="indeterminate", hbv="immune"), *jak_cbc("2026-02-25"))
    findings = gate_findings(c, lib.get("upadacitinib"), START, lib.vocabulary)
    assert whys(findings) == ["tb indeterminate on 2026-02-25: repeat or refer"]


def test_the_latest_result_counts(lib):
    c = chart(res("tb", "positive", "2026-01-10"), res("tb", "negative", "2026-02-20"),
              *screens("2026-02-25")[1:], *jak_cbc("2026-02-25"))
    assert gate_findings(c, lib.get("upadacitinib"), START, lib.vocabulary) == []


def test_results_after_the_start_do_not_count_for_it(lib):
    c = chart(*screens("2026-03-05"), *jak_cbc("2026-03-05"))
    statuses = {f.test: f.status for f in gate_findings(c, lib.get("upadacitinib"), START, lib.vocabulary)}
    assert statuses == {"tb": "missing", "hbv": "missing", "hcv": "missing", "cbc": "incomplete"}


# --- results expire ----------------------------------------------------------------------------------------

def test_a_2019_tb_screen_and_cbc_do_not_satisfy_a_2026_jak_start(lib):
    c = chart(*screens("2019-05-01"), *jak_cbc("2019-05-01"))
    findings = gate_findings(c, lib.get("upadacitinib"), START, lib.vocabulary)
    assert findings[0].why == "tb negative on 2019-05-01 is older than 3 months (clinic default)"
    assert [f.status for f in findings] == ["stale"] * 4
    assert "hb 135 on 2019-05-01 is older than 4 weeks (clinic default)" in findings[3].why


def test_validity_is_counted_in_calendar_months(lib):
    protocol = lib.get("upadacitinib")
    fresh = chart(*screens("2025-12-02"), *jak_cbc("2026-02-02"))
    assert gate_findings(fresh, protocol, START, lib.vocabulary) == []  # exactly 3 months / 4 weeks
    old = chart(*screens("2025-12-01"), *jak_cbc("2026-02-01"))
    assert [f.test for f in gate_findings(old, protocol, START, lib.vocabulary)] == ["tb", "hbv", "hcv", "cbc"]


def test_every_baseline_item_has_a_validity_marked_where_it_is_a_clinic_default(lib):
    for protocol in lib:
        for rule in protocol.baseline:
            if set(rule.tests) & {"tpmt", "nudt15"}:
                assert rule.valid_for is None  # an enzyme activity or genotype result stands
                continue
            assert rule.valid_for is not None, (protocol.id, rule.tests)
            if rule.tests != ["cxr"]:
                assert rule.is_clinic_default("valid_for"), (protocol.id, rule.tests)
    cxr = next(r for r in lib.get("methotrexate").baseline if r.tests == ["cxr"])
    assert str(cxr.valid_for) == "1y" and not cxr.is_clinic_default("valid_for")  # "within previous year"


# --- times and spacing -------------------------------------------------------------------------------------

MMF_WOMAN = dict(sex="f", childbearing="yes")


@pytest.mark.parametrize("days,status,text", [
    (["2023-05-01", "2023-05-02"], "stale", "pregnancy negative on 2023-05-02 is older than 14 days"),
    (["2026-02-28"], "missing", "pregnancy (2 results needed, 1 on record within 14 days (clinic default))"),
    (["2026-02-27", "2026-02-28"], "spacing",
     "on 2026-02-27 and 2026-02-28 are 1 day apart, need 8 days to 10 days"),
    (["2026-02-16", "2026-02-28"], "spacing", "are 12 days apart"),
    (["2026-02-17", "2026-02-26"], "spacing",
     "pregnancy negative on 2026-02-26 is more than 3 days before the start on 2026-03-02"),
])
def test_mycophenolate_pregnancy_tests_8_to_10_days_apart_the_second_just_before_the_start(lib, days, status,
                                                                                          text):
    c = chart(*(res("pregnancy", "negative", d) for d in days), **MMF_WOMAN)
    [finding] = gate_findings(c, lib.get("mycophenolate"), START, lib.vocabulary)
    assert finding.status == status and text in finding.why


@pytest.mark.parametrize("days", [["2026-02-19", "2026-02-28"], ["2026-02-20", "2026-02-28"],
                                  ["2026-02-01", "2026-02-20", "2026-03-01"]])
def test_mycophenolate_starts_on_well_spaced_recent_negative_tests(lib, days):
    c = chart(*(res("pregnancy", "negative", d) for d in days), **MMF_WOMAN)
    assert gate_findings(c, lib.get("mycophenolate"), START, lib.vocabulary) == []


def test_mycophenolate_refuses_on_a_positive_pregnancy_test(lib):
    c = chart(res("pregnancy", "negative", "2026-02-20"), res("pregnancy", "positive", "2026-02-28"), **MMF_WOMAN)
    [finding] = gate_findings(c, lib.get("mycophenolate"), START, lib.vocabulary)
    assert finding.why == "pregnancy positive on 2026-02-28 does not pass (passes: negative)"


def test_spacing_fields_are_checked():
    with pytest.raises(ValueError, match="times: 2"):
        BaselineTest(tests=["pregnancy"], min_gap="8d", clinic_default=True)
    with pytest.raises(ValueError, match="shorter"):
        BaselineTest(tests=["pregnancy"], times=2, min_gap="10d", max_gap="8d", clinic_default=True)
    with pytest.raises(ValueError, match="not a field"):
        BaselineTest(tests=["pregnancy"], sources=["X"], clinic_default=["valid_fro"])


# --- pregnancy gates by childbearing potential ------------------------------------------------------------

@pytest.mark.parametrize("drug", ["methotrexate", "mycophenolate"])
def test_pregnancy_gate_applies_to_an_unasked_woman_of_30_not_to_one_of_60_or_a_man(lib, drug):
    protocol = lib.get(drug)

    def gated(**who):
        return "pregnancy" in [f.test for f in gate_findings(chart(**who), protocol, START, lib.vocabulary)]

    assert gated(sex="f", childbearing="unknown", dob=dt.date(1996, 1, 1))
    assert not gated(sex="f", childbearing="unknown", dob=dt.date(1960, 1, 1))
    assert not gated(sex="f", childbearing="no", dob=dt.date(1996, 1, 1))
    assert not gated(sex="m", childbearing="unknown", dob=dt.date(1996, 1, 1))


def test_methotrexate_pregnancy_test_is_a_hard_gate_citing_its_contraindication(lib):
    rule = next(r for r in lib.get("methotrexate").baseline if r.tests == ["pregnancy"])
    assert (rule.gate, rule.when) == ("hard", "childbearing_potential")
    assert {"SEED-SYSTEMIC-AD", "SEED-IMMUNO-QA"} <= set(rule.sources)
    c = chart(res("pregnancy", "negative", "2026-02-25"), sex="f", childbearing="yes")
    assert gate_findings(c, lib.get("methotrexate"), START, lib.vocabulary) == []


# --- a hard CBC gate needs the analytes of the initiation limits -------------------------------------------

def test_one_mcv_does_not_satisfy_a_jak_cbc_gate(lib):
    protocol = lib.get("abrocitinib")
    assert required_members(protocol, "cbc", lib.vocabulary) == ["neutrophils", "lymphocytes", "platelets", "hb"]
    c = chart(*screens("2026-02-25"), res("mcv", 90, "2026-02-25"), res("neutrophils", 3.0, "2026-02-25"))
    [finding] = gate_findings(c, protocol, START, lib.vocabulary)
    assert finding.status == "incomplete"
    assert finding.why == "cbc incomplete for the initiation limits: no lymphocytes, platelets, hb result"


def test_initiation_limits_refuse_on_pre_start_results_within_the_gate_validity(lib):
    protocol = lib.get("abrocitinib")
    low = chart(res("platelets", 120, "2026-02-25"))
    [reason] = refusing_results(low, protocol, START, lib.vocabulary)
    assert reason.startswith("platelets 120 10^9/L on 2026-02-25 (< 150 10^9/L): Do not initiate")
    assert refusing_results(chart(res("platelets", 120, "2025-06-01")), protocol, START, lib.vocabulary) == []
    assert refusing_results(chart(res("platelets", 120, "2026-03-05")), protocol, START, lib.vocabulary) == []


# --- initiation limits never alert during treatment ---------------------------------------------------------

def test_abrocitinib_platelets_120_at_week_4_raise_nothing_and_40_asks_to_discontinue(lib):
    protocol = lib.get("abrocitinib")
    course = ChartCourse(7, 1, "abrocitinib", "active", START, protocol)
    alerts, _ = threshold_candidates(protocol, course, res("platelets", 120, "2026-03-30"), None, 400)
    assert alerts == []
    alerts, _ = threshold_candidates(protocol, course, res("platelets", 40, "2026-03-30"), None, 400)
    assert [(a.severity, a.limit_text) for a in alerts] == [("critical", "< 50 10^9/L")]
    assert "do not give" not in alerts[0].message


def test_jak_interrupt_limits_still_act_during_treatment(lib):
    protocol = lib.get("upadacitinib")
    course = ChartCourse(7, 1, "upadacitinib", "active", START, protocol)
    alerts, _ = threshold_candidates(protocol, course, res("neutrophils", 0.8, "2026-04-01"), None, 7.5)
    assert ["interrupt" in a.message for a in alerts] == [True]


# --- an overridden gate stays open until a passing result ---------------------------------------------------

def overridden(protocol, course_id=5):
    return ChartCourse(course_id, 1, protocol.id, "active", START, protocol, gate_override="IGRA pending")


def test_override_keeps_the_gate_open_until_a_passing_result_and_a_positive_never_closes_it(lib):
    protocol = lib.get("baricitinib")
    course = overridden(protocol)
    pre = [*screens("2026-02-25")[1:], *jak_cbc("2026-02-25")]
    today = dt.date(2026, 3, 20)
    assert whys(open_gate_findings(chart(*pre, courses=[course]), course, lib.vocabulary, today)) == [
        "no tb result on record"]
    positive = chart(*pre, res("tb", "positive", "2026-03-10"), courses=[course])
    [finding] = open_gate_findings(positive, course, lib.vocabulary, today)
    assert finding.status == "fail" and "tb positive on 2026-03-10" in finding.why
    negative = chart(*pre, res("tb", "negative", "2026-03-10"), courses=[course])
    assert open_gate_findings(negative, course, lib.vocabulary, today) == []


# --- a screen that does not pass during a course ------------------------------------------------------------

@pytest.mark.parametrize("drug,test,who", [
    ("upadacitinib", "tb", {}),
    ("baricitinib", "tb", {}),
    ("upadacitinib", "pregnancy", {"sex": "f", "childbearing": "yes"}),
    ("abrocitinib", "pregnancy", {"sex": "f", "childbearing": "yes"}),  # during_treatment
    ("baricitinib", "pregnancy", {"sex": "f", "childbearing": "unknown"}),
    ("methotrexate", "pregnancy", {"sex": "f", "childbearing": "unknown"}),
    ("mycophenolate", "pregnancy", {"sex": "f", "childbearing": "yes"}),
])
def test_a_positive_screen_during_a_course_is_a_critical_alert(lib, drug, test, who):
    protocol = lib.get(drug)
    course = ChartCourse(9, 1, drug, "active", START, protocol)
    c = chart(res(test, "positive", "2026-05-01"), courses=[course], **who)
    [alert] = screening_candidates(c, course, lib.vocabulary)
    assert alert.severity == "critical" and alert.kind == "gate"
    assert f"{test} positive on 2026-05-01 during treatment" in alert.message
    assert alert.condition_key.startswith(f"screen:course9:{test}:result")
    cleared = chart(res(test, "positive", "2026-05-01"), res(test, "negative", "2026-05-08"), courses=[course],
                    **who)
    assert screening_candidates(cleared, course, lib.vocabulary) == []


def test_a_screen_before_the_start_or_not_screened_for_raises_nothing_during_the_course(lib):
    protocol = lib.get("dupilumab")
    course = ChartCourse(9, 1, "dupilumab", "active", START, protocol)
    assert screening_candidates(chart(res("tb", "positive", "2026-05-01")), course, lib.vocabulary) == []
    jak = ChartCourse(9, 1, "upadacitinib", "active", START, lib.get("upadacitinib"))
    assert screening_candidates(chart(res("tb", "positive", "2026-03-01")), jak, lib.vocabulary) == []


def test_pregnancy_during_treatment_is_read_only_for_those_who_may_conceive(lib):
    course = ChartCourse(9, 1, "abrocitinib", "active", START, lib.get("abrocitinib"))
    c = chart(res("pregnancy", "positive", "2026-05-01"), sex="f", childbearing="no", courses=[course])
    assert screening_candidates(c, course, lib.vocabulary) == []


# --- one gate reading: initiation limits, same-day conflicts, overrides and screens (session 20 findings) ---


def test_an_overridden_cbc_gate_reads_the_initiation_limits_as_the_start_does(lib):
    # A2: the start refuses platelets 120 for abrocitinib; the overridden gate's alert accepted them.
    protocol = lib.get("abrocitinib")
    course = overridden(protocol)
    cbc = [res("wbc", 6, "2026-03-01"), *jak_cbc("2026-03-01")]
    low = chart(*screens("2026-02-25"), *cbc, res("platelets", 120, "2026-03-01"), courses=[course])
    [reason] = refusing_results(low, protocol, START, lib.vocabulary)
    [at_start] = gate_findings(low, protocol, START, lib.vocabulary)
    [finding] = open_gate_findings(low, course, lib.vocabulary, dt.date(2026, 3, 20))
    assert finding.status == at_start.status == "fail" and finding.why == at_start.why == reason
    assert reason.startswith("platelets 120 10^9/L on 2026-03-01 (< 150 10^9/L): Do not initiate")
    recovered = chart(*screens("2026-02-25"), *cbc, res("platelets", 120, "2026-03-01"),
                      *jak_cbc("2026-03-10"), res("platelets", 210, "2026-03-10"), courses=[course])
    assert open_gate_findings(recovered, course, lib.vocabulary, dt.date(2026, 3, 20)) == []


def test_an_absent_tpmt_keeps_the_overridden_gate_open_and_alerts_during_a_course(lib):
    # A1: "Absent TPMT activity: should not receive thiopurines" [SPS-AZA], whenever it is recorded.
    protocol = lib.get("azathioprine")
    course = overridden(protocol)
    absent = chart(res("tpmt", "absent", "2026-03-20"), courses=[course])
    [finding] = open_gate_findings(absent, course, lib.vocabulary, dt.date(2026, 3, 21))
    assert finding.status == "fail" and "tpmt absent on 2026-03-20" in finding.why
    assert "should not receive thiopurines" in finding.why
    [alert] = course_gate_candidates(absent, course, lib.vocabulary, dt.date(2026, 3, 21))
    assert alert.condition_key.startswith("gate:course5:tpmt:result") and alert.severity == "critical"
    plain = ChartCourse(6, 1, "azathioprine", "active", START, protocol)
    later = chart(res("tpmt", "normal", "2026-02-01"), res("tpmt", "absent", "2026-03-20"), courses=[plain])
    [alert] = screening_candidates(later, plain, lib.vocabulary)
    assert alert.severity == "critical" and alert.kind == "gate"
    assert "tpmt absent on 2026-03-20 during treatment" in alert.message
    assert "should not receive thiopurines" in alert.message
    # Reduced activity is dosing guidance (a threshold warning), not a screen that fails.
    assert screening_candidates(chart(res("tpmt", "low", "2026-03-20")), plain, lib.vocabulary) == []
    # The whole-clinic prefilter admits the result.
    assert threshold_bounds([protocol], lib.vocabulary)["tpmt"].may_breach(None, "absent", None)


@pytest.mark.parametrize("order", ["positive first", "negative first"])
def test_same_day_conflicting_screens_are_read_on_the_worst_whatever_the_entry_order(lib, order):
    # A4: a negative IGRA entered after a positive one the same day hid it.
    protocol = lib.get("upadacitinib")
    tb = [res("tb", "positive", "2026-02-25"), res("tb", "negative", "2026-02-25")]
    if order == "negative first":
        tb.reverse()
    c = chart(*tb, *screens("2026-02-25")[1:], *jak_cbc("2026-02-25"))
    [finding] = gate_findings(c, protocol, START, lib.vocabulary)
    assert finding.status == "fail" and finding.why == (
        "tb positive on 2026-02-25 does not pass (passes: negative) (same day also: tb negative; conflicting "
        "results, the worst counts)")


@pytest.mark.parametrize("values", [(0.8, 3), (3, 0.8)])
def test_same_day_conflicting_counts_refuse_on_the_worst(lib, values):
    protocol = lib.get("upadacitinib")
    c = chart(*[res("neutrophils", v, "2026-02-25") for v in values])
    [reason] = refusing_results(c, protocol, START, lib.vocabulary)
    assert reason.startswith("neutrophils 0.8 10^9/L on 2026-02-25 (< 1 10^9/L)")
    assert reason.endswith("(same day also: neutrophils 3; conflicting results, the worst counts)")


def test_same_day_absent_and_normal_tpmt_refuse_azathioprine(lib):
    protocol = lib.get("azathioprine")
    c = chart(res("tpmt", "absent", "2026-02-25"), res("tpmt", "normal", "2026-02-25"))
    [reason] = refusing_results(c, protocol, START, lib.vocabulary)
    assert reason.startswith("tpmt absent on 2026-02-25") and "same day also: tpmt normal" in reason


def test_same_day_conflicting_screens_during_a_course_alert_on_the_worst(lib):
    course = ChartCourse(9, 1, "upadacitinib", "active", START, lib.get("upadacitinib"))
    c = chart(res("tb", "positive", "2026-05-01"), res("tb", "negative", "2026-05-01"), courses=[course])
    [alert] = screening_candidates(c, course, lib.vocabulary)
    assert "tb positive on 2026-05-01 (same day also: tb negative; conflicting results, the worst counts) during " \
           "treatment does not pass" in alert.message


def test_a_screen_alert_lasts_until_a_passing_result_an_indeterminate_does_not_end_it(lib):
    # A7: a later indeterminate IGRA resolved the positive's alert.
    protocol = lib.get("upadacitinib")
    course = ChartCourse(9, 1, "upadacitinib", "active", START, protocol)
    positive, indeterminate = res("tb", "positive", "2026-05-01"), res("tb", "indeterminate", "2026-05-10")
    c = chart(positive, indeterminate, courses=[course])
    [alert] = screening_candidates(c, course, lib.vocabulary)
    # Keyed by the run's latest day (a new alert, so the news reaches a person), led by the worst result.
    assert alert.condition_key == f"screen:course9:tb:result{indeterminate.id}" and alert.result_id == positive.id
    assert alert.message == ("Upadacitinib (started 2026-03-02): tb positive on 2026-05-01 during treatment does "
                             "not pass (negative expected): review whether to continue; not passed either: tb "
                             "indeterminate on 2026-05-10: repeat or refer")
    cleared = chart(positive, res("tb", "indeterminate", "2026-05-10"), res("tb", "negative", "2026-05-20"),
                    courses=[course])
    assert screening_candidates(cleared, course, lib.vocabulary) == []
    again = res("tb", "positive", "2026-06-01")  # a new run: a new alert
    c = chart(positive, res("tb", "negative", "2026-05-20"), again, courses=[course])
    [alert] = screening_candidates(c, course, lib.vocabulary)
    assert alert.condition_key == f"screen:course9:tb:result{again.id}"


def test_an_overridden_gate_and_a_screen_of_the_same_test_are_one_alert(lib):
    # A6: the override alert kept "no tb result on record" beside a second critical alert for the positive.
    protocol = lib.get("upadacitinib")
    course = overridden(protocol)
    pre = [*screens("2026-02-25")[1:], *jak_cbc("2026-02-25")]
    c = chart(*pre, res("tb", "positive", "2026-03-10"), courses=[course])
    [alert] = course_gate_candidates(c, course, lib.vocabulary, dt.date(2026, 3, 20))
    assert alert.condition_key.startswith("gate:course5:tb:result") and alert.severity == "critical"
    assert "tb positive on 2026-03-10 does not pass (passes: negative); during treatment: review whether to " \
           "continue" in alert.message and "no tb result" not in alert.message
