"""tracker schedules list|show|changed|validate"""

from __future__ import annotations

import click

from tracker.cli import pass_app
from tracker.cli.completion import complete_drug
from tracker.cli.options import json_object_option, json_option


@click.group()
def schedules() -> None:
    """The per-drug protocols: list, show, validate, changed."""


@schedules.command("list")
@json_option
@pass_app
def list_(app, as_json):
    """Every protocol in effect: id, name, class, version, source count, origin."""
    from tracker.cli.render import emit_json, table
    from tracker.services.schedule_view import protocol_summaries

    rows = protocol_summaries(app.library)
    if as_json:
        from tracker.core.coded import codes_json

        library = app.library
        emit_json([{**r, "codes": codes_json((), [r["id"]], library.vocabulary, library.protocols)} for r in rows])
        return
    table(["ID", "Name", "Class", "Version", "Sources", "From"],
          [[r["id"], r["name"], r["class"], r["version"], r["sources"], r["origin"]] for r in rows],
          title=f"{len(rows)} protocols")


@schedules.command("show")
@click.argument("drug", shell_complete=complete_drug)
@click.option("--weeks", type=click.IntRange(1, 520), default=52, show_default=True)
@json_object_option
@pass_app
def show(app, drug, weeks, as_json):
    """A protocol as a timeline from a nominal start (week, day offset, tests, checkpoints, limits)."""
    from tracker.cli.render import emit_json, line, say, table
    from tracker.core.defaults import clinic_default_words
    from tracker.core.terms import CLINIC_DEFAULT
    from tracker.services.schedule_view import protocol_rules, protocol_timeline

    protocol = app.library.get(drug)
    rows = protocol_timeline(protocol, weeks)
    if as_json:
        from tracker.core.coded import codes_json

        library = app.library
        for row in rows:  # each planned test's LOINC, the drug's ATC (core/coded.py)
            row["codes"] = codes_json(row["tests"], [protocol.id], library.vocabulary, {protocol.id: protocol})
        emit_json({"id": protocol.id, "version": protocol.version, "hash": protocol.content_hash,
                   "codes": codes_json((), [protocol.id], library.vocabulary, {protocol.id: protocol}),
                   "timeline": rows, "rules": protocol_rules(protocol, app.library.vocabulary),
                   "sources": {k: s.model_dump() for k, s in protocol.sources.items()}})
        return
    say(line((protocol.name, "bold"), f" ({protocol.id}, {protocol.drug_class}, protocol v{protocol.version})"
             + (f"  also: {', '.join([*protocol.aliases, *protocol.brands])}"
                if protocol.aliases or protocol.brands else "")))
    from tracker.core.coded import drug_codes_text

    say(line(f"Codes: {drug_codes_text(protocol)}" + (f" [{', '.join(protocol.code_sources)}]"
                                                      if protocol.code_sources else "")))
    table(["Week", "Day", "Kind", "Tests / target", "Rule"],
          [[r["week"], f"+{r['day']}", r["kind"] + (f" ({r['gate']})" if r["gate"] else ""),
            ", ".join(r["tests"]) or r["target"] or "",
            _with_sources("; ".join(filter(None, [r["detail"], clinic_default_words(tuple(r["clinic_default"]))])),
                          [*r["sources"], *([CLINIC_DEFAULT] if r["clinic_default"] else [])])]
           for r in rows], title=f"First {weeks} weeks ({len(rows)} items)", message="Rule")
    rules = protocol_rules(protocol, app.library.vocabulary)
    table(["Section", "Rule"],
          [[r["section"], _with_sources(r["rule"] + (f" ({r['note']})" if r["note"] else ""), _sources(r))]
           for r in rules if r["section"] != "threshold"],
          title="Rule set (each line with its sources, or clinic default)", message="Rule")
    thresholds = [r for r in rules if r["section"] == "threshold"]
    if thresholds:
        table(["Threshold", "Severity", "Action", "Message"],
              [[r["condition"], r["severity"], r["action"], _with_sources(r["message"] or "", _sources(r))]
               for r in thresholds], title=f"Lab action thresholds ({len(thresholds)})", message="Message")
    table(["Key", "URL", "Citation"],
          [[k, s.url or "", s.citation + (f" (tier: {s.tier})" if s.tier else "")] for k, s in protocol.sources.items()],
          title="Sources", message="Citation")
    if protocol.notes:
        say(line(f"Notes: {protocol.notes.strip()}", newlines=True))  # a clinic's file: shown as written


