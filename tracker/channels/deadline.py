"""A deadline for a whole exchange with a server, not for each socket read.

A socket timeout bounds each read, so a server that drips its answer, every piece inside that timeout (an
SMTP tarpit's endless multi-line greeting, an endless reply to a message), would hold the nightly run, and
its lock, for ever. (The webhook has its own watchdog over the whole request, channels/webhook.py; CPython
bounds a TLS handshake as a whole by the socket's timeout.) A `Deadline` keeps its own handle on the
connection's TCP socket, taken the moment the socket is connected (a duplicate descriptor, so that a TLS
wrap or STARTTLS, which take the original over, does not hide it), and shuts the connection down when an
exchange outlives its time: the blocked read returns at once and the exchange raises `DeadlinePassed`.
A connection whose deadline passed stays shut: every later exchange on it fails at once.
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager


class DeadlinePassed(TimeoutError):
    """An exchange did not complete within its time; the connection was shut."""


class Deadline:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self.expired = threading.Event()
        self.started = time.monotonic()

    def watch(self, sock: socket.socket) -> socket.socket:
        """Called with the connection's socket as soon as it is connected; returns it unchanged."""
        with self._lock:
            if self._sock is None:
                self._sock = sock.dup()
            if self.expired.is_set():  # the time ran out while connecting
                self._shut()
        return sock

    def _shut(self) -> None:
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the peer

    def _expire(self) -> None:
        with self._lock:
            self.expired.set()
            self._shut()

    @contextmanager
    def limit(self, seconds: float):
        """The body is one exchange that must complete within `seconds`; if the time ran out (the connection
        shut under it) `DeadlinePassed` is raised, whatever the body raised or returned: a reader that takes
        an end of file for the end of a reply (http.client's headers) may return what the cut left it."""
        if self.expired.is_set():
            raise DeadlinePassed("the connection was already cut off")
        self.started = time.monotonic()
        timer = threading.Timer(seconds, self._expire)
        timer.daemon = True
        timer.start()
        try:
            yield
        except BaseException as exc:
            if self.expired.is_set() and not isinstance(exc, DeadlinePassed):
                raise DeadlinePassed(f"gave up after {self.elapsed():.1f} s") from None
            raise
        finally:
            timer.cancel()
        if self.expired.is_set():
            raise DeadlinePassed(f"gave up after {self.elapsed():.1f} s")

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
