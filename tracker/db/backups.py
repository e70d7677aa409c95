"""Backups of the database: made by `tracker db backup` and automatically before every migration, restored by
`tracker db restore`.

SQLite: the online backup API (`sqlite3.Connection.backup`), a consistent copy while others write; file
names are passed to SQLite as file names, never spliced into SQL, so any path works. PostgreSQL: `pg_dump`
in its custom format where it is installed (restored with `pg_restore`).

Default location: a `backups/` folder beside the SQLite file (for PostgreSQL, in the user's data
directory), 0700, files 0600 named `<database>-<UTC timestamp>-<why>.db|.dump`; only the newest
`keep` of them are kept (`[backups] keep`, a clinic default). A backup written elsewhere (`--out`) is the
user's and never rotated. Each is written under a partial name of its own, locked while written, so backups
running at once never touch each other's files (see `_write`).
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import shutil
import sqlite3
import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import Engine

from tracker.errors import BackupError, InputError

DEFAULT_KEEP = 10  # clinic default: how many backups of a database the backups/ folder keeps
_STAMP = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class Backup:
    path: Path
    size: int
    engine: str  # sqlite | postgresql
    rotated: tuple[str, ...] = ()  # older backups removed to keep `keep`


# --- where ---------------------------------------------------------------------------------------------


def sqlite_path(engine: Engine) -> Path | None:
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    return Path(database)


def _stem(engine: Engine) -> str:
    path = sqlite_path(engine)
    if path is not None:
        return path.stem
    return engine.url.database or "tracker"


def backups_dir(engine: Engine) -> Path:
    path = sqlite_path(engine)
    if path is not None:
        return path.parent / "backups"
    from platformdirs import user_data_dir

    return Path(user_data_dir("tracker", appauthor=False)) / "backups"  # beside engine.default_db_path()


def _names(engine: Engine, why: str) -> Iterator[Path]:
    """`<stem>-<UTC timestamp>-<why>.<ext>` in the backups folder, then `<stem>-<stamp>-2-<why>.<ext>` and so
    on (two in one second): the first not taken when the backup is whole is its name (`_publish`)."""
    from tracker.dates import utcnow
    from tracker.private_files import private_dir

    folder = backups_dir(engine)
    private_dir(folder)
    ext = "db" if engine.dialect.name == "sqlite" else "dump"
    base = f"{_stem(engine)}-{utcnow().strftime(_STAMP)}"
    yield folder / f"{base}-{why}.{ext}"
    for n in itertools.count(2):
        yield folder / f"{base}-{n}-{why}.{ext}"


# --- writing under a partial name ------------------------------------------------------------------------
#
# A file is written under a partial name of its own (`<name>.<pid>-<random>.partial`, beside it, so the
# final rename stays in one folder) and given its name only when whole, so a killed copy never looks like a
# backup. Each writer holds an flock on its partial from creating it until it is renamed, so two backups at
# once never touch each other's: rotation removes only a partial no process holds (one a killed backup
# left: the kernel dropped its lock).

PARTIAL = ".partial"
# What SQLite writes beside a file it fills (the rollback journal of the copy; the WAL while it goes back to
# one file): a backup killed while copying leaves them beside its partial, and they go with it.
SQLITE_SIDECARS = ("-journal", "-wal", "-shm")


def _new_partial(target: Path) -> tuple[Path, int]:
    """A new empty 0600 file of this attempt's own beside `target`, and a descriptor holding its flock."""
    import fcntl

    while True:
        path = target.with_name(f"{target.name}.{os.getpid()}-{secrets.token_hex(4)}{PARTIAL}")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            continue
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return path, fd
        except FileNotFoundError:
            pass  # a rotation took it for a killed backup's, between its creation and its lock: a new one
        os.close(fd)


def _publish(partial: Path, targets: Iterable[Path]) -> Path:
    """Give the whole `partial` the first of `targets` not taken (never replacing a file: a hard link, which
    fails on an existing name, then the partial name removed); FileExistsError when all are taken."""
    for target in targets:
        try:
            os.link(partial, target)
        except FileExistsError:
            continue
        except OSError:  # a file system without hard links: checked, then renamed
            if target.exists():
                continue
            os.replace(partial, target)
            return target
        partial.unlink()
        return target
    raise FileExistsError(partial)


