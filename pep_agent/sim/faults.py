"""Fault knobs of the simulated pep server: counters and settings shared by request threads.

No side effects. Every knob is bounded: counters only go down, one per identity request.
"""

from __future__ import annotations

import threading
from typing import Any

# Name → (type, minimum, maximum). fcc_timeout is the factory tool's socket timeout.
# drop_next closes the connection before the request is processed; drop_after_next closes it
# after a successful injection, in place of the 200 answer (the gateway loses the answer, the
# server keeps the record: a network cut mid-response). answer_delay holds the 200 back after a
# successful injection (FCC has the credentials, the answer is "in flight"). deploy_delay holds
# the record undeployed after a successful injection, so a test can kill the server mid-injection
# and find the `deployed: false` record after a restart, as the real server leaves it.
KNOBS: dict[str, tuple[type, float, float]] = {
    "fail_next": (int, 0, 1_000_000),
    "fail_status": (int, 200, 599),
    "delay": (float, 0.0, 3600.0),
    "answer_delay": (float, 0.0, 3600.0),
    "deploy_delay": (float, 0.0, 3600.0),
    "drop_next": (int, 0, 1_000_000),
    "drop_after_next": (int, 0, 1_000_000),
    "fail_injection_next": (int, 0, 1_000_000),
    "fcc_timeout": (float, 0.1, 3600.0),
}


class Faults:
    """Thread-safe fault settings."""

    def __init__(self, **values: Any) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, Any] = {
            "fail_next": 0, "fail_status": 503, "delay": 0.0, "answer_delay": 0.0,
            "deploy_delay": 0.0, "drop_next": 0, "drop_after_next": 0, "fail_injection_next": 0,
            "fcc_timeout": 30.0,
        }
        self.update(values)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._values)

    def update(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Validate and apply all changes or none; ValueError names the bad knob."""
        checked: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in KNOBS:
                raise ValueError(f"unknown fault knob {name!r}")
            kind, low, high = KNOBS[name]
            # JSON has one number type: accept 2 for a float knob, never 2.5 for a counter.
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if kind is int:
                ok = ok and float(value).is_integer()
            if not ok or not low <= value <= high:
                raise ValueError(f"{name} must be a {kind.__name__} in [{low:g}, {high:g}]")
            checked[name] = kind(value)
        with self._lock:
            self._values.update(checked)
            return dict(self._values)

    def get(self, name: str) -> Any:
        with self._lock:
            return self._values[name]

    def take(self, name: str) -> bool:
        """Consume one unit of counter `name`; True when it was positive."""
        with self._lock:
            if self._values[name] > 0:
                self._values[name] -= 1
                return True
            return False
