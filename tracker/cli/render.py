"""Output: JSON to stdout for machines, rich tables for people."""

from __future__ import annotations

import json
import sys
from itertools import groupby


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

    return Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 120)


def table(columns: list[str], rows: list[list], title: str | None = None) -> None:
    from rich.table import Table

    out = Table(title=title, title_justify="left", show_lines=False)
    for column in columns:
        out.add_column(column, overflow="fold")
    for row in rows:
        out.add_row(*["" if v is None else str(v) for v in row])
    console().print(out)


def say(text: str) -> None:
    console().print(text)


def worklist(rows: list[dict], title: str, empty: str) -> None:
    """Items grouped by patient: one block per MRN."""
    out = console()
    if not rows:
        out.print(empty)
        return
    out.print(f"[bold]{title}[/bold] ({len(rows)} items, {len({r['mrn'] for r in rows})} patients)")
    for mrn, group in groupby(rows, key=lambda r: r["mrn"]):
        group = list(group)
        out.print(f"\n[bold]{mrn}[/bold]  {group[0].get('patient') or ''}")
        for row in group:
            flag = " [red]OVERDUE[/red]" if row["overdue"] else ""
            tests = f" ({', '.join(row['tests'])})" if row["tests"] else ""
            partial = f" [yellow]PARTIAL, missing {row['missing_text']}[/yellow]" if row.get("missing_text") else ""
            default = f" [yellow](clinic default: {'; '.join(row['clinic_default'])})[/yellow]" \
                if row.get("clinic_default") else ""
            out.print(f"  {row['due']}  {'+'.join(row['drugs']):<14} {row['kind']:<10} {row['title']}{tests}"
                      f"{partial}{default}{flag}")
