"""HL7 v2.x ORU^R01 messages -> LabRows.

hl7apy checks each message's header: the version (MSH-12) must be one it knows, and MSH-9 must parse as a
message type; a header it refuses is refused by name. The segments themselves (PID-3, OBR-7, OBX) are read by
splitting on the message's own separators (from its MSH) and unescaping: hl7apy builds a full object tree
per field, about 5 ms a segment on this machine (83 s for one 10,000-OBX message), and issue 16 asks for
10,000 results in under 30 s. The header check is made once per message type and version.

A file may hold many messages (one after another, optionally in FHS/BHS batch envelopes or MLLP frames).
Text is UTF-8 unless MSH-18 names ISO 8859-1; anything else is refused, naming the message.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import replace

from tracker.errors import InputError
from tracker.labs import LabRow

FRAMING = re.compile(rb"[\x0b\x1c]")
ACCEPTED_STATUS = {"F": "final", "C": "corrected"}
CHARSETS = {"": "utf-8", "UNICODE UTF-8": "utf-8", "UTF-8": "utf-8", "8859/1": "latin-1", "ASCII": "ascii"}


class MessageError(InputError):
    """A message tracker cannot read at all: one line naming the message (MSH-10) and the segment."""

    def __init__(self, control_id: str, segment: str, reason: str):
        self.control_id = control_id
        self.segment = segment
        super().__init__("message", control_id, f"{segment}: {reason}")


def split_messages(data: bytes) -> list[list[bytes]]:
    """The messages of a file, each as its segments (bytes), envelopes and framing dropped."""
    data = FRAMING.sub(b"", data.lstrip(b"\xef\xbb\xbf"))
    segments = [s for s in re.split(rb"\r\n|\r|\n", data) if s.strip()]
    messages: list[list[bytes]] = []
    for segment in segments:
        kind = segment[:3]
        if kind in (b"FHS", b"BHS", b"BTS", b"FTS"):
            continue
        if kind == b"MSH":
            messages.append([segment])
        elif messages:
            messages[-1].append(segment)
        else:
            raise MessageError("(before the first MSH)", f"{kind.decode('latin-1')}[1]",
                               "a segment before any MSH header")
    return messages


def _decode(segments: list[bytes], index: int) -> tuple[str, list[str]]:
    """The control id and the segments as text, in the charset MSH-18 names."""
    msh = segments[0].decode("latin-1")
    separator = msh[3:4] or "|"
    fields = msh.split(separator)
    control_id = fields[9].strip() if len(fields) > 9 and fields[9].strip() else f"#{index}"
    charset = fields[17].strip().upper() if len(fields) > 17 else ""
    encoding = CHARSETS.get(charset)
    if encoding is None:
        raise MessageError(control_id, "MSH[1]", f"MSH-18 character set {charset!r} is not supported "
                                                 f"(UNICODE UTF-8 or 8859/1)")
    texts = []
    for number, raw in enumerate(segments):
        try:
            texts.append(raw.decode(encoding))
        except UnicodeDecodeError as exc:
            name = raw[:3].decode("latin-1")
            raise MessageError(control_id, f"{name}[{_ordinal(segments, number)}]",
                               f"not {encoding.upper()} text (byte 0x{raw[exc.start]:02x}); "
                               f"declare the character set in MSH-18") from None
    return control_id, texts


def _ordinal(segments: list, number: int) -> int:
    """1-based position of segment `number` among the segments of its kind (OBX[3] = the third OBX)."""
    kind = segments[number][:3]
    return sum(1 for s in segments[: number + 1] if s[:3] == kind)


def parse_hl7(data: bytes) -> list[LabRow]:
    rows: list[LabRow] = []
    for index, segments in enumerate(split_messages(data), start=1):
        rows.extend(parse_message(segments, index))
    if not rows and not split_messages(data):
        raise MessageError("(none)", "MSH[1]", "no HL7 message in the file")
    return rows


def parse_message(segments: list[bytes], index: int = 1) -> list[LabRow]:
    """One ORU^R01 message (its segments) -> a LabRow per OBX."""
    control_id, texts = _decode(segments, index)
    msh_text = texts[0]
    fields = msh_text.split("|")
    if msh_text[3:4] != "|" or len(fields) < 12 or len(fields[1]) < 4:
        raise MessageError(control_id, "MSH[1]", "expected the field separator |, encoding characters ^~\\& "
                                                 "and fields up to MSH-12 (version)")
    encoding_chars = fields[1]
    version = fields[11].split(encoding_chars[0])[0].strip()
    message_type = fields[8].strip()
    _check_header(message_type, version, control_id)
    if not message_type.startswith(f"ORU{encoding_chars[0]}R01"):
        raise MessageError(control_id, "MSH[1]", f"MSH-9 {message_type!r}: only ORU^R01 result messages are read")
    facility = fields[3].strip() or "-"
    components, repetition, escape, subcomponent = encoding_chars[:4]
    unescape = _unescaper(escape, {"F": "|", "S": components, "T": subcomponent, "R": repetition, "E": escape})

    mrn: str | None = None
    collected = ""
    sent_at = _hl7_timestamp(fields[6].split(encoding_chars[0])[0]) if len(fields) > 6 else None  # MSH-7
    reported_at = sent_at
    rows: list[LabRow] = []
    under: list[int] = []  # each row's OBR: its place among the message's OBRs (0: before any)
    obx_count = obr_count = 0
    seen_pid = False
    for number, text in enumerate(texts[1:], start=1):
        kind = text[:3]
        label = f"{kind}[{_ordinal(segments, number)}]"
        if len(text) > 3 and text[3] != "|" or not kind.isalnum():
            raise MessageError(control_id, label, f"malformed segment name {text.split('|', 1)[0][:20]!r} "
                                                  f"(expected three letters and |)")
        if kind == "PID":
            if seen_pid:
                raise MessageError(control_id, label, "more than one patient in one message")
            seen_pid = True
            mrn = _patient_id(text.split("|"), components, repetition, unescape, control_id, label)
        elif kind == "OBR":
            obr_count += 1
            obr = text.split("|")
            collected = obr[7].split(components)[0] if len(obr) > 7 else ""
            # OBR-22, when the results were reported or their status last changed: what orders two
            # corrections of one result (tracker/core/lab_corrections.py); the message's time without it.
            reported_at = (_hl7_timestamp(obr[22].split(components)[0]) if len(obr) > 22 else None) or sent_at
        elif kind == "OBX":
            obx_count += 1
            if mrn is None:
                raise MessageError(control_id, label, "a result before the patient (PID)")
            rows.append(_obx_row(text.split("|"), components, unescape, control_id, facility, obx_count, mrn,
                                 collected, reported_at))
            under.append(obr_count)
    if not seen_pid:
        raise MessageError(control_id, "PID[1]", "missing: the message names no patient")
    if not rows:
        raise MessageError(control_id, "OBX[1]", "missing: the message carries no result")
    set_ids = [row.source_id.rsplit("|", 1)[1] for row in rows]
    if len(set(set_ids)) < len(set_ids):
        # OBX-1 restarts under each OBR (common practice): the result's identity is its OBR's place and its
        # OBX-1 (`hl7:<facility>|<MSH-10>|OBR2|1`). A message whose OBX-1 are unique keeps the id it always had
        # (`...|<MSH-10>|<OBX-1>`), so earlier imports are recognised; that form is kept as the legacy id.
        prefix = f"hl7:{facility}|{control_id}|"
        rows = [replace(row, source_id=f"{prefix}OBR{obr}|{set_id}", legacy_source_id=row.source_id)
                for row, obr, set_id in zip(rows, under, set_ids)]
    if not (len(fields) > 9 and fields[9].strip()):
        # Without MSH-10 a result has no identity to be recognised by when sent again (the `#<n>` standing in
        # for it is the message's place in its file: every id-less message's first result would be `#1|1`).
        # Refused, unless the very same result is on record under that id (imported before this rule).
        rows = [replace(row, problem=row.problem or NO_CONTROL_ID) for row in rows]
    return rows


NO_CONTROL_ID = ("MSH-10 message control id missing: tracker cannot tell this message's results from another "
                 "message's; the laboratory must send MSH-10")


@functools.lru_cache(maxsize=64)
def _known_header(message_type: str, version: str) -> str | None:
    """hl7apy's verdict on a header with this message type and version: None, or why it refuses it."""
    from hl7apy.exceptions import HL7apyException
    from hl7apy.parser import parse_segment

    try:
        parse_segment(f"MSH|^~\\&|||||||{message_type}|0|P|{version}", version=version or None)
    except HL7apyException as exc:
        return _why(exc)
    return None


