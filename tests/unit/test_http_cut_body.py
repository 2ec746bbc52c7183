"""A body cut short is never an answer, on urllib3 1.26 as on 2.x.

A raw socket server on loopback writes exactly the bytes each test gives it (headers and a
body shorter than declared, or a body trickled past the deadline), so the client's own
urllib3, whichever version the environment has, reads a real connection.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import urllib3

from pep_agent.errors import ServerUnreachableError
from pep_agent.exit_codes import Exit
from pep_agent.system.http import PepClient

ENROLLMENT_ID = b"A-35:e7:72:8a:07:50:3b:3d:75:c1:4b:41:00:00:00:00"


class RawServer:
    """Accepts connections; answers each with `script`: (bytes, seconds to wait after them)."""

    def __init__(self, script: list[tuple[bytes, float]]) -> None:
        self.script = script
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.recv(65536)
                try:
                    for data, pause in self.script:
                        conn.sendall(data)
                        if self.stop.wait(pause):
                            break
                except OSError:  # the client went away: that is the point of some tests
                    pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[list[RawServer]]:
    started: list[RawServer] = []
    yield started
    for server in started:
        server.close()


def _head(length: int | None, version: str = "HTTP/1.1") -> bytes:
    lines = [f"{version} 200 OK", "Content-Type: text/plain", "Connection: close"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_a_whole_body_is_the_answer(serve: list[RawServer]) -> None:
    serve.append(RawServer([(_head(len(ENROLLMENT_ID)) + ENROLLMENT_ID, 0)]))
    assert PepClient(serve[0].url, timeout=5).enrollment_id("S1") == ENROLLMENT_ID.decode()


def test_a_body_closed_short_of_its_length_is_an_error(serve: list[RawServer]) -> None:
    # The server promises the whole id, sends 12 bytes and closes: urllib3 1.26 alone would
    # return "A-35:e7:72:8" as the enrollment id.
    serve.append(RawServer([(_head(len(ENROLLMENT_ID)) + ENROLLMENT_ID[:12], 0)]))
    with pytest.raises(ServerUnreachableError) as caught:
        PepClient(serve[0].url, timeout=5).enrollment_id("S1")
    assert caught.value.code == Exit.SERVER_UNREACHABLE
    assert caught.value.transient
    if urllib3.__version__.startswith("1."):  # 2.x raises before the client's own check
        assert "answer cut short" in str(caught.value)


@pytest.mark.parametrize("length", [len(ENROLLMENT_ID), None], ids=["with-length", "to-close"])
def test_a_body_trickled_past_the_deadline_is_a_timeout(serve: list[RawServer],
                                                        length: int | None) -> None:
    # Half the body, then silence: the watchdog shuts the socket at 1 s. Without a length the
    # body ends where the connection does, so only the deadline tells it is not whole.
    half = len(ENROLLMENT_ID) // 2
    serve.append(RawServer([(_head(length, "HTTP/1.0") + ENROLLMENT_ID[:half], 0.2),
                            (ENROLLMENT_ID[half:half + 1], 5.0)]))
    started = time.monotonic()
    with pytest.raises(ServerUnreachableError) as caught:
        PepClient(serve[0].url, timeout=1.0).enrollment_id("S1")
    assert time.monotonic() - started < 4.0
    assert "no complete answer" in str(caught.value)
