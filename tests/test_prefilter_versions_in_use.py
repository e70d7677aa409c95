"""The whole-clinic prefilter reads the live courses' distinct (drug, protocol version) pairs, not a row per
live course (tracker/db/charts.py: versions_in_use; at 1,000,000 patients a row per course was ~890,000 rows
held through the choice), and only the courses of the patients it looks closer at. The patients chosen are
the same as from whole course rows (a synthetic clinic, on SQLite or PostgreSQL)."""

from __future__ import annotations

import datetime as dt

from freezegun import freeze_time
from sqlmodel import Session

from tracker.db.charts import ProtocolsOfCourses, breaching_patients, live_courses, versions_in_use
from tracker.db.engine import open_engine
from tracker.protocol_files import load_library

TODAY = dt.date(2026, 11, 2)


def test_the_versions_in_use_choose_the_patients_whole_course_rows_choose(tracker, db_url):
    with freeze_time(TODAY.isoformat()):
        tracker("synth --patients 400 --seed 5")
    library = load_library()
    engine = open_engine(db_url)
    with Session(engine) as session:
        whole = live_courses(session)
        versions = versions_in_use(session)
        assert sorted((v.drug, v.protocol_hash) for v in versions) == sorted({(c.drug, c.protocol_hash) for c in whole})
        assert len(versions) < len(whole)
        protocol_of = ProtocolsOfCourses(session, library)
        chosen = breaching_patients(session, versions, protocol_of, library.vocabulary)
        assert chosen  # synth's clinic has out-of-range results
        assert chosen == breaching_patients(session, whole, protocol_of, library.vocabulary)
    engine.dispose()
