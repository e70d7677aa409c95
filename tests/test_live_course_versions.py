"""The whole-clinic prefilter holds every live course while it chooses whom to review (tracker/db/charts.py:
live_course_versions): only what it reads of them, each distinct drug and protocol hash one shared string (at
1,000,000 patients a whole course row per live course was ~640 MiB of the cold nightly's memory). The patients
chosen are the same as from whole course rows (a synthetic clinic, on SQLite or PostgreSQL)."""

from __future__ import annotations

import datetime as dt

from freezegun import freeze_time
from sqlmodel import Session

from tracker.db.charts import ProtocolsOfCourses, breaching_patients, live_course_versions, live_courses
from tracker.db.engine import open_engine
from tracker.protocol_files import load_library

TODAY = dt.date(2026, 11, 2)


def test_live_course_versions_are_the_live_courses_with_their_strings_shared(tracker, db_url):
    with freeze_time(TODAY.isoformat()):
        tracker("synth --patients 400 --seed 5")
    library = load_library()
    engine = open_engine(db_url)
    with Session(engine) as session:
        whole = live_courses(session)
        lean = live_course_versions(session)
        assert sorted((c.patient_id, c.drug, c.protocol_hash, c.gate_override) for c in whole) == sorted(lean)
        # One string object per distinct value, however many courses carry it.
        assert len({id(c.drug) for c in lean}) == len({c.drug for c in lean}) < len(lean)
        assert len({id(c.protocol_hash) for c in lean}) == len({c.protocol_hash for c in lean})
        protocol_of = ProtocolsOfCourses(session, library)
        chosen = breaching_patients(session, lean, protocol_of, library.vocabulary)
        assert chosen  # synth's clinic has out-of-range results
        assert chosen == breaching_patients(session, whole, protocol_of, library.vocabulary)
    engine.dispose()
