"""tracker assess"""

from __future__ import annotations

import click

from tracker.cli import pass_app
from tracker.cli.completion import complete_mrn
from tracker.cli.options import DATE, NUMBER
from tracker.cli.render import echo  # stored text shown literally

from tracker.core.terms import MEASURE_NAMES as NAMES


@click.command()
@click.argument("mrn", shell_complete=complete_mrn)
@click.option("--on", type=DATE, required=True, help="Date of the assessment.")
@click.option("--easi", type=NUMBER, help="EASI, 0-72.")
@click.option("--iga", type=NUMBER, help="IGA, 0-4.")
@click.option("--itch-nrs", type=NUMBER, help="Itch numeric rating scale, 0-10.")
@click.option("--dlqi", type=NUMBER, help="DLQI, 0-30.")
@click.option("--poem", type=NUMBER, help="POEM, 0-28.")
@click.option("--replace", is_flag=True,
              help="Replace the measures already recorded that day (audited); without it a second value is refused.")
@pass_app
def assess(app, mrn, on, easi, iga, itch_nrs, dlqi, poem, replace):
    """Record a severity assessment; shows the change from each course's baseline and judges due checkpoints."""
    from tracker.services.assessments import record_assessment

    values = {"easi": easi, "iga": iga, "itch_nrs": itch_nrs, "dlqi": dlqi, "poem": poem}
    with app.clinic() as clinic:
        recorded = record_assessment(clinic, mrn=mrn, on=on, values=values, replace=replace)
    a = recorded.assessment
    shown = ", ".join(f"{NAMES[k]} {getattr(a, k):g}" for k in NAMES if getattr(a, k) is not None)
    verb = "replaced" if recorded.replaced else "recorded"
    echo(f"{verb} assessment for {recorded.mrn} on {a.assessed_on}: {shown}")
    for response in recorded.responses:
        if not response["baseline_on"]:
            click.echo(f"{response['drug']} (week {response['week']}): no baseline assessment")
            continue
        parts = []
        for measure, change in response["change"].items():
            text = f"{NAMES[measure]} {change['baseline']:g} -> {change['current']:g}"
            if measure == "easi" and "improvement_pct" in change:
                text += f" ({change['improvement_pct']:g}% better{', ' + '/'.join(change['reached']) if change['reached'] else ''})"
            else:
                text += f" ({change['change']:+g})"
            parts.append(text)
        click.echo(f"{response['drug']} (week {response['week']}, baseline {response['baseline_on']}): "
                   f"{'; '.join(parts) or 'no measure in common with the baseline'}")
    evaluation = recorded.evaluation
    for line in evaluation.outcomes:
        click.echo(f"checkpoint: {line}")
    from tracker.cli.alerts import echo_evaluation

    echo_evaluation(evaluation)


COMMANDS = [assess]
