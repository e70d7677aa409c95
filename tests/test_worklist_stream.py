"""`due --json` and `overdue --json` are written as their rows are read (issue 19 item 2: memory flat as the
clinic grows), and their text, and `patient show`'s items, are what the listing was before streaming: each
matching item by the core's predicate, read through the ORM, encoded whole by json's encoder. On a
synthesised clinic, SQLite or PostgreSQL (TRACKER_TEST_PG)."""

from __future__ import annotations

import datetime as dt
import inspect
import io
import json
import sys

import pytest
from freezegun import freeze_time
from sqlalchemy import event, select

from tracker.core import worklist
from tracker.db.tables import Item, Patient
from tracker.services.coded_rows import item_codes
from tracker.services.worklists import ROW_COLUMNS, item_values

DAY = dt.date(2026, 12, 2)


def whole(rows: list) -> str:
    """A list of rows as `emit_json` wrote it before rows were streamed: each row encoded whole."""
    if not rows:
        return "[]\n"
    encode = json.JSONEncoder(sort_keys=True, default=str, separators=(", ", ": ")).encode
    return "[\n" + ",\n".join("  " + encode(row) for row in rows) + "\n]\n"


@pytest.fixture(scope="module")
def clinic_db(tmp_path_factory, migrated_template):
    """A synthesised clinic of 300 patients as of DAY (one per module: the tests only read it)."""
    import os
    import shutil

    from tests.conftest import Tracker

    if os.environ.get("TRACKER_TEST_PG"):
        from tests.pg import fresh_database

        db = fresh_database()
    else:
        db = str(tmp_path_factory.mktemp("stream") / "tracker.db")
        shutil.copyfile(migrated_template, db)
        os.chmod(db, 0o600)
    Tracker(db)(["synth", "--patients", "300", "--seed", "2", "--as-of", DAY.isoformat()])
    return db


def app_for(db: str):
    from tracker.cli import AppContext

    return AppContext(db, "tester", None)


def reference(db: str, accept, today: dt.date) -> list[dict]:
    """Every stored item the core predicate accepts, by patient's MRN, due date and id, as rows with codes:
    no SQL window, no streaming, the ORM's rows."""
    app = app_for(db)
    try:
        with app.clinic(write=False) as clinic:
            columns = Item.__table__.c
            query = select(*(columns[name] for name in ROW_COLUMNS), Patient.mrn, Patient.name).join(
                Patient, Patient.id == Item.patient_id)
            width = len(ROW_COLUMNS)
            rows = []
            for row in clinic.session.execute(query).all():
                values = tuple(row[:width])
                facts = worklist_facts(values)
                if accept(facts, today):
                    rows.append(item_values(values, row[width], row[width + 1], worklist.is_overdue(facts, today),
                                            clinic.library.vocabulary))
            rows.sort(key=lambda r: (r["mrn"], r["due"], r["id"]))
            return item_codes(rows, clinic.library)
    finally:
        app.close()


def worklist_facts(values: tuple):
    from types import SimpleNamespace

    named = dict(zip(ROW_COLUMNS, values))
    return SimpleNamespace(kind=named["kind"], status=named["status"], due=named["due"])


@pytest.mark.parametrize("days", [0, 7, 30])
def test_due_json_is_the_core_s_due_items_encoded_whole(clinic_db, days):
    from tests.conftest import Tracker

    out = Tracker(clinic_db)(["due", "--json", "--as-of", DAY.isoformat(), "--days", str(days)]).stdout
    expected = reference(clinic_db, lambda item, today: worklist.is_due(item, today, days), DAY)
    assert expected, "the synthesised clinic has something due"
    assert out == whole(expected)


@pytest.mark.parametrize("day", [DAY, DAY + dt.timedelta(days=40)])
def test_overdue_json_is_the_core_s_overdue_items_encoded_whole(clinic_db, day):
    from tests.conftest import Tracker

    out = Tracker(clinic_db)(["overdue", "--json", "--as-of", day.isoformat()]).stdout
    expected = reference(clinic_db, worklist.is_overdue, day)
    assert expected, "the synthesised clinic has something overdue"
    assert out == whole(expected)