def _with_sources(text: str, sources) -> str:
    """A rule's text followed by its sources in brackets."""
    keys = sources if isinstance(sources, str) else ", ".join(sources)
    return f"{text} [{keys}]" if text and keys else text or (f"[{keys}]" if keys else "")


def _sources(row: dict) -> str:
    """A rule's source keys, then "clinic default" when the whole rule is the clinic's (a list of fields is
    marked in the rule's own words)."""
    from tracker.core.terms import CLINIC_DEFAULT

    return ", ".join([*row["sources"], *([CLINIC_DEFAULT] if row["clinic_default"] is True else [])])


@schedules.command("changed")
@json_option
@pass_app
def changed(app, as_json):
    """Courses whose protocol changed since they were planned (adopt with `tracker therapy replan`)."""
    from tracker.cli.render import emit_json, say, table
    from tracker.services.courses import protocol_changes

    with app.clinic() as clinic:
        rows = protocol_changes(clinic)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        say("Every live course is planned with the protocol now in effect.")
        return
    table(["MRN", "Drug", "Planned with", "Now in effect", "From"],
          [[r["mrn"], r["drug"], f"v{r['planned_version']} ({r['planned_hash']})",
            f"v{r['current_version']} ({r['current_hash']})" if r["current_hash"] else "(no longer in library)",
            r["current_origin"] or ""] for r in rows],
          title=f"{len(rows)} courses planned with an older protocol (tracker therapy replan MRN DRUG)")


@schedules.command("validate")
@click.argument("paths", nargs=-1, type=click.Path(path_type=str))
@json_option
@pass_app
def validate(app, paths, as_json):
    """Check protocol files or directories (default: built-in and the clinic's), reporting every problem."""
    from pathlib import Path

    from tracker.cli.render import emit_json
    from tracker.errors import ProtocolError
    from tracker.schedule_validation import default_validation_paths, validate_paths

    targets = [Path(p) for p in paths] or default_validation_paths(app.settings.schedules_dir)
    reports = validate_paths(targets)
    if as_json:
        emit_json([{"file": r.path, "kind": r.kind, "ok": r.ok,
                    "id": r.protocol.id if r.protocol else None,
                    "version": r.protocol.version if r.protocol else None,
                    "problems": r.problems, "warnings": r.warnings} for r in reports])
    else:
        for report in reports:
            if report.ok:
                what = (f"{report.protocol.id} v{report.protocol.version}" if report.protocol else report.kind)
                click.echo(f"ok {report.path} ({what})")
    for warning in (w for r in reports for w in r.warnings):
        click.echo(f"warning: {warning}", err=True)
    problems = [p for r in reports for p in r.problems]
    if problems:
        # Printed one per line on stderr by the CLI's error mapping, with ProtocolError's exit code.
        raise ProtocolError(problems + [f"{sum(not r.ok for r in reports)} of {len(reports)} files have problems"])


@schedules.command("export-fhir")
@click.argument("drug")
@click.option("--out", type=click.Path(dir_okay=False, writable=True), help="Write to FILE (default: stdout).")
@pass_app
def export_fhir(app, drug, out):
    """A protocol as a FHIR R4 PlanDefinition: baseline tests (hard gates as start conditions), monitoring
    phases with their timing, response checkpoints and the course limit."""
    import json

    from tracker.services.fhir_export import protocol_plan_definition

    text = json.dumps(protocol_plan_definition(app.library, drug), ensure_ascii=False, indent=1) + "\n"
    if out:
        from tracker.private_files import open_private

        with open_private(out, "w", encoding="utf-8") as fh:
            fh.write(text)
        click.echo(f"wrote the {drug} PlanDefinition to {out}", err=True)
    else:
        click.echo(text, nl=False)


COMMANDS = [schedules]
