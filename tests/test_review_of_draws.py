"""A chart whose items in the review windows are all planned lab draws and baseline tests is reviewed on the
dated rules from those items alone (tracker/core/review.py `review_of_draws`): the same overdue alerts,
and nothing else of those kinds, as `review` of the whole chart without results gives (hypothesis, over the
protocol library's courses); a review on the dated rules alone (`change_driven=False`, as a pass reviews its
dated group) is the dated part of the whole review, whatever the chart holds; and a pass's reviews of its
dated group, drawn from the windowed items where it may, are those of the charts loaded (a synthetic clinic,
SQLite or PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from collections import namedtuple

from freezegun import freeze_time
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlmodel import Session

from tracker.core.alerts import DATED_KINDS
from tracker.core.chart import Chart, ChartCourse
from tracker.core.review import (
    draws_alert_keys,
    draws_alerts_settled,
    partial_note,
    reads_draws_only,
    reviewed_from_draws,
    review,
    review_of_draws,
)
from tracker.core.settings import AlertSettings
from tracker.db.charts import StoppedCourse
from tracker.protocol_files import load_algorithm, load_library

LIBRARY = load_library()
ALGORITHM = load_algorithm(None)
DRUGS = sorted(LIBRARY.protocols)
TODAY = dt.date(2026, 11, 2)
TESTS = sorted(LIBRARY.vocabulary.tests)
Item = namedtuple("Item", "id course_id patient_id drug kind due status week origin title sources tests received")


@st.composite
def draw_charts(draw):
    """A patient's live courses, some stopped ones, and windowed items that are draws alone (of a live
    course, or of one that is not: a chart leaves those out), as of `today`."""
    today = TODAY + dt.timedelta(days=draw(st.integers(0, 400)))
    courses = []
    for course_id in range(1, draw(st.integers(1, 3)) + 1):
        drug = draw(st.sampled_from(DRUGS))
        start = today - dt.timedelta(days=draw(st.integers(0, 500)))
        stop = draw(st.one_of(st.none(), st.integers(1, 200).map(lambda d: today + dt.timedelta(days=d))))
        courses.append(ChartCourse(course_id, 1, drug, draw(st.sampled_from(["active", "paused"])), start,
                                   LIBRARY.get(drug), draw(st.sampled_from([None, "screen pending"])), stop))
    stopped = tuple(StoppedCourse(1, draw(st.sampled_from(DRUGS)), today - dt.timedelta(days=300),
                                  today - dt.timedelta(days=d), "failure", 50 + d, "stopped")
                    for d in draw(st.lists(st.integers(10, 200), max_size=2, unique=True)))
    items = []
    for item_id in range(1, draw(st.integers(0, 8)) + 1):
        course_id = draw(st.sampled_from([c.id for c in courses] + [99]))
        drug = next((c.drug for c in courses if c.id == course_id), "methotrexate")
        tests = draw(st.lists(st.sampled_from(TESTS), min_size=1, max_size=3, unique=True))
        received = draw(st.one_of(st.none(), st.lists(st.sampled_from(TESTS), min_size=1, max_size=4, unique=True)))
        due = today - dt.timedelta(days=draw(st.integers(0, 120)))
        items.append(Item(item_id, course_id, 1, drug, draw(st.sampled_from(["baseline", "lab"])), due, "planned",
                          None, "protocol", f"{drug} monitoring: {' '.join(tests)}", "bad-2017",
                          " ".join(tests), " ".join(received) if received else None))
    chart = Chart(1, "M1", draw(st.sampled_from(["f", "m", None])), draw(st.sampled_from(["yes", "no", "unknown"])),
                  draw(st.one_of(st.none(), st.dates(dt.date(1940, 1, 1), dt.date(2012, 1, 1)))), tuple(courses),
                  tuple(items), failed_drugs=frozenset(s[1] for s in stopped), stopped_courses=stopped)
    grace = draw(st.integers(0, 21))
    return chart, today, AlertSettings(overdue_grace_days=grace)


Result = namedtuple("Result", "id test value_num value_text unit taken_on ref_high")
Assessment = namedtuple("Assessment", "id assessed_on easi iga itch_nrs dlqi poem")
THRESHOLD_TESTS = sorted({t.analyte for p in LIBRARY.protocols.values() for t in p.thresholds} & set(TESTS))


@st.composite
def whole_charts(draw):
    """A chart as a full pass loads it: live courses (gates overridden or not), their checkpoints (planned,
    judged, partial re-checks), limits, draws, assessments and results (tests the thresholds read), and
    stopped courses, some stopped for failure or an adverse event, as of `today`."""
    today = TODAY + dt.timedelta(days=draw(st.integers(0, 400)))
    courses, items = [], []
    for course_id in range(1, draw(st.integers(1, 3)) + 1):
        drug = draw(st.sampled_from(DRUGS))
        protocol = LIBRARY.get(drug)
        start = today - dt.timedelta(days=draw(st.integers(0, 700)))
        stop = draw(st.one_of(st.none(), st.integers(1, 200).map(lambda d: today + dt.timedelta(days=d))))
        courses.append(ChartCourse(course_id, 1, drug, draw(st.sampled_from(["active", "paused"])), start, protocol,
                                   draw(st.sampled_from([None, "screen pending"])), stop))
        for checkpoint in protocol.checkpoints:
            weeks = [(checkpoint.week, "plan")]
            if checkpoint.partial is not None:
                weeks.append((checkpoint.partial.recheck_week, "partial"))
            for week, origin in weeks:
                if draw(st.booleans()):
                    items.append(Item(len(items) + 1, course_id, 1, drug, "checkpoint",
                                      start + dt.timedelta(weeks=week), draw(st.sampled_from(["planned", "done"])),
                                      week, origin, f"week {week}", "src", None, None))
        if protocol.limits is not None and draw(st.booleans()):
            items.append(Item(len(items) + 1, course_id, 1, drug, "limit",
                              today + dt.timedelta(days=draw(st.integers(-60, 60))), "planned", None, "plan",
                              "limit", "src", None, None))
        for _ in range(draw(st.integers(0, 3))):
            tests = draw(st.lists(st.sampled_from(TESTS), min_size=1, max_size=3, unique=True))
            items.append(Item(len(items) + 1, course_id, 1, drug, draw(st.sampled_from(["baseline", "lab"])),
                              today - dt.timedelta(days=draw(st.integers(0, 120))), "planned", None, "protocol",
                              "draw", "src", " ".join(tests), None))
    # Assessments on random days, and near the courses' starts and the checkpoints' due dates (to judge them).
    days = [today - dt.timedelta(days=draw(st.integers(0, 720))) for _ in range(draw(st.integers(0, 2)))]
    days += [c.start_on - dt.timedelta(days=draw(st.integers(0, 20))) for c in courses if draw(st.booleans())]
    days += [i.due + dt.timedelta(days=draw(st.integers(-10, 10))) for i in items
             if i.kind == "checkpoint" and draw(st.booleans())]
    measures = st.one_of(st.none(), st.integers(0, 30), st.integers(0, 30))
    assessments = tuple(Assessment(n, day, draw(measures), draw(st.one_of(st.none(), st.integers(0, 4))),
                                   draw(measures), draw(measures), draw(measures))
                        for n, day in enumerate(days, start=1))
    rows = sorted((Result(n, draw(st.sampled_from(THRESHOLD_TESTS)), draw(st.floats(0, 600)), None, None,
                          today - dt.timedelta(days=draw(st.integers(0, 800))), draw(st.sampled_from([None, 40.0])))
                   for n in range(1, draw(st.integers(0, 12)) + 1)), key=lambda r: (r.test, r.taken_on, r.id))
    results = {test: tuple(r for r in rows if r.test == test) for test in {r.test for r in rows}}
    stopped = tuple(StoppedCourse(1, draw(st.sampled_from(DRUGS)), today - dt.timedelta(days=300),
                                  today - dt.timedelta(days=d), draw(st.sampled_from(["failure", "adverse_event"])),
                                  50 + d, "stopped")
                    for d in draw(st.lists(st.integers(10, 200), max_size=2, unique=True)))
    chart = Chart(1, "M1", draw(st.sampled_from(["f", "m", None])), draw(st.sampled_from(["yes", "no", "unknown"])),
                  draw(st.one_of(st.none(), st.dates(dt.date(1940, 1, 1), dt.date(2012, 1, 1)))), tuple(courses),
                  tuple(items), results, assessments, failed_drugs=frozenset(s[1] for s in stopped),
                  adverse_event_drugs=frozenset(s[1] for s in stopped if s[4] == "adverse_event"),
                  stopped_courses=stopped)
    return chart, today, AlertSettings(overdue_grace_days=draw(st.integers(0, 21)))


@settings(max_examples=400, deadline=None)
@given(whole_charts())
def test_a_review_on_the_dated_rules_alone_is_the_dated_part_of_the_whole_review(case):
    """`review(..., change_driven=False)`, as a pass reviews its dated group: the whole review's alerts of the
    dated kinds, its judgements and cleared failures, and the follow-ups of the dated rules (all but the
    thresholds' repeat draws), whatever the chart holds (results too)."""
    chart, today, alert_settings = case
    whole = review(chart, today, alert_settings, ALGORITHM, LIBRARY.vocabulary)
    dated = review(chart, today, alert_settings, ALGORITHM, LIBRARY.vocabulary, change_driven=False)
    assert dated.alerts == tuple(a for a in whole.alerts if a.kind in DATED_KINDS)
    assert (dated.judged, dated.cleared) == (whole.judged, whole.cleared)
    assert dated.follow_ups == tuple(f for f in whole.follow_ups if f[1].origin != "threshold")


@settings(max_examples=300, deadline=None)
@given(draw_charts())
def test_a_review_of_draws_is_the_charts_review_on_the_dated_rules(case):
    chart, today, alert_settings = case
    assert reads_draws_only(chart.items)
    whole = review(chart, today, alert_settings, ALGORITHM, LIBRARY.vocabulary)
    drawn = review_of_draws(chart.patient_id, chart.items, {c.id: c.protocol.name for c in chart.courses}, today,
                            alert_settings, LIBRARY.vocabulary)
    assert drawn.alerts == tuple(a for a in whole.alerts if a.kind in DATED_KINDS)
    assert (whole.judged, whole.cleared, whole.follow_ups) == ((), (), ())
    assert (drawn.judged, drawn.cleared, drawn.follow_ups) == ((), (), ())


@settings(max_examples=300, deadline=None)
@given(draw_charts())
def test_the_keys_of_a_review_of_draws_are_those_of_its_alerts(case):
    chart, today, alert_settings = case
    names = {c.id: c.protocol.name for c in chart.courses}
    drawn = review_of_draws(chart.patient_id, chart.items, names, today, alert_settings, LIBRARY.vocabulary)
    assert draws_alert_keys(chart.items, names, today, alert_settings.overdue_grace_days) == {
        a.condition_key for a in drawn.alerts}


# How the first of the live alerts stands: open, acknowledged, cleared (awaiting acknowledgement), snoozed
# until later, or snoozed until a day that has come.
FIRST_ALERT = ("open", "acknowledged", "cleared", "snoozed", "snooze ended")


@settings(max_examples=400, deadline=None)
@given(draw_charts(), st.integers(0, 30), st.sampled_from(FIRST_ALERT), st.booleans())
def test_draws_are_settled_only_when_reconciling_their_alerts_would_change_nothing(case, days_since, first,
                                                                                    received_since):
    """The live alerts are those a review of the same draws raised `days_since` days ago (the first of them
    standing as `first`; raised before any code was received, with `received_since`). Settled means what
    services/review_apply.py `_reconcile` would find nothing to do about: the same keys, none cleared or
    snoozed past its end, each live text naming what is missing as today's alert would. With some items,
    nothing received, the first alert open, acknowledged or snoozed until later, and no day passed, they
    are; with no items, never."""
    chart, today, alert_settings = case
    names = {c.id: c.protocol.name for c in chart.courses}
    before = [item._replace(received=None) for item in chart.items] if received_since else chart.items
    then = review_of_draws(chart.patient_id, before, names, today - dt.timedelta(days=days_since),
                           alert_settings, LIBRARY.vocabulary)
    states = {"open": ("open", None, None), "acknowledged": ("acknowledged", None, None),
              "cleared": ("open", None, today), "snoozed": ("snoozed", today + dt.timedelta(days=3), None),
              "snooze ended": ("snoozed", today, None)}
    live = [(a.condition_key, *(states[first] if n == 0 else ("open", None, None)), a.message)
            for n, a in enumerate(then.alerts)]
    now = review_of_draws(chart.patient_id, chart.items, names, today, alert_settings, LIBRARY.vocabulary).alerts

    settled = draws_alerts_settled(chart.items, names, today, alert_settings, live, LIBRARY.vocabulary)

    if settled:
        texts = {key: message for key, _, _, _, message in live}
        assert {a.condition_key for a in now} == set(texts)
        assert all(cleared_on is None for _, _, _, cleared_on, _ in live)
        assert not any(status == "snoozed" and until <= today for _, status, until, _, _ in live)
        assert all(partial_note(texts[a.condition_key]) == partial_note(a.message) for a in now)
    if (days_since == 0 and (first in ("open", "acknowledged", "snoozed") or not live) and chart.items
            and not any(item.received for item in chart.items)):
        assert settled
    if not chart.items:  # no windowed item: charted (`reviewed_from_draws`), never settled by draws
        assert not settled


def test_a_draw_whose_title_holds_what_a_note_is_read_from_is_never_settled():
    """`partial_note` reads the whole text: a draw retitled to hold `(partial: ` has a note its live alert,
    raised under the old title, lacks (the reconciliation would rewrite the text)."""
    plain = Item(1, 1, 1, "methotrexate", "lab", TODAY - dt.timedelta(days=20), "planned", None, "protocol",
                 "Methotrexate monitoring: CBC", "", "cbc", None)
    names, grace = {1: "Methotrexate"}, AlertSettings(overdue_grace_days=7)
    live = [(a.condition_key, "open", None, None, a.message)
            for a in review_of_draws(1, [plain], names, TODAY, grace, LIBRARY.vocabulary).alerts]
    assert live and draws_alerts_settled([plain], names, TODAY, grace, live, LIBRARY.vocabulary)
    marked = plain._replace(title="Methotrexate monitoring: CBC (partial: see note)")
    assert partial_note(review_of_draws(1, [marked], names, TODAY, grace, LIBRARY.vocabulary).alerts[0].message)
    assert not draws_alerts_settled([marked], names, TODAY, grace, live, LIBRARY.vocabulary)


def test_a_chart_with_a_checkpoint_is_never_settled_by_its_draws():
    checkpoint = Item(2, 1, 1, "methotrexate", "checkpoint", TODAY, "planned", 12, "protocol", "Week 12", "", "", None)
    assert not draws_alerts_settled([checkpoint], {1: "Methotrexate"}, TODAY, AlertSettings(), [], LIBRARY.vocabulary)


def test_a_baseline_set_with_one_more_test_past_its_grace_period_is_not_settled():
    """Its key is the course's, as yesterday, but its text now lists two tests: the live alert's is rewritten."""
    def baseline(item_id, due, tests):
        return Item(item_id, 1, 1, "methotrexate", "baseline", due, "planned", None, "protocol", "t", "", tests, None)

    items = [baseline(1, TODAY - dt.timedelta(days=20), "cbc"), baseline(2, TODAY - dt.timedelta(days=8), "hbv")]
    names, grace = {1: "Methotrexate"}, AlertSettings(overdue_grace_days=7)
    yesterday = review_of_draws(1, items, names, TODAY - dt.timedelta(days=1), grace, LIBRARY.vocabulary).alerts
    live = [(a.condition_key, "open", None, None, a.message) for a in yesterday]
    assert [partial_note(message) for *_, message in live] == ["CBC"]

    assert not draws_alerts_settled(items, names, TODAY, grace, live, LIBRARY.vocabulary)
    today = [(a.condition_key, "open", None, None, a.message) for a in
             review_of_draws(1, items, names, TODAY, grace, LIBRARY.vocabulary).alerts]
    assert [partial_note(message) for *_, message in today] == ["CBC, HBV"]
    assert draws_alerts_settled(items, names, TODAY, grace, today, LIBRARY.vocabulary)


def test_a_checkpoint_a_limit_or_a_done_item_is_not_draws_only():
    def item(kind, status="planned"):
        return Item(1, 1, 1, "methotrexate", kind, TODAY, status, None, "protocol", "t", "", "cbc", None)

    assert reads_draws_only([item("lab"), item("baseline")])
    assert reads_draws_only([])
    for other in (item("checkpoint"), item("limit"), item("lab", "done"), item("checkpoint", "done")):
        assert not reads_draws_only([item("lab"), other])
        assert not reviewed_from_draws([item("lab"), other])
    # Reviewed from its draws: some items, all draws; a patient without any would have its chart loaded, and
    # is never settled by its draws.
    assert reviewed_from_draws([item("lab"), item("baseline")])
    assert not reviewed_from_draws([]) and not reviewed_from_draws(None)
    assert not draws_alerts_settled([], set(), TODAY, AlertSettings(), [], LIBRARY.vocabulary)


def test_a_passs_dated_group_drawn_from_its_windowed_items_is_reviewed_as_its_charts(tracker, db_url):
    """On a synthetic clinic, a pass's reviews of its dated group (the shortcut for draws alone) are, patient for
    patient, the core's reviews of the charts loaded, on the dated rules; most of the group is drawn."""
    from tracker.db.charts import ProtocolsOfCourses, draws_reviews, load_charts, windowed_items
    from tracker.db.engine import open_engine
    from tracker.services.chart_reviews import review_charts

    with freeze_time(TODAY.isoformat()):
        tracker("synth --patients 600 --seed 7")
    day = TODAY + dt.timedelta(days=1)
    alert_settings = AlertSettings()
    engine = open_engine(db_url)
    with Session(engine) as session:
        protocol_of = ProtocolsOfCourses(session, LIBRARY)
        items = windowed_items(session, day, alert_settings)
        ids = sorted(items)
        drawn = draws_reviews(protocol_of, items, ids, day, alert_settings, LIBRARY.vocabulary)
        shared = review_charts(session, protocol_of, LIBRARY, ids, day, alert_settings, ALGORITHM,
                               with_results=False, items_by_patient=items)
        charts = [review(chart, day, alert_settings, ALGORITHM, LIBRARY.vocabulary)
                  for chart in load_charts(session, protocol_of, LIBRARY.vocabulary, ids, day, alert_settings,
                                           with_results=False, items_by_patient=items)]
    engine.dispose()
    assert len(drawn) > len(ids) / 2 and len(ids) - len(drawn) > 10
    assert any(r.alerts for r in drawn.values())

    def dated(r):
        return r.patient_id, tuple(a for a in r.alerts if a.kind in DATED_KINDS), r.judged, r.cleared, r.follow_ups

    assert [dated(r) for r in shared] == [dated(r) for r in charts]

