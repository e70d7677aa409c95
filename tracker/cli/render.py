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
        emit_json_rows(data)
        return
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def emit_json_rows(rows) -> None:
    """A list's text as `emit_json` writes it, from any iterable of rows, each written as it comes: a
    generator reading the database (services/listings.py: streamed_due_items) is never held whole."""
    write = sys.stdout.write
    separator = "[\n  "
    for text in _encoded_rows(rows):
        write(separator)
        write(text)
        separator = ",\n  "
    write("[]\n" if separator == "[\n  " else "\n]\n")


def _encoded_rows(rows):
    """Each row's JSON text, exactly as encoding it whole gives. A row's `codes` object
    (services/coded_rows.py) is shared by every row with the same tests and drugs and is most of a worklist
    row's text, so it is encoded once per object and spliced in at its sorted place between the keys before
    and after it (at 100,000 patients `due --json` writes 6,000 rows of ~1.7 kB around a few dozen distinct
    codes)."""
    from tracker.core.audit_chain import reusable_encoder

    # json's C encoder made once (`JSONEncoder.encode` builds a new one on every call: most of a small
    # value's cost); the text is `encode`'s with these options.
    encode = reusable_encoder(json.JSONEncoder(sort_keys=True, default=str, separators=(", ", ": ")))
    encoded: dict[int, tuple[object, str]] = {}  # id -> (the object, kept so its id is not reused; its JSON)
    before_codes: dict[tuple, tuple] = {}  # a row's keys -> those sorting before "codes"
    for row in rows:
        codes = row.get("codes") if type(row) is dict else None
        if type(codes) is not dict:
            yield encode(row)
            continue
        keys = tuple(row)
        head_keys = before_codes.get(keys)
        if head_keys is None:
            if not all(type(key) is str for key in keys):
                yield encode(row)
                continue
            head_keys = before_codes[keys] = tuple(key for key in keys if key < "codes")
        hit = encoded.get(id(codes))
        if hit is None:
            hit = encoded[id(codes)] = (codes, encode(codes))
        tail = row.copy()  # the keys after "codes": a copy less the others (cheaper than a comprehension)
        del tail["codes"]
        head = encode({key: tail.pop(key) for key in head_keys})[1:-1]
        yield "".join(("{", head, ", " if head else "", '"codes": ', hit[1], ", " if tail else "",
                       encode(tail)[1:] if tail else "}"))


def console():
    """A rich console for stdout. On a terminal (rich's detection: also `TTY_COMPATIBLE=1`, with `COLUMNS` for
    the width) long text wraps at word boundaries; piped output is never wrapped or cut: one row per line,
    whatever the width."""
    from rich.console import Console

    # emoji=False: ":name:" in a patient's name stays as typed.
    out = Console(highlight=False, emoji=False)
    out.soft_wrap = not out.is_terminal
    return out


def fit_width(out) -> int | None:
    """The width listings fit into: the terminal's, or None when piped (nothing shortened)."""
    return out.width if out.is_terminal else None


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


def table(columns: list[str], rows: list[list], title: str | None = None, *, message: str | None = None,
          legend: str | None = None) -> None:
    """A listing, one row per line: the short columns side by side and, when `message` names a column, that
    column's text on its own indented line below (nothing when empty). On a terminal the row fits its width:
    the widest short columns are cut with an ellipsis first, the message is cut at a word boundary (never
    wrapped, never split mid-word), and a note says so; piped output is never cut. Cells are stored text
    (never markup), or (text, style) for our own emphasis. `legend` is printed after the rows."""
    out = console()
    layout = Layout(columns, message, fit_width(out))
    layout.measure(rows)
    if title:
        out.print(line((title, "bold")))
    lines = [layout.header()]
    for row in rows:
        lines.extend(layout.row(row))
    emit_lines(out, lines)
    layout.print_notes(out, legend)


def emit_lines(out, lines: list) -> None:
    """Lines already fitted (rich `Text`), written at once: plain text when piped, styled on a terminal
    (printing line by line through rich costs about a millisecond each)."""
    if not lines:
        return
    if not out.is_terminal:
        out.file.write("".join(f"{text.plain}\n" for text in lines))
        out.file.flush()
        return
    from rich.text import Text

    out.print(Text("\n").join(lines), soft_wrap=True)


GAP = "  "
INDENT = "    "
NARROWEST = 10  # a short column is never cut narrower than this (a date), or its natural width


def _cell(value) -> tuple[str, str]:
    text, style = value if isinstance(value, tuple) else (value, "")
    return printable("" if text is None else text, newlines=False), style


