"""jsonl: one JSON object per reminder appended to a file, for other systems.

Exactly once across crashes: each line carries `reminder_id` and `reminder_uid` (the id with the
database's reminder epoch, unique across a restore: tracker/services/reminders.py); every batch is
appended, flushed and fsynced before it is marked sent, and the nightly service remembers the file size at
the last mark. On a retry the lines after that size (written but perhaps not marked) are scanned and their
uids skipped.

Complete or nothing: a batch whose bytes do not all reach the file (a short write, ENOSPC, EFBIG, a failed
fsync) is cut off again and raises, so none of it is marked sent. A torn last line left by a kill is cut
off before the next append (it was never marked, so its reminder is sent again whole).
"""

from __future__ import annotations

import json
import os
import re

_ID = re.compile(rb'"reminder_id":\s*(\d+)')
_UID = re.compile(rb'"reminder_uid":\s*"([0-9a-f]*-?\d+)"')
_TAIL_CHUNK = 64 * 1024


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

    def written_ids(self, since: int) -> set[str]:
        """Reminder uids in lines from byte offset `since` to the end of the file (a line written before
        uids existed: its plain id)."""
        found: set[str] = set()
        if since >= self.size():
            return found
        with open(self.path, "rb") as fh:
            fh.seek(since)
            for line in fh:
                if not line.endswith(b"\n"):  # a torn last line was not fully written
                    continue
                match = _UID.search(line) or _ID.search(line)
                if match:
                    found.add(match.group(1).decode())
        return found

    def send(self, rows: list[dict]) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        data = "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows).encode()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            end = _repair_torn_tail(fd)
            try:
                _write_all(fd, data)
                os.fsync(fd)
            except BaseException:
                _cut(fd, end)  # leave no partial batch behind: the whole batch is retried next run
                raise
        finally:
            os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    """os.write may write less than asked (a full disk, RLIMIT_FSIZE): a short write is a failure."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(f"short write: {len(data) - len(view)} of {len(data)} bytes reached the file")
        view = view[written:]


def _cut(fd: int, size: int) -> None:
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    except OSError:
        pass  # the original error is the one to report; a torn tail left here is cut on the next run


def _repair_torn_tail(fd: int) -> int:
    """Cut a partial last line (no final newline) back to the end of the last whole line; return the size."""
    end = os.lseek(fd, 0, os.SEEK_END)
    if end == 0 or os.pread(fd, 1, end - 1) == b"\n":
        return end
    position = end
    while position > 0:
        start = max(0, position - _TAIL_CHUNK)
        chunk = os.pread(fd, position - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            position = start + newline + 1
            break
        position = start
    os.ftruncate(fd, position)
    os.fsync(fd)
    return position
