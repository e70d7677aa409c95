"""tracker serve"""

from __future__ import annotations

import click

from tracker.cli import pass_app
from tracker.cli.options import NumberRange


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (loopback by default; put anything wider behind HTTPS).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port (0: any free port, printed at start).")
@click.option("--request-timeout", type=NumberRange(0.1, 600), default=10, show_default=True,
              help="Seconds a client has to send its whole request.")
@click.option("--idle-timeout", type=NumberRange(0.1, 600), default=10, show_default=True,
              help="Seconds a connection may stay silent (or not read) before it is closed.")
@click.option("--max-connections", type=click.IntRange(1, 10_000), default=32, show_default=True,
              help="Connections served at once; more get 503 at once.")
@pass_app
def serve(app, host, port, request_timeout, idle_timeout, max_connections):
    """Serve calendar feeds read-only over HTTP at /feeds/<token>.ics (GET and HEAD only)."""
    from tracker.server import is_loopback, make_server

    app.library  # load (and validate) protocols before the first request
    server = make_server(host, port, app.engine, app.library, app.settings, request_timeout_s=request_timeout,
                         idle_timeout_s=idle_timeout, max_connections=max_connections)
    if not is_loopback(host):
        click.echo(f"warning: listening on {host}, not loopback: feed URLs carry secrets; use HTTPS in front",
                   err=True)
    bound_host, bound_port = server.server_address[:2]
    click.echo(f"serving feeds on http://{bound_host}:{bound_port}/feeds/<token>.ics (Ctrl-C to stop)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


COMMANDS = [serve]
