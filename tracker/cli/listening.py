"""What every listening command (`serve`, `labs listen`) does around its server: warn when it listens
beyond loopback, and serve until Ctrl-C, closing the socket whatever ends it."""

from __future__ import annotations

import click


def warn_if_exposed(host: str, why: str) -> None:
    """One warning line on stderr when `host` is not a loopback address; `why` says what is at risk."""
    from tracker.core.settings import is_loopback

    if not is_loopback(host):
        click.echo(f"warning: listening on {host}, not loopback: {why}", err=True)


def serve_until_interrupted(server) -> None:
    """Serve until Ctrl-C (a normal way to stop, not an error), then close the listening socket."""
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
