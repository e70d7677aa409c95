"""`tracker labs listen`: HL7 v2 over MLLP on loopback, run as a real process and spoken to over a real
socket. The test waits on the process's "listening" line and on each ACK; nothing sleeps."""

from __future__ import annotations

import datetime as dt
import re
import socket
import subprocess
import sys

import pytest

from tests.conftest import dump_database
from tracker.labs.mllp import END, frame

TRACKER = [sys.executable, "-m", "tracker"]
GUARD_S = 60


def message(control_id: str, mrn: str, obx: str, day: dt.date) -> bytes:
    stamp = day.strftime("%Y%m%d")
    return ("\r".join([
        f"MSH|^~\\&|LABSYS|CITYLAB|TRACKER|DERM|{stamp}1200||ORU^R01|{control_id}|P|2.5.1",
        f"PID|1||{mrn}^^^DERM^MR||Test^Max||19700101|M",
        f"OBR|1|ORD1|FIL1|24323-8^CMP^LN|||{stamp}0830",
        obx,
    ]) + "\r").encode()


@pytest.fixture
def listener(tracker):
    process = subprocess.Popen([*TRACKER, "--db", tracker.db, "labs", "listen", "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stderr.readline()  # printed once the socket listens
    match = re.search(r"on 127\.0\.0\.1:(\d+)", line)
    assert match, line + process.stderr.read()
    try:
        yield process, int(match.group(1))
    finally:
        process.terminate()
        process.communicate(timeout=GUARD_S)


def send(port: int, *messages: bytes) -> list[str]:
    """Send each message on one connection and read its ACK before the next."""
    answers = []
    with socket.create_connection(("127.0.0.1", port), timeout=GUARD_S) as sock:
        for data in messages:
            sock.sendall(frame(data))
            received = b""
            while not received.endswith(END):
                chunk = sock.recv(65536)
                assert chunk, "connection closed before the ACK"
                received += chunk
            answers.append(received[1:-2].decode())
    return answers


def msa(answer: str) -> list[str]:
    return next(s for s in answer.split("\r") if s.startswith("MSA|")).split("|")


def test_listen_acknowledges_stores_once_and_refuses_with_ae_or_ar(tracker, listener):
    process, port = listener
    today = dt.date.today()
    tracker("patient add M1 --name 'Max Test' --dob 1970-01-01")
    tracker(f"therapy start M1 methotrexate --on {today - dt.timedelta(days=20)}")
    good = message("LAB1", "M1", "OBX|1|NM|1742-6^ALT^LN||130|U/L|0-40|H|||F", today - dt.timedelta(days=1))

    aa, again = send(port, good, good)

    assert msa(aa)[:3] == ["MSA", "AA", "LAB1"] and "imported 1 results" in msa(aa)[3]
    assert aa.startswith("MSH|^~\\&|TRACKER|DERM|LABSYS|CITYLAB|") and "|ACK^R01^ACK|" in aa
    assert msa(again)[:3] == ["MSA", "AA", "LAB1"] and "1 already on record" in msa(again)[3]
    assert [r["test"] for r in tracker.json(["result", "list", "M1"])] == ["alt"]
    assert any(a["kind"] == "threshold" and a["severity"] == "critical" for a in tracker.json(["alerts"]))

    before = dump_database(tracker.db)
    unknown = message("LAB2", "NOBODY", "OBX|1|NM|1742-6^ALT^LN||20|U/L|0-40||||F", today)
    not_oru = message("LAB3", "M1", "OBX|1|NM|1742-6^ALT^LN||20|U/L|0-40||||F", today).replace(b"ORU^R01", b"ADT^A01")
    ae, ar, garbage = send(port, unknown, not_oru, b"hello")

    assert msa(ae)[:3] == ["MSA", "AE", "LAB2"] and "no such patient" in msa(ae)[3]
    assert msa(ar)[:3] == ["MSA", "AR", "LAB3"] and "only ORU\\S\\R01" in msa(ar)[3]  # ^ escaped in the ACK's text
    assert msa(garbage)[:2] == ["MSA", "AR"]
    assert dump_database(tracker.db) == before
    assert process.poll() is None  # still serving


def test_listen_replaces_a_corrected_result_and_evaluates_again(tracker, listener):
    _, port = listener
    today = dt.date.today()
    taken = today - dt.timedelta(days=1)
    tracker("patient add M1 --name 'Max Test' --dob 1970-01-01")
    tracker(f"therapy start M1 methotrexate --on {today - dt.timedelta(days=20)}")
    first = message("LAB1", "M1", "OBX|1|NM|1742-6^ALT^LN||130|U/L|0-40|H|||F", taken)
    correction = message("LAB2", "M1", "OBX|1|NM|1742-6^ALT^LN||30|U/L|0-40|N|||C", taken)

    stored, corrected, again = send(port, first, correction, correction)

    assert msa(stored)[:3] == ["MSA", "AA", "LAB1"]
    assert msa(corrected)[:3] == ["MSA", "AA", "LAB2"] and msa(corrected)[3] == "imported 0 results, 1 corrected"
    assert msa(again)[:3] == ["MSA", "AA", "LAB2"] and "1 already on record" in msa(again)[3]
    assert [(r["test"], r["value"]) for r in tracker.json(["result", "list", "M1"])] == [("alt", 30)]
    assert [a["state"] for a in tracker.json(["alerts"]) if a["kind"] == "threshold"] == [
        "cleared, awaiting acknowledgement"]