def test_the_plain_listings_show_the_same_items(clinic_db):
    from tests.conftest import Tracker

    tracker = Tracker(clinic_db)
    due = tracker(["due", "--as-of", DAY.isoformat()]).stdout
    overdue = tracker(["overdue", "--as-of", DAY.isoformat()]).stdout
    for row in reference(clinic_db, lambda item, today: worklist.is_due(item, today, 7), DAY)[:50]:
        assert row["mrn"] in due
    for row in reference(clinic_db, worklist.is_overdue, DAY)[:50]:
        assert row["mrn"] in overdue


def test_patient_show_lists_the_patient_s_overdue_then_next_items(clinic_db):
    from tests.conftest import Tracker

    tracker = Tracker(clinic_db)
    overdue = reference(clinic_db, worklist.is_overdue, DAY)
    mrn = overdue[0]["mrn"]
    with freeze_time(f"{DAY.isoformat()}T12:00:00"):
        shown = tracker.json(["patient", "show", mrn])["next_items"]
    late = [r for r in overdue if r["mrn"] == mrn]
    coming = [r for r in reference(clinic_db, worklist.is_upcoming, DAY) if r["mrn"] == mrn][:10]
    assert json.dumps(shown, sort_keys=True) == json.dumps(late + coming, sort_keys=True, default=str)


def test_due_rows_are_a_generator_the_writer_consumes_one_row_at_a_time(clinic_db):
    """Each row's text is written before the next row is read from the database."""
    from tracker.cli.render import emit_json_rows
    from tracker.services.listings import streamed_due_items

    app = app_for(clinic_db)
    written_before_each_read = []
    out = io.StringIO()
    try:
        with app.clinic(write=False) as clinic:
            with streamed_due_items(clinic, DAY, 7, what_if=True) as rows:
                assert inspect.isgenerator(rows)

                def watched():
                    for row in rows:
                        written_before_each_read.append(out.tell())
                        yield row

                stdout, sys.stdout = sys.stdout, out
                try:
                    emit_json_rows(watched())
                finally:
                    sys.stdout = stdout
    finally:
        app.close()
    assert len(written_before_each_read) > 10
    assert written_before_each_read[0] == 0
    # Every row after the first finds the one before it already written.
    assert all(a < b for a, b in zip(written_before_each_read, written_before_each_read[1:]))
    assert out.getvalue() == whole(reference(clinic_db, lambda item, today: worklist.is_due(item, today, 7), DAY))


def test_the_whole_clinic_listings_read_their_items_in_batches(clinic_db):
    """`due`/`overdue` ask for their item rows `STREAM_BATCH` at a time (SQLAlchemy's yield_per); on
    PostgreSQL that is a server-side cursor, so the client never holds the whole result."""
    from tracker.services.listings import streamed_due_items, streamed_overdue_items
    from tracker.services.worklists import STREAM_BATCH

    app = app_for(clinic_db)
    seen = []

    def before(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().startswith("SELECT item.id, item.uid"):
            seen.append((context.execution_options.get("yield_per"), type(cursor).__module__,
                         type(cursor).__name__))

    try:
        event.listen(app.engine, "before_cursor_execute", before)
        with app.clinic(write=False) as clinic:
            with streamed_due_items(clinic, DAY, 7, what_if=True) as rows:
                assert sum(1 for _ in rows) > 0
            assert sum(1 for _ in streamed_overdue_items(clinic, DAY)) > 0
    finally:
        app.close()
    assert [options for options, *_ in seen] == [STREAM_BATCH, STREAM_BATCH]
    if app_for(clinic_db).db.startswith("postgresql"):
        assert all(module.startswith("psycopg") and name == "ServerCursor" for _, module, name in seen)


def test_a_reader_that_stops_early_leaves_the_transaction_usable(clinic_db):
    """A pipe closed after the first row (`due --json | head -1`): the cursor is closed as the block ends,
    before a what-if's savepoint is rolled back, and the clinic's transaction reads on."""
    from tracker.services.listings import streamed_due_items, streamed_overdue_items

    app = app_for(clinic_db)
    try:
        with app.clinic(write=False) as clinic:
            for what_if in (True, False):
                with pytest.raises(BrokenPipeError):
                    with streamed_due_items(clinic, DAY, 7, what_if=what_if) as rows:
                        next(rows)
                        raise BrokenPipeError
            assert next(streamed_overdue_items(clinic, DAY))["mrn"]
            assert clinic.session.execute(select(Patient.mrn).limit(1)).scalar()
    finally:
        app.close()
