"""Output: JSON to stdout for machines, rich tables for people.

Stored text is shown literally: table cells and `line()`s are rich `Text` (never parsed as markup), and
everything written passes `printable()` (tracker/display.py), so an
MRN `MRN[red]X` shows as typed and a name carrying escape sequences cannot colour, link or hide output."""

from __future__ import annotations

import json
import sys
from itertools import groupby

import click

from tracker.display import printable


def emit_json(data) -> None:
    """A list is written one element per line (compact, keys sorted): valid JSON, easy to grep, and
    encoded by json's C encoder (indent= falls back to the pure-Python one, 5x slower on a clinic's
    worklist). Anything else is indented."""
    if isinstance(data, list):
        encode = json.JSONEncoder(sort_keys=True, default=str, separators=(", ", ": ")).encode
        body = ",\n".join("  " + encode(element) for element in data)
        sys.stdout.write(f"[\n{body}\n]\n" if data else "[]\n")
        return
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def console():
    from rich.console import Console

    # emoji=False: ":name:" in a patient's name stays as typed.
    return Console(highlight=False, soft_wrap=False, emoji=False, width=None if sys.stdout.isatty() else 120)


def line(*parts, newlines: bool = False):
    """A line of stored text as rich `Text` (never parsed as markup): each part is text, or (text, style)
    for our own emphasis; None parts are skipped. Control characters (and newlines, unless allowed) are
    made visible."""
    from rich.text import Text

    out = Text()
    for part in parts:
        if part is None:
            continue
        value, style = part if isinstance(part, tuple) else (part, "")
        out.append(printable(value, newlines=newlines), style=style)
    return out


def echo(message: str = "", err: bool = False) -> None:
    """click.echo for lines that carry stored text: control characters made visible."""
    click.echo(printable(message), err=err)


def table(columns: list[str], rows: list[list], title: str | None = None) -> None:
    from rich.table import Table
    from rich.text import Text

    out = Table(title=Text(printable(title)) if title else None, title_justify="left", show_lines=False)
    for column in columns:
        out.add_column(column, overflow="fold")
    for row in rows:
        out.add_row(*[Text(printable(v)) for v in row])  # Text: never parsed as markup
    console().print(out)


def say(text) -> None:
    """A line as written (never parsed as markup: paths and names carry brackets), or a styled `line()`."""
    console().print(line(text, newlines=True) if isinstance(text, str) else text)


def worklist(rows: list[dict], title: str, empty: str) -> None:
    """Items grouped by patient: one block per MRN."""
    out = console()
    if not rows:
        out.print(empty)
        return
    out.print(line((title, "bold"), f" ({len(rows)} items, {len({r['mrn'] for r in rows})} patients)"))
    for mrn, group in groupby(rows, key=lambda r: r["mrn"]):
        group = list(group)
        out.print()
        out.print(line((mrn, "bold"), "  ", group[0].get("patient") or ""))
        for row in group:
            out.print(line(
                f"  {row['due']}  {'+'.join(row['drugs']):<14} {row['kind']:<10} {row['title']}",
                f" ({', '.join(row['tests'])})" if row["tests"] else None,
                (f" PARTIAL, missing {row['missing_text']}", "yellow") if row.get("missing_text") else None,
                (f" (clinic default: {'; '.join(row['clinic_default'])})", "yellow")
                if row.get("clinic_default") else None,
                (" OVERDUE", "red") if row["overdue"] else None))
