"""Text from users (MRNs, names, notes, free-text values) shown to a terminal exactly as typed, never
obeyed: control characters (ESC starts ANSI colours and OSC 8 hyperlinks, CR overwrites a line) and
invisible format characters (bidirectional overrides, zero-width spaces) are written as visible escapes
such as `\\x1b` and `\\u202e`. Rich markup is escaped where rich renders (tracker/cli/render.py)."""

from __future__ import annotations

import unicodedata

# Cc: C0, DEL and C1 controls; Cf: bidi overrides and isolates, zero-width and other invisible characters;
# Zl/Zp: the Unicode line and paragraph separators.
_UNSAFE_CATEGORIES = ("Cc", "Cf", "Zl", "Zp")


_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escaped(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(value: object, *, newlines: bool = True) -> str:
    """`value` as text safe to write to a terminal; with `newlines=False` a newline and a tab are escaped
    too (a single-line field cannot fake a second line of output)."""
    text = "" if value is None else str(value)
    if text.isprintable():  # the common case (no controls, no newlines): nothing to look at
        return text
    keep = "\n\t" if newlines else ""
    return "".join(_escaped(ch) if ch not in keep and unicodedata.category(ch) in _UNSAFE_CATEGORIES else ch
                   for ch in text)
