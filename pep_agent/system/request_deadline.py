"""A deadline for an HTTP request as a whole, reading included.

Side effects: starts one timer thread per request and, when the request's time is up, shuts
down the sockets that request opened (a shutdown, not a close: the blocked read returns at
once and the request fails as a timeout). Each watched socket is a dup of the connection's
descriptor, closed when the request ends.

Why: requests' read timeout bounds each socket read only, so a server sending one byte a
second would hold a request forever. The adapter here makes every connection register its
socket with the deadline of the request running in the same thread.
Its pools also close each connection once its answer is read (one request per connection,
so every request's sockets are its own), and have urllib3 check each body against its
Content-Length, which 1.26 does only when asked (a body cut short by a closed connection would
read as a whole answer).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3 import connection as u3conn
from urllib3 import connectionpool as u3pool

_current = threading.local()


class Watch:
    """The sockets of one request; `fired` once its deadline has passed."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.socks: list[socket.socket] = []
        self.fired = False

    def add(self, sock: socket.socket) -> None:
        with self.lock:
            self.socks.append(sock.dup())
            if self.fired:
                self._shut(self.socks[-1])

    def fire(self) -> None:
        with self.lock:
            self.fired = True
            for sock in self.socks:
                self._shut(sock)

    def close(self) -> None:
        with self.lock:
            for sock in self.socks:
                sock.close()
            self.socks.clear()

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # already closed by the other side
            sock.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[Watch]:
    """Watch the sockets this thread opens through a WatchedAdapter for `seconds`."""
    watch = Watch()
    timer = threading.Timer(seconds, watch.fire)
    timer.daemon = True
    _current.watch = watch
    timer.start()
    try:
        yield watch
    finally:
        timer.cancel()
        _current.watch = None
        watch.close()


def _watched(sock: socket.socket) -> socket.socket:
    watch = getattr(_current, "watch", None)
    if watch is not None:
        watch.add(sock)
    return sock


class _HTTPConnection(u3conn.HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _watched(super()._new_conn())


class _HTTPSConnection(u3conn.HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _watched(super()._new_conn())


class _OneAnswerPerConnection:
    """Pools that keep no connection and take no body cut short.

    - A connection is closed once its answer is read, never handed to the next request. The
      client asks for `Connection: close`, but a server that does not echo it (a proxy, another
      web server) leaves the socket looking alive: the next request would go out on it, meet
      the server's close unanswered, and run outside its own deadline's watch.
    - A body shorter than its Content-Length raises (IncompleteRead, as requests'
      ChunkedEncodingError) instead of reading as a whole answer. urllib3 2.x does so by
      default; 1.26 (kirkstone's, Debian bookworm's) only when asked, which this asks on both.
    """

    def urlopen(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("enforce_content_length", True)
        return super().urlopen(*args, **kwargs)  # type: ignore[misc]

    def _put_conn(self, conn: Any) -> None:
        if conn is not None:
            conn.close()
        super()._put_conn(None)  # type: ignore[misc]  # the pool's slot, without the socket


class _HTTPPool(_OneAnswerPerConnection, u3pool.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(_OneAnswerPerConnection, u3pool.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class WatchedAdapter(HTTPAdapter):
    """requests' adapter with connections whose sockets the deadline watchdog can reach, and
    responses that are whole or an error."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS has connection classes of its own
            manager.pool_classes_by_scheme = _POOLS
        return manager
