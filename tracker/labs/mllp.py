"""HL7 v2 over MLLP: each message framed as 0x0B <message> 0x1C 0x0D, answered with an ACK in the same
framing. The server reads frames on each connection, one after another; what a message means is the
caller's `handle(message) -> (code, text)` (services/lab_import.py: accept_message), so this module knows
sockets and framing only. Connections are served one at a time: every accepted message is one database
transaction, and the database's write lock serialises them anyway."""

from __future__ import annotations

import datetime as dt
import re
import socketserver

START, END = b"\x0b", b"\x1c\x0d"
MAX_MESSAGE_BYTES = 10_000_000
IDLE_TIMEOUT_S = 60


def read_frames(rfile):
    """Yield each framed message read from a binary stream; stop at end of stream. Bytes outside a frame
    (a stray newline between frames) are skipped."""
    buffer = b""
    while True:
        chunk = rfile.read1(65536) if hasattr(rfile, "read1") else rfile.read(65536)
        if not chunk:
            return
        buffer += chunk
        while True:
            start = buffer.find(START)
            if start < 0:
                buffer = b""
                break
            end = buffer.find(END, start)
            if end < 0:
                buffer = buffer[start:]
                if len(buffer) > MAX_MESSAGE_BYTES:
                    raise ValueError("an MLLP frame larger than the limit")
                break
            yield buffer[start + 1:end]
            buffer = buffer[end + len(END):]


def frame(message: bytes) -> bytes:
    return START + message + END


def _escape(text: str) -> str:
    """Text for an HL7 field: the delimiters escaped, one line."""
    out = text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\").replace("&", "\\T\\")
    return out.replace("~", "\\R\\").replace("\r", " ").replace("\n", " ")[:200]


def ack(message: bytes, code: str, text: str, now: dt.datetime | None = None) -> bytes:
    """An ACK (MSA-1 AA, AE or AR) to `message`, echoing its control id (MSA-2) and swapping its sender and
    receiver. A message too broken to read a header from still gets one (MSA-2 empty)."""
    # The first segment, whichever end of line the laboratory used (HL7 says CR; some send LF or CR LF):
    # split on CR only, an LF-separated message's MSH-12 held the next segments (finding B11).
    header = re.split(rb"[\r\n]", message.lstrip(b"\xef\xbb\xbf \t\r\n"), maxsplit=1)[0].decode("latin-1")
    fields = header.split("|") if header.startswith("MSH|") else ["MSH", "^~\\&"]

    def field(n: int) -> str:  # MSH-n
        return fields[n - 1] if len(fields) >= n else ""

    stamp = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%d%H%M%S")
    control_id = field(10)
    version = field(12) or "2.5.1"
    msh = "|".join(["MSH", "^~\\&", field(5) or "TRACKER", field(6), field(3), field(4), stamp, "",
                    "ACK^R01^ACK", f"ACK{control_id}"[:20] or "ACK", "P", version])
    msa = "|".join(["MSA", code, control_id, _escape(text)])
    return (msh + "\r" + msa + "\r").encode("utf-8")


class MLLPServer(socketserver.TCPServer):
    allow_reuse_address = True

    def __init__(self, address, handle, on_message=None):
        self.handle_message = handle
        self.on_message = on_message  # (message, code, text) after each answer, e.g. to print a log line
        super().__init__(address, _Handler)


class _Handler(socketserver.StreamRequestHandler):
    timeout = IDLE_TIMEOUT_S

    def handle(self) -> None:
        try:
            for message in read_frames(self.rfile):
                code, text = self.server.handle_message(message)
                self.wfile.write(frame(ack(message, code, text)))
                self.wfile.flush()
                if self.server.on_message is not None:
                    self.server.on_message(message, code, text)
        except (OSError, ValueError):
            return  # a dropped or idle connection, or an oversized frame: close it
