"""Charts loaded and reviewed by the core: the work of a clinic-wide pass that a review worker shares
(services/evaluate.py, services/review_worker.py)."""

from __future__ import annotations

import datetime as dt
import gc
import heapq
from contextlib import contextmanager
from operator import attrgetter

from tracker.core.alerts import AlertSettings
from tracker.core.protocol import ProtocolLibrary
from tracker.core.review import Review, review
from tracker.db.charts import ProtocolsOfCourses, draws_reviews, load_charts


def review_charts(session, protocol_of: ProtocolsOfCourses, library: ProtocolLibrary, patient_ids, today: dt.date,
                  settings: AlertSettings, algorithm, *, with_results: bool, items_by_patient=None,
                  extra_items=None) -> list[Review]:
    """The core's review of each patient's chart, in patient order (the main process's share of a pass, or a
    review worker's). On the dated rules alone (`with_results` False: the rules that read results are not
    asked), a patient whose windowed items are draws alone is reviewed from them (`draws_reviews`) without
    loading the chart. `extra_items`: see `load_charts`."""
    with collector_paused():
        drawn = ({} if with_results or items_by_patient is None else
                 draws_reviews(protocol_of, items_by_patient, patient_ids, today, settings, library.vocabulary))
        charted = (review(chart, today, settings, algorithm, library.vocabulary, change_driven=with_results)
                   for chart in load_charts(session, protocol_of, library.vocabulary,
                                            [p for p in patient_ids if p not in drawn], today, settings,
                                            with_results=with_results, items_by_patient=items_by_patient,
                                            extra_items=extra_items))
        return list(heapq.merge(drawn.values(), charted, key=attrgetter("patient_id")))


@contextmanager
def collector_paused():
    """Python's cycle collector paused while charts load: a whole-clinic pass creates a million result
    rows, all kept until the reviews are applied, and each full collection would walk them all again (a
    fifth of the pass). Charts and reviews are immutable data without reference cycles."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
