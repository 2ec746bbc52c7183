"""Every request to the pep server goes out on a connection of its own.

The client asks for `Connection: close`. A server that answers without echoing it and keeps the
socket open (a proxy, another web server, the simulator before it echoed the header) must not
get the next request on the same socket: the server closes it unanswered, and the request's
deadline watches only sockets the request itself opened.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pep_agent.system.http import PepClient
from tests.loopback import Handler, LoopbackServer


class PeerLog(LoopbackServer):
    """Records the client's address and port of every request."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.peers: list[tuple[str, int]] = []
        super().__init__(*args, **kwargs)


class KeepsAlive(Handler):
    """Answers every request on a connection and keeps it open, whatever the client asked."""

    server: PeerLog
    protocol_version = "HTTP/1.1"

    def get(self) -> None:
        self.server.peers.append(self.client_address)
        body = b'{"results": [], "total_count": 0}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = False  # ignore the client's "Connection: close"


def test_each_request_opens_its_own_connection(
        loopback: Callable[..., Any]) -> None:
    server: PeerLog = loopback(KeepsAlive, kind=PeerLog)
    client = PepClient(server.url, timeout=30)
    for _ in range(4):
        assert client.enrollment_ids(limit=2) == {"results": [], "total_count": 0}
    assert len(server.peers) == 4
    assert len(set(server.peers)) == 4, "a connection was used for more than one request"
