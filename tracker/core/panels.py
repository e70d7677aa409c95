"""When a draw or baseline test is complete: the one definition, for result recording, baseline gates'
"result completing a baseline item", the worklists, the digest and the alerts. Pure.

A draw asks for tests (`cbc`, `cmp`, `creatinine`). A single test is satisfied by a result for it. A panel is
satisfied when each of its `required` entries (schedules/vocabulary.yaml, clinic defaults) has a result:
CBC needs wbc, neutrophils, lymphocytes, platelets and hb; CMP needs ALT or AST, creatinine or eGFR, and
albumin. A result recorded under the panel's own code (`result add X cbc normal`, free text) is a note on
the panel, no value of any analyte: it counts as received (the item shows partial) but completes nothing
(finding B8: `cbc banana` completed a methotrexate draw and its baseline CBC).

Results for one draw may arrive on different days. Each result counts for one lab draw per course: the one
`nearest_draw` picks (the open draw whose due date is nearest to the day the result was taken, among those
due at most LAB_EARLY_DAYS after it). What a draw has received accumulates until it is complete; until then
it stays planned, is `partial` once something has arrived, and becomes overdue like a missed draw. A repeat
booked after a result (`answers_repeat`) counts only results taken on a later day than that result.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from tracker.core.vocabulary import Vocabulary

# A result taken up to this many days before a draw's due date still counts for it.
LAB_EARLY_DAYS = 7


@dataclass(frozen=True)
class Requirement:
    """One thing a draw still needs: a result for any one of `any_of`, for the draw's test `test`."""

    test: str
    any_of: tuple[str, ...]

    def label(self) -> str:
        return " or ".join(self.any_of)

    def text(self) -> str:
        """`cbc: neutrophils`, `cmp: alt or ast`; a single test is just its code."""
        return self.test if self.any_of == (self.test,) else f"{self.test}: {self.label()}"


def members(test: str, vocabulary: Vocabulary) -> set[str]:
    """Codes whose results count towards `test`: the code itself and, for a panel, its analytes."""
    return vocabulary.members(test)


def counts_towards(tests: Iterable[str], code: str, vocabulary: Vocabulary) -> bool:
    """Whether a result for `code` counts towards a draw asking for `tests`."""
    return any(code in members(test, vocabulary) for test in tests)


def missing(tests: Iterable[str], received: Iterable[str], vocabulary: Vocabulary) -> tuple[Requirement, ...]:
    """What a draw asking for `tests` still needs, given the codes it has `received`, in the tests' order."""
    have = set(received)
    out = []
    for test in tests:
        spec = vocabulary.tests.get(test)
        # A single test requires itself; a panel its analytes, whatever note is recorded under its own code.
        groups = spec.required_groups if spec is not None else ((test,),)
        out += [Requirement(test, group) for group in groups if not have.intersection(group)]
    return tuple(out)


def is_complete(tests: Iterable[str], received: Iterable[str], vocabulary: Vocabulary) -> bool:
    return not missing(tests, received, vocabulary)


def describe_missing(needs: Iterable[Requirement], vocabulary: Vocabulary | None = None) -> str:
    """`cbc: neutrophils, platelets; cmp: alt or ast`: what is missing, grouped by the draw's test; with the
    vocabulary, says when a panel's requirements are a clinic default."""
    by_test: dict[str, list[str]] = {}
    for need in needs:
        by_test.setdefault(need.test, []).append(need.label())
    text = "; ".join(f"{test}: {', '.join(labels)}" if labels != [test] else test
                     for test, labels in by_test.items())
    if vocabulary is not None and any(
            labels != [test] and test in vocabulary.tests and vocabulary.tests[test].clinic_default
            for test, labels in by_test.items()):
        text += " (panel requirements: clinic default)"
    return text


def item_state(status: str, tests: Iterable[str], received: Iterable[str], vocabulary: Vocabulary) -> str:
    """An item's status as shown: `partial` for a planned item that has received part of what it needs."""
    got = list(received)
    if status == "planned" and got and not is_complete(tests, got, vocabulary):
        return "partial"
    return status


def nearest_draw(draws: Iterable, taken_on: dt.date):
    """The draw (anything with `due` and `id`) a result taken on `taken_on` counts for: among those due at
    most LAB_EARLY_DAYS after it, the one whose due date is nearest (ties: the earlier). None if none."""
    window_open = [d for d in draws if d.due <= taken_on + dt.timedelta(days=LAB_EARLY_DAYS)]
    return min(window_open, key=lambda d: (abs((d.due - taken_on).days), d.due, d.id or 0), default=None)


