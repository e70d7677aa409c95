"""Issue 15 item 6 under concurrency: eight real processes writing audit rows at once (four evaluations, two
new patients, two reads recorded as access events) leave one intact hash chain, and one audit row per real
transition (one `checkpoint.met` for the one judgement). SQLite, and PostgreSQL with TRACKER_TEST_PG.
The processes are released together through a pipe barrier (tests/test_concurrency.py: run_together)."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select

from tests.test_concurrency import assert_clean, check_invariants, clinic, run_together
from tracker.db.engine import make_engine, resolve_url
from tracker.db.tables import AuditEvent


def audit_rows(db: str) -> list:
    engine = make_engine(resolve_url(db))
    with engine.connect() as conn:
        rows = conn.execute(select(AuditEvent.id, AuditEvent.seq, AuditEvent.action, AuditEvent.entity,
                                   AuditEvent.entity_id, AuditEvent.mrn).order_by(AuditEvent.id)).all()
    engine.dispose()
    return rows


def test_eight_concurrent_writers_keep_one_chain_and_one_row_per_transition(tracker):
    clinic(tracker, patients=6)
    before = len(audit_rows(tracker.db))
    commands = (["evaluate"] * 4 + ["patient add N1 --name New-One --dob 1990-01-01",
                                    "patient add N2 --name New-Two --dob 1991-01-01"]
                + ["patient show D1"] * 2)
    results = run_together(tracker.db, commands)
    assert_clean(results)
    assert [r.returncode for r in results] == [0] * 8, [r.stderr for r in results]
    assert not any("warning" in r.stderr for r in results[6:])  # both reads were recorded

    verdict = tracker("audit verify")
    rows = audit_rows(tracker.db)
    assert verdict.stdout.startswith(f"ok: {len(rows)} rows, chain intact")
    # Chain positions are 1..n without gaps, in the order the rows were written (ids).
    assert [r.seq for r in rows] == list(range(1, len(rows) + 1))

    new = rows[before:]
    facts = check_invariants(tracker.db)
    assert facts["met_events"] == 1 and facts["d1_checkpoints_done"] == 1  # one judgement, one row
    transitions = Counter((r.action, r.entity, r.entity_id) for r in new if not r.action.startswith("access."))
    assert transitions and all(n == 1 for n in transitions.values()), [t for t, n in transitions.items() if n > 1]
    assert Counter(r.action for r in new if r.action.startswith("access.")) == {"access.patient": 2}
    assert sum(1 for r in new if r.action == "patient.add") == 2


def test_four_concurrent_evaluations_write_what_one_would(tracker, tmp_path, migrated_template):
    """The same clinic evaluated four times at once, and once: the same audit rows (by action and entity)."""
    from tests.conftest import Tracker

    clinic(tracker, patients=2)
    before = len(audit_rows(tracker.db))
    results = run_together(tracker.db, ["evaluate"] * 4)
    assert_clean(results)
    assert [r.returncode for r in results] == [0] * 4
    concurrent = Counter((r.action, r.entity) for r in audit_rows(tracker.db)[before:])
    assert concurrent[("checkpoint.met", "item")] == 1
    assert tracker("audit verify").exit_code == 0

    if "://" in tracker.db:
        from tests.pg import fresh_database

        alone = Tracker(fresh_database())
    else:
        import shutil

        alone = Tracker(str(tmp_path / "alone.db"))
        shutil.copyfile(migrated_template, alone.db)
    clinic(alone, patients=2)
    start = len(audit_rows(alone.db))
    assert [r.returncode for r in run_together(alone.db, ["evaluate"])] == [0]
    single = Counter((r.action, r.entity) for r in audit_rows(alone.db)[start:])
    assert concurrent == single