def _check_header(message_type: str, version: str, control_id: str) -> None:
    why = _known_header(message_type, version)
    if why is not None:
        raise MessageError(control_id, "MSH[1]", f"not a header hl7apy reads ({why})")


def _why(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:120]


def _patient_id(fields: list[str], components: str, repetition: str, unescape, control_id: str, label: str) -> str:
    """PID-3's medical record number (the identifier typed MR, else the first)."""
    candidates = []
    for cx in (fields[3].split(repetition) if len(fields) > 3 else []):
        parts = cx.split(components)
        value = unescape(parts[0]).strip()
        kind = parts[4].strip() if len(parts) > 4 else ""
        if value:
            candidates.append((kind != "MR", value))
    if not candidates:
        raise MessageError(control_id, label, "PID-3 carries no patient identifier")
    return min(candidates, key=lambda c: c[0])[1]  # the first typed MR, else the first


def _unescaper(escape: str, table: dict[str, str]):
    pattern = re.compile(re.escape(escape) + r"([FSTRE])" + re.escape(escape))

    def unescape(text: str) -> str:
        return pattern.sub(lambda m: table[m.group(1)], text) if escape in text else text

    return unescape


def _obx_row(fields: list[str], components: str, unescape, control_id: str, facility: str, ordinal: int, mrn: str,
             collected: str, reported_at: dt.datetime | None = None) -> LabRow:
    def field(n: int) -> str:
        return fields[n] if len(fields) > n else ""

    where = f"message {control_id} OBX[{ordinal}]"
    set_id = field(1).strip() or str(ordinal)
    identifier = field(3).split(components)
    codes: list[tuple[str, str]] = []
    for code_at, system_at in ((0, 2), (3, 5)):  # the identifier and its alternate (CE/CWE)
        code = unescape(identifier[code_at]).strip() if len(identifier) > code_at else ""
        system = identifier[system_at].strip() if len(identifier) > system_at else ""
        if code:
            codes.append((system, code))
    codes.sort(key=lambda pair: pair[0] not in ("LN", "LOINC"))
    value_type = field(2).strip().upper()
    raw_value = field(5)
    plain_number = True
    if value_type in ("CE", "CWE", "CNE"):
        parts = raw_value.split(components)
        value = parts[1] if len(parts) > 1 and parts[1].strip() else parts[0]
    elif value_type == "SN":  # <comparator>^<num1>^<separator/suffix>^<num2>: plain when `^32` or `=^32`
        parts = [unescape(part).strip() for part in raw_value.split(components)]
        comparator, number, *rest = [*parts, "", ""][:2] + [p for p in parts[2:] if p]
        plain_number = len(parts) > 1 and comparator in ("", "=") and bool(number) and not rest
        value = number if plain_number else raw_value
    else:
        value = raw_value
    value = unescape(value).strip()
    # OBX-6 is coded (CE/CWE: identifier^text^system^alternate identifier^...): some laboratories send the unit
    # as text only (`^mg/dL`) or as the alternate identifier; the first given is the unit (tracker/units.py
    # reads it or refuses it, as any other spelling).
    unit_parts = [unescape(part).strip() for part in field(6).split(components)]
    unit = next((unit_parts[at] for at in (0, 1, 3) if at < len(unit_parts) and unit_parts[at]), None)
    low, high = _reference_range(unescape(field(7)).strip())
    status = field(11).strip().upper()
    problem = None
    if not plain_number:
        problem = (f"OBX-2 SN (structured numeric) {value!r} is not a plain value (a comparator such as <5, a "
                   f"range or a ratio); enter it by hand")
    elif status not in ACCEPTED_STATUS:
        problem = (f"OBX-11 status {status!r}: only final (F) and corrected (C) results are recorded"
                   if status else "OBX-11 status missing: only final (F) and corrected (C) results are recorded")
    elif not value:
        problem = "OBX-5 value missing"
    taken = field(14).strip() or collected.strip()
    return LabRow(where=where, source_id=f"hl7:{facility}|{control_id}|{set_id}", mrn=mrn, codes=tuple(codes),
                  value=value, unit=unit, taken_on=_hl7_date(taken), ref_low=low, ref_high=high, problem=problem,
                  corrects=status == "C", withdrawn=status == "W", reported_at=reported_at)