def _write(write: Callable[[Path], None], targets: Iterable[Path],
           on_written: Callable[[Path], None] | None = None) -> Path:
    """`write(partial)` into a partial file of this attempt's own, then published under the first of
    `targets` not taken (its name returned); a failed write leaves nothing. `on_written(partial)`, if given,
    is called once the partial is whole, before it is published (tests run a second backup there)."""
    targets = iter(targets)
    first = next(targets)
    partial, fd = _new_partial(first)
    try:
        write(partial)
        if on_written is not None:
            on_written(partial)
        return _publish(partial, itertools.chain([first], targets))
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)  # after the partial name is gone: its flock kept rotation away until then


def _stale(partial: Path, *, remove: bool = False) -> bool:
    """Whether no process holds `partial`'s flock (a killed backup left it), taking the lock for an instant;
    with `remove`, such a partial (and SQLite's journal of it) is removed while the lock is held (a backup
    that created it and has not yet locked it then finds it gone, and makes another: `_new_partial`)."""
    import fcntl

    try:
        fd = os.open(partial, os.O_RDONLY)
    except FileNotFoundError:
        return False  # published or removed meanwhile
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a backup is writing it
        if os.stat(partial).st_ino != os.fstat(fd).st_ino:
            return False
        if remove:
            partial.unlink()
            for suffix in SQLITE_SIDECARS:
                Path(f"{partial}{suffix}").unlink(missing_ok=True)
        return True
    except FileNotFoundError:
        return False
    finally:
        os.close(fd)


def _remove_stale_partials_of(target: Path) -> None:
    """Remove the partial files beside `target` written for its name that no process holds (killed
    backups to the same `--out` file; also the former `<name>.partial`): outside backups/, rotation never
    sees them."""
    pattern = re.compile(re.escape(target.name) + r"(\.\d+-[0-9a-f]+)?" + re.escape(PARTIAL))
    for path in target.parent.iterdir():
        if pattern.fullmatch(path.name) and path.is_file():
            _stale(path, remove=True)


def rotation(engine: Engine, keep: int) -> list[Path]:
    """The files `rotate` would remove: all but the newest `keep` backups of this database in its backups
    folder, and the partial files killed backups left (a partial a backup is writing is never listed)."""
    folder = backups_dir(engine)
    if not folder.is_dir():
        return []
    pattern = re.compile(re.escape(_stem(engine)) + r"-\d{8}T\d{6}Z-[a-z0-9.-]+\.(db|dump)"
                         r"(\.\d+-[0-9a-f]+\.partial|\.partial)?$")  # (before: `<name>.partial`)
    ours = [p for p in folder.iterdir() if p.is_file() and pattern.fullmatch(p.name)]
    removed = [p for p in ours if p.name.endswith(PARTIAL) and _stale(p)]
    whole = sorted((p for p in ours if not p.name.endswith(PARTIAL)),
                   key=lambda p: (p.stat().st_mtime_ns, p.name), reverse=True)
    return removed + whole[max(keep, 1):]


def remove(paths: list[Path]) -> tuple[str, ...]:
    """Remove `rotation`'s files (a partial only if still left by a killed backup); the names of the whole
    backups among them."""
    for path in paths:
        if path.name.endswith(PARTIAL):
            _stale(path, remove=True)
        else:
            path.unlink(missing_ok=True)
    return tuple(p.name for p in paths if not p.name.endswith(PARTIAL))


def rotate(engine: Engine, keep: int) -> tuple[str, ...]:
    """Remove all but the newest `keep` backups of this database in its backups folder (and any partial
    file a killed backup left); the names removed."""
    return remove(rotation(engine, keep))


# --- SQLite ----------------------------------------------------------------------------------------------


def sqlite_copy(source: Path | str, target: Path, *, names: Iterable[Path] = (),
                on_written: Callable[[Path], None] | None = None) -> Path:
    """Copy a SQLite database with the online backup API into `target` (0600; written under a partial name
    of its own and given its name when whole, see `_write`), or, taken, the first of `names` free; the name
    given."""

    def write(partial: Path) -> None:
        try:
            src = sqlite3.connect(str(source), timeout=30)
            try:
                dst = sqlite3.connect(str(partial))  # the partial exists, 0600: SQLite keeps the mode it finds
                try:
                    src.backup(dst)  # all pages in one step: a consistent snapshot under a read lock
                    # The copy keeps the source's WAL flag; checkpointed and back to a single file.
                    dst.execute("PRAGMA journal_mode=DELETE")
                finally:
                    dst.close()
            finally:
                src.close()
        except sqlite3.Error as exc:  # a full disk, an I/O error: one line, as pg_dump's failure (the partial goes)
            raise BackupError(f"backup: {target} could not be written: {exc}") from None

    return _write(write, itertools.chain([target], names), on_written)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --- PostgreSQL ------------------------------------------------------------------------------------------


