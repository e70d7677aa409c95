"""Reliability finding D6: a run reports a channel failure only when a channel left reminders to deliver
again. A QUIT answered 421 (or dripped past timeout_s) after every recipient's message was accepted is a
warning: exit 0, everything marked sent, nothing retried. A `[labs] inbox` that is not a folder is named as
what it is (exit 8), not as a channel whose reminders are kept. Real servers on loopback."""

from __future__ import annotations

import pytest

from tests.nightly_support import jsonl_rows, small_clinic
from tests.smtp_support import DOCTOR, GUARD_S, NURSES, email_site
from tests.smtp_support import smtp  # noqa: F401 (a fixture, found by name)
from tests.test_channel_deadlines import delivery_states


def _config(tmp_path, port, extra=""):
    email_site(tmp_path, port, channels=("jsonl", "email"), to=(NURSES, DOCTOR), extra=extra)


@pytest.mark.parametrize("quit_reply, drip, said", [
    ("421 4.4.2 closing", None, "QUIT was answered 421 '4.4.2 closing'"),
    ("221 bye", "quit", "QUIT failed (TimeoutError: 127.0.0.1:"),
])
def test_a_failed_quit_after_every_message_was_accepted_is_a_warning(
        tracker, tmp_path, smtp, quit_reply, drip, said):  # noqa: F811 (smtp: the fixture)
    from tracker.channels.email import recipient_key

    server = smtp(quit_reply=quit_reply, drip=drip)
    small_clinic(tracker)
    _config(tmp_path, server.port)
    done = tracker("nightly --as-of 2026-01-16")  # exit 0: nothing is left to deliver
    assert f"warning: email: every message was answered, but {said}" in done.stderr
    assert sorted(recipient for recipient, _ in server.accepted) == sorted([NURSES, DOCTOR])
    count = len(jsonl_rows(tmp_path / "reminders.jsonl"))
    assert delivery_states(tracker.db) == {("jsonl", "sent"): count, (recipient_key(NURSES), "sent"): count,
                                           (recipient_key(DOCTOR), "sent"): count}
    run = tracker.json("nightly status")[0]
    assert run["status"] == "ok" and run["failures"] == {}
    assert run["counts"]["undelivered"] == {"email": 0, "jsonl": 0}
    assert said in run["counts"]["warnings"]["email"]
    if drip:
        assert server.hung_up.wait(GUARD_S * 2) and not server.gave_up.is_set()
    tracker("nightly --as-of 2026-01-16")
    assert len(server.accepted) == 2  # nothing was retried


def test_a_missing_lab_inbox_is_not_reported_as_a_channel_failure(tracker, tmp_path, smtp):  # noqa: F811
    server = smtp()
    small_clinic(tracker)
    _config(tmp_path, server.port, f'[labs]\ninbox = "{tmp_path / "no-such-inbox"}"')
    result = tracker("nightly --as-of 2026-01-16", ok=False)
    assert result.exit_code == 8 and len(result.stderr.splitlines()) == 1
    assert "lab inbox not read (labs.inbox:" in result.stderr and "not a folder" in result.stderr
    assert "no results were imported, the reminders were sent" in result.stderr
    assert "channel failed" not in result.stderr and "kept for the next run" not in result.stderr
    rows = jsonl_rows(tmp_path / "reminders.jsonl")
    assert rows and len(server.accepted) == 2
    run = tracker.json("nightly status")[0]
    assert list(run["failures"]) == ["inbox"] and run["counts"]["undelivered"] == {"jsonl": 0, "email": 0}

    server.close()  # and with a channel failing too: exit 10, each named as what it is
    result = tracker("nightly --as-of 2026-01-30", ok=False)  # P1's labs of 02-02 are due
    assert result.exit_code == 10 and len(result.stderr.splitlines()) == 1
    assert "channel failed (email: " in result.stderr and "lab inbox not read (labs.inbox:" in result.stderr
    assert "the reminders were sent" not in result.stderr
