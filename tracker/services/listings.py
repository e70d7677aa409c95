"""The listing use cases behind `tracker calendar|due|overdue|alerts`: bring plans far enough ahead
(with the command's own merge window), then read. Each is one call for the CLI, in one transaction."""

from __future__ import annotations

import datetime as dt
from contextlib import contextmanager, nullcontext

from tracker.services.coded_rows import alert_codes, item_codes
from tracker.services.context import Clinic
from tracker.services.horizons import plans_fall_short


def refresh(clinic: Clinic, needed: dt.date, *, end_courses: bool = False) -> int:
    """Roll plans forward first if they do not reach the asked-for date yet (`end_courses`: also end the
    courses whose stop date has come, as the nightly does; listings leave that to the nightly)."""
    from tracker.services.plan_sync import roll_forward  # the planner: loaded only by what may re-plan

    return roll_forward(clinic.session, clinic.library, clinic.today, needed, merge_window=clinic.merge_window,
                        childbearing_ages=clinic.childbearing_ages, end_courses=end_courses)


def patient_calendar(clinic: Clinic, mrn: str, start: dt.date | None, end: dt.date | None,
                     include_cancelled: bool = False) -> list[dict]:
    """A patient's items between the dates (everything stored when not given)."""
    from tracker.services.patients import get_patient
    from tracker.services.worklists import calendar, mark_clinic_defaults

    patient = get_patient(clinic.session, mrn)
    if end:
        refresh(clinic, end)
    rows = calendar(clinic.session, patient.id, start, end, clinic.today, include_cancelled,
                    clinic.library.vocabulary)
    return item_codes(mark_clinic_defaults(clinic.session, clinic.library, rows), clinic.library)


def due_items(clinic: Clinic, as_of: dt.date, days: int, *, what_if: bool = False,
              clinician: str | None = None) -> list[dict]:
    """What is due from `as_of` for `days` (of one clinician's patients, when given; a name no patient has is
    refused). A what-if (`due --as-of`) reads plans rolled forward as far as it looks, inside a savepoint
    that is rolled back: the database is left as it was."""
    with streamed_due_items(clinic, as_of, days, what_if=what_if, clinician=clinician) as rows:
        return list(rows)


@contextmanager
def streamed_due_items(clinic: Clinic, as_of: dt.date, days: int, *, what_if: bool = False,
                       clinician: str | None = None):
    """`due_items` as an iterator of its rows, read from the database as the caller consumes them inside
    the block (`due --json` writes each as it comes: its memory does not grow with the clinic). Refusals
    (an unknown clinician) come as the block is entered, before any row; a what-if's savepoint is rolled
    back as the block ends."""
    from tracker.services.coded_rows import coded_items
    from tracker.services.worklists import due_rows

    if clinician is not None:
        from tracker.services.patients import known_clinician

        clinician = known_clinician(clinic.session, clinician)
    needed = as_of + dt.timedelta(days=days)
    # Usually no plan falls short (the nightly keeps them a year ahead): one index seek, and neither the
    # planner nor a what-if's savepoint is needed.
    short = plans_fall_short(clinic.session, clinic.today, needed)
    with rolled_back(clinic.session) if what_if and short else nullcontext():
        if short and refresh(clinic, needed) and not what_if:
            clinic.session.commit()  # plans rolled forward are kept before any row naming their items is shown
        rows = due_rows(clinic.session, as_of, days, clinic.library.vocabulary, clinician)
        try:
            yield coded_items(rows, clinic.library)
        finally:
            rows.close()  # a reader that stopped early: its cursor closed before the savepoint is rolled back


@contextmanager
def rolled_back(session):
    """A savepoint undone when the block ends: what a what-if wrote to look never stays."""
    savepoint = session.begin_nested()
    try:
        yield
    finally:
        savepoint.rollback()


def overdue_items(clinic: Clinic, as_of: dt.date) -> list[dict]:
    return list(streamed_overdue_items(clinic, as_of))


def streamed_overdue_items(clinic: Clinic, as_of: dt.date):
    """`overdue_items` as an iterator of its rows, read from the database as they are consumed (inside the
    clinic's transaction)."""
    from tracker.services.coded_rows import coded_items
    from tracker.services.worklists import overdue_rows

    return coded_items(overdue_rows(clinic.session, as_of, clinic.library.vocabulary), clinic.library)


def review_alerts(clinic: Clinic, as_of: dt.date | None, include_all: bool = False, mrn: str | None = None,
                  clinician: str | None = None):
    """The alerts as stored (the nightly job, or `tracker evaluate`, wrote them), as (last evaluation day,
    rows); nothing is written. With `as_of`, a what-if: (None, the alerts that would be open then). With
    `clinician`, only that clinician's patients' (a name no patient has is refused)."""
    from tracker.services.alerts import alerts_as_of, list_alerts
    from tracker.services.evaluate import last_reviewed_on
    from tracker.services.nightly import last_completed

    if clinician is not None:
        from tracker.services.patients import known_clinician

        clinician = known_clinician(clinic.session, clinician)
    if as_of is not None:
        rows = alerts_as_of(clinic.session, clinic.library, as_of, clinic.settings, mrn, include_all)
        if clinician is not None:
            from sqlmodel import select

            from tracker.db.tables import Patient

            mine = set(clinic.session.exec(select(Patient.mrn).where(Patient.clinician == clinician)).all())
            rows = [r for r in rows if r["mrn"] in mine]
        return None, alert_codes(clinic.session, rows, clinic.library)
    rows = list_alerts(clinic.session, include_all, mrn, clinician)
    days = [day for day in (last_completed(clinic.session), last_reviewed_on(clinic.session)) if day]
    return max(days, default=None), alert_codes(clinic.session, rows, clinic.library)


def evaluate_alerts(clinic: Clinic):
    """`tracker evaluate`: roll plans forward and review the whole clinic today, storing the alerts (what
    the nightly job does before its reminders)."""
    from tracker.services.alerts import evaluate_clinic

    refresh(clinic, clinic.today, end_courses=True)
    return evaluate_clinic(clinic.session, clinic.library, clinic.today, clinic.settings, user=clinic.user)
