"""Issue 16 item 5: the same planned item on a new date (core/plan.py same_planned_items, may_move,
may_return), on plain data."""

from __future__ import annotations

import datetime as dt

from tracker.core.plan import item_slot, may_move, may_return, same_planned_items

D = dt.date
LAB = item_slot("lab", ("cmp", "cbc"), None, None)
OTHER_LAB = item_slot("lab", ("lipids",), None, None)
WEEK_12 = item_slot("checkpoint", (), 12, None)
WEEK_16 = item_slot("checkpoint", (), 16, None)


def test_the_slot_is_the_identity_without_the_date():
    assert item_slot("lab", ("cbc", "cmp"), None, None) == LAB  # the tests' order does not matter
    assert item_slot("baseline", ("bp",), None, None) == item_slot("baseline", ("bp",), None, 1)
    assert item_slot("baseline", ("bp",), None, 2) != item_slot("baseline", ("bp",), None, 1)
    assert WEEK_12 != WEEK_16 and LAB != OTHER_LAB


def test_the_nth_vanished_item_of_a_slot_is_the_nth_appeared_one():
    vanished = [("a", LAB, D(2026, 4, 16)), ("b", LAB, D(2026, 2, 16)), ("c", LAB, D(2026, 5, 16))]
    appeared = [(1, LAB, D(2026, 3, 30)), (0, LAB, D(2026, 3, 2))]
    # By date on both sides: Feb 16 -> Mar 2, Apr 16 -> Mar 30; May 16 has no counterpart (cancelled).
    assert sorted(same_planned_items(vanished, appeared)) == [("a", 1), ("b", 0)]


def test_items_of_other_slots_never_pair():
    vanished = [("a", LAB, D(2026, 4, 1)), ("w12", WEEK_12, D(2026, 3, 30))]
    appeared = [(0, OTHER_LAB, D(2026, 4, 2)), (1, WEEK_16, D(2026, 4, 27)), (2, WEEK_12, D(2026, 4, 13))]
    assert same_planned_items(vanished, appeared) == [("w12", 2)]
    assert same_planned_items([], appeared) == [] and same_planned_items(vanished, []) == []


def test_cancelled_items_come_back_only_for_what_live_items_did_not_take():
    vanished = [("live", LAB, D(2026, 4, 1))]
    cancelled = [("old", LAB, D(2026, 3, 20)), ("w12", WEEK_12, D(2026, 3, 30))]
    appeared = [(0, LAB, D(2026, 4, 5)), (1, LAB, D(2026, 5, 5)), (2, WEEK_12, D(2026, 4, 13))]
    assert sorted(same_planned_items(vanished, appeared, cancelled)) == [("live", 0), ("old", 1), ("w12", 2)]


def test_only_open_items_not_yet_due_move():
    today = D(2026, 3, 19)
    assert may_move("planned", None, today, today) and may_move("planned", "", D(2026, 4, 1), today)
    assert not may_move("planned", None, D(2026, 3, 18), today)  # due already: it may be overdue, alerted
    assert not may_move("planned", "wbc platelets", D(2026, 4, 1), today)  # a partial draw stays
    assert not may_move("done", None, D(2026, 4, 1), today) and not may_move("cancelled", None, D(2026, 4, 1), today)
    assert may_return("cancelled", False, None, D(2026, 3, 30), today)
    assert not may_return("cancelled", True, None, D(2026, 3, 30), today)  # merged: comes back with the merge
    assert not may_return("cancelled", False, None, D(2026, 3, 1), today)
    assert not may_return("planned", False, None, D(2026, 3, 30), today)
