"""tracker feed create|list|revoke"""

from __future__ import annotations

import click

from tracker.cli import pass_app
from tracker.cli.completion import complete_mrn
from tracker.cli.options import ROW_ID, json_option
from tracker.cli.render import echo  # stored text shown literally


@click.group()
def feed() -> None:
    """Calendar subscription feeds: secret URLs served by `tracker serve`."""


@feed.command("create")
@click.option("--patient", "mrn", metavar="MRN", shell_complete=complete_mrn, help="A feed of one patient's items.")
@click.option("--clinic", is_flag=True, help="A feed of every patient's items (staff only).")
@click.option("--audience", type=click.Choice(["staff", "patient"]), default="staff", show_default=True,
              help="patient: plain language, one patient only.")
@pass_app
def create(app, mrn, clinic, audience):
    """Create a feed and print its URL. The URL is the only copy of its token: keep it secret."""
    from tracker.services.feeds import create_feed

    with app.clinic() as context:
        created = create_feed(context, mrn=mrn, whole_clinic=clinic, audience=audience)
    click.echo(created.url)
    scope = f"patient {created.mrn}" if created.mrn else "the clinic"
    click.echo(f"feed {created.feed.id}: {scope}, {audience} audience. The URL is shown only once; "
               f"revoke with `tracker feed revoke {created.feed.id}`.", err=True)


@feed.command("list")
@json_option
@pass_app
def list_(app, as_json):
    """Every feed, active and revoked (tokens are never shown)."""
    from tracker.cli.render import emit_json, table
    from tracker.services.feeds import list_feeds

    with app.clinic() as clinic:
        rows = list_feeds(clinic)
    if as_json:
        emit_json(rows)
        return
    table(["ID", "Scope", "MRN", "Audience", "Created", "Revoked"],
          [[r["id"], r["scope"], r["mrn"] or "", r["audience"], r["created_at"][:19], (r["revoked_at"] or "")[:19]]
           for r in rows], title=f"{len(rows)} feeds")


@feed.command("revoke")
@click.argument("feed_id", metavar="ID", type=ROW_ID)
@pass_app
def revoke(app, feed_id):
    """Revoke a feed: its URL answers 404 from now on."""
    from tracker.services.feeds import revoke_feed

    with app.clinic() as clinic:
        row = revoke_feed(clinic, feed_id)
    echo(f"revoked feed {row['id']} ({row['scope']}{' ' + row['mrn'] if row['mrn'] else ''})")


COMMANDS = [feed]
