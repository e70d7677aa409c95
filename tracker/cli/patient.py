"""tracker patient add|list|show|update"""

from __future__ import annotations

import click

from tracker.cli import pass_app
from tracker.cli.options import DATE, json_option


@click.group()
def patient() -> None:
    """Register, list, show and update patients."""


@patient.command("add")
@click.argument("mrn")
@click.option("--name", required=True, help="Full name.")
@click.option("--dob", type=DATE, required=True, help="Date of birth (YYYY-MM-DD).")
@click.option("--sex", type=click.Choice(["f", "m", "x"]), help="Sex: f, m or x.")
@click.option("--weight-kg", type=float, help="Body weight in kg.")
@click.option("--childbearing-potential", is_flag=True, help="Patient could become pregnant.")
@pass_app
def add(app, mrn, name, dob, sex, weight_kg, childbearing_potential):
    """Register a patient under MRN."""
    from tracker.services.patients import add_patient

    with app.clinic() as clinic:
        p = add_patient(clinic, mrn=mrn, name=name, dob=dob, sex=sex, weight_kg=weight_kg,
                        childbearing_potential=childbearing_potential)
    click.echo(f"added {p.mrn} ({p.name}, born {p.dob})")


@patient.command("update")
@click.argument("mrn")
@click.option("--new-mrn", help="Change the MRN.")
@click.option("--name")
@click.option("--dob", type=DATE)
@click.option("--sex", type=click.Choice(["f", "m", "x"]))
@click.option("--weight-kg", type=float)
@click.option("--childbearing-potential/--no-childbearing-potential", default=None)
@pass_app
def update(app, mrn, new_mrn, name, dob, sex, weight_kg, childbearing_potential):
    """Change a patient's details (audited)."""
    from tracker.services.patients import update_patient

    changes = {k: v for k, v in {"mrn": new_mrn, "name": name, "dob": dob, "sex": sex, "weight_kg": weight_kg,
                                 "childbearing_potential": childbearing_potential}.items() if v is not None}
    with app.clinic() as clinic:
        p = update_patient(clinic, mrn, changes)
    click.echo(f"updated {p.mrn}: {', '.join(sorted(changes))}")


@patient.command("list")
@json_option
@pass_app
def list_(app, as_json):
    """List every patient with their live courses."""
    from tracker.cli.render import emit_json, table
    from tracker.services.patient_view import patient_rows

    with app.clinic() as clinic:
        rows = patient_rows(clinic)
    if as_json:
        emit_json(rows)
        return
    table(["MRN", "Name", "DOB", "Sex", "On"], [[r["mrn"], r["name"], r["dob"], r["sex"], ", ".join(r["courses"])]
                                               for r in rows], title=f"{len(rows)} patients")


@patient.command("show")
@click.argument("mrn")
@json_option
@pass_app
def show(app, mrn, as_json):
    """A patient's details, courses, recent results and next items."""
    from tracker.cli.render import emit_json, say, table
    from tracker.services.patient_view import patient_summary

    with app.clinic() as clinic:
        summary = patient_summary(clinic, mrn)
    if as_json:
        emit_json(summary)
        return
    p = summary["patient"]
    say(f"[bold]{p['mrn']}[/bold]  {p['name']}  born {p['dob']}  sex {p['sex'] or '-'}"
        f"{'  childbearing potential' if p['childbearing_potential'] else ''}")
    table(["Drug", "Status", "Start", "Stop", "Dose", "Protocol"],
          [[c["drug"], c["status"], c["start"], c["stop"], c["dose"], f"v{c['protocol_version']}"]
           for c in summary["courses"]], title="Courses")
    if summary["results"]:
        table(["Taken", "Test", "Value", "Unit"],
              [[r["taken_on"], r["test"], r["value"], r["unit"]] for r in summary["results"]],
              title="Recent results")
    if summary["baselines"]:
        table(["Drug", "Test", "Baseline"], [[b["drug"], b["test"], b["text"]] for b in summary["baselines"]],
              title="Baselines for change rules")
    if summary["alerts"]:
        table(["ID", "Raised", "Severity", "Kind", "Status", "Message"],
              [[a["id"], a["raised_on"], a["severity"], a["kind"], a["status"], a["message"]]
               for a in summary["alerts"]], title="Alerts")
    table(["Due", "Drug", "Kind", "Title", "Status"],
          [[i["due"], i["drug"], i["kind"], i["title"] + (f" (missing {i['missing_text']})" if i["missing_text"] else ""),
            _item_status(i)] for i in summary["next_items"]], title="Open and upcoming items")


def _item_status(item: dict) -> str:
    """OVERDUE, partial, OVERDUE (partial), or the stored status."""
    if item["overdue"]:
        return "OVERDUE (partial)" if item["status"] == "partial" else "OVERDUE"
    return item["status"]


COMMANDS = [patient]
