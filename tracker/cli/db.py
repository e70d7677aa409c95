"""tracker db init|upgrade|status"""

from __future__ import annotations

import click

from tracker.cli import pass_app
from tracker.cli.options import json_object_option


@click.group()
def db() -> None:
    """The database schema."""


@db.command("init")
@pass_app
def init(app):
    """Create the database (a SQLite file, or the schema in an empty PostgreSQL database)."""
    from tracker.db.engine import make_engine, resolve_url, upgrade_schema

    url = resolve_url(app.db, create=True)
    before, after = upgrade_schema(make_engine(url))
    where = url.split("@")[-1].removeprefix("sqlite:///")
    click.echo(f"database at {where}: " + (f"already at {after}" if before == after else f"created at {after}"
                                            if before is None else f"upgraded {before} -> {after}"))


@db.command("upgrade")
@pass_app
def upgrade(app):
    """Bring the database to the current schema (a SQLite file is backed up first)."""
    from tracker.db.engine import make_engine, resolve_url, upgrade_schema

    engine = make_engine(resolve_url(app.db, create=False))
    before, after = upgrade_schema(engine)
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


COMMANDS = [db]
