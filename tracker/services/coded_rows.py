"""Standard codes on the JSON rows of listings (issue 16: "codes appear in every export").

Each row that names a planned test or a drug gets a `codes` object, built by the core (core/coded.py):
`{"tests": [{"test", "loinc", "ucum", "panel"}], "drugs": [{"drug", "atc", "snomed", "rxnorm"}]}`. A
panel without a LOINC code of its own is listed as its analytes' codes (`panel` names it); a test or drug
without a confirmed code is absent or null, never guessed. Codes are read from the library's current
protocols and vocabulary: a drug's codes name it and change no plan (core/protocol.py: CODE_FIELDS).
"""

from __future__ import annotations

from sqlmodel import select

from tracker.core.coded import codes_json
from tracker.core.protocol import ProtocolLibrary


def codes_of(library: ProtocolLibrary):
    """codes_json for one listing, worked out once per (tests, drugs): a clinic's worklist repeats a few
    dozen combinations over thousands of rows (100,000 patients: 6,000 due rows, ~2 s of CPU in the core's
    panel expansion without this). Rows with the same tests and drugs share one `codes` object, which is
    only ever serialised, never changed."""
    memo: dict[tuple, dict] = {}

    def codes(tests, drugs) -> dict:
        key = (tuple(tests), tuple(drugs))
        found = memo.get(key)
        if found is None:
            found = memo[key] = codes_json(key[0], key[1], library.vocabulary, library.protocols)
        return found

    return codes


def item_codes(rows: list[dict], library: ProtocolLibrary) -> list[dict]:
    """Worklist and calendar rows (services/worklists.py: item_values): codes of `tests` and `drugs`."""
    return list(coded_items(rows, library))


def coded_items(rows, library: ProtocolLibrary):
    """`item_codes` one row at a time, as the rows come (a streamed listing's generator)."""
    codes = codes_of(library)
    for row in rows:
        row["codes"] = codes(row.get("tests") or (), row.get("drugs") or [row.get("drug")])
        yield row


def result_codes(rows: list[dict], library: ProtocolLibrary) -> list[dict]:
    """Result rows (services/results.py: result_row): the code of `test`."""
    codes = codes_of(library)
    for row in rows:
        row["codes"] = codes([row["test"]], ())
    return rows


def course_codes(rows: list[dict], library: ProtocolLibrary) -> list[dict]:
    """Course rows: the codes of `drug`."""
    codes = codes_of(library)
    for row in rows:
        row["codes"] = codes((), [row["drug"]])
    return rows


def alert_codes(session, rows: list[dict], library: ProtocolLibrary) -> list[dict]:
    """Alert rows (services/alerts.py: alert_row): the drug's codes, and the test an alert names: the
    result's test for a result alert (threshold, gate), the item's tests for an item alert (overdue). A row
    coded already (a what-if's alert about an item not on record) is left as it is."""
    from tracker.db.tables import Item, LabResult, codes

    result_ids = {r["result_id"] for r in rows if r.get("result_id")}
    item_ids = {r["item_id"] for r in rows if r.get("item_id") and not r.get("result_id")}
    tests_of_result = _by_id(session, LabResult.id, LabResult.test, result_ids)
    tests_of_item = _by_id(session, Item.id, Item.tests, item_ids)
    codes_for = codes_of(library)
    for row in rows:
        if "codes" in row:
            continue
        if row.get("result_id") in tests_of_result:
            tests = [tests_of_result[row["result_id"]]]
        else:
            tests = codes(tests_of_item.get(row.get("item_id")))
        row["codes"] = codes_for(tests, [row.get("drug")])
    return rows


def _by_id(session, id_column, value_column, ids) -> dict:
    found: dict = {}
    ids = sorted(i for i in ids if isinstance(i, int))
    for start in range(0, len(ids), 500):
        query = select(id_column, value_column).where(id_column.in_(ids[start:start + 500]))
        found.update(dict(session.exec(query).all()))
    return found
