"""Reliability finding D1: a server that drips its replies, each piece inside the socket's read timeout
(an SMTP tarpit's endless greeting, a TLS handshake a byte at a time, an endless reply to a message), is cut
off when one exchange outlives `timeout_s`: the run ends with the channel failed and its reminders kept, the
channels after it delivered. Real servers on loopback (tests/smtp_support.py); each test ends because the
deadline passed (timeout_s = 0.2 s), and waits only on events the servers record."""

from __future__ import annotations

from sqlalchemy import func, select

from tests.nightly_support import jsonl_rows, small_clinic
from tests.smtp_support import DOCTOR, GUARD_S, NURSES, email_site
from tests.smtp_support import smtp  # noqa: F401 (a fixture, found by name)



def _config(tmp_path, port, to=(NURSES,)):
    email_site(tmp_path, port, to=to)


def delivery_states(db: str) -> dict[tuple[str, str], int]:
    """(channel, state) -> deliveries, read from the database (SQLite or PostgreSQL)."""
    from tracker.db.engine import make_engine, resolve_url
    from tracker.db.tables import ReminderDelivery

    D = ReminderDelivery.__table__
    engine = make_engine(resolve_url(db))
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(D.c.channel, D.c.state, func.count()).group_by(D.c.channel, D.c.state))
            return {(channel, state): count for channel, state, count in rows}
    finally:
        engine.dispose()


def test_an_smtp_tarpit_is_cut_off_and_the_next_channel_delivers(tracker, tmp_path, smtp):  # noqa: F811
    from tracker.channels.email import recipient_key

    server = smtp(drip="greeting")
    small_clinic(tracker)
    _config(tmp_path, server.port)
    failed = tracker("nightly --as-of 2026-01-16", ok=False)
    assert failed.exit_code == 10
    assert "no complete answer within timeout_s = 0.2 s (connecting" in failed.stderr
    assert server.connected.is_set() and server.hung_up.wait(GUARD_S * 2)  # the client hung up...
    assert not server.gave_up.is_set()  # ...before the server's own guard ended the drip
    rows = jsonl_rows(tmp_path / "reminders.jsonl")
    assert rows  # the channel after e-mail was not held up
    states = delivery_states(tracker.db)
    assert states == {("jsonl", "sent"): len(rows), (recipient_key(NURSES), "failed"): len(rows)}
    run = tracker.json("nightly status")[0]
    assert run["status"] == "failed" and list(run["failures"]) == ["email"]
    assert run["counts"]["undelivered"] == {"email": len(rows), "jsonl": 0}


def test_a_reply_dripped_to_the_second_recipient_keeps_the_first_recipients_delivery(tracker, tmp_path, smtp):  # noqa: F811
    from tracker.channels.email import recipient_key

    server = smtp(drip="data", drip_nth=2)
    small_clinic(tracker)
    _config(tmp_path, server.port, to=(NURSES, DOCTOR))
    failed = tracker("nightly --as-of 2026-01-16", ok=False)
    assert failed.exit_code == 10
    assert f"no complete answer within timeout_s = 0.2 s (sending to {DOCTOR}" in failed.stderr
    assert server.hung_up.wait(GUARD_S * 2) and not server.gave_up.is_set()
    assert [recipient for recipient, _ in server.accepted] == [NURSES]
    count = len(jsonl_rows(tmp_path / "reminders.jsonl"))
    assert delivery_states(tracker.db) == {("jsonl", "sent"): count, (recipient_key(NURSES), "sent"): count,
                                           (recipient_key(DOCTOR), "failed"): count}