def counted_for(draw, taken_on: dt.date, arrived, draws: Iterable) -> bool:
    """Whether a result taken on `taken_on` (stored at `arrived`) counted for `draw` when it came, as
    `nearest_draw` chose among the draws of its course open then (anything with id, due, status, done_on,
    created_at): `draw`, and those booked before the result that are planned now or were done on its day or
    later (a draw done earlier was no longer open). Asked when a withdrawal re-opens `draw`: a result another
    draw took does not count for this one a second time."""
    open_then = [d for d in draws if d.id == draw.id or (
        d.created_at <= arrived and (d.status == "planned" or (d.status == "done" and d.done_on is not None
                                                              and d.done_on >= taken_on)))]
    chosen = nearest_draw(open_then, taken_on)
    return chosen is not None and chosen.id == draw.id


def answers_repeat(item, taken_on: dt.date, latest_other: dt.date | None) -> bool:
    """Whether a result taken on `taken_on` may count for `item`. A repeat a result booked (origin
    `threshold`: "repeat in 1 week", "repeat before restarting") is answered only by a result taken on a later
    day than the result that booked it. Items do not record that result, but it was the latest of its test
    when it booked the repeat, so the rule reads `latest_other`, the latest day of the other results of the
    item's tests on record: a result of that day or earlier is not the repeat. A second result the same day
    is a duplicate or a same-day draw, which the day alone (all a result carries) cannot tell apart; neither
    is the later occasion a repeat asks for. Other items: any result counts."""
    if getattr(item, "origin", "plan") != "threshold" or latest_other is None:
        return True
    return taken_on > latest_other


def repeat_booked_on(item, results: Iterable) -> dt.date | None:
    """The day of the result that booked a repeat (origin `threshold`), for judging again which results
    answer it once one is withdrawn (services/result_withdraw.py): as `answers_repeat` reads it when a result
    arrives, the latest day among `results` (the patient's results of the item's tests, anything with
    taken_on and created_at) on record when the repeat was booked (created no later than the item). None for
    another item, or when no such result is left."""
    if getattr(item, "origin", "plan") != "threshold":
        return None
    return max((r.taken_on for r in results if r.created_at <= item.created_at), default=None)


def complete_days(results: Iterable, tests: Iterable[str], vocabulary: Vocabulary) -> list[dt.date]:
    """Days on which the results taken that day complete `tests` (a blood pressure reading needs both
    values the same day): what `times: N` counts as N readings. Sorted."""
    tests = list(tests)
    by_day: dict[dt.date, set[str]] = {}
    for result in results:
        by_day.setdefault(result.taken_on, set()).add(result.test)
    return sorted(day for day, codes in by_day.items() if is_complete(tests, codes, vocabulary))


@dataclass(frozen=True)
class UndoneByWithdrawal:
    """What a result withdrawn from the record may leave undone among a patient's baseline and lab items."""

    completed: tuple  # done items it may have completed: judged again on the remaining results
    counted: tuple  # planned items it counted for: what they received loses its test (unless supplied again)


def undone_by_withdrawal(items: Iterable, result_id: int, code: str, taken_on: dt.date,
                         vocabulary: Vocabulary) -> UndoneByWithdrawal:
    """The items (anything with id, kind, status, tests, received, due, done_on, done_note, merged_into_id) a
    withdrawn result, `result_id` of test `code` taken on `taken_on`, may no longer answer:
    - done by a result (`result #N` in the done note) and either naming this one, or one it counted towards:
      a baseline item asking for its test, or a draw that received its test, due within LAB_EARLY_DAYS after
      it and done on its day or later (a draw's note names the result that completed it, the last to arrive);
    - a draw merged into such a draw (done with its host);
    - planned, holding its test among what it received.
    A checkpoint, a limit and an item done by hand are never a result's. Stored code lists are space-separated
    (db/tables.py `codes`)."""
    own = (f"result #{result_id}", f"result #{result_id} (")
    completed, counted = [], []
    for item in items:
        if item.kind not in ("baseline", "lab"):
            continue
        note, received = item.done_note or "", (item.received or "").split()
        towards = counts_towards((item.tests or "").split(), code, vocabulary)
        if item.status == "done":
            if note == own[0] or note.startswith(own[1]):
                completed.append(item)
            elif (towards and note.startswith("result #") and item.done_on is not None and item.done_on >= taken_on
                  and (item.kind == "baseline"
                       or (code in received and item.due <= taken_on + dt.timedelta(days=LAB_EARLY_DAYS)))):
                completed.append(item)
        elif item.status == "planned" and towards and code in received:
            counted.append(item)
    hosts, taken = {i.id for i in completed if i.kind == "lab"}, {i.id for i in completed}
    completed += [i for i in items if i.status == "done" and getattr(i, "merged_into_id", None) in hosts
                  and i.id not in taken]
    return UndoneByWithdrawal(tuple(completed), tuple(counted))
