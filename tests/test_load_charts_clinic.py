"""A clinic-wide chart load (more than one chunk of patients) reads the windowed items of the whole clinic in
one query (tracker/db/charts.py: load_charts); a small one reads them per chunk. Both give every patient the
same chart, results included: the results of the tests the patient's own protocols read, whoever shares the
chunk (a synthetic clinic of 1,200 patients, on SQLite or PostgreSQL)."""

from __future__ import annotations

import datetime as dt

from freezegun import freeze_time
from sqlmodel import Session, select

from tracker.core.settings import Settings
from tracker.db.charts import CHUNK, ProtocolsOfCourses, load_charts
from tracker.db.engine import open_engine
from tracker.db.tables import Patient
from tracker.protocol_files import load_library

TODAY = dt.date(2026, 11, 2)


def _shape(chart) -> tuple:
    return (chart.patient_id, tuple(sorted(tuple(item) for item in chart.items)), tuple(c.id for c in chart.courses),
            tuple(a.id for a in chart.assessments), tuple(c.id for c in chart.stopped_courses),
            tuple(sorted((test, tuple(r.id for r in rows)) for test, rows in chart.results.items())))


def test_a_clinic_wide_load_gives_every_patient_the_chart_a_load_of_their_own_gives(tracker, db_url):
    with freeze_time(TODAY.isoformat()):
        tracker("synth --patients 1200 --seed 3")
    library, settings = load_library(), Settings().alerts
    engine = open_engine(db_url)
    with Session(engine) as session:
        ids = session.exec(select(Patient.id)).all()
        assert len(ids) > 2 * CHUNK
        protocol_of = ProtocolsOfCourses(session, library)
        clinic = [_shape(chart) for chart in load_charts(session, protocol_of, library.vocabulary, ids, TODAY, settings)]
        alone = [_shape(chart) for patient_id in ids
                 for chart in load_charts(session, protocol_of, library.vocabulary, [patient_id], TODAY, settings)]
    engine.dispose()
    assert sum(1 for shape in clinic if shape[1]) > 100  # many patients have items in a review window
    assert sum(1 for shape in clinic if shape[5]) > 500  # and results
    by_patient = {shape[0]: shape for shape in clinic}
    assert len(by_patient) == len(ids)
    for shape in alone:
        assert by_patient[shape[0]] == shape


def test_the_items_read_once_for_a_clinic_wide_pass_choose_and_fill_the_charts_as_reading_them_again(tracker, db_url):
    """A clinic-wide pass reads the clinic's items in a review window once (tracker/services/evaluate.py): the
    same patients to review, full and dated, and the same charts as when each step reads them itself."""
    from tracker.db.charts import patients_to_review, windowed_items

    with freeze_time(TODAY.isoformat()):
        tracker("synth --patients 1200 --seed 3")
    library, settings = load_library(), Settings().alerts
    engine = open_engine(db_url)
    with Session(engine) as session:
        protocol_of = ProtocolsOfCourses(session, library)
        items = windowed_items(session, TODAY, settings)
        chosen = patients_to_review(session, protocol_of, library.vocabulary, TODAY, settings)
        assert patients_to_review(session, protocol_of, library.vocabulary, TODAY, settings,
                                  items_by_patient=items) == chosen
        changed = set(sorted(chosen.full)[::3])
        assert patients_to_review(session, protocol_of, library.vocabulary, TODAY, settings, changed=changed,
                                  items_by_patient=items) == patients_to_review(
            session, protocol_of, library.vocabulary, TODAY, settings, changed=changed)
        everyone = session.exec(select(Patient.id)).all()  # more than one chunk
        for ids, with_results in [(chosen.full, True), (chosen.dated, False), (everyone, True), (everyone, False)]:
            again = [_shape(chart) for chart in load_charts(session, protocol_of, library.vocabulary, ids, TODAY,
                                                            settings, with_results=with_results)]
            once = [_shape(chart) for chart in load_charts(session, protocol_of, library.vocabulary, ids, TODAY,
                                                           settings, with_results=with_results,
                                                           items_by_patient=items)]
            assert once == again and len(once) == len(set(ids))
    engine.dispose()
    assert len(chosen.full) > 20 and len(chosen.dated) > 50 and len(everyone) > 2 * CHUNK
    assert sum(1 for shape in again if shape[1]) > 100
