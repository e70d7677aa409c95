"""The audit log's hash chain, on plain values: how a row is hashed and how a chain is checked.

Each audit row carries its position in the chain (`seq`, 1, 2, 3, ...), the previous row's hash
(`prev_hash`; GENESIS for the first) and its own `hash`: SHA-256 over the previous hash and a canonical
serialisation of the row's fields (everything but its id and the chain columns). An edit of any field breaks
that row's hash; a deleted row leaves a gap in `seq` and a `prev_hash` that no longer matches; a row added
behind the application's back has no place in the chain. The chain's head (last `seq` and hash) is also
kept apart (`audit_head`), so removing the newest rows shows too unless the head is rewritten as well; only
a head noted outside the database (an anchor) can prove the newest rows were not removed that way, or the
whole chain recomputed.

The format is fixed: changing `canonical` means a migration that re-chains every row.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Iterable

GENESIS = "0" * 64
HASHED_FIELDS = ("at", "user", "action", "entity", "entity_id", "mrn", "before", "after")


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # = json.dumps with these options
_ENCODE = _ENCODER.encode


def reusable_encoder(encoder: json.JSONEncoder):
    """`encoder.encode` for the many flat values of a batch (lists and dicts of text, numbers, None and what
    `encoder.default` makes of the rest), the same text without the set-up `JSONEncoder.encode` repeats on
    every call: json's C encoder is made once (a third of an audit row's encoding). No check for circular
    references, which flat values cannot hold. Without json's C accelerator: `encoder.encode` itself."""
    from json import encoder as json_encoder

    make = json_encoder.c_make_encoder
    if make is None or encoder.indent is not None:
        return encoder.encode
    escape = json_encoder.encode_basestring_ascii if encoder.ensure_ascii else json_encoder.encode_basestring
    chunks = make(None, encoder.default, escape, None, encoder.key_separator, encoder.item_separator,
                  encoder.sort_keys, encoder.skipkeys, encoder.allow_nan)
    join = "".join
    return lambda value: join(chunks(value, 0))


@functools.lru_cache(maxsize=256)  # a batch of rows shares one timestamp
def canonical_time(value: dt.datetime) -> str:
    """UTC with microseconds; a naive value is UTC already (SQLite stores timestamps without an offset)."""
    if value.utcoffset() is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(fields: dict) -> str:
    """One row's hashed fields as compact JSON (a list in HASHED_FIELDS order)."""
    values = [canonical_time(fields["at"]) if isinstance(fields["at"], dt.datetime) else fields["at"]]
    values += [fields.get(name) for name in HASHED_FIELDS[1:]]
    return _ENCODE(values)


def link_hash(prev_hash: str, fields: dict) -> str:
    return hashlib.sha256(f"{prev_hash}\n{canonical(fields)}".encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Head:
    """Where the chain ends: the last row's position and hash (seq 0 and GENESIS for an empty log)."""

    seq: int = 0
    hash: str = GENESIS

    def link(self, fields: dict) -> tuple[int, str, str]:
        """(seq, prev_hash, hash) of a new row appended after this head."""
        return self.seq + 1, self.hash, link_hash(self.hash, fields)


def chain_rows(head: Head, rows: list[dict]) -> Head:
    """Append `rows` (dicts holding the hashed fields) after `head`, in order: each gets its `seq`,
    `prev_hash` and `hash` (as `Head.link` gives them, in one pass); returns the new head."""
    seq, prev_hash = head.seq, head.hash
    sha256, encode = hashlib.sha256, reusable_encoder(_ENCODER)
    rest = HASHED_FIELDS[1:]
    for row in rows:
        at = row["at"]
        values = [canonical_time(at) if isinstance(at, dt.datetime) else at]
        values += [row.get(name) for name in rest]
        seq += 1
        digest = sha256(f"{prev_hash}\n{encode(values)}".encode("utf-8")).hexdigest()
        row["seq"], row["prev_hash"], row["hash"] = seq, prev_hash, digest
        prev_hash = digest
    return Head(seq, prev_hash)


@dataclass(frozen=True)
class Problem:
    row_id: int | None  # the first row found wrong (None: the head record itself, or rows missing at the end)
    seq: int | None
    reason: str

    def text(self) -> str:
        where = f"row {self.row_id}" if self.row_id is not None else "head"
        return f"{where}" + (f" (chain position {self.seq})" if self.seq is not None else "") + f": {self.reason}"


@dataclass(frozen=True)
class Verdict:
    rows: int
    head: Head  # as the rows say (the last row's seq and hash)
    problem: Problem | None = None


def check_chain(rows: Iterable[dict], stored_head: Head | None, *, unchained: Iterable[int] = ()) -> Verdict:
    """Walk `rows` in chain order (dicts with id, seq, prev_hash, hash and the hashed fields) and return the
    first problem. `unchained`: ids of rows with no place in the chain (no seq), which someone inserted
    around the application. `stored_head`: the head record (None: missing)."""
    count, head = 0, Head()
    for row in rows:
        count += 1
        seq, row_id = row["seq"], row["id"]
        if seq != head.seq + 1:
            reason = (f"rows at chain positions {head.seq + 1}..{seq - 1} are missing (deleted)" if seq > head.seq + 1
                      else "chain position repeated")
            return Verdict(count, head, Problem(row_id, seq, reason))
        if row["prev_hash"] != head.hash:
            return Verdict(count, head, Problem(row_id, seq, "does not follow the previous row (a row before it "
                                                             "was deleted, replaced or inserted)"))
        if row["hash"] != link_hash(head.hash, row):
            return Verdict(count, head, Problem(row_id, seq, "contents changed since it was written"))
        head = Head(seq, row["hash"])
    stray = sorted(unchained)
    if stray:
        return Verdict(count, head, Problem(stray[0], None, "not in the chain (inserted outside tracker)"))
    if stored_head is None:
        if head.seq:
            return Verdict(count, head, Problem(None, None, "the chain's head record is missing"))
    elif stored_head != head:
        if stored_head.seq > head.seq:
            reason = (f"the newest rows are missing: the head records position {stored_head.seq}, "
                      f"the log ends at {head.seq} (deleted)")
        else:
            reason = f"the head record (position {stored_head.seq}) does not match the last row (position {head.seq})"
        return Verdict(count, head, Problem(None, None, reason))
    return Verdict(count, head)
