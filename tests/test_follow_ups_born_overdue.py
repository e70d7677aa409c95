"""A follow-up booked already overdue (the repeat after a result that reached tracker late) raises its overdue
alert in the pass that books it, and a re-check booked already due is judged by it, as the next pass would
do: a pass leaves the alerts its rules give for the data it leaves, so a second pass the same day with nothing
new changes nothing, and a what-if shows what a pass would store (repeats; not yet re-checks)."""

from __future__ import annotations

from freezegun import freeze_time
from sqlalchemy import text

from tracker.db.engine import make_engine, resolve_url


def _stored_overdue_repeats(db: str) -> list[str]:
    """The live overdue alerts about a repeat, read from the table (listing `alerts` here would evaluate)."""
    engine = make_engine(resolve_url(db))
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT message FROM alert WHERE kind = 'overdue' AND status = 'open' "
                                 "AND message LIKE 'Repeat %' ORDER BY id")).scalars().all()
    engine.dispose()
    return list(rows)


def _unreviewed_result(db: str) -> None:
    """Neutrophils 1.2 taken on 20 January, on record as a bulk load leaves a result: reviewed by nobody."""
    engine = make_engine(resolve_url(db))
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO lab_result (patient_id, test, value_num, unit, taken_on, created_at) "
                          "SELECT id, 'neutrophils', 1.2, '10^9/L', '2026-01-20', '2026-03-02 09:00' FROM patient"))
    engine.dispose()


def _query(db: str, sql: str) -> list[tuple]:
    engine = make_engine(resolve_url(db))
    with engine.connect() as conn:
        rows = [tuple(row) for row in conn.execute(text(sql))]
    engine.dispose()
    return rows


def _started(tracker):
    with freeze_time("2026-01-05"):
        tracker("patient add C1 --name 'Cy Test' --dob 1970-01-01")
        tracker("therapy start C1 ciclosporin --on 2026-01-05")


def _lebrikizumab_started(tracker, mrns=("L1",)):
    """Lebrikizumab from 1 January, EASI 20 and DLQI 15 at the start."""
    with freeze_time("2026-01-01"):
        for mrn in mrns:
            tracker(f"patient add {mrn} --name 'Le Bri' --dob 1980-01-01")
            tracker(f"therapy start {mrn} lebrikizumab --on 2026-01-01")
            tracker(f"assess {mrn} --on 2026-01-01 --easi 20 --dlqi 15")


def test_a_result_entered_late_raises_the_overdue_alert_of_the_repeat_it_books(tracker):
    _started(tracker)
    with freeze_time("2026-03-02"):
        # Taken on 20 January, entered on 2 March: its repeat (7 days, clinic default) was due on 27 January.
        out = tracker("result add C1 neutrophils 1.2 --on 2026-01-20").stdout
        assert "scheduled: 2026-01-27" in out
        assert "was due 2026-01-27 and is 34 days overdue" in out  # said at once, not by the next pass
        [repeat] = _stored_overdue_repeats(tracker.db)
        assert repeat.startswith("Repeat neutrophils for Ciclosporin before restarting: 1.2 10^9/L on 2026-01-20")
        tracker("evaluate")  # the whole clinic's rules (a limit, a missed checkpoint): no second word on it
        assert _stored_overdue_repeats(tracker.db) == [repeat]


def test_a_whole_clinic_pass_that_books_a_repeat_overdue_leaves_nothing_for_the_next(tracker):
    _started(tracker)
    with freeze_time("2026-03-02"):
        # The first whole-clinic pass after it books its repeat, already overdue, and alerts on both.
        _unreviewed_result(tracker.db)
        first = tracker("evaluate").stdout
        assert "1 follow-ups booked" in first and "was due 2026-01-27 and is 34 days overdue" in first, first
        assert len(_stored_overdue_repeats(tracker.db)) == 1
        again = tracker("evaluate").stdout
        assert "0 raised, 0 re-opened, 0 resolved, 0 follow-ups booked" in again, again


def test_a_what_if_shows_the_overdue_alert_of_a_repeat_a_pass_would_book(tracker):
    _started(tracker)
    with freeze_time("2026-03-02"):
        _unreviewed_result(tracker.db)
        what_if = [a["message"] for a in tracker.json("alerts --as-of 2026-03-02")
                   if a["kind"] == "overdue" and a["message"].startswith("Repeat ")]
        assert _stored_overdue_repeats(tracker.db) == []  # a what-if writes nothing
        tracker("evaluate")
        assert what_if == _stored_overdue_repeats(tracker.db) and len(what_if) == 1


