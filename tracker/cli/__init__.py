"""The `tracker` command line: parse, call one service, render.

Errors are mapped to exit codes in one place (TrackerGroup.main). Command modules import only click at
module level; services, the database and rich are imported inside commands so `tracker --help` is quick.
"""

from __future__ import annotations

import gc
import os
import sys
from contextlib import contextmanager
from functools import cached_property

import click

from tracker import __version__
from tracker.display import printable
from tracker.errors import InputError, ProtocolError, TrackerError

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class AppContext:
    """What every command needs, built lazily: settings, database engine, protocol library, today; and
    `clinic()`, the Clinic a command's one service call is given."""

    def __init__(self, db: str | None, user: str | None, config_path: str | None):
        self.db = db
        from tracker.core.inputs import USER_MAX, clean_text

        # The audit log's "who": one line, no control characters (a newline would forge an entry).
        self.user = clean_text(user or os.environ.get("USER") or os.environ.get("USERNAME") or "unknown", "user",
                               max_len=USER_MAX)
        self.config_path = config_path
        self.may_create = False  # set by the commands that add data (patient add, demo, synth, db init)

    @cached_property
    def settings(self):
        """The site settings, read and validated once (tracker/config.py)."""
        from tracker.config import load_settings

        return load_settings(self.config_path)

    @cached_property
    def engine(self):
        from tracker.db.engine import open_engine

        return open_engine(self.db, create=self.may_create, user=self.user, keep=self.backup_keep(),
                           record=_record_migration)

    def backup_keep(self) -> int | None:
        """`[backups] keep` for the automatic pre-migration backup; the default when the config cannot be
        read (the command reports that itself when it needs the config)."""
        from tracker.errors import ConfigError

        try:
            return self.settings.backups.keep
        except ConfigError:
            return None

    @cached_property
    def library(self):
        from tracker.protocol_files import library

        return library(self.settings.schedules_dir)

    def today(self):
        from tracker.dates import today

        return today(self.settings.timezone)

    def close(self) -> None:
        """Release the database connections at the end of a command (PostgreSQL has few slots)."""
        if "engine" in self.__dict__:
            self.__dict__.pop("engine").dispose()

    @contextmanager
    def session(self, *, write: bool = True):
        """One transaction per command: committed on success, rolled back on any error.

        A command that may write takes the database's write lock as its transaction begins
        (tracker.db.engine.for_writing), so what it read cannot change before it writes; concurrent writers
        wait their turn. `write=False` only for commands that never write (they then never wait)."""
        from sqlmodel import Session

        from tracker.db.engine import for_writing

        startup_over()
        bind = for_writing(self.engine) if write else self.engine
        with Session(bind, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def clinic(self, today=None, *, write: bool = True):
        """A Clinic in one transaction: committed when the block ends, rolled back on any error. Render
        what the service returned after the block, so nothing is shown for a change that was not kept.
        `today` replaces the clinic's date (e.g. `synth --as-of`)."""
        from tracker.services.context import Clinic

        settings, library = self.settings, self.library  # a bad config fails before the database is touched
        today = today or self.today()
        with self.session(write=write) as session:
            yield Clinic(session, library, settings, today, self.user)


def _record_migration(*args) -> None:
    """services/backups.py: record_migration, imported only when a migration is recorded: opening a clinic
    that is at the schema's head (every command but the first after an upgrade) never needs the backup and
    audit modules behind it."""
    from tracker.services.backups import record_migration

    record_migration(*args)


pass_app = click.make_pass_decorator(AppContext)


class TrackerGroup(click.Group):
    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except ProtocolError as exc:
            for problem in exc.problems:
                click.echo(printable(problem), err=True)
            sys.exit(exc.exit_code)
        except TrackerError as exc:
            click.echo(printable(f"error: {exc}"), err=True)  # a suggested MRN is stored text
            sys.exit(exc.exit_code)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            # One line like every other error (click prints usage and a hint over three).
            command = exc.ctx.command_path if exc.ctx is not None else "tracker"
            # the message may quote an argument as typed (a CR, ESC): escaped, so it stays one visible line
            click.echo(printable(f"error: {exc.format_message()} (see `{command} --help`)", newlines=False), err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        except BrokenPipeError:
            sys.exit(1)
        except OSError as exc:
            # A file named by the user that cannot be written or read (a missing directory, a full disk):
            # one line, not a traceback; the command's transaction was rolled back by then.
            where = f"{exc.filename}: " if exc.filename is not None else ""
            click.echo(printable(f"error: {where}{exc.strerror or exc}"), err=True)
            sys.exit(InputError.exit_code)
        except Exception as exc:
            # A database that cannot be reached or is locked is reported in one line, like any other error.
            from sqlalchemy.exc import SQLAlchemyError

            from tracker.db.engine import lock_conflict
            from tracker.errors import ConflictError

            if not isinstance(exc, SQLAlchemyError):
                raise
            conflict = lock_conflict(exc)
            if conflict is not None:  # another command got there first: refused, nothing written
                click.echo(f"error: {conflict}", err=True)
                sys.exit(ConflictError.exit_code)
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            click.echo(f"error: database: {reason}", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


@click.group(cls=TrackerGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, prog_name="tracker")
@click.option("--db", metavar="PATH|URL", help="Database file or URL (default: $TRACKER_DB, else XDG data dir).")
@click.option("--user", help="Who is making changes, for the audit log (default: $USER).")
@click.option("--config", "config_path", metavar="FILE",
              help="Site config file (default: $TRACKER_CONFIG, else XDG config dir).")
@click.pass_context
def cli(ctx: click.Context, db: str | None, user: str | None, config_path: str | None) -> None:
    """tracker: monitoring calendars, worklists and alerts for systemic atopic-dermatitis therapy."""
    ctx.obj = AppContext(db, user, config_path)
    ctx.call_on_close(ctx.obj.close)


def _register() -> None:
    """Add the commands of every module in tracker/cli that lists them in COMMANDS."""
    import importlib
    import pkgutil

    import tracker.cli as package

    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name in ("options", "render"):
            continue
        module = importlib.import_module(f"tracker.cli.{info.name}")
        for command in getattr(module, "COMMANDS", ()):
            cli.add_command(command)


_register()


def main() -> None:
    """The `tracker` program (a process of its own; tests call `cli` in-process and never come here)."""
    startup_begins()
    try:
        cli.main(prog_name="tracker")
    finally:
        _before_exit()


# Start-up (SQLAlchemy, SQLModel, the tables, the services a command imports, the protocol library) allocates
# ~130,000 objects that live as long as the process. With the usual thresholds the cycle collector walks them
# some 200 times meanwhile, for nothing; even one collection of 100,000 young objects costs 20-40 ms (it is
# what made whichever module was importing at that moment look slow under -X importtime). Until the command
# opens its clinic, a collection waits for STARTUP_GC_THRESHOLD new objects, more than start-up makes; then
# what start-up made is frozen (gc.freeze: no later collection walks it, the command's own nor the one at
# exit) and the usual thresholds come back. A command that never opens a clinic keeps the high threshold:
# collections rarer, never off.
STARTUP_GC_THRESHOLD = 250_000
_usual_gc_thresholds: tuple | None = None


def startup_begins() -> None:
    global _usual_gc_thresholds
    _usual_gc_thresholds = gc.get_threshold()
    gc.set_threshold(STARTUP_GC_THRESHOLD, *_usual_gc_thresholds[1:])


def startup_over() -> None:
    global _usual_gc_thresholds
    if _usual_gc_thresholds is not None:
        gc.freeze()
        gc.set_threshold(*_usual_gc_thresholds)
        _usual_gc_thresholds = None


def _before_exit() -> None:
    """The process ends: if it opened SQLite, one cycle collection now finalises what is unreachable (a
    database connection left to the collector closes, so SQLite folds its WAL back); then everything left is
    frozen, which spares the interpreter's teardown from collecting and freeing, object by object, every
    module's objects (a fifth of a second); the memory goes back to the system as the process ends. A
    PostgreSQL connection needs no finaliser (the server ends the session as the socket closes), and the
    collection walks every object made since start-up (40-50 ms after a typical PostgreSQL night)."""
    engine = sys.modules.get("tracker.db.engine")  # not imported: no database was opened
    if engine is not None and engine.sqlite_opened:
        gc.collect()
    gc.freeze()