def _pg_args(engine: Engine) -> tuple[str, dict]:
    """(libpq URL without the password, environment with PGPASSWORD): the password never reaches argv."""
    url = engine.url
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None).render_as_string(hide_password=False)
    return plain, env


def pg_tool(name: str) -> str | None:
    return shutil.which(name)


def pg_dump(engine: Engine, target: Path, *, names: Iterable[Path] = (),
            on_written: Callable[[Path], None] | None = None) -> Path:
    """`pg_dump` (custom format) into `target` (0600; under a partial name of its own until whole, see
    `_write`), or, taken, the first of `names` free; the name given."""
    tool = pg_tool("pg_dump")
    if tool is None:
        raise BackupError("backup: pg_dump is not installed (PATH); install the PostgreSQL client tools")
    conninfo, env = _pg_args(engine)

    def write(partial: Path) -> None:
        done = subprocess.run([tool, "--format=custom", "--no-owner", f"--file={partial}",
                               f"--dbname={conninfo}"], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise BackupError(f"backup: pg_dump failed: {_first_line(done.stderr)}")

    return _write(write, itertools.chain([target], names), on_written)


def _first_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[0].strip() if lines else "no message"


# --- making one ------------------------------------------------------------------------------------------


def make_backup(engine: Engine, out: str | Path | None = None, *, why: str = "manual",
                keep: int | None = DEFAULT_KEEP, on_written: Callable[[Path], None] | None = None) -> Backup:
    """A backup of the whole database: at `out`, or in the backups folder (then rotated to `keep`; not
    with `keep=None`: the caller rotates, see tracker/services/backups.py). `on_written(partial)`: see
    `_write`."""
    if out is not None:
        target = Path(out).expanduser().resolve()
        if not target.parent.is_dir():
            raise InputError("out", str(out), f"directory {target.parent} does not exist")
        if target.exists():
            raise InputError("out", str(out), "already exists; choose a new file name")
        names: Iterable[Path] = ()
    else:
        names = _names(engine, why)
        target = next(names)
    source = sqlite_path(engine)
    try:
        if source is not None:
            target = sqlite_copy(source, target, names=names, on_written=on_written)
        elif engine.dialect.name == "postgresql":
            target = pg_dump(engine, target, names=names, on_written=on_written)
        else:
            raise BackupError(f"backup: no backup for the {engine.dialect.name} dialect")
    except FileExistsError:  # `out` made by someone else meanwhile: never overwritten
        raise InputError("out", str(out), "already exists; choose a new file name") from None
    _fsync_file(target)
    if out is not None:
        _remove_stale_partials_of(target)  # a killed earlier attempt at this file left one
    rotated = rotate(engine, keep) if out is None and keep is not None else ()
    return Backup(target, target.stat().st_size, engine.dialect.name, rotated)


# --- checking a file before it is restored ---------------------------------------------------------------


def sqlite_revision(path: Path, known: set[str]) -> str:
    """The schema revision (one of `known`) of a SQLite file that passes integrity_check; BackupError
    otherwise."""
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise BackupError(f"restore: {path}: cannot be opened as SQLite ({exc})") from None
    try:
        try:
            check = conn.execute("PRAGMA integrity_check").fetchall()
            revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.DatabaseError as exc:
            raise BackupError(f"restore: {path}: not a tracker database ({exc})") from None
    finally:
        conn.close()
    if check != [("ok",)]:
        raise BackupError(f"restore: {path}: integrity check failed ({check[0][0]})")
    if revision is None or revision[0] not in known:
        raise BackupError(f"restore: {path}: schema revision {revision[0] if revision else None!r} "
                          "is not one this tracker knows")
    return revision[0]


def pg_check_dump(path: Path) -> None:
    tool = pg_tool("pg_restore")
    if tool is None:
        raise BackupError("restore: pg_restore is not installed (PATH); install the PostgreSQL client tools")
    listed = subprocess.run([tool, "--list", str(path)], capture_output=True, text=True)
    if listed.returncode != 0:
        raise BackupError(f"restore: {path}: not a pg_dump custom-format file ({_first_line(listed.stderr)})")
    if " alembic_version" not in listed.stdout:
        raise BackupError(f"restore: {path}: a PostgreSQL dump, but not of a tracker database")


def pg_restore(engine: Engine, path: Path) -> None:
    tool = pg_tool("pg_restore")
    conninfo, env = _pg_args(engine)
    done = subprocess.run([tool, "--clean", "--if-exists", "--no-owner", "--single-transaction",
                           f"--dbname={conninfo}", str(path)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise BackupError(f"restore: pg_restore failed (the database is as it was): {_first_line(done.stderr)}")
