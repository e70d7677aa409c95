"""The readable morning digest shared by stdout and e-mail: grouped by severity, then patient."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator

KIND_WORDS = {"due": "due", "overdue": "OVERDUE", "alert": "ALERT"}


def subject(count: int, as_of: dt.date) -> str:
    """No patient or diagnosis text: subjects show up in lock screens and mail logs."""
    return f"tracker: {count} reminder{'' if count == 1 else 's'} for {as_of.isoformat()}"


def _line(row: dict) -> str:
    kind = KIND_WORDS.get(row["kind"], row["kind"])
    if row["kind"] == "alert":
        drug = f" ({row['drug']})" if row.get("drug") else ""
        return f"    {kind:<8} {row['message']}{drug}"
    tests = f" [{', '.join(row['tests'])}]" if row.get("tests") else ""
    partial = f" (partial: missing {row['missing_text']})" if row.get("missing_text") else ""
    return f"    {kind:<8} {row['due']}  {row.get('drug') or '':<14} {row['title']}{tests}{partial}"


def digest_lines(rows: Iterable[dict], count: int, as_of: dt.date, from_day: dt.date | None = None) -> Iterator[str]:
    """Lines of the digest. `rows` must come ordered by severity (tracker.core.terms.SEVERITIES), patient, kind."""
    header = subject(count, as_of)
    if from_day and from_day < as_of:
        header += f" (catching up from {from_day.isoformat()})"
    yield header
    if count == 0:
        yield "Nothing new to remind."
        return
    severity = patient = None
    for row in rows:
        if row["severity"] != severity:
            severity, patient = row["severity"], None
            yield ""
            yield f"{severity.upper()}"
        if row["patient"] != patient:
            patient = row["patient"]
            yield f"  {patient}"
        yield _line(row)
