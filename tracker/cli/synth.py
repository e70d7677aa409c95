"""tracker synth"""

from __future__ import annotations

import click

from tracker.cli import pass_app
from tracker.cli.options import as_of_option


@click.command()
@click.option("--patients", type=click.IntRange(1, 10_000_000), required=True, help="How many patients.")
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed (and date) = same clinic.")
@as_of_option
@click.option("--json", "as_json", is_flag=True, help="Print the summary as a JSON object.")
@pass_app
def synth(app, patients, seed, as_of, as_json):
    """Fill an empty database with a synthetic clinic (for benchmarks and load tests; all data invented).

    \b
    Assumptions (synthetic choices, not clinical data):
    - drug mix: dupilumab and methotrexate most common (tracker/services/synth/params.py DRUG_WEIGHTS);
      courses start over the last three years, on clinic days;
    - a course with a maximum duration (ciclosporin 8 weeks, prednisolone 7 days, NB-UVB 8 weeks) ends
      between half its maximum and its maximum; 3% run over, by 1 to 28 days;
    - other courses: 22% of those older than 10 weeks stop (failure, adverse event or other); 60% of stops
      switch to another drug, 80% after a time-limited course (to a drug without a maximum);
    - lab values: each patient has a set point per analyte inside the reference range; results vary around
      it by 5% (creatinine, eGFR), 4-6% (Hb, albumin, blood pressure) or 10% (others), one standard
      deviation; 3% of results are out of range;
    - 15% of items due in the last 30 days are not done yet, 1% of older ones never were."""
    from tracker.cli.progress import progress_bar
    from tracker.cli.render import emit_json, say
    from tracker.services.synth import bulk_load_journal, synthesise_clinic

    app.may_create = True
    with progress_bar("synthesising patients", as_json=as_json) as bar, bulk_load_journal(app.engine), \
            app.clinic(today=as_of) as clinic:
        summary = synthesise_clinic(clinic, patients, seed, bar)
    today = clinic.today
    if as_json:
        emit_json(summary.as_dict())
        return
    say(f"Synthetic clinic as of {today}: {summary.patients} patients, {summary.courses} courses, "
        f"{summary.items} items, {summary.results} results, {summary.assessments} assessments, "
        f"{summary.dose_changes} dose changes, {summary.pauses} pauses ({summary.seconds:.1f} s)")
    say("Drugs: " + ", ".join(f"{drug} {count}" for drug, count in summary.drugs.items()))


COMMANDS = [synth]
