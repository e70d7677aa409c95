"""Shell completion of drug names, test codes and MRNs (click's completion: README "Shell completion").

Each function is a click `shell_complete=` callback: it gets the context parsed so far (the root's --db and
--config as typed) and what the user has typed, and returns the candidates. A completion never writes and
never fails: any problem (no config, no database, an old schema) completes nothing. MRNs are read from an
existing database only, opened read-only, never created or upgraded."""

from __future__ import annotations

MRN_LIMIT = 200  # a clinic has thousands: offer the first matches, as a shell would show them


def _root(ctx) -> dict:
    return ctx.find_root().params if ctx is not None else {}


def complete_drug(ctx, param, incomplete: str):
    """Protocol ids from the library in effect (built-in and the clinic's); aliases and brands when no id
    starts with what was typed (e.g. `mtx`, `Dupixent`)."""
    from click.shell_completion import CompletionItem

    try:
        from tracker.config import load_settings
        from tracker.protocol_files import library

        protocols = list(library(load_settings(_root(ctx).get("config_path")).schedules_dir))
    except Exception:  # a broken config or protocol folder: nothing to offer, and no traceback in a shell
        return []
    typed = incomplete.lower()
    items = [CompletionItem(p.id, help=p.name) for p in protocols if p.id.startswith(typed)]
    if not items:
        items = [CompletionItem(name, help=p.name) for p in protocols for name in sorted(p.names)
                 if name.lower().startswith(typed) and name != p.id and " " not in name]
    return items


def complete_test(ctx, param, incomplete: str):
    """Test codes of the vocabulary (analytes and panels)."""
    from click.shell_completion import CompletionItem

    try:
        from tracker.protocol_files import load_vocabulary

        tests = load_vocabulary().tests
    except Exception:
        return []
    typed = incomplete.lower()
    return [CompletionItem(code, help=getattr(test, "name", None)) for code, test in sorted(tests.items())
            if code.startswith(typed)]


def complete_mrn(ctx, param, incomplete: str):
    """MRNs of the database --db (or $TRACKER_DB, or the default) names, if it exists."""
    from click.shell_completion import CompletionItem

    try:
        mrns = _mrns(_root(ctx).get("db"), incomplete)
    except Exception:  # no database, no patient table yet, a server that does not answer
        return []
    return [CompletionItem(mrn) for mrn in mrns]


def _mrns(db: str | None, prefix: str) -> list[str]:
    from pathlib import Path
    from urllib.parse import quote

    from sqlalchemy import create_engine, text

    from tracker.db.engine import resolve_url

    url = resolve_url(db, create=False)  # refuses a path that does not exist; creates nothing
    if url.startswith("sqlite:///"):
        # Read-only at the driver: a completion cannot write, lock or create the file.
        path = Path(url.removeprefix("sqlite:///"))
        url = f"sqlite:///file:{quote(str(path))}?mode=ro&uri=true"
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            rows = conn.execute(text("SELECT mrn FROM patient WHERE mrn LIKE :like ESCAPE '\\' ORDER BY mrn "
                                     "LIMIT :limit"), {"like": like, "limit": MRN_LIMIT})
            return [row[0] for row in rows]
    finally:
        engine.dispose()
