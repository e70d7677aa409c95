"""tracker.db.bulk: the nightly job's bulk inserts store rows exactly as the ORM does, and hand back the
right id for each row (audit events and reminders point at alerts by those ids)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlmodel import Session

from tracker.db.bulk import bulk_insert, bulk_insert_returning_ids
from tracker.db.engine import make_engine, resolve_url
from tracker.db.tables import Alert, Patient

A = Alert.__table__
NOW = dt.datetime(2026, 11, 22, 6, 30, 15, 250000, tzinfo=dt.timezone.utc)


def _alert_values(key: str, patient_id: int) -> dict:
    return {"condition_key": key, "patient_id": patient_id, "kind": "threshold", "severity": "critical",
            "raised_on": dt.date(2026, 11, 22), "message": "ALT 3x ULN", "suggestions": "repeat",
            "sources": "bad", "value": "120", "created_at": NOW, "updated_at": NOW}


def _stored(conn, key: str) -> tuple:
    """The row as the database holds it (driver values, no SQLAlchemy type processing), without its id."""
    quoted = ", ".join(f'"{c.name}"' for c in A.columns if c.name not in ("id", "condition_key"))
    marker = "?" if conn.dialect.name == "sqlite" else "%(key)s"
    params = (key,) if conn.dialect.name == "sqlite" else {"key": key}
    return tuple(conn.exec_driver_sql(f"SELECT {quoted} FROM alert WHERE condition_key = {marker}", params).one())


def test_bulk_rows_are_stored_like_orm_rows_with_the_right_ids(tracker):
    tracker("patient add P1 --name 'Ada Byron' --dob 1980-01-01")
    engine = make_engine(resolve_url(tracker.db))
    with Session(engine) as session:
        patient_id = session.execute(select(Patient.id)).scalar_one()
        session.add(Alert(**_alert_values("orm", patient_id)))  # status left to its default
        session.flush()
        conn = session.connection()
        keys = [f"bulk:{n}" for n in range(40)]
        ids = bulk_insert_returning_ids(conn, A, [_alert_values(k, patient_id) for k in keys])
        bulk_insert(conn, A, [_alert_values("plain", patient_id)])
        session.commit()
        conn = session.connection()
        stored_ids = dict(conn.execute(select(A.c.condition_key, A.c.id)).all())
        assert [stored_ids[k] for k in keys] == ids  # each id is its own row's
        assert len(set(ids)) == 40 and min(ids) > stored_ids["orm"]
        orm_row = _stored(conn, "orm")
        assert _stored(conn, "bulk:7") == orm_row  # same stored dates, timestamps and default status
        assert _stored(conn, "plain") == orm_row
        loaded = session.get(Alert, ids[0])
        assert loaded.status == "open" and loaded.created_at == NOW and loaded.raised_on == dt.date(2026, 11, 22)
    engine.dispose()


def test_bulk_insert_new_skips_conditions_already_live_and_returns_the_right_ids(tracker):
    """Issue 15: one live alert per condition is held by a partial unique index; the bulk insert skips a
    condition another writer already raised (ON CONFLICT DO NOTHING) and hands back the ids of the rest."""
    from tracker.db.bulk import bulk_insert_new

    tracker("patient add P1 --name 'Ada Byron' --dob 1980-01-01")
    engine = make_engine(resolve_url(tracker.db))
    with Session(engine) as session:
        patient_id = session.execute(select(Patient.id)).scalar_one()
        conn = session.connection()
        bulk_insert(conn, A, [{**_alert_values(k, patient_id), "status": "open"} for k in ("live:0", "live:5")] + [
            {**_alert_values("resolved:1", patient_id), "status": "resolved"}])
        keys = ["live:0", "resolved:1", "live:2", "live:5", "live:7"]
        inserted = bulk_insert_new(conn, A, [_alert_values(k, patient_id) for k in keys], key="condition_key")
        session.commit()
        conn = session.connection()
        assert [row["condition_key"] for _, row in inserted] == ["resolved:1", "live:2", "live:7"]
        live = conn.execute(select(A.c.condition_key, A.c.id).where(A.c.status == "open")).all()
        assert sorted(k for k, _ in live) == ["live:0", "live:2", "live:5", "live:7", "resolved:1"]
        assert {alert_id: key for key, alert_id in live if key in ("resolved:1", "live:2", "live:7")} == \
            {alert_id: row["condition_key"] for alert_id, row in inserted}
        assert bulk_insert_new(conn, A, [_alert_values("live:0", patient_id)], key="condition_key") == []
    engine.dispose()


def test_bulk_insert_new_twice_in_one_transaction_keeps_order_text_and_stored_values(tracker):
    """Issue 19: on PostgreSQL the rows pass through a temporary table (one binary COPY): a second call in the
    same transaction (a cold night's two review groups) works, the ids follow the rows' order, and text,
    NULLs, dates and timestamps are stored as the ORM stores them."""
    from tracker.db.bulk import bulk_insert_new

    tracker("patient add P1 --name 'Ada Byron' --dob 1980-01-01")
    awkward = "tab\there\nnewline \\N backslash 'quote' \"double\" \\. end"
    engine = make_engine(resolve_url(tracker.db))
    with Session(engine) as session:
        patient_id = session.execute(select(Patient.id)).scalar_one()
        session.add(Alert(**_alert_values("orm", patient_id)))
        session.flush()
        conn = session.connection()
        first = bulk_insert_new(conn, A, [_alert_values(f"first:{n}", patient_id) for n in (3, 1, 2)],
                                key="condition_key")
        second = bulk_insert_new(conn, A, [{**_alert_values(f"second:{n}", patient_id), "message": awkward,
                                            "value": None} for n in range(1200)], key="condition_key")
        session.commit()
        conn = session.connection()
        assert [row["condition_key"] for _, row in first] == ["first:3", "first:1", "first:2"]
        ids = [row_id for row_id, _ in first + second]
        assert ids == sorted(ids) and len(set(ids)) == 1203  # in the rows' order
        stored = dict(conn.execute(select(A.c.condition_key, A.c.id)).all())
        assert all(stored[row["condition_key"]] == row_id for row_id, row in first + second)
        assert _stored(conn, "first:1") == _stored(conn, "orm")
        message, value = conn.execute(select(A.c.message, A.c.value).where(A.c.condition_key == "second:7")).one()
        assert (message, value) == (awkward, None)
    engine.dispose()


def test_bulk_insert_and_update_rows_keep_awkward_text_and_nulls(tracker):
    """Issue 19: on PostgreSQL bulk_insert is a COPY and update_rows an UPDATE ... FROM unnest(arrays); text
    with tabs, newlines, backslashes and quotes, NULLs and timestamps arrive as given, and only the keyed
    rows change."""
    from tracker.db.bulk import update_rows

    tracker("patient add P1 --name 'Ada Byron' --dob 1980-01-01")
    awkward = "tab\there\nnewline \\N backslash 'quote' \"double\" \\. end"
    later = NOW + dt.timedelta(hours=1)
    engine = make_engine(resolve_url(tracker.db))
    with Session(engine) as session:
        patient_id = session.execute(select(Patient.id)).scalar_one()
        conn = session.connection()
        bulk_insert(conn, A, [{**_alert_values(f"k:{n}", patient_id), "message": awkward, "value": None}
                              for n in range(3)])
        ids = dict(conn.execute(select(A.c.condition_key, A.c.id)).all())
        update_rows(conn, A, [{"id": ids["k:0"], "message": awkward + " (changed)", "updated_at": later},
                              {"id": ids["k:2"], "message": "plain", "updated_at": later}])
        update_rows(conn, A, [])
        session.commit()
        conn = session.connection()
        stored = {key: (message, value, updated_at) for key, message, value, updated_at in conn.execute(
            select(A.c.condition_key, A.c.message, A.c.value, A.c.updated_at))}
    engine.dispose()
    assert stored == {"k:0": (awkward + " (changed)", None, later), "k:1": (awkward, None, NOW),
                      "k:2": ("plain", None, later)}


def test_bulk_insert_new_making_makes_one_thing_per_row_inserted_while_it_streams(tracker):
    """Issue 19: each inserted row's `make` (a cold night's audit row of each alert) is called with the row's
    new id; on PostgreSQL while the COPY is still streaming, so that the client's work overlaps the server's.
    A row a unique index refuses (a writer that skipped the write lock) rolls the fast path back to its
    savepoint: the transaction's earlier rows stay, the rest go in by ON CONFLICT, and `make` answers once
    for each row that went in, none for the refused one."""
    from tracker.db.bulk import bulk_insert_new_making

    tracker("patient add P1 --name 'Ada Byron' --dob 1980-01-01")
    engine = make_engine(resolve_url(tracker.db))
    with Session(engine) as session:
        patient_id = session.execute(select(Patient.id)).scalar_one()
        conn = session.connection()
        postgresql = conn.dialect.name == "postgresql"
        states = []

        def make(row_id, row):
            if postgresql:  # the COPY is still open on the connection
                states.append(conn.connection.driver_connection.pgconn.transaction_status)
            return f"made {row['condition_key']} as {row_id}"

        streamed = bulk_insert_new_making(conn, A, [_alert_values(f"s:{n}", patient_id) for n in range(3)],
                                          "condition_key", make)
        assert [made for _, _, made in streamed] == [f"made s:{n} as {row_id}" for n, (row_id, _, _) in
                                                     enumerate(streamed)]
        if postgresql:
            from psycopg import pq

            assert states == [pq.TransactionStatus.ACTIVE] * 3
        bulk_insert(conn, A, [{**_alert_values("taken", patient_id), "status": "open"}])
        states.clear()
        keys = ["n:0", "taken", "n:2"]
        again = bulk_insert_new_making(conn, A, [_alert_values(k, patient_id) for k in keys], "condition_key", make)
        if postgresql:  # the fallback ended its savepoint: nothing after it runs inside one
            from sqlalchemy.exc import DBAPIError

            conn.exec_driver_sql("SAVEPOINT probe")
            try:
                conn.exec_driver_sql("RELEASE SAVEPOINT bulk_insert_new")
                left_open = True
            except DBAPIError:
                left_open = False
            conn.exec_driver_sql("ROLLBACK TO SAVEPOINT probe")
            assert not left_open
        session.commit()
        conn = session.connection()
        stored = dict(conn.execute(select(A.c.condition_key, A.c.id)).all())
        assert sorted(stored) == ["n:0", "n:2", "s:0", "s:1", "s:2", "taken"]
        assert [(row_id, row["condition_key"], made) for row_id, row, made in again] == [
            (stored[k], k, f"made {k} as {stored[k]}") for k in ("n:0", "n:2")]
        assert all(stored[row["condition_key"]] == row_id for row_id, row, _ in streamed)
    engine.dispose()


def test_reminders_are_made_as_their_insert_streams(tracker, monkeypatch):
    """Issue 19: `_insert_reminders` makes each reminder's row (its payload encoded) when the insert asks for
    it: on PostgreSQL inside one COPY (the server writes the first rows while the client makes the next);
    elsewhere in chunks, none lost between two. Every payload gets the epoch and its row; no COPY of nothing."""
    import json

    from tracker.db.tables import NightlyRun, Reminder
    from tracker.services import reminders
    from tracker.services.reminders import _insert_reminders

    monkeypatch.setattr(reminders, "INSERT_CHUNK", 3)  # SQLite's chunks: the fourth payload begins a second

    tracker("patient add P1 --name 'Ada Byron' --dob 1980-01-01")
    engine = make_engine(resolve_url(tracker.db))
    with Session(engine) as session:
        patient_id = session.execute(select(Patient.id)).scalar_one()
        run = NightlyRun(from_day=dt.date(2026, 11, 22), as_of=dt.date(2026, 11, 22), started_at=NOW)
        session.add(run)
        session.flush()
        conn = session.connection()
        postgresql = conn.dialect.name == "postgresql"
        states, patient_ids = [], {}

        def payloads(count):
            for n in range(count):
                if postgresql:
                    states.append(conn.connection.driver_connection.pgconn.transaction_status)
                key = f"due:{n}:2026-11-22"
                patient_ids[key] = patient_id  # read by the row made from this payload
                yield {"dedupe_key": key, "kind": "due", "severity": "info", "item_id": None, "alert_id": None}

        assert _insert_reminders(conn, payloads(0), run.id, dt.date(2026, 11, 22), patient_ids, "ep") == 0
        assert _insert_reminders(conn, payloads(7), run.id, dt.date(2026, 11, 22), patient_ids, "ep") == 7
        session.commit()
        rows = session.execute(select(Reminder.dedupe_key, Reminder.patient_id, Reminder.payload)
                               .order_by(Reminder.id)).all()
    engine.dispose()
    assert [(key, pid, json.loads(payload)["epoch"]) for key, pid, payload in rows] == [
        (f"due:{n}:2026-11-22", patient_id, "ep") for n in range(7)]
    if postgresql:
        from psycopg import pq

        # The first payload is asked for before the COPY opens (none is opened for nothing), the rest inside it.
        assert states == [pq.TransactionStatus.INTRANS] + [pq.TransactionStatus.ACTIVE] * 6


def test_a_copy_refused_is_read_as_any_statement_refused(tracker):
    """Issue 19: a COPY's failure comes as Core's error (the driver's wrapped), so that the one mapping of
    database errors reads it: a second live alert for one condition is "already exists", not a traceback."""
    from sqlalchemy.exc import IntegrityError

    from tracker.db.engine import lock_conflict

    tracker("patient add P1 --name 'Ada Byron' --dob 1980-01-01")
    engine = make_engine(resolve_url(tracker.db))
    with Session(engine) as session:
        patient_id = session.execute(select(Patient.id)).scalar_one()
        conn = session.connection()
        bulk_insert(conn, A, [{**_alert_values("k", patient_id), "status": "open"}])
        try:
            bulk_insert(conn, A, [{**_alert_values("k", patient_id), "status": "open"}])
        except IntegrityError as exc:
            refused = exc
        else:
            refused = None
        session.rollback()
    engine.dispose()
    assert refused is not None
    assert lock_conflict(refused) == "a live alert for this condition already exists (another command made it at the same time)"
