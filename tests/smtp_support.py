"""A scripted SMTP server on loopback for the channel reliability tests: plain sockets, so that it can do
what a well-behaved server (aiosmtpd) never does: drip a reply for ever (a tarpit), answer QUIT with 421.

Synchronisation is on events, never on sleeps: `connected` is set when a client connects, `hung_up` when
the client closed a connection the server was dripping into (a write failed or the client's end read EOF),
`gave_up` when the server's own failure guard ended a drip (the client never hung up)."""

from __future__ import annotations

import pytest

import select
import socket
import threading

GUARD_S = 20  # a dripping server stops by itself after this long: only reached when the client never hangs up
DRIP_EVERY_S = 0.02  # well inside any read timeout the tests configure


class ScriptedSMTP:
    """`drip`: None, "greeting" (an endless multi-line 220), "data" (an endless multi-line reply to the end of the `drip_nth` message), "quit" (an endless reply
    to QUIT). `quit_reply`: the answer to QUIT. Accepted messages: `accepted` (recipient, text)."""

    def __init__(self, drip=None, drip_nth=1, quit_reply="221 bye"):
        self.drip, self.drip_nth, self.quit_reply = drip, drip_nth, quit_reply
        self.accepted: list[tuple[str, str]] = []
        self.connected = threading.Event()
        self.hung_up = threading.Event()
        self.gave_up = threading.Event()
        self.stop = threading.Event()
        self._messages = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def close(self) -> None:
        """Stop listening (a new connection is refused) and end any drip."""
        self.stop.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone would not)
        except OSError:
            pass
        self._listener.close()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()

    def _drip(self, conn: socket.socket, first: bytes, line: bytes) -> None:
        """Send `first`, then `line` again and again until the client hangs up (or the guard)."""
        try:
            conn.sendall(first)
            for _ in range(int(GUARD_S / DRIP_EVERY_S)):
                if self.stop.wait(DRIP_EVERY_S):
                    break
                readable, _, _ = select.select([conn], [], [], 0)
                if readable and conn.recv(4096) == b"":  # the client's end is shut
                    raise ConnectionResetError
                conn.sendall(line)
            self.gave_up.set()
        except OSError:
            self.hung_up.set()

    def _serve(self, conn: socket.socket) -> None:
        self.connected.set()
        with conn:
            if self.drip == "greeting":
                return self._drip(conn, b"220-please wait\r\n", b"220-please wait\r\n")
            reader = conn.makefile("rb")
            conn.sendall(b"220 scripted ESMTP\r\n")
            recipient = None
            while True:
                line = reader.readline()
                if not line:
                    return
                command = line.decode().strip()
                verb = command.split(" ", 1)[0].split(":", 1)[0].upper()
                if verb in ("EHLO", "HELO"):
                    conn.sendall(b"250-scripted\r\n250 8BITMIME\r\n")
                elif verb == "MAIL":
                    recipient = None
                    conn.sendall(b"250 ok\r\n")
                elif verb == "RCPT":
                    recipient = command.split(":", 1)[1].strip().strip("<>")
                    conn.sendall(b"250 ok\r\n")
                elif verb == "DATA":
                    conn.sendall(b"354 go on\r\n")
                    text = []
                    while (data := reader.readline()) not in (b".\r\n", b""):
                        text.append(data.decode())
                    self._messages += 1
                    if self.drip == "data" and self._messages == self.drip_nth:
                        return self._drip(conn, b"250-still thinking\r\n", b"250-still thinking\r\n")
                    self.accepted.append((recipient, "".join(text)))
                    conn.sendall(b"250 queued\r\n")
                elif verb == "QUIT":
                    if self.drip == "quit":
                        return self._drip(conn, b"221-wait\r\n", b"221-wait\r\n")
                    conn.sendall(self.quit_reply.encode() + b"\r\n")
                    return
                else:  # RSET, NOOP
                    conn.sendall(b"250 ok\r\n")


@pytest.fixture
def smtp():
    """Start scripted SMTP servers (`smtp(**ScriptedSMTP kwargs)`), each closed when the test ends."""
    started = []

    def start(**kwargs) -> ScriptedSMTP:
        started.append(ScriptedSMTP(**kwargs))
        return started[-1]

    yield start
    for server in started:
        server.close()


NURSES, DOCTOR = "nurses@clinic.example", "dr.who@clinic.example"


def email_site(tmp_path, port: int, *, channels=("email", "jsonl"), to=(NURSES,), timeout_s=0.2, extra="") -> None:
    """A site config delivering to `channels`: jsonl into reminders.jsonl, e-mail through the scripted server
    on `port` to `to` (plaintext, `timeout_s`); `extra` appended."""
    from tests.nightly_support import write_config

    recipients = ", ".join(f'"{address}"' for address in to)
    write_config(tmp_path / "site.toml", f"""
[reminders]
channels = [{", ".join(f'"{c}"' for c in channels)}]
[reminders.jsonl]
path = "reminders.jsonl"
[reminders.email]
host = "127.0.0.1"
port = {port}
security = "none"
from = "tracker@clinic.example"
to = [{recipients}]
timeout_s = {timeout_s}
{extra}
""")
