"""A stand-in for edge-core's status endpoint, for the verify tests: a loopback server
(tests/loopback.py) answering with scripted replies.

Side effects: listens on an ephemeral loopback port while `scripted_status()` is open.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Union

from tests.loopback import Handler, LoopbackServer, replying

Reply = Union[dict[str, Any], str, int]  # JSON object, raw text body, or HTTP error status


class ScriptedStatus:
    """Serves the scripted replies in order, the last one repeating; runs `on_first` inside
    the first request (a test's way to act while a poll is under way)."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.on_first: Callable[[], None] | None = None
        self.requests = 0
        self.url = ""

    def get(self, h: Handler) -> None:
        reply = self.replies[min(self.requests, len(self.replies) - 1)]
        self.requests += 1
        if self.requests == 1 and self.on_first is not None:
            self.on_first()
        if isinstance(reply, int):
            h.send_error(reply)
            return
        h.answer(200, (json.dumps(reply) if isinstance(reply, dict) else reply).encode())


@contextmanager
def scripted_status(*replies: Reply) -> Iterator[ScriptedStatus]:
    """A running ScriptedStatus, stopped (and its thread joined) on exit."""
    scripted = ScriptedStatus()
    scripted.replies = list(replies)
    with LoopbackServer(replying(scripted.get)) as server:
        scripted.url = f"{server.url}/status"
        yield scripted
