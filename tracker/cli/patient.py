"""tracker patient add|list|show|update"""

from __future__ import annotations

import click

from tracker.cli import pass_app
from tracker.cli.completion import complete_mrn
from tracker.cli.options import DATE, NUMBER, json_object_option, json_option


# `--childbearing-potential yes|no|unknown`; given bare, it means yes (the old flag). Unknown (the default)
# counts as yes for a female patient of childbearing age ([alerts] childbearing_age_from/_to).
CHILDBEARING_OPTION = click.option(
    "--childbearing-potential", "childbearing", type=click.Choice(["yes", "no", "unknown"]), is_flag=False,
    flag_value="yes", default=None,
    help="Could the patient become pregnant: yes, no or unknown (default unknown: counts as yes for a "
         "female patient aged 12-55, a clinic default).")


@click.group()
def patient() -> None:
    """Register, list, show and update patients."""


@patient.command("add")
@click.argument("mrn")
@click.option("--name", required=True, help="Full name.")
@click.option("--dob", type=DATE, required=True, help="Date of birth (YYYY-MM-DD).")
@click.option("--sex", type=click.Choice(["f", "m", "x"]), help="Sex: f, m or x.")
@click.option("--weight-kg", type=NUMBER, help="Body weight in kg.")
@CHILDBEARING_OPTION
@click.option("--clinician", help="The responsible clinician's name.")
@pass_app
def add(app, mrn, name, dob, sex, weight_kg, childbearing, clinician):
    """Register a patient under MRN."""
    app.may_create = True  # the first patient may create the clinic's database
    from tracker.services.patients import add_patient

    with app.clinic() as clinic:
        p = add_patient(clinic, mrn=mrn, name=name, dob=dob, sex=sex, weight_kg=weight_kg,
                        childbearing=childbearing or "unknown", clinician=clinician)
    from tracker.cli.render import echo

    echo(f"added {p.mrn} ({p.name}, born {p.dob})")


@patient.command("update")
@click.argument("mrn", shell_complete=complete_mrn)
@click.option("--new-mrn", help="Change the MRN.")
@click.option("--name")
@click.option("--dob", type=DATE)
@click.option("--sex", type=click.Choice(["f", "m", "x"]))
@click.option("--weight-kg", type=NUMBER)
@CHILDBEARING_OPTION
@click.option("--no-childbearing-potential", "no_childbearing", is_flag=True, help="Same as --childbearing-potential no.")
@click.option("--clinician", help="The responsible clinician's name.")
@click.option("--no-clinician", is_flag=True, help="Record that no clinician is responsible (clears it).")
@pass_app
def update(app, mrn, new_mrn, name, dob, sex, weight_kg, childbearing, no_childbearing, clinician, no_clinician):
    """Change a patient's details (audited)."""
    from tracker.services.patients import update_patient

    if no_childbearing:
        if childbearing not in (None, "no"):
            raise click.UsageError("give --childbearing-potential or --no-childbearing-potential, not both")
        childbearing = "no"
    changes = {k: v for k, v in {"mrn": new_mrn, "name": name, "dob": dob, "sex": sex, "weight_kg": weight_kg,
                                 "childbearing": childbearing, "clinician": clinician}.items() if v is not None}
    if no_clinician:
        if clinician is not None:
            raise click.UsageError("give --clinician or --no-clinician, not both")
        changes["clinician"] = None
    with app.clinic() as clinic:
        p = update_patient(clinic, mrn, changes)
    from tracker.cli.render import echo

    echo(f"updated {p.mrn}: {', '.join(sorted(changes))}")


@patient.command("list")
@json_option
@pass_app
def list_(app, as_json):
    """List every patient with their live courses."""
    from tracker.cli.render import emit_json, table
    from tracker.services.patient_view import patient_rows

    from tracker.cli.audit import log_access

    with app.clinic(write=False) as clinic:  # reads only; the access is recorded after it is shown
        rows = patient_rows(clinic)
    if as_json:
        emit_json(rows)
    else:
        table(["MRN", "Name", "DOB", "Sex", "Clinician", "On"],
              [[r["mrn"], r["name"], r["dob"], r["sex"], r["clinician"] or "-", ", ".join(r["courses"])] for r in rows],
              title=f"{len(rows)} patients")
    log_access(app, "access.patient_list", mrn=None, detail={"command": "patient list", "patients": len(rows)})


@patient.command("show")
@click.argument("mrn", shell_complete=complete_mrn)
@json_object_option
@pass_app
def show(app, mrn, as_json):
    """A patient's details, courses, recent results and next items."""
    from tracker.cli.audit import log_access
    from tracker.cli.render import emit_json
    from tracker.services.patient_view import patient_summary

    with app.clinic(write=False) as clinic:  # reads only; the access is recorded after it is shown
        summary = patient_summary(clinic, mrn)
    if as_json:
        emit_json(summary)
    else:
        _show_summary(summary)
    log_access(app, "access.patient", mrn=summary["patient"]["mrn"], detail={"command": "patient show"})


def _show_summary(summary: dict) -> None:
    from tracker.cli.render import item_mark, item_text, line, mark_legend, say, table

    p = summary["patient"]
    say(line((p["mrn"], "bold"), f"  {p['name']}  born {p['dob']}  sex {p['sex'] or '-'}"
             f"  childbearing potential {p['childbearing']}"
             f"{' (counts as yes: female of childbearing age)' if p['childbearing'] == 'unknown' and p['may_conceive'] else ''}"
             f"  clinician {p['clinician'] or '-'}"))
    table(["Drug", "Status", "Start", "Stop", "Dose", "Protocol"],
          [[c["drug"], c["status"], c["start"], c["stop"], c["dose"], f"v{c['protocol_version']}"]
           for c in summary["courses"]], title=f"Courses ({len(summary['courses'])})")
    if summary["results"]:
        from tracker.services.row_shapes import as_reported

        table(["Taken", "Test", "Value", "Unit", "As reported"],
              [[r["taken_on"], r["test"], r["value"], r["unit"], as_reported(r)] for r in summary["results"]],
              title=f"Recent results (latest {len(summary['results'])})")
    if summary["baselines"]:
        table(["Drug", "Test", "Baseline"], [[b["drug"], b["test"], b["text"]] for b in summary["baselines"]],
              title=f"Baselines for change rules ({len(summary['baselines'])})", message="Baseline")
    if summary["alerts"]:
        table(["ID", "Raised", "Severity", "Kind", "Status", "Message"],
              [[a["id"], a["raised_on"], a["severity"], a["kind"], a["state"], a["message"]]
               for a in summary["alerts"]], title=f"Alerts ({len(summary['alerts'])})", message="Message")
    items = summary["next_items"]
    table(["Due", "Drug", "Kind", "Mark", "Item"],
          [[i["due"], i["drug"], i["kind"], item_mark(i), item_text(i)] for i in items],
          title=f"Open and upcoming items ({len(items)})", message="Item", legend=mark_legend(items))


COMMANDS = [patient]