def _reference_range(text: str) -> tuple[str | None, str | None]:
    """OBX-7: `2.0-7.5`, `<40`, `>90` (anything else is left out: the vocabulary's range applies)."""
    match = re.fullmatch(r"\s*([-+]?\d*\.?\d+)\s*-\s*([-+]?\d*\.?\d+)\s*", text)
    if match:
        return match.group(1), match.group(2)
    match = re.fullmatch(r"\s*<=?\s*(\d*\.?\d+)\s*", text)
    if match:
        return None, match.group(1)
    match = re.fullmatch(r"\s*>=?\s*(\d*\.?\d+)\s*", text)
    if match:
        return match.group(1), None
    return None, None


_TS = re.compile(r"(\d{4})(\d{2})(\d{2})(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,4}))?([+-]\d{4})?")


def _hl7_timestamp(text: str) -> dt.datetime | None:
    """An HL7 TS/DTM to the minute or finer (`202401051230`, `20240105123000.5+0100`) as a UTC datetime
    (one without an offset is taken as written: a laboratory writes its times one way); None for anything
    else (a report time only orders corrections: one the laboratory left out or wrote otherwise leaves them
    in the order received)."""
    match = _TS.fullmatch(text.strip())
    if not match or match.group(5) is None:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        moment = dt.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0),
                             int((fraction or "0").ljust(6, "0")), tzinfo=dt.timezone.utc)
        if offset:
            sign = -1 if offset[0] == "-" else 1
            moment -= sign * dt.timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5]))
    except (ValueError, OverflowError):
        return None
    return moment


def _hl7_date(text: str) -> str:
    """An HL7 TS (`20240105`, `202401051230+0100`) as an ISO date; anything else as given, for the date
    check to refuse by name."""
    match = re.match(r"^(\d{4})(\d{2})(\d{2})", text)
    return f"{match.group(1)}-{match.group(2)}-{match.group(3)}" if match else text
