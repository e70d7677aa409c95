"""Access events: reads of patient data written to the audit log (`access.*`).

A read is shown first and recorded after, in its own short transaction under the write lock (the read
itself takes no lock): a clinic is never kept from reading by the audit. If the database refuses the row
(read-only, the lock held over the usual 30 s wait), the caller is told why and the read stands.
One row per command or request: a whole-clinic read records its counts, not a row per patient.
"""

from __future__ import annotations

CLINIC = "clinic"  # entity of a read covering every patient (mrn NULL); `tracker audit --patient` lists them too


def record_access(engine, user: str, action: str, *, mrn: str | None = None, patient_id: int | None = None,
                  detail: dict | None = None) -> str | None:
    """Record one `access.*` row: one patient's (by `mrn` as typed, or `patient_id`) or, with neither, the
    whole clinic's. Returns None, or a one-line reason it could not be recorded."""
    from sqlalchemy.exc import SQLAlchemyError
    from sqlmodel import Session

    from tracker.db.engine import for_writing, lock_conflict
    from tracker.db.tables import Patient
    from tracker.errors import NotFoundError
    from tracker.services import audit
    from tracker.services.patients import get_patient

    try:
        with Session(for_writing(engine)) as session:
            patient = None
            if mrn is not None:  # the MRN as stored (as typed it may differ in case or form)
                patient = get_patient(session, mrn)
            elif patient_id is not None:
                patient = session.get(Patient, patient_id)
            entity, entity_id, mrn = ("patient", patient.id, patient.mrn) if patient else (CLINIC, None, None)
            audit.record(session, user, action, entity, entity_id, mrn, None, detail or {})
            session.commit()
    except NotFoundError:  # removed or renamed meanwhile
        return None
    except SQLAlchemyError as exc:
        reason = lock_conflict(exc) or str(getattr(exc, "orig", None) or exc).splitlines()[0]
        return f"this read was not recorded in the audit log: {reason}"
    return None


def feed_fetched(server, feed, served_bytes: int) -> None:
    """`tracker serve` is about to answer a feed request with its calendar (a GET answered 200; not a 304
    or a HEAD): one `access.feed` row, user `feed <id>` (whoever holds the URL), never the token. Recorded
    before the body is sent, so a fetch is never seen without its row; a failure goes to the server log."""
    problem = record_access(server.engine, f"feed {feed.id}", "access.feed", patient_id=feed.patient_id,
                            detail={"feed": feed.id, "scope": feed.scope, "audience": feed.audience,
                                    "bytes": served_bytes})
    if problem:
        server.log.write(f"feed {feed.id}: {problem}\n")
        server.log.flush()
