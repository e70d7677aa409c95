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
    from tracker.services.demo import WORKLIST_DAYS, build_demo_clinic

    if app.db is None:
        app.db = str(Path(tempfile.mkdtemp(prefix="tracker-demo-")) / "demo.db")
    elif replace:
        from tracker.services.demo import remove_demo_database

        remove_demo_database(app.db)
    app.may_create = True
    with app.clinic() as clinic:
        summary = build_demo_clinic(clinic, patients, seed)
    today, rows = clinic.today, summary.worklist
    say(f"Demo clinic: {summary.patients} synthetic patients, {summary.results} results, database {app.db}")
    worklist(rows, f"Worklist for {today}: overdue and due by {today + dt.timedelta(days=WORKLIST_DAYS)}",
             "Nothing due.")
    say(f"\nTry: tracker --db {app.db} patient show {rows[0]['mrn'] if rows else 'DEMO0001'}")


COMMANDS = [demo]