def test_the_night_that_books_a_repeat_overdue_reminds_of_it_once_as_its_alert(tracker):
    """The digest reminds of an overdue task once: as an OVERDUE line, or, once an alert is about it, as that
    alert. A repeat the night's pass booked overdue but did not alert on was reminded as an OVERDUE line that
    night and again as its alert the next."""
    _started(tracker)
    with freeze_time("2026-03-02"):
        _unreviewed_result(tracker.db)
        tracker("nightly --as-of 2026-03-02")
    with freeze_time("2026-03-03"):
        tracker("nightly --as-of 2026-03-03")
    reminded = _query(tracker.db, "SELECT r.kind, r.as_of FROM reminder r JOIN item i ON i.id = r.item_id "
                                  "WHERE i.origin = 'threshold' ORDER BY r.id")
    assert [(kind, str(as_of)) for kind, as_of in reminded] == [("alert", "2026-03-02")]


def test_a_recheck_booked_already_due_is_judged_by_the_evaluation_that_books_it(tracker):
    """Lebrikizumab's week-16 check judged partial on an assessment entered in December books the week-24
    re-check (due in June): the same `assess` judges it (missed: no assessment near week 24), not the next
    evaluation."""
    _lebrikizumab_started(tracker)
    with freeze_time("2026-12-05"):
        out = tracker("assess L1 --on 2026-04-23 --easi 9 --dlqi 13").stdout
        assert "scheduled: 2026-06-18 Week 24 response re-check for Lebrikizumab" in out
        assert "week 24 response check for Lebrikizumab (due 2026-06-18) missed" in out, out
        evaluated = tracker("evaluate").stdout
        assert "week 24" not in evaluated and "0 re-opened, 0 resolved, 0 follow-ups booked" in evaluated, evaluated


def test_a_what_if_lists_each_repeat_a_pass_would_book_overdue_under_its_own_name(tracker):
    """Three patients, three repeats overdue as a pass would book them: the what-if lists three alerts, named
    as not on record yet (no item id), as the pass then stores three. (Named alike, they were one.)"""
    with freeze_time("2026-01-05"):
        for mrn in ("C1", "C2", "C3"):
            tracker(f"patient add {mrn} --name 'Cy Test' --dob 1970-01-01")
            tracker(f"therapy start {mrn} ciclosporin --on 2026-01-05")
    with freeze_time("2026-03-02"):
        _unreviewed_result(tracker.db)  # one late result each
        what_if = [a for a in tracker.json("alerts --as-of 2026-03-02")
                   if a["kind"] == "overdue" and a["message"].startswith("Repeat ")]
        assert sorted(a["mrn"] for a in what_if) == ["C1", "C2", "C3"]
        assert len({a["condition_key"] for a in what_if}) == 3
        assert all(a["condition_key"].startswith("overdue:new-item") and a["status"] == "would open"
                   for a in what_if)
        tracker("evaluate")
        assert len(_stored_overdue_repeats(tracker.db)) == 3


def test_a_what_if_judges_the_recheck_a_pass_would_book_already_due(tracker):
    """Lebrikizumab's week 16 judged partial in April books the week-24 re-check; by December the what-if
    says week 24 was missed, as the pass then stores."""
    # Judged in April, before the check was due (the closest visit in its window), so no re-check is booked
    # yet: the first whole pass after the due date books it, already due.
    _lebrikizumab_partial_in_april(tracker)
    with freeze_time("2026-12-05"):
        what_if = sorted((a["kind"], a["message"]) for a in tracker.json("alerts --as-of 2026-12-05"))
        assert any("week 24 response check for Lebrikizumab (due 2026-06-18) missed" in m for _, m in what_if)
        tracker("evaluate")
        assert sorted((a["kind"], a["message"]) for a in tracker.json("alerts")) == what_if


def _lebrikizumab_partial_in_april(tracker, mrns=("L1",)):
    _lebrikizumab_started(tracker, mrns)
    with freeze_time("2026-04-16"):
        for mrn in mrns:
            tracker(f"assess {mrn} --on 2026-04-16 --easi 9 --dlqi 13")


