"""Domain errors. Each carries a stable exit code; the CLI maps them in one place (tracker.cli)."""

from __future__ import annotations


class TrackerError(Exception):
    """Base class: a problem the user can fix, reported as one line."""

    exit_code = 1


class InputError(TrackerError):
    """A value on the command line or in a file is malformed or out of range."""

    exit_code = 2

    def __init__(self, field: str, value: object, reason: str):
        self.field = field
        self.value = value
        self.reason = reason
        super().__init__(f"{field}: {value!r}: {reason}")


class NotFoundError(TrackerError):
    """An MRN, drug, alert or feed that does not exist."""

    exit_code = 3

    def __init__(self, field: str, value: object, suggestions: list[str] | None = None):
        self.field = field
        self.value = value
        self.suggestions = suggestions or []
        hint = f" (did you mean {', '.join(self.suggestions)}?)" if self.suggestions else ""
        super().__init__(f"{field}: {value!r}: not found{hint}")


class NoDatabaseError(TrackerError):
    """A command that reads was pointed at a database file that does not exist (a typo must not create an
    empty clinic)."""

    exit_code = 3

    def __init__(self, path: str):
        self.path = path
        super().__init__(f"no database at {path}; create one with `tracker db init` (or `tracker patient add`)")


class ConflictError(TrackerError):
    """The request contradicts what is on record (duplicate MRN, drug already active, ...)."""

    exit_code = 4


class GateError(TrackerError):
    """A hard-gate baseline test has no result on record, or its result forbids the drug."""

    exit_code = 5


class ProtocolError(TrackerError):
    """One or more protocol files are invalid; each problem is `file:line: field: message`."""

    exit_code = 6

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class SchemaError(TrackerError):
    """The database schema is behind and cannot be upgraded automatically."""

    exit_code = 7


class ConfigError(TrackerError):
    """The site configuration file is invalid."""

    exit_code = 8


class LockedError(TrackerError):
    """Another nightly run holds the single-runner lock."""

    exit_code = 9


class DeliveryError(TrackerError):
    """A reminder channel failed; its reminders are kept for the next run."""

    exit_code = 10


class BackupError(TrackerError):
    """A backup cannot be made or a file cannot be restored (not a tracker database, tools missing); the
    database is as it was."""

    exit_code = 11


class AuditChainError(TrackerError):
    """`tracker audit verify`: the audit log's hash chain is broken (a row edited, deleted or inserted
    outside tracker), or does not reach a noted anchor."""

    exit_code = 12
