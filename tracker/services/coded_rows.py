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


def item_codes(rows: list[dict], library: ProtocolLibrary) -> list[dict]:
    """Worklist and calendar rows (services/worklists.py: item_values): codes of `tests` and `drugs`."""
    for row in rows:
        row["codes"] = codes_json(row.get("tests") or (), row.get("drugs") or [row.get("drug")],
                                  library.vocabulary, library.protocols)
    return rows


def result_codes(rows: list[dict], library: ProtocolLibrary) -> list[dict]:
    """Result rows (services/results.py: result_row): the code of `test`."""
    for row in rows:
        row["codes"] = codes_json([row["test"]], (), library.vocabulary, library.protocols)
    return rows


def course_codes(rows: list[dict], library: ProtocolLibrary) -> list[dict]:
    """Course rows: the codes of `drug`."""
    for row in rows:
        row["codes"] = codes_json((), [row["drug"]], library.vocabulary, library.protocols)
    return rows


def alert_codes(session, rows: list[dict], library: ProtocolLibrary) -> list[dict]:
    """Alert rows (services/alerts.py: alert_row): the drug's codes, and the test an alert names: the
    result's test for a result alert (threshold, gate), the item's tests for an item alert (overdue)."""
    from tracker.db.tables import Item, LabResult, codes

    result_ids = {r["result_id"] for r in rows if r.get("result_id")}
    item_ids = {r["item_id"] for r in rows if r.get("item_id") and not r.get("result_id")}
    tests_of_result = _by_id(session, LabResult.id, LabResult.test, result_ids)
    tests_of_item = _by_id(session, Item.id, Item.tests, item_ids)
    for row in rows:
        if row.get("result_id") in tests_of_result:
            tests = [tests_of_result[row["result_id"]]]
        else:
            tests = codes(tests_of_item.get(row.get("item_id")))
        row["codes"] = codes_json(tests, [row.get("drug")], library.vocabulary, library.protocols)
    return rows


def _by_id(session, id_column, value_column, ids) -> dict:
    found: dict = {}
    ids = sorted(i for i in ids if isinstance(i, int))
    for start in range(0, len(ids), 500):
        query = select(id_column, value_column).where(id_column.in_(ids[start:start + 500]))
        found.update(dict(session.exec(query).all()))
    return found
