"""A stand-in for edge-core's status endpoint, for the verify tests: a real HTTP server on
127.0.0.1 in a thread of the test process.

Side effects: listens on an ephemeral loopback port while `scripted_status()` is open.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Union

Reply = Union[dict[str, Any], str, int]  # JSON object, raw text body, or HTTP error status


class ScriptedStatus:
    """Serves the scripted replies in order, the last one repeating; runs `on_first` inside
    the first request (a test's way to act while a poll is under way)."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.on_first: Callable[[], None] | None = None
        self.requests = 0
        script = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                reply = script.replies[min(script.requests, len(script.replies) - 1)]
                script.requests += 1
                if script.requests == 1 and script.on_first is not None:
                    script.on_first()
                if isinstance(reply, int):
                    self.send_error(reply)
                    return
                body = (json.dumps(reply) if isinstance(reply, dict) else reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/status"


@contextmanager
def scripted_status(*replies: Reply) -> Iterator[ScriptedStatus]:
    """A running ScriptedStatus, stopped (and its thread joined) on exit."""
    scripted = ScriptedStatus()
    scripted.replies = list(replies)
    thread = threading.Thread(target=scripted.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield scripted
    finally:
        scripted.server.shutdown()
        scripted.server.server_close()
        thread.join(timeout=5)
