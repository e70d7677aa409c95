"""Issue 15 item 6: the audit hash chain on plain values (tracker/core/audit_chain.py)."""

from __future__ import annotations

import datetime as dt

from tracker.core.audit_chain import GENESIS, Head, canonical, chain_rows, check_chain, link_hash

AT = dt.datetime(2026, 5, 1, 9, 30, 0, 123456, tzinfo=dt.timezone.utc)


def chain(n: int) -> list[dict]:
    rows, head = [], Head()
    for i in range(1, n + 1):
        fields = {"at": AT, "user": "ann", "action": "patient.add", "entity": "patient", "entity_id": i,
                  "mrn": f"P{i}", "before": None, "after": '{"id": %d}' % i}
        seq, prev_hash, hash_ = head.link(fields)
        rows.append({"id": i, "seq": seq, "prev_hash": prev_hash, "hash": hash_, **fields})
        head = Head(seq, hash_)
    return rows


def test_a_timestamp_hashes_the_same_aware_or_as_stored_naive_utc():
    naive = AT.replace(tzinfo=None)
    elsewhere = AT.astimezone(dt.timezone(dt.timedelta(hours=10)))
    fields = {"at": AT, "user": "u", "action": "a", "entity": "e"}
    assert canonical(fields) == canonical({**fields, "at": naive}) == canonical({**fields, "at": elsewhere})
    assert link_hash(GENESIS, fields) != link_hash(GENESIS, {**fields, "user": "v"})


def test_chaining_a_batch_in_one_pass_gives_each_row_what_linking_one_by_one_gives():
    one_by_one = chain(4)
    batch = [{k: v for k, v in row.items() if k not in ("seq", "prev_hash", "hash")} for row in one_by_one]
    batch[2]["at"] = AT.replace(tzinfo=None)  # as stored (naive UTC): the same hash
    batch[3]["after"] = None
    one_by_one[3]["after"] = None
    head = Head(0, GENESIS)
    for row in one_by_one:  # re-link row 4, whose fields changed
        row["seq"], row["prev_hash"], row["hash"] = head.link(row)
        head = Head(row["seq"], row["hash"])

    assert chain_rows(Head(), batch) == head
    assert [(r["seq"], r["prev_hash"], r["hash"]) for r in batch] == [
        (r["seq"], r["prev_hash"], r["hash"]) for r in one_by_one]
    assert chain_rows(head, []) == head


def test_an_intact_chain_and_its_head():
    rows = chain(5)
    verdict = check_chain(rows, Head(5, rows[-1]["hash"]))
    assert verdict.problem is None and verdict.rows == 5 and verdict.head == Head(5, rows[-1]["hash"])
    assert check_chain([], Head()).problem is None
    assert check_chain([], None).problem is None  # an empty log with no head yet


def test_each_kind_of_tampering_names_the_first_bad_row():
    rows = chain(5)
    head = Head(5, rows[-1]["hash"])

    edited = [dict(r) for r in rows]
    edited[2]["user"] = "mallory"
    assert check_chain(edited, head).problem.row_id == 3

    gap = rows[:2] + rows[3:]
    problem = check_chain(gap, head).problem
    assert problem.row_id == 4 and "missing" in problem.reason

    problem = check_chain(rows[:4], head).problem  # the newest row deleted, the head left as it was
    assert problem.row_id is None and "newest rows are missing" in problem.reason

    problem = check_chain(rows, head, unchained=[9]).problem
    assert problem.row_id == 9 and "not in the chain" in problem.reason

    relinked = [dict(r) for r in rows]
    relinked[3]["prev_hash"] = rows[1]["hash"]
    assert check_chain(relinked, head).problem.row_id == 4

    assert "head record is missing" in check_chain(rows, None).problem.reason


def test_a_reusable_encoder_writes_what_its_json_encoder_writes():
    """The batch encoder (json's C encoder made once: audit_chain.reusable_encoder) gives `encode`'s text for
    the kinds of values audit rows hold: text with quotes, escapes and non-ASCII letters, ints, floats (-0.0,
    large, NaN), None, booleans, nested lists and dicts, and values only `default` can write."""
    import json

    from tracker.core.audit_chain import _ENCODER, reusable_encoder

    def default(value):
        if isinstance(value, (dt.date, dt.datetime)):
            return value.isoformat()
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    values = [
        [AT.isoformat(), "ann", "result.add", "lab_result", 7, "Mø\"1\\\n\u200b", None, '{"id": 7, "x": "é"}'],
        {"value_num": -0.0, "ref_high": 1e300, "reported_value": 0.1 + 0.2, "nan": float("nan"), "b": True,
         "completed_items": [3, 1, 2], "z": {"nested": [None, "ü"]}, "taken_on": dt.date(2026, 5, 1),
         "created_at": AT, "a": 12345678901234567890},
        [],
        {},
    ]
    encoders = [_ENCODER, json.JSONEncoder(sort_keys=True, default=default), json.JSONEncoder(default=default)]
    for encoder in encoders:
        encode = reusable_encoder(encoder)
        for value in values:
            if encoder is _ENCODER and isinstance(value, dict):
                continue  # (the chain's encoder writes lists of plain values, never dates)
            assert encode(value) == encoder.encode(value)