class Layout:
    """Column widths for a listing at a terminal width (None: natural widths, nothing cut)."""

    def __init__(self, columns: list[str], message: str | None, width: int | None, indent: str = ""):
        self.columns = columns
        self.message = columns.index(message) if message is not None else None
        self.short = [i for i in range(len(columns)) if i != self.message]
        self.width, self.indent = width, indent
        self.widths: list[int] = []
        self.shortened = 0

    def measure(self, rows: list[list], header: bool = True) -> None:
        from rich.cells import cell_len

        natural = [max([cell_len(self.columns[i]) if header else 0]
                       + [cell_len(_cell(row[i])[0]) for row in rows]) for i in self.short]
        widths = list(natural)
        if self.width is not None:
            room = self.width - len(self.indent) - len(GAP) * (len(widths) - 1)
            floors = [min(w, NARROWEST) for w in natural]
            while sum(widths) > room:
                wide = [k for k in range(len(widths)) if widths[k] > floors[k]]
                if not wide:
                    break
                widths[max(wide, key=widths.__getitem__)] -= 1
        self.widths = widths

    def _short_line(self, cells: list[tuple[str, str]]):
        """One line of short columns: each cut to its width (at a word boundary, with an ellipsis) and padded.
        Built as a plain string with style spans: rich's per-piece appends cost too much on long worklists."""
        from rich.cells import cell_len
        from rich.text import Span, Text

        parts, spans, at = [self.indent], [], len(self.indent)
        last = len(cells) - 1
        for k, ((text, style), width) in enumerate(zip(cells, self.widths)):
            text, cut = shorten(text, width)
            self.shortened += cut
            if style and text:
                spans.append(Span(at, at + len(text), style))
            if k < last:
                text += " " * (width - cell_len(text)) + GAP
            parts.append(text)
            at += len(text)
        out = Text("".join(parts).rstrip(), spans=spans)
        if self.width is not None and out.cell_len > self.width:  # only when every column is at its floor
            out.truncate(self.width, overflow="ellipsis")
        return out

    def header(self):
        return self._short_line([(self.columns[i], "bold") for i in self.short])

    def row(self, row: list) -> list:
        """A row's lines: its short columns, then its message (if any) on an indented line."""
        from rich.text import Text

        lines = [self._short_line([_cell(row[i]) for i in self.short])]
        if self.message is not None:
            text, style = _cell(row[self.message])
            if text:
                indent = self.indent + INDENT
                room = None if self.width is None else max(self.width - len(indent), 20)
                text, cut = shorten(text, room)
                self.shortened += cut
                lines.append(Text(indent + text, style=style) if style else Text(indent + text))
        return lines

    def print_notes(self, out, legend: str | None = None) -> None:
        if self.shortened:
            out.print(line((f"(… shortened to fit {self.width} columns; piped output and --json show "
                            "everything)", "dim")))
        if legend:
            out.print(line((legend, "dim")))


def shorten(text: str, room: int | None) -> tuple[str, bool]:
    """`text` cut to `room` cells at a word boundary, with an ellipsis; (text, whether it was cut)."""
    from rich.cells import cell_len, set_cell_size

    if room is None or cell_len(text) <= room:
        return text, False
    cut = set_cell_size(text, room - 1).rstrip()
    if text[len(cut):len(cut) + 1] != " ":  # the cut fell inside a word: end at the word before it
        space = cut.rfind(" ")
        if space > room // 3:
            cut = cut[:space]
    return cut.rstrip(" ,;:(-") + "…", True


def say(text) -> None:
    """A line as written (never parsed as markup: paths and names carry brackets), or a styled `line()`."""
    console().print(line(text, newlines=True) if isinstance(text, str) else text)


def plural(count: int, noun: str) -> str:
    """`1 item`, `2 items`."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


# Marks on planned items (calendar, worklists, `patient show`): words, readable without colour.
MARKS = {"overdue": ("OVERDUE", "red"), "partial": ("partial", "yellow"), "done": ("done", "green"),
         "cancelled": ("cancelled", "dim")}
MARK_LEGEND = {"overdue": "OVERDUE = past due", "partial": "partial = panel partly drawn (missing listed)",
               "done": "done = completed", "cancelled": "cancelled = no longer planned"}


def item_marks(row: dict) -> list[str]:
    """Which marks an item carries: overdue, then partial, done or cancelled (its status)."""
    marks = ["overdue"] if row.get("overdue") else []
    return marks + ([row["status"]] if row.get("status") in ("partial", "done", "cancelled") else [])


def item_mark(row: dict):
    """An item's marks as one cell: (words, style)."""
    marks = item_marks(row)
    if not marks:
        return ""
    return " ".join(MARKS[m][0] for m in marks), MARKS[marks[0]][1]


def mark_legend(rows: list[dict]) -> str | None:
    """A legend naming the marks the rows carry."""
    shown = {m for row in rows for m in item_marks(row)}
    return ("Marks: " + "; ".join(MARK_LEGEND[m] for m in MARKS if m in shown)) if shown else None


def item_text(row: dict) -> str:
    """An item's title, its tests (when the title does not name them), what a partial item misses and its
    clinic defaults: the text on an item's second line."""
    title = row["title"]
    tests = [t for t in row.get("tests") or [] if t.lower() not in title.lower()]
    parts = [title + (f" ({', '.join(row['tests'])})" if tests else "")]
    if row.get("missing_text"):
        parts.append(f"missing {row['missing_text']}")
    if row.get("clinic_default"):
        parts.append(f"clinic default: {'; '.join(row['clinic_default'])}")
    return "; ".join(parts)


def worklist(rows: list[dict], title: str, empty: str) -> None:
    """Items grouped by patient: one block per MRN, each item a line of short columns (due, drugs, kind,
    marks) and its text on an indented line below."""
    out = console()
    if not rows:
        out.print(empty)
        return
    patients = len({r["mrn"] for r in rows})
    out.print(line((title, "bold"), f" ({plural(len(rows), 'item')}"
                   + (f", {plural(patients, 'patient')})" if patients > 1 else ")")))
    cells = [[r["due"], "+".join(r["drugs"]), r["kind"], item_mark(r), item_text(r)] for r in rows]
    layout = Layout(["Due", "Drug", "Kind", "Mark", "Item"], "Item", fit_width(out), indent="  ")
    layout.measure(cells, header=False)
    lines = []
    for mrn, group in groupby(zip(rows, cells), key=lambda pair: pair[0]["mrn"]):
        group = list(group)
        heading = line((mrn, "bold"), "  ", group[0][0].get("patient") or "")
        if layout.width is not None:
            heading.truncate(layout.width, overflow="ellipsis")
        lines += [line(), heading]
        for _, row_cells in group:
            lines.extend(layout.row(row_cells))
    emit_lines(out, lines)
    layout.print_notes(out, mark_legend(rows))
