"""The lab inbox (issue 16 item 2): a folder the laboratory drops result files in (`[labs] inbox`), imported
by the nightly run and by `tracker labs import-inbox`.

- Each file is read by content, as `tracker result import FILE` reads it: HL7 v2 ORU^R01 and FHIR JSON through
  services/lab_import.py (`import_lab_file`), anything else as the CSV import (`import_results`); all or
  nothing, in one transaction per file.
- A file imported is moved to `done/`; a file refused (a bad result, an unknown patient or code, an
  unreadable file) to `rejected/`, with `<name>.reason.txt` beside it holding the one-line reason. The
  database is left as it was for a refused file (nothing written, not even an audit row: the reason file
  and the run's counts say what happened).
- Never twice: the SHA-256 of every imported file is recorded with it (lab_inbox_file, migration 0018), in
  the file's own transaction. A file whose bytes are already on record is moved to done/ unimported (a
  crash after the commit but before the move; a laboratory sending the same CSV again).
- Files still being written are left for the next run: names starting with `.` or ending in `.part` (write
  `name.part`, then rename it to `name`: a rename is atomic), and any file modified at or after the run
  started. Sub-folders (done/, rejected/ among them) are not read.
- A database that refuses or times out (exit 4) leaves the file in the inbox for the next run.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from tracker.errors import ConflictError, GateError, InputError, NotFoundError, TrackerError

DONE, REJECTED = "done", "rejected"
PART_SUFFIX = ".part"
REASON_SUFFIX = ".reason.txt"
# A file's fault, so it is moved to rejected/; any other error (the database, the config) leaves it in place.
FILE_FAULTS = (InputError, NotFoundError, GateError)


@dataclass
class InboxReport:
    inbox: str
    imported: list[tuple[str, str, int]] = field(default_factory=list)  # (file, format, results stored)
    already: list[str] = field(default_factory=list)  # files whose bytes were imported before
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    waiting: list[str] = field(default_factory=list)  # still being written, or left for a database error

    def counts(self) -> dict:
        return {"imported": len(self.imported), "already": len(self.already), "rejected": len(self.rejected),
                "waiting": len(self.waiting)}

    def as_dict(self) -> dict:
        return {"inbox": self.inbox, **self.counts(),
                "files": [{"file": f, "outcome": "imported", "format": k, "results": n} for f, k, n in self.imported]
                + [{"file": f, "outcome": "already"} for f in self.already]
                + [{"file": f, "outcome": "rejected", "reason": r} for f, r in self.rejected]
                + [{"file": f, "outcome": "waiting"} for f in self.waiting]}


def pending_files(inbox: Path, started: float) -> tuple[list[Path], list[Path]]:
    """(the files to import now, by name; those still being written)."""
    ready, waiting = [], []
    for entry in sorted(inbox.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or not entry.is_file() or entry.is_symlink():
            continue
        if entry.name.endswith(PART_SUFFIX) or entry.stat().st_mtime >= started:
            waiting.append(entry)
        else:
            ready.append(entry)
    return ready, waiting


def import_inbox(engine: Engine, library, settings, today, user: str, *, started: float | None = None) -> InboxReport:
    """Import every ready file of `[labs] inbox` (see the module doc). `started`: the run's start (epoch
    seconds; now when not given); files modified since are left for the next run."""
    from tracker.private_files import private_dir

    if settings.labs.inbox is None:
        raise InputError("labs.inbox", None, "no inbox folder is configured ([labs] inbox in the site config)")
    inbox = Path(settings.labs.inbox)
    if not inbox.is_dir():
        raise InputError("labs.inbox", str(inbox), "not a folder")
    started = time.time() if started is None else started
    report = InboxReport(str(inbox))
    ready, waiting = pending_files(inbox, started)
    report.waiting += [p.name for p in waiting]
    if ready:
        private_dir(inbox / DONE)
        private_dir(inbox / REJECTED)
    for path in ready:
        _import_one(engine, library, settings, today, user, path, report)
    return report


def _import_one(engine, library, settings, today, user, path: Path, report: InboxReport) -> None:
    from tracker.db.engine import for_writing

    try:
        data = path.read_bytes()
    except OSError as exc:
        _reject(path, f"cannot read: {exc.strerror or exc}", report)
        return
    digest = hashlib.sha256(data).hexdigest()
    try:
        with Session(for_writing(engine)) as session:
            outcome = _store(session, library, settings, today, user, path, digest)
            session.commit()
    except FILE_FAULTS as exc:
        _reject(path, one_line(exc), report)
        return
    except ConflictError:  # the database refused or a lock waited too long: the next run tries again
        report.waiting.append(path.name)
        return
    if outcome is None:
        report.already.append(path.name)
    else:
        report.imported.append((path.name, *outcome))
    _move(path, path.parent / DONE)


def _store(session, library, settings, today, user, path: Path, digest: str):
    """Import the file in `session` (not committed) and record it; None when its bytes were imported
    before; else (format, results stored)."""
    from tracker.dates import utcnow
    from tracker.db.tables import LabInboxFile
    from tracker.labs import detect_format
    from tracker.services import audit
    from tracker.services.context import Clinic

    if session.exec(select(LabInboxFile.id).where(LabInboxFile.sha256 == digest)).first() is not None:
        return None
    clinic = Clinic(session, library, settings, today, user)
    with open(path, "rb") as fh:
        kind = detect_format(fh.read(4096))
    if kind == "csv":
        from tracker.services.result_import import import_results

        stored = import_results(clinic, str(path), skip_bad=False, rejects=None).imported
    else:
        from tracker.services.lab_import import import_lab_file

        stored = len(import_lab_file(clinic, str(path), skip_bad=False).imported)
    row = LabInboxFile(sha256=digest, name=path.name[:500], format=kind, results=stored, imported_at=utcnow())
    session.add(row)
    session.flush()
    audit.record(session, user, "labs.inbox_import", "lab_inbox_file", row.id, None, None,
                 {"file": path.name, "sha256": digest, "format": kind, "results": stored})
    return kind, stored


def one_line(exc: TrackerError) -> str:
    """An error as one line (a refused import names each bad result on a line of its own)."""
    return " / ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def _reject(path: Path, reason: str, report: InboxReport) -> None:
    from tracker.private_files import open_private

    target = _move(path, path.parent / REJECTED)
    with open_private(target.with_name(target.name + REASON_SUFFIX), "w", encoding="utf-8") as fh:
        fh.write(reason + "\n")
    report.rejected.append((path.name, reason))


def _move(path: Path, folder: Path) -> Path:
    """Move `path` into `folder` under its name, or `name.1`, `name.2`... when a file of that name is there
    already (a laboratory reusing a file name must not overwrite what an earlier file left)."""
    target, number = folder / path.name, 0
    while target.exists() or target.with_name(target.name + REASON_SUFFIX).exists():
        number += 1
        target = folder / f"{path.name}.{number}"
    os.replace(path, target)
    return target
