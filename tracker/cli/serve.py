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
@click.option("--web-port", type=click.IntRange(0, 65535), default=None,
              help="Also serve the staff web view on this port (0: any free port, printed at start).")
@click.option("--cert", type=click.Path(exists=True, dir_okay=False), help="TLS certificate (PEM) for the web view.")
@click.option("--key", type=click.Path(exists=True, dir_okay=False), help="TLS private key (PEM) for the web view.")
@click.option("--behind-https", is_flag=True,
              help="A reverse proxy in front terminates TLS: mark the web view's cookies Secure.")
@pass_app
def serve(app, host, port, request_timeout, idle_timeout, max_connections, web_port, cert, key, behind_https):
    """Serve calendar feeds read-only over HTTP at /feeds/<token>.ics (GET and HEAD only) and, with
    --web-port, the staff web view (sign in with an account from `tracker user add`)."""
    import threading

    from tracker.cli.listening import serve_until_interrupted, warn_if_exposed
    from tracker.server import make_server

    if (cert is None) != (key is None):
        raise click.UsageError("give --cert and --key together")
    if (cert or behind_https) and web_port is None:
        raise click.UsageError("--cert, --key and --behind-https are for the web view: give --web-port")
    app.library  # load (and validate) protocols before the first request
    server = make_server(host, port, app.engine, app.library, app.settings, request_timeout_s=request_timeout,
                         idle_timeout_s=idle_timeout, max_connections=max_connections)
    warn_if_exposed(host, "feed URLs carry secrets; use HTTPS in front")
    bound_host, bound_port = server.server_address[:2]
    click.echo(f"serving feeds on http://{bound_host}:{bound_port}/feeds/<token>.ics (Ctrl-C to stop)", err=True)
    if web_port is None:
        serve_until_interrupted(server)
        return
    feeds = threading.Thread(target=server.serve_forever, name="feeds", daemon=True)
    feeds.start()
    try:
        serve_web(app, host, web_port, cert, key, https=bool(cert) or behind_https, behind_proxy=behind_https)
    finally:
        server.shutdown()
        server.server_close()


def serve_web(app, host: str, port: int, cert: str | None, key: str | None, *, https: bool,
              behind_proxy: bool = False) -> None:
    """The staff web view under uvicorn on a socket bound here (so port 0's choice can be printed).
    `behind_proxy` (--behind-https): the client's address is taken from the proxy's X-Forwarded-For (uvicorn
    trusts it from loopback only); without a proxy the header is ignored, as any local client could set it
    and so escape the per-address limit on failed sign-ins."""
    import socket

    import uvicorn

    from tracker.core.settings import is_loopback
    from tracker.web.app import create_app
    from tracker.web.security import secret_key, secret_path

    secret = secret_key(secret_path(app.settings, app.engine))
    web = create_app(app.engine, app.library, app.settings, secret, https=https)
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(128)
    bound_port = sock.getsockname()[1]
    scheme = "https" if cert else "http"
    if not cert and not is_loopback(host):
        click.echo(f"warning: the web view on {host} without --cert: put it behind HTTPS (examples/nginx-tracker.conf)",
                   err=True)
    click.echo(f"serving the web view on {scheme}://{host}:{bound_port}/ (Ctrl-C to stop)", err=True)
    config = uvicorn.Config(web, ssl_certfile=cert, ssl_keyfile=key, log_level="warning", access_log=False,
                            server_header=False, proxy_headers=behind_proxy, timeout_keep_alive=5)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


COMMANDS = [serve]
