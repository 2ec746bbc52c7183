"""The state journal of a provisioning run: one JSON document, rewritten atomically.

Side effects: reads and writes `<state_dir>/state.json` (and the saved server response) with
fsync, so `pep-agent status` and a rerun after a crash see exactly where a run stopped.
The journal holds no secrets: the identity response lives in its own 0600 file.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from pep_agent.paths import HOST_PROC

SCHEMA = 1

# Overall states, as `pep-agent status` reports them.
NOT_STARTED = "not-started"
RUNNING = "running"
DONE = "provisioned"
VERIFIED = "verified"
FAILED = "failed"
INTERRUPTED = "interrupted"


class Journal:
    """A dict persisted after each change. `data` is the stable contract documented in README."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = load(path)

    def reset(self, **fields: Any) -> None:
        now = time.time()
        self.data = {"schema": SCHEMA, "state": RUNNING, "step": None, "steps": {},
                     "attempt": 0, "next_retry_in": None, "error": None,
                     "started_at": now, "updated_at": now, "finished_at": None,
                     "pid": os.getpid(), "pid_start": start_ticks(os.getpid()), **fields}
        self.save()

    def update(self, **fields: Any) -> None:
        self.data.update(fields)
        self.save()

    def step_started(self, name: str) -> None:
        self.data["step"] = name
        self.data.setdefault("steps", {})[name] = {"status": "running", "started_at": time.time()}
        self.save()

    def step_ended(self, name: str, status: str, duration: float) -> None:
        entry = self.data.setdefault("steps", {}).setdefault(name, {})
        entry.update(status=status, duration_s=round(duration, 4), ended_at=time.time())
        self.save()

    def save(self) -> None:
        # Imported here: `pep-agent status` only reads the journal and stays light.
        from pep_agent.system.fsutil import atomic_write

        self.data["updated_at"] = time.time()
        # 0600 like the rest of the state: it names the server, the serial and the errors.
        atomic_write(self.path, (json.dumps(self.data, indent=2, sort_keys=True) + "\n").encode(),
                     mode=0o600)


def load(path: Path) -> dict[str, Any]:
    """The journal's content, or {} when absent or unreadable (a torn file cannot happen)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def effective_state(data: dict[str, Any]) -> str:
    """The state to report: a 'running' journal whose process is gone was interrupted."""
    state = str(data.get("state") or NOT_STARTED)
    if state == RUNNING and not _alive(data.get("pid"), data.get("pid_start")):
        return INTERRUPTED
    return state


def start_ticks(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot (recognises a pid reused after a crash)."""
    try:
        stat = (HOST_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: count fields after the last ')'.
    return int(stat.rsplit(")", 1)[1].split()[19])


def _alive(pid: Any, started: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    now = start_ticks(pid)
    return now is not None and (not isinstance(started, int) or now == started)
