"""jsonl: one JSON object per reminder appended to a file, for other systems.

Exactly once across crashes: each line carries `reminder_id`; every batch is appended, flushed and
fsynced before it is marked sent, and the nightly service remembers the file size at the last mark. On a
retry the lines after that size (written but perhaps not marked) are scanned and their ids skipped.
"""

from __future__ import annotations

import json
import os
import re

_ID = re.compile(rb'"reminder_id":\s*(\d+)')


class JsonlChannel:
    name = "jsonl"
    digest = False

    def __init__(self, path: str):
        self.path = path

    def size(self) -> int:
        try:
            return os.path.getsize(self.path)
        except FileNotFoundError:
            return 0

    def written_ids(self, since: int) -> set[int]:
        """Reminder ids in lines from byte offset `since` to the end of the file."""
        found: set[int] = set()
        if since >= self.size():
            return found
        with open(self.path, "rb") as fh:
            fh.seek(since)
            for line in fh:
                match = _ID.search(line)
                if match and line.endswith(b"\n"):  # a torn last line was not fully written
                    found.add(int(match.group(1)))
        return found

    def send(self, rows: list[dict]) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        data = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows).encode()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            end = os.lseek(fd, 0, os.SEEK_END)
            if end > 0 and os.pread(fd, 1, end - 1) != b"\n":
                os.write(fd, b"\n")  # end a line torn by a crash, so the next object starts on its own line
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
