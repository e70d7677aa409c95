"""tracker labs listen"""

from __future__ import annotations

import click

from tracker.cli import pass_app
from tracker.cli.options import json_object_option


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
    from tracker.cli.listening import serve_until_interrupted, warn_if_exposed
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
    warn_if_exposed(host, "MLLP is unencrypted, keep it on the lab's private link or a tunnel")
    bound_host, bound_port = server.server_address[:2]
    click.echo(f"listening for HL7 over MLLP on {bound_host}:{bound_port} (Ctrl-C to stop)", err=True)
    serve_until_interrupted(server)


@labs.command("import-inbox")
@json_object_option
@pass_app
def import_inbox(app, as_json):
    """Import the result files in [labs] inbox now (the nightly run does it too): HL7 v2, FHIR JSON or CSV,
    by content, each all or nothing in its own transaction; moved to done/, or to rejected/ with
    NAME.reason.txt. Files named *.part or .*, or modified since the command started, wait for the next
    run. Exits 9 while a nightly run holds its lock."""
    import time

    from tracker.cli.render import echo, emit_json
    from tracker.locks import nightly_lock
    from tracker.services.lab_inbox import import_inbox as run_inbox

    started = time.time()
    settings, library = app.settings, app.library
    with nightly_lock(app.engine):  # one inbox reader at a time: the nightly run or this command
        report = run_inbox(app.engine, library, settings, app.today(), app.user, started=started)
    if as_json:
        emit_json(report.as_dict())
        return
    for name, kind, count in report.imported:
        echo(f"{name}: imported {count} results ({kind})")
    for name in report.already:
        echo(f"{name}: already imported (moved to done/)")
    for name, reason in report.rejected:
        echo(f"{name}: rejected: {reason}")
    counts = report.counts()
    click.echo(f"inbox {report.inbox}: " + ", ".join(f"{n} {k}" for k, n in counts.items()), err=True)


COMMANDS = [labs]
