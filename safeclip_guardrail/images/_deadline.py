"""One total deadline for a network exchange, whatever the peer does.

Per-call socket timeouts do not bound an exchange: a server that sends one byte just
before each timeout keeps it alive forever. Two mechanisms, each enough on its own:

- **every blocking call is bounded by what is left.** The sockets of an exchange are
  :class:`DeadlineSocket` / :class:`DeadlineSSLSocket`, which set their timeout to the time
  remaining before each receive, send and handshake step; CPython treats a socket timeout
  as the limit of the whole call (``sendall``, the TLS handshake and a TLS record read
  included), so no call outlives the deadline, and the calls in between are CPU work;
- **a watchdog** (:meth:`Deadline.watch`) shuts down every socket the exchange adopted when
  the deadline passes: the sockets are held by the deadline itself, not borrowed from a
  client object. (``http.client`` hands the socket to the response and forgets it when the
  response closes the connection, HTTP/1.0 or ``Connection: close``, so a watchdog that
  shut ``conn.sock`` held nothing.)

A peer can therefore hold a caller no longer than the deadline plus the scheduling delay
of one wake-up.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["Deadline", "DeadlineSSLSocket", "DeadlineSocket"]


class Deadline:
    """The clock of one exchange and the sockets it must be able to cut."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._fired = False
        self._stopped = False

    def left(self) -> float:
        """Seconds remaining; TimeoutError once the deadline has passed."""
        remaining = self.end - time.monotonic()
        if remaining <= 0 or self._fired:
            msg = f"deadline of {self.seconds}s passed"
            raise TimeoutError(msg)
        return remaining

    @property
    def expired(self) -> bool:
        """The deadline has passed (or the watchdog fired)."""
        return self._fired or time.monotonic() >= self.end

    @property
    def fired(self) -> bool:
        """The watchdog cut the sockets: an end of data read since may be that cut."""
        return self._fired

    def adopt(self, sock: socket.socket) -> None:
        """Let the watchdog cut ``sock``; cut at once if the deadline already fired."""
        with self._lock:
            self._sockets.append(sock)
            if self._fired:
                _cut(sock)

    def fire(self) -> None:
        """The deadline passed: shut down every adopted socket, so blocked calls return."""
        with self._lock:
            if self._stopped:
                return
            self._fired = True
            for sock in self._sockets:
                _cut(sock)

    def stop(self) -> None:
        """The exchange is over: the watchdog must not touch its sockets any more. Call it
        before closing them, so a late watchdog never shuts a descriptor number that a
        close has already handed to someone else."""
        with self._lock:
            self._stopped = True

    @contextlib.contextmanager
    def watch(self) -> Iterator[Deadline]:
        """Run a watchdog that calls :meth:`fire` at the deadline until the block exits."""
        timer = threading.Timer(max(0.0, self.end - time.monotonic()), self.fire)
        timer.daemon = True
        timer.start()
        try:
            yield self
        finally:
            timer.cancel()
            self.stop()


def _cut(sock: socket.socket) -> None:
    # the plain socket's shutdown, also for TLS sockets: SSLSocket.shutdown would drop the
    # SSL object under a thread that is reading through it
    with contextlib.suppress(OSError, ValueError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class DeadlineSocket(socket.socket):
    """A socket whose every receive and send ends by ``deadline`` (built from a connected
    socket's file descriptor, which it takes over)."""

    def __init__(self, deadline: Deadline, connected: socket.socket) -> None:
        super().__init__(fileno=connected.detach())
        self.deadline = deadline
        deadline.adopt(self)
        self._bound()  # the descriptor's blocking mode follows this object's timeout

    def _bound(self) -> None:
        self.settimeout(self.deadline.left())

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        self._bound()
        return super().recv(bufsize, flags)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        self._bound()
        return super().recv_into(buffer, nbytes, flags)

    def send(self, data: Any, flags: int = 0) -> int:
        self._bound()
        return super().send(data, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        self._bound()
        super().sendall(data, flags)


class DeadlineSSLSocket(ssl.SSLSocket):
    """The TLS twin of :class:`DeadlineSocket`; made by a context whose ``sslsocket_class``
    it is, with ``do_handshake_on_connect=False``, then :meth:`bind_deadline` before the handshake."""

    deadline: Deadline | None = None

    def bind_deadline(self, deadline: Deadline) -> None:
        self.deadline = deadline
        deadline.adopt(self)

    def _bound(self) -> None:
        if self.deadline is None:
            msg = "TLS socket used before its deadline was bound"
            raise TimeoutError(msg)
        self.settimeout(self.deadline.left())

    def do_handshake(self, block: bool = False) -> None:
        self._bound()
        super().do_handshake(block)

    def read(self, len: int = 1024, buffer: Any = None) -> Any:
        self._bound()
        return super().read(len, buffer)

    def send(self, data: Any, flags: int = 0) -> int:
        self._bound()
        return super().send(data, flags)
