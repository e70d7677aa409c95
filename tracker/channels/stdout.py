"""stdout: the readable digest, written as it streams from the database."""

from __future__ import annotations

from typing import TextIO

from tracker.channels.digest import digest_lines
from tracker.display import printable


class StdoutChannel:
    name = "stdout"
    digest = True

    def __init__(self, out: TextIO):
        self.out = out

    def send_digest(self, rows, count, as_of, from_day=None) -> None:
        for line in digest_lines(rows, count, as_of, from_day):
            self.out.write(printable(line) + "\n")  # MRNs and names cannot drive the terminal
        self.out.flush()
