"""A body cut short is never an answer, on urllib3 1.26 as on 2.x.

A loopback server (tests/loopback.py) writes exactly the bytes each test gives it (headers and a
body shorter than declared, or a body trickled past the deadline), so the client's own
urllib3, whichever version the environment has, reads a real connection.
"""

from __future__ import annotations

import socketserver
import time
from collections.abc import Callable

import pytest
import urllib3

from pep_agent.errors import ServerUnreachableError
from pep_agent.exit_codes import Exit
from pep_agent.system.http import PepClient
from tests.loopback import LoopbackServer

ENROLLMENT_ID = b"A-35:e7:72:8a:07:50:3b:3d:75:c1:4b:41:00:00:00:00"
Script = list[tuple[bytes, float]]
Serve = Callable[[Script], str]


def raw(script: Script) -> type[socketserver.BaseRequestHandler]:
    """Answers each connection with `script`: (bytes, seconds to wait after them)."""

    class Raw(socketserver.BaseRequestHandler):
        server: LoopbackServer

        def handle(self) -> None:
            self.request.recv(65536)
            try:
                for data, pause in script:
                    self.request.sendall(data)
                    if self.server.stopping.wait(pause):
                        break
            except OSError:  # the client went away: that is the point of some tests
                pass

    return Raw


@pytest.fixture
def serve(loopback: Callable[..., LoopbackServer]) -> Serve:
    """The URL of a loopback server answering with a script (see `raw`)."""
    return lambda script: str(loopback(raw(script)).url)


def _head(length: int | None, version: str = "HTTP/1.1") -> bytes:
    lines = [f"{version} 200 OK", "Content-Type: text/plain", "Connection: close"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_a_whole_body_is_the_answer(serve: Serve) -> None:
    url = serve([(_head(len(ENROLLMENT_ID)) + ENROLLMENT_ID, 0)])
    assert PepClient(url, timeout=5).enrollment_id("S1") == ENROLLMENT_ID.decode()


def test_a_body_closed_short_of_its_length_is_an_error(serve: Serve) -> None:
    # The server promises the whole id, sends 12 bytes and closes: urllib3 1.26 alone would
    # return "A-35:e7:72:8" as the enrollment id.
    url = serve([(_head(len(ENROLLMENT_ID)) + ENROLLMENT_ID[:12], 0)])
    with pytest.raises(ServerUnreachableError) as caught:
        PepClient(url, timeout=5).enrollment_id("S1")
    assert caught.value.code == Exit.SERVER_UNREACHABLE
    assert caught.value.transient
    if urllib3.__version__.startswith("1."):  # 2.x raises before the client's own check
        assert "answer cut short" in str(caught.value)


@pytest.mark.parametrize("length", [len(ENROLLMENT_ID), None], ids=["with-length", "to-close"])
def test_a_body_trickled_past_the_deadline_is_a_timeout(serve: Serve,
                                                        length: int | None) -> None:
    # Half the body, then silence: the watchdog shuts the socket at 1 s. Without a length the
    # body ends where the connection does, so only the deadline tells it is not whole.
    half = len(ENROLLMENT_ID) // 2
    url = serve([(_head(length, "HTTP/1.0") + ENROLLMENT_ID[:half], 0.2),
                 (ENROLLMENT_ID[half:half + 1], 5.0)])
    started = time.monotonic()
    with pytest.raises(ServerUnreachableError) as caught:
        PepClient(url, timeout=1.0).enrollment_id("S1")
    assert time.monotonic() - started < 4.0
    assert "no complete answer" in str(caught.value)
