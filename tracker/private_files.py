"""Files holding patient data are private to the account running tracker, whatever its umask: the database
(SQLite gives its -wal and -shm the database file's mode), backups, ICS exports and CSV rejects are
created 0600 and the data directory 0700. An existing database that others can read is warned about."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: str | Path) -> None:
    """Create a directory (and parents) 0700; an existing one is left as the administrator set it."""
    path = Path(path)
    if not path.is_dir():
        path.mkdir(parents=True, mode=DIR_MODE)
        os.chmod(path, DIR_MODE)  # mkdir's mode is filtered by the umask


def create_private(path: str | Path) -> None:
    """Create an empty file 0600 if it does not exist, so whatever later writes it (SQLite) keeps that mode."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def open_private(path: str | Path, mode: str = "w", **kwargs):
    """`open(path, mode)` for writing ("w", "wb"), the file created or truncated with mode 0600 (a file that
    was readable by others is made private before anything is written to it)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"open_private: mode {mode!r}: only 'w' or 'wb'")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def warn_if_shared(path: str | Path) -> None:
    """One line on stderr when a database file can be read or written by the group or others."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return
    if mode & 0o077:
        print(f"warning: database {path} is readable by others (mode {mode:04o}); "
              f"make it private with: chmod 600 {path}", file=sys.stderr)
