"""tracker labs listen"""

from __future__ import annotations

import click

from tracker.cli import pass_app


@click.group()
def labs() -> None:
    """Results pushed by the laboratory."""


@labs.command("listen")
@click.option("--host", help="Address to listen on (default: [labs] host in the config, else 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535),
              help="Port (default: [labs] port in the config, else 2575; 0: any free port, printed at start).")
@pass_app
def listen(app, host, port):
    """Accept HL7 v2 ORU^R01 messages over MLLP; answer each with ACK AA (stored), AE (refused) or AR
    (unreadable). Each accepted message is stored in one transaction. Ctrl-C stops."""
    from tracker.cli.render import echo
    from tracker.core.settings import is_loopback
    from tracker.labs.mllp import MLLPServer
    from tracker.services.lab_import import accept_message

    settings = app.settings
    host = host or settings.labs.host
    port = settings.labs.port if port is None else port
    app.library  # load (and validate) protocols before the first message

    def handle(message: bytes):
        try:
            return accept_message(app.clinic, message)
        except Exception as exc:  # the database went away, a lock waited too long: the lab resends on AE
            return "AE", f"not stored ({type(exc).__name__}); resend later"

    def log(message: bytes, code: str, text: str) -> None:
        fields = message.split(b"\r", 1)[0].decode("latin-1").split("|")
        control_id = fields[9] if len(fields) > 9 else "?"
        echo(f"message {control_id}: {code} {text}")

    server = MLLPServer((host, port), handle, log)
    if not is_loopback(host):
        click.echo(f"warning: listening on {host}, not loopback: MLLP is unencrypted, keep it on the lab's "
                   "private link or a tunnel", err=True)
    bound_host, bound_port = server.server_address[:2]
    click.echo(f"listening for HL7 over MLLP on {bound_host}:{bound_port} (Ctrl-C to stop)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


COMMANDS = [labs]
