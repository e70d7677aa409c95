"""tracker demo"""

from __future__ import annotations

import click

from tracker.cli import pass_app


@click.command()
@click.option("--patients", type=click.IntRange(1, 10000), default=30, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--replace", is_flag=True, help="Delete an existing SQLite demo file given with --db first.")
@pass_app
def demo(app, patients, seed, replace):
    """Build a synthetic demo clinic in a fresh database (a temporary one unless --db) and show today's worklist."""
    import datetime as dt
    import tempfile
    from pathlib import Path

    from tracker.cli.render import say, worklist
    from tracker.services.demo import build_demo_clinic
    from tracker.services.worklists import due, overdue

    if app.db is None:
        app.db = str(Path(tempfile.mkdtemp(prefix="tracker-demo-")) / "demo.db")
    elif replace:
        if "://" in app.db:
            from tracker.errors import InputError

            raise InputError("db", app.db, "--replace only deletes a SQLite file, not a server database")
        for suffix in ("", "-wal", "-shm"):
            Path(app.db + suffix).unlink(missing_ok=True)
    today = app.today()
    with app.session() as session:
        summary = build_demo_clinic(session, app.library, today, patients, seed)
    with app.session() as session:
        rows = overdue(session, today) + due(session, today, 7)
    say(f"Demo clinic: {summary.patients} synthetic patients, {summary.results} results, database {app.db}")
    rows.sort(key=lambda r: (r["mrn"], r["due"]))
    worklist(rows, f"Worklist for {today}: overdue and due by {today + dt.timedelta(days=7)}", "Nothing due.")
    say(f"\nTry: tracker --db {app.db} patient show {rows[0]['mrn'] if rows else 'DEMO0001'}")


COMMANDS = [demo]
