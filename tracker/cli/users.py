"""tracker user add|list|disable: staff accounts for the web view"""

from __future__ import annotations

import click

from tracker.cli import pass_app
from tracker.cli.options import json_option


@click.group()
def user() -> None:
    """Add, list and disable the staff accounts that sign in to the web view (`tracker serve`)."""


@user.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["clinician", "readonly"]), required=True,
              help="clinician: may acknowledge, snooze and resolve alerts; readonly: may only look.")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from the first line of standard input (else it is prompted for).")
@pass_app
def add(app, name, role, password_stdin):
    """Add a staff account (audited as user.add). The password is never an argument: it would show in the
    shell history and the process list."""
    import sys

    from tracker.core.accounts import check_name, check_password

    check_name(name)  # a bad name fails before the password is asked for
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    check_password(password)
    app.may_create = True  # the first account may come before the first patient
    from tracker.services.users import add_user

    with app.clinic() as clinic:
        row = add_user(clinic, name, role, password)
    click.echo(f"added user {row.name} ({row.role})")


@user.command("list")
@json_option
@pass_app
def list_(app, as_json):
    """Every staff account: role, disabled, locked."""
    from tracker.cli.render import emit_json, say, table
    from tracker.services.users import list_users

    with app.session(write=False) as session:
        rows = list_users(session)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        say("No users; add one with `tracker user add NAME --role clinician`.")
        return
    table(["Name", "Role", "State", "Created"],
          [[r["name"], r["role"], "disabled" if r["disabled"] else "locked" if r["locked"] else "active",
            r["created_at"][:10]] for r in rows])


@user.command("disable")
@click.argument("name")
@pass_app
def disable(app, name):
    """Disable an account (audited as user.disable): it can no longer sign in; its history stays."""
    from tracker.services.users import disable_user

    with app.clinic() as clinic:
        row = disable_user(clinic, name)
    click.echo(f"disabled user {row.name}")


COMMANDS = [user]