def _sql(db: str, statement: str) -> None:
    engine = make_engine(resolve_url(db))
    with engine.begin() as conn:
        conn.execute(text(statement))
    engine.dispose()


def _listed(alerts) -> list[tuple]:
    return sorted((a["mrn"], a["kind"], a["message"]) for a in alerts)


def test_a_what_if_names_apart_the_items_both_groups_of_a_pass_would_book(tracker):
    """A whole-clinic pass reviews two groups (whoever a change or a live alert names, then those with only an
    item in a review window); each may book a re-check already due. Numbered from one in each group, their
    alerts shared a name and the listing, keyed by it, lost one."""
    _lebrikizumab_partial_in_april(tracker, ("L1", "L2"))
    _sql(tracker.db, "INSERT INTO alert (condition_key, patient_id, kind, severity, status, raised_on, message, "
                     "suggestions, sources, created_at, updated_at) SELECT 'limit:by-hand', id, 'limit', 'warning', "
                     "'acknowledged', '2026-11-01', 'a live alert', '', '', '2026-11-01 09:00', '2026-11-01 09:00' "
                     "FROM patient WHERE mrn = 'L2'")  # L2 in the first group, L1 in the second
    with freeze_time("2026-12-05"):
        what_if = [a for a in tracker.json("alerts --as-of 2026-12-05") if "week 24" in a["message"]]
        assert len({a["condition_key"] for a in what_if}) == len(what_if) == 4
        tracker("evaluate")
        assert _listed(what_if) == _listed(a for a in tracker.json("alerts") if "week 24" in a["message"])


def test_a_what_if_does_not_show_open_a_failure_the_recheck_it_judges_settles(tracker):
    """Week 16 fails in April (partial: a week-24 re-check booked), the June visit meets week 24: on 1 July a
    pass raises the week-16 failure and resolves it at once (the re-check met). The what-if showed it open."""
    _lebrikizumab_partial_in_april(tracker)
    _sql(tracker.db, "INSERT INTO assessment (patient_id, assessed_on, easi, dlqi, created_at) "
                     "SELECT id, '2026-06-18', 4, 4, '2026-06-18 09:00' FROM patient")  # on record, unreviewed
    with freeze_time("2026-07-01"):
        what_if = tracker.json("alerts --as-of 2026-07-01")
        assert not [a for a in what_if if a["kind"] == "checkpoint_failed"]
        tracker("evaluate")
        assert _listed(tracker.json("alerts")) == _listed(what_if)


def test_a_what_if_codes_the_tests_of_a_repeat_it_would_book(tracker):
    """The alert of a repeat not on record yet carries its test's codes, as the stored alert then does."""
    _started(tracker)
    with freeze_time("2026-03-02"):
        _unreviewed_result(tracker.db)
        [would] = [a for a in tracker.json("alerts --as-of 2026-03-02") if a["message"].startswith("Repeat ")]
        tracker("evaluate")
        [stored] = [a for a in tracker.json("alerts") if a["message"].startswith("Repeat ")]
    assert would["item_id"] is None and would["codes"]["tests"] and would["codes"] == stored["codes"]


def test_an_overdue_alert_acknowledged_or_snoozed_is_not_reminded_again_as_an_overdue_line(tracker):
    """Found exploring (older than session 19): once a person acknowledged or snoozed the alert about an overdue
    draw, the next night reminded of the draw again, as an OVERDUE line (only an open alert kept it out)."""
    _started(tracker)
    with freeze_time("2026-03-02"):
        tracker("result add C1 neutrophils 1.2 --on 2026-01-20")  # the repeat, overdue, and its alert
        tracker("nightly --as-of 2026-03-02")
        alerts = {a["message"].split(":")[0]: a["id"] for a in tracker.json("alerts") if a["kind"] == "overdue"}
        repeat = alerts.pop("Repeat neutrophils for Ciclosporin before restarting")
        tracker(f"alert ack {repeat} --note 'drawn on Friday'")
        other = min(alerts.values())
        tracker(f"alert snooze {other} --until 2026-03-20 --reason 'patient away'")
    with freeze_time("2026-03-03"):
        tracker("nightly --as-of 2026-03-03")
    assert _query(tracker.db, "SELECT r.kind FROM reminder r JOIN alert a ON a.item_id = r.item_id "
                              f"WHERE a.id IN ({repeat}, {other}) AND r.as_of = '2026-03-03'") == []
