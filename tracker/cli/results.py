"""tracker result add|list|withdraw|import"""

from __future__ import annotations

import click

from tracker.cli import pass_app
from tracker.cli.completion import complete_mrn, complete_test
from tracker.cli.options import DATE, NUMBER, json_option
from tracker.cli.render import echo  # stored text shown literally


@click.group()
def result() -> None:
    """Record lab and screening results."""


# ignore_unknown_options: a negative VALUE (`alt -25`) is the value, refused by its plausible range, not
# "No such option: -25".
@result.command("add", context_settings={"ignore_unknown_options": True})
@click.argument("mrn", shell_complete=complete_mrn)
@click.argument("test", shell_complete=complete_test)
@click.argument("value")
@click.option("--on", type=DATE, required=True, help="Date the sample was taken.")
@click.option("--unit", help="Unit as reported, e.g. g/dL, cells/uL, 10*9/L (default: the vocabulary's unit "
                            "for TEST); converted to the vocabulary's unit.")
@click.option("--ref-low", type=NUMBER, help="The laboratory's lower reference limit.")
@click.option("--ref-high", type=NUMBER, help="The laboratory's upper reference limit (ULN).")
@pass_app
def add(app, mrn, test, value, on, unit, ref_low, ref_high):
    """Record VALUE for TEST (numeric, or categorical like `tpmt normal`)."""
    from tracker.services.results import record_result

    from tracker.cli.alerts import echo_evaluation

    with app.clinic() as clinic:
        recorded = record_result(clinic, mrn=mrn, test=test, value=value, taken_on=on, unit=unit,
                                 ref_low=ref_low, ref_high=ref_high)
    from tracker.services.row_shapes import as_reported, result_row

    row = result_row(recorded.result)
    if row["unit"] is not None:
        reported = as_reported(row)
        echo(f"recorded {row['test']} {row['value']:g} {row['unit']}"
             + (f" (reported {reported})" if reported else ""))
    else:
        echo(f"recorded {row['test']} {row['value']}")
    for item in recorded.completed:
        echo(f"completed: {item.due} {item.title}")
    echo_evaluation(recorded.evaluation)


@result.command("withdraw")
@click.argument("result_id", metavar="ID", type=int)
@click.option("--reason", required=True, help="Why, as the record keeps it: e.g. 'laboratory: entered in error'.")
@pass_app
def withdraw(app, result_id, reason):
    """Take result ID (`result list` shows it) off the record: the laboratory retracted it. The items it
    completed are open again unless other results complete them, and the patient's alerts are evaluated
    again; the result's values and the reason are kept in the audit log."""
    from tracker.services.result_withdraw import withdraw_result

    from tracker.cli.alerts import echo_evaluation

    with app.clinic() as clinic:
        done = withdraw_result(clinic, result_id, reason)
    row = done.withdrawn
    value = f"{row.value_num:g} {row.unit}" if row.value_num is not None else row.value_text
    echo(f"withdrew result #{row.id}: {row.test} {value} on {row.taken_on} (patient {done.patient.mrn})")
    for item in done.reopened:
        echo(f"open again: {item.due} {item.title}")
    for item in done.cancelled:
        echo(f"cancelled: {item.due} {item.title}")
    for alert in done.resolved:
        echo(f"resolved alert #{alert.id} ({alert.kind}): {alert.resolution}")
    echo_evaluation(done.evaluation)


@result.command("list")
@click.argument("mrn", shell_complete=complete_mrn)
@click.option("--test", shell_complete=complete_test, help="Only this test (a panel lists its analytes).")
@json_option
@pass_app
def list_(app, mrn, test, as_json):
    """A patient's results, newest first: the value in the vocabulary's unit and as reported."""
    from tracker.cli.render import emit_json, table
    from tracker.services.results import list_results
    from tracker.services.row_shapes import as_reported

    from tracker.cli.audit import log_access

    with app.clinic(write=False) as clinic:  # reads only; the access is recorded after it is shown
        rows = list_results(clinic, mrn, test)
    if as_json:
        emit_json(rows)
    else:
        table(["ID", "Taken", "Test", "Value", "Unit", "As reported", "Ref range"],
              [[r["id"], r["taken_on"], r["test"], f"{r['value']:g}" if r["unit"] else r["value"], r["unit"],
                as_reported(r), _range(r)] for r in rows])
    log_access(app, "access.results", mrn=mrn, detail={"command": "result list", "test": test, "results": len(rows)})


def _range(row: dict) -> str:
    if row["ref_low"] is None and row["ref_high"] is None:
        return ""
    low = "" if row["ref_low"] is None else f"{row['ref_low']:g}"
    high = "" if row["ref_high"] is None else f"{row['ref_high']:g}"
    return f"{low}..{high}"


@result.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--skip-bad", is_flag=True, help="Import the good rows; write the rejected ones to --rejects.")
@click.option("--rejects", type=click.Path(dir_okay=False),
              help="Where rejected rows go (default: FILE's name + .rejects.csv, next to it; never FILE).")
@pass_app
def import_(app, file, skip_bad, rejects):
    """Import results from a CSV file (mrn,test,value,unit,taken_on,ref_low,ref_high), an HL7 v2 ORU^R01
    file or a FHIR R4 Bundle/Observation/DiagnosticReport (chosen by content); all or nothing.

    Files up to [import] max_mb (default 50 MB) are read; a repeated column or text that is not UTF-8 is
    refused. A bar shows progress on a terminal."""
    from tracker.cli.alerts import echo_evaluation
    from tracker.cli.progress import progress_bar
    from tracker.services.result_import import import_results

    if _lab_format(file) != "csv":
        _import_lab_file(app, file, skip_bad)
        return

    with progress_bar("importing results") as bar, app.clinic() as clinic:
        report = import_results(clinic, file, skip_bad=skip_bad, rejects=rejects, progress=bar)
    click.echo(f"imported {report.imported} results from {file}")
    for evaluation in report.evaluations:
        echo_evaluation(evaluation)
    if report.rejected:
        click.echo(f"rejected {len(report.rejected)} rows, written to {report.rejects_file}:", err=True)
        for line, _, reason in report.rejected:
            click.echo(f"line {line}: {reason}", err=True)


def _lab_format(file: str) -> str:
    """`hl7`, `fhir` or `csv`, by the file's first bytes (a missing file is the CSV import's to report)."""
    from tracker.labs import detect_format

    try:
        with open(file, "rb") as fh:
            return detect_format(fh.read(4096))
    except OSError:
        return "csv"


def _import_lab_file(app, file: str, skip_bad: bool) -> None:
    from tracker.cli.alerts import echo_evaluation
    from tracker.services.lab_import import import_lab_file

    with app.clinic() as clinic:
        report = import_lab_file(clinic, file, skip_bad=skip_bad)
    click.echo(f"imported {len(report.imported)} results from {file} ({report.format}){report.counts()}")
    for evaluation in report.evaluations:
        echo_evaluation(evaluation)
    if report.rejected:
        click.echo(f"rejected {len(report.rejected)} results:", err=True)
        for where, reason in report.rejected:
            echo(f"{where}: {reason}", err=True)


COMMANDS = [result]
