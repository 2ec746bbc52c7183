"""The journal of a provisioning run, written: a typed record, persisted as one JSON document
rewritten atomically after each change.

state.py reads the same document for `pep-agent status` (it stays light: no dataclasses); its
FIELDS give each field's type, and Record has exactly those fields.

Side effects: `Journal` reads `<state_dir>/state.json` when built and rewrites it with fsync on
each change, so `pep-agent status` and a rerun after a crash see exactly where a run stopped;
`own_pid` reads the process table.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pep_agent import state


@dataclass
class Record:
    """Every field a run writes (README, "Status JSON", documents the ones status shows).
    None is "not set"; the types are state.FIELDS'."""

    schema: int | None = None
    state: str | None = None
    step: str | None = None
    steps: dict[str, dict[str, Any]] | None = None
    run_id: str | None = None
    pid: int | None = None
    pid_start: float | None = None
    started_at: float | None = None
    updated_at: float | None = None
    finished_at: float | None = None
    error: dict[str, Any] | None = None
    resumed: bool | None = None
    # preflight, discover-serial, wait-network
    profile: str | None = None
    server: str | None = None
    parsec: bool | None = None
    serial: str | None = None
    serial_source: str | None = None
    interface: str | None = None
    ip: str | None = None
    # clear-identity: what it moved aside
    previous_identity: list[str] | None = None
    # start-fcc
    fcc_pid: int | None = None
    fcc_started: float | None = None
    fcc_ip: str | None = None
    fcc_port: int | None = None
    # request-identity: the injection fields are written before each request leaves
    attempt: int | None = None
    next_retry_in: float | None = None
    last_attempt_error: str | None = None
    injection: dict[str, str] | None = None
    enrollment_id: str | None = None
    response_saved: bool | None = None
    server_request_s: float | None = None
    rebuilt_answer: bool | None = None
    # the recovery rule and reprovision
    adopted: bool | None = None
    restored_previous: bool | None = None
    # verify
    verify_state: str | None = None
    verify_error: dict[str, Any] | None = None
    verified_at: float | None = None
    verify_failed_at: float | None = None
    # Fields of another version of the agent, written back as they were.
    other: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        """A record from a journal document (state.load has checked its types)."""
        known = {k: v for k, v in data.items() if k in _NAMES}
        return cls(**known, other={k: v for k, v in data.items() if k not in _NAMES})

    def to_dict(self) -> dict[str, Any]:
        out = {**self.other}
        out.update((name, getattr(self, name)) for name in _NAMES)
        return out


_NAMES = tuple(f.name for f in dataclasses.fields(Record) if f.name != "other")


class Journal:
    """The record of a run, persisted after each change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.record = Record.from_dict(state.load(path))
        # Set at the commit point: from then on a failed write is logged, not raised, so that
        # an answer held in memory is still installed on a full state disk.
        self.best_effort = False

    @property
    def data(self) -> dict[str, Any]:
        """The document as written (a copy: change it through `update`)."""
        return self.record.to_dict()

    def reload(self) -> None:
        """The journal as it is on disk now (another run may have written it)."""
        self.record = Record.from_dict(state.load(self.path))

    def reset(self, **fields: Any) -> None:
        now = time.time()
        self.record = Record(schema=state.SCHEMA, state=state.RUNNING, steps={}, attempt=0,
                             started_at=now, **own_pid())
        self.update(**fields)

    def update(self, **fields: Any) -> None:
        """Set `fields` (a name Record lacks is a TypeError: a typo is a bug) and save."""
        self.record = dataclasses.replace(self.record, **fields)
        self.save()

    def step_started(self, name: str) -> None:
        steps = {**(self.record.steps or {}),
                 name: {"status": "running", "started_at": time.time()}}
        self.update(step=name, steps=steps)

    def step_ended(self, name: str, status: str, duration: float) -> None:
        steps = dict(self.record.steps or {})
        steps[name] = {**steps.get(name, {}), "status": status,
                       "duration_s": round(duration, 4), "ended_at": time.time()}
        self.update(steps=steps)

    def save(self) -> None:
        from pep_agent.system.fsutil import atomic_write

        self.record.updated_at = time.time()
        try:
            # 0600 like the rest of the state: it names the server, the serial and the errors.
            atomic_write(self.path, (json.dumps(self.data, indent=2, sort_keys=True)
                                     + "\n").encode(), mode=0o600)
        except OSError as e:
            if not self.best_effort:
                raise
            import logging

            logging.getLogger("pep_agent").warning(
                "cannot update the journal %s (%s); carrying on with the install", self.path,
                e.strerror or type(e).__name__)


def own_pid() -> dict[str, Any]:
    """The journal's fields naming this process (status tells a dead run from a live one)."""
    from pep_agent.system.proc import process_start_time

    return {"pid": os.getpid(), "pid_start": process_start_time(os.getpid())}
