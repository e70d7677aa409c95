"""tracker db init|upgrade|status|backup|restore"""

from __future__ import annotations

import click

from tracker.cli import pass_app
from tracker.cli.options import json_object_option
from tracker.display import printable


@click.group()
def db() -> None:
    """The database schema."""


@db.command("init")
@pass_app
def init(app):
    """Create the database (a SQLite file, or the schema in an empty PostgreSQL database)."""
    from tracker.db.engine import make_engine, resolve_url, upgrade_schema
    from tracker.services.backups import record_migration

    url = resolve_url(app.db, create=True)
    before, after = upgrade_schema(make_engine(url), user=app.user, keep=app.backup_keep(), record=record_migration)
    where = url.split("@")[-1].removeprefix("sqlite:///")
    click.echo(f"database at {where}: " + (f"already at {after}" if before == after else f"created at {after}"
                                            if before is None else f"upgraded {before} -> {after}"))


@db.command("upgrade")
@pass_app
def upgrade(app):
    """Bring the database to the current schema (backed up first: see `tracker db backup`)."""
    from tracker.db.engine import make_engine, resolve_url, upgrade_schema
    from tracker.services.backups import record_migration

    engine = make_engine(resolve_url(app.db, create=False))
    before, after = upgrade_schema(engine, user=app.user, keep=app.backup_keep(), record=record_migration)
    if before == after:
        click.echo(f"already at {after}")
    else:
        click.echo(f"upgraded {before or 'empty database'} -> {after}")


@db.command("status")
@json_object_option
@pass_app
def status(app, as_json):
    """Where the database is and whether its schema is current."""
    from tracker.cli.render import emit_json
    from tracker.db.engine import make_engine, resolve_url, schema_status

    info = schema_status(make_engine(resolve_url(app.db, create=False)))
    if as_json:
        emit_json(info)
        return
    click.echo(f"database: {info['url']}")
    click.echo(f"schema:   {info['current'] or 'empty'} (head {info['head']})"
               f" {'up to date' if info['up_to_date'] else 'needs upgrade: run `tracker db upgrade`'}")


@db.command("backup")
@click.option("--out", "out", metavar="FILE", help="Write the backup here (default: backups/ beside the database, "
              "rotated to [backups] keep).")
@json_object_option
@pass_app
def backup(app, out, as_json):
    """Back up the whole database while others keep working (SQLite: online backup; PostgreSQL: pg_dump)."""
    from tracker.cli.render import emit_json
    from tracker.services.backups import backup as make

    made = make(app.engine, out, app.user, app.backup_keep())
    if as_json:
        emit_json({"file": str(made.path), "size": made.size, "engine": made.engine, "rotated": list(made.rotated)})
        return
    click.echo(printable(f"backup written: {made.path} ({made.size} bytes)"
                         + (f"; removed {len(made.rotated)} older" if made.rotated else "")))


@db.command("restore")
@click.argument("file")
@json_object_option
@pass_app
def restore(app, file, as_json):
    """Replace the database with a backup (refused while a nightly run is in progress). The current
    database is kept aside; the restored one is brought to the current schema. Commands that write wait
    meanwhile (the write lock is held from the copy aside until the restored database is in place)."""
    from tracker.cli.render import emit_json
    from tracker.db.engine import make_engine, resolve_url
    from tracker.services.backups import restore as put_back

    url = resolve_url(app.db, create=False) if _exists(app.db) else None
    if url is None:  # restoring onto a new machine: the file is made, and removed again if refused
        url = resolve_url(app.db, create=True)
    try:
        done = put_back(make_engine(url), file, app.user)
    except BaseException:
        _remove_if_empty(url)
        raise
    info = {"file": str(done.file), "from_revision": done.from_revision, "to_revision": done.to_revision,
            "kept_aside": str(done.kept_aside) if done.kept_aside else None}
    if as_json:
        emit_json(info)
        return
    aside = f"; the database as it was is kept at {done.kept_aside}" if done.kept_aside else ""
    click.echo(printable(f"restored {done.file} (schema {done.from_revision} -> {done.to_revision}){aside}"))


def _exists(db: str | None) -> bool:
    from tracker.db.engine import resolve_url
    from tracker.errors import NoDatabaseError

    try:
        resolve_url(db, create=False)
        return True
    except NoDatabaseError:
        return False


def _remove_if_empty(url: str) -> None:
    import os

    path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else None
    if path and os.path.exists(path) and os.path.getsize(path) == 0:
        os.unlink(path)


COMMANDS = [db]
