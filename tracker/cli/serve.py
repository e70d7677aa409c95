"""tracker serve"""

from __future__ import annotations

import click

from tracker.cli import pass_app


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (loopback by default; put anything wider behind HTTPS).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port (0: any free port, printed at start).")
@pass_app
def serve(app, host, port):
    """Serve calendar feeds read-only over HTTP at /feeds/<token>.ics (GET and HEAD only)."""
    from tracker.server import is_loopback, make_server

    app.library  # load (and validate) protocols before the first request
    server = make_server(host, port, app.engine, app.library, app.settings)
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
