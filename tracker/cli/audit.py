"""tracker audit [verify]; `log_access`, the access event of the commands that read patient data."""

from __future__ import annotations

import click

from tracker.cli import pass_app
from tracker.cli.options import DATE, json_object_option, json_option

WIDTH = 80


def log_access(app, action: str, *, mrn: str | None, detail: dict | None = None) -> None:
    """Record that this command read patient data (`access.*`; mrn None: the whole clinic). Call it after
    the data was shown: a failure to record is a warning on stderr, never a refusal to read."""
    from tracker.services.access import record_access

    problem = record_access(app.engine, app.user, action, mrn=mrn, detail=detail)
    if problem:
        from tracker.cli.render import echo

        echo(f"warning: {problem}", err=True)


@click.group(invoke_without_command=True)
@click.option("--patient", "mrn", metavar="MRN", help="One patient's rows (and reads of the whole clinic).")
@click.option("--since", type=DATE, help="From this day (UTC), inclusive.")
@click.option("--until", type=DATE, help="To this day (UTC), inclusive.")
@click.option("--action", "actions", multiple=True, metavar="A",
              help="Only this action (repeatable); `alert.` or `alert.*` for every action starting so.")
@click.option("--user", "who", metavar="U", help="Only rows by this user.")
@click.option("--limit", type=click.IntRange(0, 10_000_000), default=100, show_default=True, metavar="N",
              help="At most this many rows, newest first (0: all).")
@json_option
@click.pass_context
def audit(ctx, mrn, since, until, actions, who, limit, as_json):
    """The audit log, newest first: who changed or read what, when, with before and after.

    Reads only (no write lock). With --patient, the listing itself is recorded as an access to that
    patient's data (`access.audit`). `tracker audit verify` checks the hash chain."""
    if ctx.invoked_subcommand is not None:
        return
    from tracker.core.inputs import date_range
    from tracker.services.audit import AuditQuery, list_events

    app = ctx.obj
    date_range(since, until)
    with app.session(write=False) as session:
        if mrn is not None:
            from tracker.services.patients import audited_mrn

            mrn = audited_mrn(session, mrn)  # as stored, or a former MRN; unknown is exit 3, not an empty listing
        query = AuditQuery(mrn=mrn, since=since, until=until, actions=tuple(actions), user=who, limit=limit or None)
        rows, more = list_events(session, query)
    if as_json:
        from tracker.cli.render import emit_json

        emit_json(rows)
    else:
        for row in rows:
            for text in event_lines(row):
                click.echo(text)
        if not rows:
            click.echo("No audit rows match.")
        if more:
            click.echo(f"(the newest {limit} rows; --limit N for more, 0 for all)", err=True)
    if mrn is not None:
        log_access(app, "access.audit", mrn=mrn, detail={"command": "audit", "rows": len(rows)})


def _clip(text: str, width: int = WIDTH) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _value(value) -> str:
    import json

    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def change_text(before, after) -> str:
    """Before/after in one compact line: the changed fields `f: old→new`; a creation's fields `f=v`; a
    removal's `-f=v`. Ids and timestamps that only record the write itself are left out."""
    quiet = {"updated_at", "created_at", "last_modified"}
    if isinstance(before, dict) and isinstance(after, dict):
        keys = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k) and k not in quiet)
        return "; ".join(f"{k}: {_value(before.get(k))}→{_value(after.get(k))}" for k in keys) or "(no change)"
    if isinstance(after, dict):
        return ", ".join(f"{k}={_value(v)}" for k, v in sorted(after.items()) if v is not None and k not in quiet)
    if isinstance(before, dict):
        return "-" + ", -".join(f"{k}={_value(v)}" for k, v in sorted(before.items()) if v is not None)
    if before is None and after is None:
        return ""
    return f"{_value(before)}→{_value(after)}"


def event_lines(row: dict) -> list[str]:
    """One audit row in one or two lines of at most 80 columns (stored text made printable)."""
    from tracker.display import printable

    at = row["at"][:19].replace("T", " ")
    target = row["entity"] + (f"#{row['entity_id']}" if row["entity_id"] is not None else "")
    head = f"{row['id']:>7} {at} {row['user']} {row['action']} {target}" + (f" {row['mrn']}" if row["mrn"] else "")
    out = [_clip(printable(head, newlines=False))]
    change = change_text(row["before"], row["after"])
    if change:
        out.append(_clip("        " + printable(change, newlines=False)))
    return out


@audit.command("verify")
@click.option("--anchor", metavar="SEQ:HASH",
              help="A head noted earlier (as printed here): the chain must still hold that row unchanged.")
@json_object_option
@pass_app
def verify(app, anchor, as_json):
    """Check the hash chain: exit 0 `ok`, else exit 12 naming the first row found wrong.

    Finds a row edited, deleted or inserted with SQL, and the newest rows deleted. A whole chain
    recomputed (or the newest rows deleted with the head record rewritten) is found only against a head
    noted elsewhere: pass it as --anchor."""
    from tracker.core.audit_chain import Problem
    from tracker.errors import AuditChainError, InputError
    from tracker.services.audit import anchor_problem, snapshot_connection, verify as verify_chain

    wanted = None
    if anchor is not None:
        seq, _, hash_ = anchor.partition(":")
        if not seq.isdigit() or len(hash_) != 64 or any(c not in "0123456789abcdef" for c in hash_):
            raise InputError("anchor", anchor, "expected SEQ:HASH as `audit verify` prints it")
        wanted = (int(seq), hash_)
    with snapshot_connection(app.engine) as conn:
        verdict = verify_chain(conn)
        problem: Problem | None = verdict.problem
        if problem is None and wanted is not None:
            problem = anchor_problem(conn, *wanted)
    head = f"{verdict.head.seq}:{verdict.head.hash}"
    if as_json:
        from tracker.cli.render import emit_json

        emit_json({"ok": problem is None, "rows": verdict.rows, "head": head,
                   "problem": None if problem is None else {"row_id": problem.row_id, "seq": problem.seq,
                                                            "reason": problem.reason}})
        if problem is not None:
            raise click.exceptions.Exit(AuditChainError.exit_code)
        return
    if problem is not None:
        raise AuditChainError(f"audit chain broken: {problem.text()}")
    click.echo(f"ok: {verdict.rows} rows, chain intact" + (f", anchor {wanted[0]} holds" if wanted else ""))
    click.echo(f"head {head}")


COMMANDS = [audit]
