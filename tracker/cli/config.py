"""tracker config show"""

from __future__ import annotations

import click

from tracker.cli import pass_app
from tracker.cli.options import json_object_option


@click.group("config")
def config_group() -> None:
    """The site configuration file."""


@config_group.command("show")
@json_object_option
@pass_app
def show(app, as_json):
    """Print the configuration in effect (defaults filled in, secrets masked)."""
    from tracker.cli.render import emit_json
    from tracker.config import effective_config

    info = effective_config(app.settings)
    if as_json:
        emit_json(info)
        return
    click.echo(f"# config file: {info.pop('config_file') or '(none; defaults)'}")
    _toml(info, [])


def _value(value) -> str:
    import json

    if value is None:
        return '""  # not set'
    return json.dumps(value)


def _toml(table: dict, path: list[str]) -> None:
    """A TOML-shaped view: plain keys first, then sub-tables; values no source gives say "clinic default"."""
    from tracker.core.settings import CLINIC_DEFAULT_KEYS

    for key, value in table.items():
        if not isinstance(value, dict):
            marker = "  # clinic default" if ".".join([*path, key]) in CLINIC_DEFAULT_KEYS else ""
            click.echo(f"{key} = {_value(value)}{marker}")
    for key, value in table.items():
        if isinstance(value, dict):
            click.echo(f"\n[{'.'.join([*path, key])}]")
            _toml(value, [*path, key])


COMMANDS = [config_group]
